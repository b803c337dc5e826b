//! Exactly-once results across a crash: a processor SIGKILLed mid-stream and
//! restarted leaves exactly N rows, none missing, none doubled, and replays
//! at most the one batch that was in flight.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{Sandbox, distinct_ids, rows_now};

const N: u64 = 20_000;
const BATCH: &str = "20";

#[test]
fn processor_killed_mid_stream_then_restarted_stores_exactly_n() {
    let s = Sandbox::new();
    let ingested = s.run_json(&[
        "ingest",
        "--records",
        &N.to_string(),
        "--seed",
        "crash",
        "--json",
    ]);
    assert_eq!(ingested["logged"], N);

    let mut child = s
        .cmd(&["process", "--follow", "--batch-size", BATCH])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once it is visibly mid-stream.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = 0;
    while seen < 500 {
        assert!(Instant::now() < deadline, "processor made no progress");
        std::thread::sleep(Duration::from_millis(5));
        seen = rows_now(&s.store_path());
    }
    child.kill().unwrap(); // SIGKILL: no drain, no commit, no goodbye
    child.wait().unwrap();
    let before_restart = rows_now(&s.store_path());
    assert!(
        before_restart < N,
        "the processor finished before it could be killed ({before_restart} rows); raise N"
    );

    let resumed = s.run_json(&["process", "--batch-size", BATCH, "--json"]);
    assert_eq!(s.count(), N);
    assert_eq!(distinct_ids(&s.store_path()), N);
    // It resumed from the last commit: it re-read at most the batch that was
    // in flight (those rows are "unchanged"), not the whole log.
    let batch: u64 = BATCH.parse().unwrap();
    let replayed = resumed["duplicates_skipped"].as_u64().unwrap();
    assert!(
        replayed <= batch,
        "replayed {replayed} rows, more than one batch"
    );
    assert_eq!(resumed["stored"].as_u64().unwrap(), N - before_restart);
    assert_eq!(
        resumed["read"].as_u64().unwrap(),
        N - before_restart + replayed
    );
    assert_eq!(resumed["dead_lettered"], 0);
    let report = crate::support::verified(&s, &[]);
    assert_eq!(report["present"], N, "{report}");
}
