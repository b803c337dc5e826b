//! Several batches in flight at once, and still exactly once: a processor
//! SIGKILLed while batches are written out of order, then restarted, leaves
//! exactly N rows. The embedded path always runs (its store keeps its
//! position beside the rows, so it takes one batch at a time); Kafka →
//! SQLite and Kafka → Cassandra, where batches overlap, run when the
//! servers are there.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Args, Sandbox, distinct_ids, rows_now, stderr, unique};

const N: u64 = 20_000;
const BATCH: u64 = 25;

/// Starts `process --follow` with `args`, waits until `rows()` reaches
/// `at`, then SIGKILLs it.
fn kill_mid_stream(s: &Sandbox, args: Args, at: u64, rows: impl Fn() -> u64) {
    let mut child: Child = s
        .cmd(&args.follow().batch_size(BATCH).strs())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    while rows() < at {
        assert!(Instant::now() < deadline, "the processor made no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL: batches in flight are neither finished nor committed
    child.wait().unwrap();
}

#[test]
fn killed_mid_stream_on_the_embedded_path_then_restarted_stores_exactly_n() {
    let s = Sandbox::new();
    let ingested = s.summary(Args::ingest().records(N).seed("overlap"));
    assert_eq!(ingested["logged"], N);
    kill_mid_stream(&s, Args::process(), N / 3, || rows_now(&s.store_path()));
    let before = rows_now(&s.store_path());
    assert!(before < N, "finished before the kill ({before}); raise N");
    let resumed = s.summary(Args::process().batch_size(BATCH));
    assert_eq!(s.count(), N, "{resumed}");
    assert_eq!(distinct_ids(&s.store_path()), N);
    assert_eq!(resumed["stored"].as_u64().unwrap(), N - before, "{resumed}");
    assert_eq!(resumed["dead_lettered"], 0, "{resumed}");
    let report = crate::support::verified(&s, &[]);
    assert_eq!(report["present"], N, "{report}");
}

#[test]
fn killed_mid_stream_kafka_into_sqlite_with_batches_in_flight_stores_exactly_n() {
    let Some(b) = crate::support::kafka("overlap_kafka_into_sqlite") else {
        return;
    };
    let s = Sandbox::new();
    let topic = unique("overlap");
    let url = format!("kafka://{b}/{topic}");
    let ingested = s.summary(Args::ingest().records(N).seed("ov").log(&url));
    assert_eq!(ingested["logged"], N);
    let at = N / 3;
    kill_mid_stream(&s, Args::process().log(&url).group(&topic), at, || {
        rows_now(&s.store_path())
    });
    let before = rows_now(&s.store_path());
    assert!(before < N, "finished before the kill ({before}); raise N");
    let resumed = s.summary(Args::process().batch_size(BATCH).log(&url).group(&topic));
    assert_eq!(s.count(), N, "{resumed}");
    assert_eq!(distinct_ids(&s.store_path()), N);
    assert_eq!(resumed["stored"].as_u64().unwrap(), N - before, "{resumed}");
    // It resumed from the group's commit, not from the start. Kafka commits
    // are sent without waiting for the answer, so the last ones before the
    // kill may trail the store by some batches; the store's own position
    // skips what it already holds, which is what this counts.
    let replayed = resumed["duplicates_skipped"].as_u64().unwrap();
    assert!(
        replayed < before,
        "re-read {replayed} rows, as many as were stored before the kill ({before})"
    );
}

#[test]
fn killed_mid_stream_kafka_into_cassandra_with_batches_in_flight_stores_exactly_n() {
    let Some(b) = crate::support::kafka("overlap_kafka_into_cassandra") else {
        return;
    };
    let Some(node) = crate::support::cassandra("overlap_kafka_into_cassandra") else {
        return;
    };
    let s = Sandbox::new();
    let topic = unique("overlap");
    let url = format!("kafka://{b}/{topic}");
    let sink = format!("cassandra://{node}/{}.created_users", unique("ov"));
    let count = || {
        let out = s.run(&["count", "--sink", &sink]);
        if !out.status.success() {
            return 0; // the keyspace is not there yet
        }
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    };
    let ingested = s.summary(Args::ingest().records(N).seed("ovc").log(&url));
    assert_eq!(ingested["logged"], N);
    let args = Args::process().log(&url).group(&topic).sink(&sink);
    kill_mid_stream(&s, args, N / 3, count);
    let before = count();
    assert!(before < N, "finished before the kill ({before}); raise N");
    let resumed = s.summary(
        Args::process()
            .batch_size(BATCH)
            .log(&url)
            .group(&topic)
            .sink(&sink),
    );
    assert_eq!(count(), N, "{resumed}");
    let out = s.run(&[
        "verify", "--json", "--log", &url, "--group", &topic, "--sink", &sink,
    ]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no verify report ({e}): {}", stderr(&out)));
    assert_eq!(report["missing"], 0, "{report}");
    assert_eq!(report["present"], N, "{report}");
}
