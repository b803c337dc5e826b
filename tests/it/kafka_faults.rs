//! Kafka broker failures while tributary produces: no record lost, none
//! duplicated. These stop and start brokers through `scripts/infra`, so they
//! run only when asked (`TRIBUTARY_TEST_KAFKA_FAULTS=single` against one
//! broker, `=three` against `scripts/infra up kafka --brokers 3`), one test
//! at a time, in their own CI step; otherwise they say that they skipped.

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{Reap, Sandbox, distinct_ids, infra, rows_now, stderr, terminate, unique};

pub(crate) fn enabled(mode: &str, test: &str) -> Option<String> {
    let faults = std::env::var("TRIBUTARY_TEST_KAFKA_FAULTS").ok();
    match faults.as_deref() {
        // Asked for this step: then Kafka must be there.
        Some(m) if m == mode => crate::support::kafka(test),
        _ => {
            crate::support::skipped(
                test,
                &format!(
                    "needs TRIBUTARY_TEST_KAFKA and TRIBUTARY_TEST_KAFKA_FAULTS={mode} (it stops brokers)"
                ),
            );
            None
        }
    }
}

/// Messages on the topic, summed over partitions (its end offsets).
fn topic_end(s: &Sandbox, url: &str) -> u64 {
    let out = s.run(&["status", "--json", "--log", url, "--group", "observer"]);
    if !out.status.success() {
        return 0;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v["partitions"]
        .as_array()
        .map(|ps| ps.iter().filter_map(|p| p["end"].as_u64()).sum())
        .unwrap_or(0)
}

/// Ingests a steady 20 s stream while `node` is stopped and started again,
/// with a processor following the topic all along: the producer rides the
/// restart out, the follower survives it too (it used to exit on the
/// broker's transport error), the store holds exactly what was logged, and
/// the topic holds exactly that many messages (the idempotent producer
/// wrote none twice). A second, fresh group then reads it all again.
fn survive_broker_restart(broker: &str, node: &str, name: &str) {
    let s = Sandbox::new();
    let topic = unique(name);
    let url = format!("kafka://{broker}/{topic}");
    let mut follower = Reap(
        s.cmd(&["process", "--follow", "--log", &url, "--group", &topic])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut ingest = s
        .cmd(&[
            "ingest",
            "--duration",
            "20s",
            "--interval",
            "100ms",
            "--per-tick",
            "500",
            "--seed",
            name,
            "--log",
            &url,
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Mid-stream: once some thousands are on the topic.
    let deadline = Instant::now() + Duration::from_secs(60);
    while topic_end(&s, &url) < 5_000 {
        if Instant::now() > deadline || ingest.try_wait().unwrap().is_some() {
            let _ = ingest.kill();
            let out = ingest.wait_with_output().unwrap();
            panic!("ingest made no progress ({}): {}", out.status, stderr(&out));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    infra(&["stop", node]);
    infra(&["start", node]);
    let out = ingest.wait_with_output().unwrap();
    assert!(out.status.success(), "ingest failed: {}", stderr(&out));
    let summary: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    let logged = summary["logged"].as_u64().unwrap();
    assert_eq!(summary["fetched"].as_u64().unwrap(), logged, "{summary}");
    assert!(logged >= 10_000, "{summary}");
    assert_eq!(
        topic_end(&s, &url),
        logged,
        "the topic holds a duplicate or lost a record"
    );
    // The follower catches up with everything logged, then stops cleanly.
    let deadline = Instant::now() + Duration::from_secs(120);
    while rows_now(&s.store_path()) < logged {
        if let Some(status) = follower.0.try_wait().unwrap() {
            let mut errors = String::new();
            let _ = follower
                .0
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut errors);
            panic!("the follower exited ({status}) before catching up: {errors}");
        }
        assert!(
            Instant::now() < deadline,
            "the follower stored {} of {logged}",
            rows_now(&s.store_path())
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    terminate(&follower.0);
    let status = follower.0.wait().unwrap();
    let mut errors = String::new();
    follower
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut errors)
        .unwrap();
    assert!(status.success(), "the follower failed: {errors}");
    assert_eq!(s.count(), logged);
    assert_eq!(distinct_ids(&s.store_path()), logged);
    let again = format!("{topic}-again");
    let processed = s.run_json(&["process", "--log", &url, "--group", &again, "--json"]);
    assert_eq!(processed["read"].as_u64().unwrap(), logged, "{processed}");
    assert_eq!(s.count(), logged);
    let report = crate::support::verified(&s, &["--log", &url, "--group", &topic]);
    assert_eq!(report["present"], logged, "{report}");
}

#[test]
fn single_broker_restarted_while_producing_loses_and_duplicates_nothing() {
    let Some(b) = enabled("single", "single_broker_restarted") else {
        return;
    };
    survive_broker_restart(&b, "kafka-1", "restart1");
}

#[test]
fn three_brokers_one_killed_and_back_loses_nothing() {
    let Some(b) = enabled("three", "three_brokers_one_killed") else {
        return;
    };
    survive_broker_restart(&b, "kafka-2", "restart3");
}

/// The seed stack's own variant, `examples/random_names.toml`, on the
/// three-broker cluster: its log URL names the three brokers, its job is the
/// daily 01:00 UTC two-minute burst, and a short burst of it stores every
/// user in `<keyspace>.random_names` (the Random User API is replaced by
/// the generator, the keyspace and topic by fresh ones; Cassandra asks for
/// the credentials this CI step sets up).
#[test]
fn the_seeds_random_names_example_runs_on_three_brokers() {
    let Some(brokers) = enabled("three", "random_names_example") else {
        return;
    };
    let Some(node) = crate::support::cassandra("random_names_example") else {
        return;
    };
    let s = Sandbox::new();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/random_names.toml");
    let shown = s.run(&["config", "check", "--config", example]);
    assert!(shown.status.success(), "{}", stderr(&shown));
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains("kafka://127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096/random_names"),
        "{shown}"
    );
    assert!(shown.contains("schedule = \"0 1 * * *\""), "{shown}");
    assert!(shown.contains("duration = \"2m\""), "{shown}");
    assert!(
        brokers.split(',').count() == 3,
        "the three-broker step exports three bootstrap servers: {brokers}"
    );
    let topic = unique("random_names");
    let ks = unique("spark_streaming");
    let sink = format!("cassandra://cassandra:cassandra@{node}/{ks}.random_names");
    let summary = s.run_json(&[
        "run",
        "--config",
        example,
        "--source",
        "gen:",
        "--seed",
        "random-names",
        "--topic",
        &topic,
        "--sink",
        &sink,
        "--duration",
        "3s",
        "--interval",
        "100ms",
        "--per-tick",
        "10",
        "--json",
    ]);
    // Thirty ticks of ten: each is fetched or, when the one before is
    // still appending (three brokers with `acks=all` on a busy machine),
    // skipped and counted.
    let fetched = summary["fetched"].as_u64().unwrap();
    let skipped = summary["ticks_skipped"].as_u64().unwrap();
    assert!(fetched > 0, "{summary}");
    assert_eq!(fetched + 10 * skipped, 300, "{summary}");
    assert_eq!(summary["stored"].as_u64(), Some(fetched), "{summary}");
    assert_eq!(summary["balanced"], true, "{summary}");
    let count = s.run(&["count", "--config", example, "--sink", &sink]);
    assert_eq!(
        String::from_utf8_lossy(&count.stdout).trim(),
        fetched.to_string(),
        "{}",
        stderr(&count)
    );
}
