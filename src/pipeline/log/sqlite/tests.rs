//! The embedded log: retention that saturates, commits trusted only for
//! their own log file, losses to retention counted once.

use std::time::Duration;

use super::retention::retention_cutoff;
use super::*;
use crate::clock::now_ms;
use crate::pipeline::log::{Checkpoint, LogRecord};

#[test]
fn a_retention_age_beyond_the_clock_keeps_everything() {
    let now = now_ms();
    // 300 million years: `now - age as i64` used to wrap into the future
    // and drop the whole log.
    let age = Duration::from_secs(300_000_000 * 31_557_600);
    assert!(retention_cutoff(now, age) < 0);
    assert!(retention_cutoff(now, Duration::MAX) < 0);
    assert_eq!(retention_cutoff(now, Duration::from_secs(1)), now - 1000);
}

async fn log(dir: &std::path::Path, retention_messages: Option<u64>) -> SqliteLog {
    SqliteLog::open(SqliteLogConfig {
        path: dir.join("log.db"),
        topic: "t".into(),
        retention_messages,
        retention_age: None,
        durable_fsync: false,
        offset_reset: OffsetReset::Earliest,
    })
    .await
    .unwrap()
}

fn records(n: usize) -> Vec<LogRecord> {
    (0..n)
        .map(|i| LogRecord {
            key: None,
            payload: i.to_string().into_bytes(),
        })
        .collect()
}

#[tokio::test]
async fn a_commit_made_against_another_log_file_is_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let first = log(dir.path(), None).await;
    first.append(records(30)).await.unwrap();
    let reader = first.reader("g").await.unwrap();
    reader
        .committer()
        .commit(&Checkpoint::at([(0, 30)].into()))
        .await
        .unwrap();
    drop((reader, first));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.path().join(format!("log.db{suffix}")));
    }
    let second = log(dir.path(), None).await;
    second.append(records(40)).await.unwrap();
    let mut reader = second.reader("g").await.unwrap();
    assert_eq!(reader.position(), 0, "the old commit was trusted");
    let batch = reader.poll(100, Duration::ZERO).await.unwrap();
    assert_eq!(batch.len(), 40);
    assert_eq!(reader.take_lost(), 0);
}

#[tokio::test]
async fn messages_retention_dropped_before_a_read_are_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let l = log(dir.path(), Some(10)).await;
    let mut reader = l.reader("g").await.unwrap();
    l.append(records(25)).await.unwrap();
    let batch = reader.poll(100, Duration::ZERO).await.unwrap();
    assert_eq!(batch.first().map(|m| m.offset), Some(15));
    assert_eq!(reader.take_lost(), 15);
    assert_eq!(reader.take_lost(), 0);
    assert_eq!(l.lost("g").await.unwrap(), 15);
    // Noticed again after a restart (nothing was committed): the range
    // is merged, not added twice.
    let mut again = l.reader("g").await.unwrap();
    again.poll(100, Duration::ZERO).await.unwrap();
    assert_eq!(again.take_lost(), 15);
    assert_eq!(l.lost("g").await.unwrap(), 15);
}
