//! A three-node Cassandra cluster (`scripts/infra up cassandra --nodes 3`):
//! keyspaces with `NetworkTopologyStrategy {'dc1': 3}`, writes at
//! LOCAL_QUORUM, Kafka as the log. The tests stop and start nodes, so they
//! run only when `TRIBUTARY_TEST_CASSANDRA_CLUSTER=1` asks for them (their
//! own CI step, one at a time); `TRIBUTARY_TEST_CASSANDRA` lists the nodes.

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{Args, Reap, Sandbox, infra, skipped, stderr, terminate, unique};

/// Kafka bootstrap and the cluster's contact points, when asked for.
fn cluster(test: &str) -> Option<(String, String)> {
    if std::env::var("TRIBUTARY_TEST_CASSANDRA_CLUSTER").as_deref() != Ok("1") {
        skipped(
            test,
            "needs TRIBUTARY_TEST_CASSANDRA_CLUSTER=1 and a three-node cluster \
             (scripts/infra up cassandra --nodes 3; it stops nodes)",
        );
        return None;
    }
    let nodes = crate::support::cassandra(test)?;
    let kafka = crate::support::kafka(test)?;
    assert_eq!(
        nodes.split(',').count(),
        3,
        "TRIBUTARY_TEST_CASSANDRA must list three nodes: {nodes}"
    );
    Some((kafka, nodes))
}

/// A sandbox whose Cassandra keyspaces are replicated three times in dc1
/// and written at LOCAL_QUORUM, and the URL of `ks.created_users`.
fn sandbox(nodes: &str, ks: &str) -> (Sandbox, String) {
    let s = Sandbox::new();
    s.config("[sink.cassandra]\nconsistency = \"LOCAL_QUORUM\"\ndatacenters = { dc1 = 3 }\n");
    (s, format!("cassandra://{nodes}/{ks}.created_users"))
}

/// `status --json` of the group on the topic; its store is the sandbox's
/// embedded one, so the cluster is neither counted nor needed.
fn status(s: &Sandbox, log: &str, group: &str) -> Option<serde_json::Value> {
    let out = s.run(&[
        "status", "--json", "--log", log, "--group", group, "--sink", "sqlite:",
    ]);
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// The group's committed lag on the topic (`None` while status fails).
fn lag(s: &Sandbox, log: &str, group: &str) -> Option<u64> {
    status(s, log, group)?["lag"].as_u64()
}

/// Polls `lag` until `done` says so, failing the test after `limit` with
/// the last lag seen and the end of the processor's log (`errors`).
#[allow(clippy::too_many_arguments)]
fn wait_lag(
    s: &Sandbox,
    log: &str,
    group: &str,
    what: &str,
    limit: Duration,
    done: impl Fn(u64) -> bool,
    child: &mut Reap,
    errors: &std::path::Path,
) -> u64 {
    let start = Instant::now();
    let tail = || {
        let text = std::fs::read_to_string(errors).unwrap_or_default();
        let from = text.len().saturating_sub(4000);
        let from = (from..text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(0);
        text[from..].to_owned()
    };
    let mut last = None;
    loop {
        last = lag(s, log, group).or(last);
        if last.is_some_and(&done) {
            return last.unwrap();
        }
        if let Some(status) = child.0.try_wait().unwrap() {
            panic!(
                "the processor exited ({status}) while waiting for {what}:\n{}",
                tail()
            );
        }
        assert!(
            start.elapsed() < limit,
            "no {what} after {limit:?} (lag {last:?}); the processor's log ends:\n{}",
            tail()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Rows in the table, counted by `tributary count` (at the sink's
/// consistency, LOCAL_QUORUM).
///
/// A count is a scan of every node's range; on a busy cluster just after
/// a node's return one can time out on the server (range requests get
/// 10 s), so a failed count is asked again, a few times.
fn count(s: &Sandbox, sink: &str) -> u64 {
    let mut failures = Vec::new();
    while failures.len() < 4 {
        let out = s.run(&["count", "--sink", sink]);
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        }
        failures.push(stderr(&out));
    }
    panic!("the count failed four times: {failures:?}");
}

/// Dead letters waiting on the topic's `.dlq`.
fn dead_letters(s: &Sandbox, log: &str, group: &str) -> u64 {
    let v = status(s, log, group).expect("status answers");
    v["dead_letters_waiting"].as_u64().unwrap()
}

fn ingest(s: &Sandbox, log: &str, n: u64, seed: &str) {
    let out = s.summary(Args::ingest().records(n).seed(seed).log(log));
    assert_eq!(out["logged"], n, "{out}");
}

#[test]
fn cluster_one_node_stopped_mid_stream_stores_exactly_n_at_quorum() {
    let Some((kafka, nodes)) = cluster("cluster_one_node_stopped") else {
        return;
    };
    const N: u64 = 100_000;
    let name = unique("c1");
    let (s, sink) = sandbox(&nodes, &name);
    let log = format!("kafka://{kafka}/{name}");
    ingest(&s, &log, N, "c1");
    let errors = s.dir.path().join("process.err");
    let mut child = Reap(
        s.cmd(&[
            "process",
            "--log",
            &log,
            "--sink",
            &sink,
            "--group",
            &name,
            "--batch-size",
            "500",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&errors).unwrap())
        .spawn()
        .unwrap(),
    );
    let limit = Duration::from_secs(180);
    let before = wait_lag(
        &s,
        &log,
        &name,
        "rows before the stop",
        limit,
        |l| l <= N - 10_000,
        &mut child,
        &errors,
    );
    infra(&["stop", "cassandra-2"]);
    // One replica of three is gone: LOCAL_QUORUM (two) still acknowledges.
    wait_lag(
        &s,
        &log,
        &name,
        "progress with a node down",
        limit,
        |l| l + 10_000 <= before,
        &mut child,
        &errors,
    );
    infra(&["start", "cassandra-2"]);
    let mut stdout = String::new();
    child
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let status = child.0.wait().unwrap();
    let err = std::fs::read_to_string(&errors).unwrap_or_default();
    assert!(status.success(), "{err}");
    let summary: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(summary["dead_lettered"], 0, "{summary}");
    assert!(summary["read"].as_u64().unwrap() >= N, "{summary}");
    assert_eq!(lag(&s, &log, &name), Some(0));
    assert_eq!(dead_letters(&s, &log, &name), 0);
    assert_eq!(count(&s, &sink), N);
}

#[test]
fn cluster_two_nodes_down_pauses_the_pipeline_until_one_returns() {
    let Some((kafka, nodes)) = cluster("cluster_two_nodes_down") else {
        return;
    };
    const N: u64 = 10_000;
    let name = unique("c2");
    let (s, sink) = sandbox(&nodes, &name);
    let log = format!("kafka://{kafka}/{name}");
    ingest(&s, &log, N / 2, "c2");
    let errors = s.dir.path().join("process.err");
    let mut child = Reap(
        s.cmd(&[
            "process",
            "--follow",
            "--log",
            &log,
            "--sink",
            &sink,
            "--group",
            &name,
            "--batch-size",
            "200",
        ])
        .env("RUST_LOG", "tributary=info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&errors).unwrap())
        .spawn()
        .unwrap(),
    );
    let limit = Duration::from_secs(180);
    let err = || std::fs::read_to_string(&errors).unwrap_or_default();
    wait_lag(
        &s,
        &log,
        &name,
        "the first half stored",
        limit,
        |l| l == 0,
        &mut child,
        &errors,
    );
    infra(&["stop", "cassandra-2", "cassandra-3"]);
    // The second half arrives while only one replica is up.
    ingest(&s, &log, N / 2, "c2-during-the-outage");
    // One replica left: LOCAL_QUORUM cannot be met, so the processor waits
    // and says so, and commits nothing past what was acknowledged.
    let start = Instant::now();
    while !err().contains("sink unavailable, pipeline paused") {
        assert!(start.elapsed() < limit, "no pause warning: {}", err());
        assert!(child.0.try_wait().unwrap().is_none(), "{}", err());
        std::thread::sleep(Duration::from_millis(200));
    }
    let paused = lag(&s, &log, &name).expect("status answers");
    assert!(paused > 0, "the second half was stored without a quorum");
    // The driver saw the nodes go.
    let start = Instant::now();
    while !err().contains("Cassandra node is down") {
        assert!(start.elapsed() < limit, "no node-down warning: {}", err());
        std::thread::sleep(Duration::from_millis(200));
    }
    // Another pause warning (5 s later): still paused, nothing committed.
    let warnings = |e: &str| e.matches("sink unavailable, pipeline paused").count();
    let seen = warnings(&err());
    let start = Instant::now();
    while warnings(&err()) < seen + 1 {
        assert!(
            start.elapsed() < limit,
            "the pause warnings stopped: {}",
            err()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        lag(&s, &log, &name),
        Some(paused),
        "offsets moved during the outage"
    );
    assert_eq!(dead_letters(&s, &log, &name), 0);
    infra(&["start", "cassandra-2"]);
    // Two replicas again: it resumes by itself and drains the topic.
    wait_lag(
        &s,
        &log,
        &name,
        "the drain after the node's return",
        limit,
        |l| l == 0,
        &mut child,
        &errors,
    );
    // The node watch reads the driver's view every two seconds, so the
    // drain may finish before it logs the node's return: wait for the line.
    let start = Instant::now();
    while !err().contains("Cassandra node is up again") {
        assert!(start.elapsed() < limit, "no node-up line: {}", err());
        assert!(child.0.try_wait().unwrap().is_none(), "{}", err());
        std::thread::sleep(Duration::from_millis(200));
    }
    terminate(&child.0);
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{}", err());
    let e = err();
    assert!(e.contains("sink is back, processing resumed"), "{e}");
    // The third node comes back while the store is checked.
    let third = Reap(
        std::process::Command::new("bash")
            .args([
                concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/infra"),
                "start",
                "cassandra-3",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert_eq!(dead_letters(&s, &log, &name), 0);
    assert_eq!(count(&s, &sink), N);
    let report = crate::support::verified(&s, &["--log", &log, "--group", &name, "--sink", &sink]);
    assert_eq!(report["present"], N, "{report}");
    let mut third = third;
    assert!(
        third.0.wait().unwrap().success(),
        "scripts/infra start cassandra-3 failed"
    );
}
