//! The dashboard's message browser and row lookup on the real backends: a
//! Kafka topic of three partitions read by partition, offset, time and key,
//! and a Cassandra table's row found by its id. Skip loudly without the
//! servers (`support::kafka()`, `support::cassandra()`).

use std::time::{Duration, Instant};

use crate::dashboard::{get_json, http, serve};
use crate::support::{Sandbox, terminate, unique};

fn offsets(v: &serde_json::Value) -> Vec<i64> {
    v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["offset"].as_i64().unwrap())
        .collect()
}

#[test]
fn kafka_messages_are_found_by_partition_offset_time_and_key() {
    let Some(b) = crate::support::kafka("dashboard_browse::kafka_messages_are_found") else {
        return;
    };
    let s = Sandbox::new();
    let topic = unique("browse");
    let url = format!("kafka://{b}/{topic}");
    let ingested = s.run_json(&[
        "ingest",
        "--records",
        "300",
        "--seed",
        "b",
        "--log",
        &url,
        "--json",
    ]);
    assert_eq!(ingested["logged"], 300, "{ingested}");
    let mut served = serve(&s, &["--log", &url, "--group", &topic], &[]);
    let port = served.port;
    let deadline = Instant::now() + Duration::from_secs(60);
    let topic_view = loop {
        let v = get_json(port, "/api/v1/topic", &[]);
        let ends: i64 = v["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["end"].as_i64().unwrap())
            .sum();
        if ends == 300 {
            break v;
        }
        assert!(Instant::now() < deadline, "{v}");
        std::thread::sleep(Duration::from_millis(200));
    };
    // The fullest partition.
    let (p, end) = topic_view["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["partition"].as_i64().unwrap(), p["end"].as_i64().unwrap()))
        .max_by_key(|(_, end)| *end)
        .unwrap();
    assert!(end >= 10, "{topic_view}");

    let page = get_json(
        port,
        &format!("/api/v1/topic/messages?partition={p}&offset=0&limit=5"),
        &[],
    );
    assert_eq!(offsets(&page), [0, 1, 2, 3, 4], "{page}");
    assert_eq!(page["order"], "oldest_first");
    assert_eq!(page["next"]["offset"], 5);
    let back = get_json(
        port,
        &format!("/api/v1/topic/messages?partition={p}&before=5&limit=3"),
        &[],
    );
    assert_eq!(offsets(&back), [4, 3, 2], "{back}");

    let third = &page["messages"][2];
    let key = third["key"].as_str().unwrap();
    let found = get_json(
        port,
        &format!("/api/v1/topic/messages?partition={p}&key={key}"),
        &[],
    );
    assert_eq!(offsets(&found), [2], "{found}");
    assert_eq!(found["search"]["scanned"], end, "{found}");
    assert_eq!(found["search"]["complete"], true);

    let ts = third["timestamp_ms"].as_i64().unwrap();
    let at = get_json(
        port,
        &format!("/api/v1/topic/messages?partition={p}&time={ts}&limit=1"),
        &[],
    );
    assert!(offsets(&at)[0] <= 2, "{at}");
    assert!(at["messages"][0]["timestamp_ms"].as_i64() >= Some(ts));
    // Every partition from a time: merged, oldest first.
    let all = get_json(port, "/api/v1/topic/messages?time=0&limit=200", &[]);
    assert_eq!(all["messages"].as_array().unwrap().len(), 200, "{all}");

    // A key or an offset on a topic of three partitions needs one.
    let (status, body) = http(
        port,
        "GET",
        &format!("/api/v1/topic/messages?key={key}"),
        &[],
        "",
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("pick a partition"), "{body}");
    let (status, body) = http(port, "GET", "/api/v1/topic/messages?partition=9", &[], "");
    assert_eq!(status, 400, "{body}");

    terminate(&served.child.0);
    assert_eq!(served.child.0.wait().unwrap().code(), Some(0));
}

#[test]
fn a_cassandra_row_is_found_by_its_id_and_the_node_is_shown() {
    let Some(n) = crate::support::cassandra(
        "dashboard_browse::a_cassandra_row_is_found_by_its_id_and_the_node_is_shown",
    ) else {
        return;
    };
    let s = Sandbox::new();
    let url = format!("cassandra://{n}/{}.created_users", unique("ks"));
    let ran = s.run_json(&[
        "run",
        "--records",
        "30",
        "--seed",
        "r",
        "--sink",
        &url,
        "--json",
    ]);
    assert_eq!(ran["stored"], 30, "{ran}");
    let mut served = serve(&s, &["--sink", &url], &[]);
    let port = served.port;
    let some = get_json(port, "/api/v1/rows?limit=5", &[]);
    let id = some["rows"][2]["id"].as_str().unwrap().to_owned();
    let one = get_json(port, &format!("/api/v1/rows?key={id}"), &[]);
    assert_eq!(one["rows"].as_array().unwrap().len(), 1, "{one}");
    assert_eq!(one["rows"][0], some["rows"][2]);
    let none = get_json(
        port,
        "/api/v1/rows?key=00000000-0000-4000-8000-000000000000",
        &[],
    );
    assert_eq!(none["rows"], serde_json::json!([]), "{none}");

    // The node the driver holds, on the page and as a gauge named by the
    // pipeline (the sampler sets it once a second).
    let status = get_json(port, "/api/v1/status", &[]);
    let nodes = status["store"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 1, "{status}");
    assert_eq!(nodes[0]["address"], n.as_str(), "{status}");
    assert_eq!(nodes[0]["up"], true, "{status}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let gauge = |state: &str| {
        format!(r#"tributary_sink_cassandra_nodes{{pipeline="randomuser",state="{state}"}}"#)
    };
    let metrics = loop {
        let (code, text) = http(port, "GET", "/metrics", &[], "");
        assert_eq!(code, 200, "{text}");
        let m = crate::dashboard::parse_prometheus(&text);
        if m.contains_key(&gauge("up")) || Instant::now() > deadline {
            break m;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(metrics.get(&gauge("up")), Some(&1.0), "{metrics:?}");
    assert_eq!(metrics.get(&gauge("down")), Some(&0.0), "{metrics:?}");
    terminate(&served.child.0);
    assert_eq!(served.child.0.wait().unwrap().code(), Some(0));
}
