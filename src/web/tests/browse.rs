//! The message browser (`/api/v1/topic/messages` by partition, offset,
//! time and key) and the row lookup (`/api/v1/rows?key=`).

use super::*;

fn offsets(v: &Value) -> Vec<i64> {
    v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["offset"].as_i64().unwrap())
        .collect()
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn messages_are_found_by_offset_time_and_key() {
    let h = harness(None, 120).await;
    let page = h.get("/api/v1/topic/messages?offset=5&limit=3").await;
    assert_eq!(offsets(&page), [5, 6, 7], "{page}");
    assert_eq!(page["order"], "oldest_first");
    assert_eq!(page["next"], json!({ "offset": 8 }));
    let back = h.get("/api/v1/topic/messages?before=5&limit=3").await;
    assert_eq!(offsets(&back), [4, 3, 2]);
    assert_eq!(back["next"], json!({ "before": 2 }));
    let end = h.get("/api/v1/topic/messages?partition=0&offset=118").await;
    assert_eq!(offsets(&end), [118, 119]);
    assert_eq!(end["next"], Value::Null);

    // By key: the one message of a user, after looking at every message.
    let tenth = &h.get("/api/v1/topic/messages?offset=10&limit=1").await["messages"][0];
    let key = tenth["key"].as_str().unwrap().to_owned();
    let found = h
        .get(&format!("/api/v1/topic/messages?key={}", enc(&key)))
        .await;
    assert_eq!(offsets(&found), [10], "{found}");
    assert_eq!(found["messages"][0]["json"]["id"], key.as_str());
    assert_eq!(found["search"]["scanned"], 120);
    assert_eq!(found["search"]["complete"], true);
    assert_eq!(found["search"]["scan_max"], api::log::SCAN_MAX);
    let none = h.get("/api/v1/topic/messages?key=nobody").await;
    assert_eq!(offsets(&none), Vec::<i64>::new());

    // By time, in milliseconds or RFC 3339: the first message at or after it.
    let ts = tenth["timestamp_ms"].as_i64().unwrap();
    let at = h
        .get(&format!("/api/v1/topic/messages?time={ts}&limit=1"))
        .await;
    let first = offsets(&at)[0];
    assert!(first <= 10, "{at}");
    assert!(at["messages"][0]["timestamp_ms"].as_i64() >= Some(ts));
    let rfc = chrono::DateTime::from_timestamp_millis(ts)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let at_rfc = h
        .get(&format!(
            "/api/v1/topic/messages?time={}&limit=1",
            enc(&rfc)
        ))
        .await;
    assert_eq!(offsets(&at_rfc), [first]);

    for (query, says) in [
        ("partition=1", "no partition 1"),
        ("offset=1&time=2", "one of offset, before and time"),
        ("time=yesterday", "RFC 3339"),
        ("offset=-1", "0 or more"),
        // What the query extractor refuses is a JSON error too.
        ("limit=0", "limit must be between 1 and"),
        ("limit=many", "limit: invalid digit"),
        ("partition=x", "partition"),
    ] {
        let (status, body) = h.try_get(&format!("/api/v1/topic/messages?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains(says),
            "{query}: {body}"
        );
    }
}

#[tokio::test]
async fn rows_are_looked_up_by_their_key() {
    let h = harness(None, 50).await;
    let newest = h.get("/api/v1/rows?limit=5").await;
    assert_eq!(newest["key_columns"], json!(["id"]));
    let id = newest["rows"][3]["id"].as_str().unwrap().to_owned();
    let one = h.get(&format!("/api/v1/rows?key={id}")).await;
    assert_eq!(one["rows"].as_array().unwrap().len(), 1, "{one}");
    assert_eq!(one["rows"][0], newest["rows"][3]);
    assert_eq!(one["key"], id.as_str());
    let upper = h
        .get(&format!("/api/v1/rows?key={}", id.to_uppercase()))
        .await;
    assert_eq!(upper["rows"][0]["id"], id.as_str(), "a uuid in any case");
    let missing = h
        .get("/api/v1/rows?key=00000000-0000-4000-8000-000000000000")
        .await;
    assert_eq!(missing["rows"], json!([]));
    let (status, body) = h.try_get("/api/v1/rows?key=not-a-uuid").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // The orders: partition key `shop`, clustering `id`.
    let orders = |q: &str| format!("/api/v1/rows?pipeline=orders&key={}", enc(q));
    let north = h.get(&orders("north")).await;
    assert_eq!(north["key_columns"], json!(["shop", "id"]));
    let mut ids: Vec<&str> = north["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["1", "2"], "{north}");
    let exact = h.get(&orders(r#"{"shop": "north", "id": "2"}"#)).await;
    assert_eq!(
        exact["rows"],
        json!([{"shop": "north", "id": "2", "total": 4.0}])
    );
    for (key, says) in [
        (r#"{"id": "2"}"#, "every partition-key column"),
        (
            r#"{"shop": "north", "total": 4}"#,
            "not a column of the primary key",
        ),
        ("{", "not a JSON object"),
    ] {
        let (status, body) = h.try_get(&orders(key)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{key}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains(says),
            "{key}: {body}"
        );
    }
}
