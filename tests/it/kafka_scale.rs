//! Processors scaled out: several `process --follow` in one consumer group
//! share a topic's partitions, `status` shows who holds which, and a member
//! killed mid-stream loses nothing (its partitions move to the others, and
//! a newcomer takes its share). Runs with the three-broker fault tests
//! (`TRIBUTARY_TEST_KAFKA_FAULTS=three`), since it kills processes and waits
//! out session timeouts.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{Args, Reap, Sandbox, stderr, terminate, unique};

const N: u64 = 30_000;
const PARTITIONS: usize = 6;

/// `status --json` of the group, or `None` while it cannot be read.
fn status(s: &Sandbox, url: &str, sink: &str, group: &str) -> Option<serde_json::Value> {
    let out = s.run(&[
        "status", "--json", "--log", url, "--sink", sink, "--group", group,
    ]);
    if !out.status.success() {
        eprintln!("status failed (retrying): {}", stderr(&out));
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// The members' partitions when the group is stable with `n` members whose
/// partitions are disjoint and cover the topic; else `None`.
fn settled(v: &serde_json::Value, n: usize) -> Option<Vec<(String, Vec<i64>)>> {
    if v["group_state"] != "Stable" {
        return None;
    }
    let members: Vec<(String, Vec<i64>)> = v["members"]
        .as_array()?
        .iter()
        .map(|m| {
            let parts = m["partitions"]
                .as_array()
                .map_or(vec![], |ps| ps.iter().filter_map(|p| p.as_i64()).collect());
            (m["member_id"].as_str().unwrap_or("").to_owned(), parts)
        })
        .collect();
    let held: Vec<i64> = members.iter().flat_map(|(_, p)| p.clone()).collect();
    let distinct: BTreeSet<i64> = held.iter().copied().collect();
    let all: BTreeSet<i64> = (0..PARTITIONS as i64).collect();
    (members.len() == n
        && members.iter().all(|(_, p)| !p.is_empty())
        && held.len() == PARTITIONS
        && distinct == all)
        .then_some(members)
}

/// Waits until `status` shows `n` settled members; returns them.
fn wait_settled(
    s: &Sandbox,
    url: &str,
    sink: &str,
    group: &str,
    n: usize,
) -> Vec<(String, Vec<i64>)> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = serde_json::Value::Null;
    loop {
        if let Some(v) = status(s, url, sink, group) {
            if let Some(m) = settled(&v, n) {
                // Each partition names its holder, as the member list says.
                for p in v["partitions"].as_array().unwrap() {
                    let owner = p["member"].as_str().expect("every partition has a member");
                    let id = p["partition"].as_i64().unwrap();
                    assert!(
                        m.iter().any(|(mid, ps)| mid == owner && ps.contains(&id)),
                        "{v}"
                    );
                }
                return m;
            }
            last = v;
        }
        assert!(
            Instant::now() < deadline,
            "the group never showed {n} members sharing the {PARTITIONS} partitions: {last}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn follower(s: &Sandbox, url: &str, sink: &str, group: &str) -> Reap {
    Reap(
        s.cmd(
            &Args::process()
                .follow()
                .log(url)
                .sink(sink)
                .group(group)
                .batch_size(500)
                .strs(),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("process --follow starts"),
    )
}

/// Three processors in one group on six partitions, writing to Cassandra:
/// `status` lists three members whose partitions are disjoint and cover the
/// topic; one is SIGKILLed while the records stream in and another joins;
/// in the end the table has exactly N rows and every partition's commit is
/// at its end.
#[test]
fn processors_share_partitions_and_a_killed_one_loses_nothing() {
    let Some(brokers) = crate::kafka_faults::enabled("three", "processors_share_partitions") else {
        return;
    };
    let Some(node) = crate::support::cassandra("processors_share_partitions") else {
        return;
    };
    let s = Sandbox::new();
    s.config(&format!("[log.kafka]\npartitions = {PARTITIONS}\n"));
    let topic = unique("scale");
    let group = format!("{topic}-g");
    let url = format!("kafka://{brokers}/{topic}");
    // The CI step's Cassandra asks for these; one without authentication
    // ignores them.
    let sink = format!(
        "cassandra://cassandra:cassandra@{node}/{}.created_users",
        unique("scale")
    );
    // The topic and the table exist before the processors race to make
    // them: a `process` of another group makes both (`status` makes
    // neither). On a fresh cluster the group's coordinator may take a
    // moment, so each is asked until it answers.
    let deadline = Instant::now() + Duration::from_secs(60);
    let maker = format!("{group}-maker");
    while !s
        .run(&Args::process().log(&url).sink(&sink).group(&maker).strs())
        .status
        .success()
    {
        assert!(
            Instant::now() < deadline,
            "the topic and table were never made"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    while status(&s, &url, &sink, &group).is_none() {
        assert!(Instant::now() < deadline, "status never answered");
        std::thread::sleep(Duration::from_millis(500));
    }
    let mut members = vec![
        follower(&s, &url, &sink, &group),
        follower(&s, &url, &sink, &group),
        follower(&s, &url, &sink, &group),
    ];
    let three = wait_settled(&s, &url, &sink, &group, 3);
    assert_eq!(three.len(), 3);

    let ingest = s
        .cmd(
            &Args::ingest()
                .records(N)
                .seed("scale")
                .log(&url)
                .arg("--json")
                .strs(),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Mid-stream: once the group has committed some of the records.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let committed: i64 = status(&s, &url, &sink, &group)
            .and_then(|v| {
                v["partitions"]
                    .as_array()
                    .map(|ps| ps.iter().filter_map(|p| p["committed"].as_i64()).sum())
            })
            .unwrap_or(0);
        if committed >= 1_000 {
            eprintln!("killing a processor at {committed} of {N} committed");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the processors committed nothing"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut killed = members.remove(0);
    killed.0.kill().unwrap(); // SIGKILL: no goodbye to the group
    killed.0.wait().unwrap();
    members.push(follower(&s, &url, &sink, &group));

    let out = ingest.wait_with_output().unwrap();
    assert!(out.status.success(), "ingest failed: {}", stderr(&out));

    // Every record stored and committed, by the two survivors and the
    // newcomer (the killed one's partitions move after its session times
    // out).
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut last = serde_json::Value::Null;
    loop {
        if let Some(v) = status(&s, &url, &sink, &group) {
            let ps = v["partitions"].as_array().cloned().unwrap_or_default();
            let ends: u64 = ps.iter().filter_map(|p| p["end"].as_u64()).sum();
            let caught_up = ps.len() == PARTITIONS
                && ps.iter().all(|p| p["committed"] == p["end"])
                && ends == N;
            if caught_up && v["rows"] == N {
                last = v;
                break;
            }
            last = v;
        }
        for m in members.iter_mut() {
            if let Some(status) = m.0.try_wait().unwrap() {
                panic!("a processor exited ({status}) before the end: {last}");
            }
        }
        assert!(
            Instant::now() < deadline,
            "not every record was stored and committed: {last}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(last["rows"], N, "{last}");
    assert_eq!(last["lag"], 0, "{last}");
    let count = s.run(&["count", "--sink", &sink]);
    assert_eq!(
        String::from_utf8_lossy(&count.stdout).trim(),
        N.to_string(),
        "{}",
        stderr(&count)
    );

    // The group is three again: the two survivors and the newcomer, with
    // the killed member gone.
    let now = wait_settled(&s, &url, &sink, &group, 3);
    let before: BTreeSet<&String> = three.iter().map(|(id, _)| id).collect();
    let after: BTreeSet<&String> = now.iter().map(|(id, _)| id).collect();
    assert_eq!(
        before.intersection(&after).count(),
        2,
        "{three:?} then {now:?}"
    );

    for m in &members {
        terminate(&m.0);
    }
    for m in members.iter_mut() {
        let status = m.0.wait().unwrap();
        assert!(status.success(), "a processor failed to stop: {status}");
    }
}
