//! The operator's actions through the API: dead letters discarded, queued
//! runs cancelled, run history paged and one run read with its events.

use super::*;

#[tokio::test]
async fn discard_sets_letters_aside_for_audit() {
    let h = harness(None, 10).await;
    refused_rows(&h, 3).await;
    let letters = h.get("/api/v1/dead-letters").await;
    assert_eq!(
        (letters["waiting"].as_u64(), letters["discarded"].as_u64()),
        (Some(3), Some(0))
    );
    assert_eq!(letters["dead_letters"][0]["discarded"], Value::Null);
    let ids: Vec<i64> = letters["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_i64().unwrap())
        .collect();

    let (status, out) = h
        .post(
            "/api/v1/dead-letters/discard",
            json!({"ids": [ids[0], 424242], "reason": "test rows"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(
        out,
        json!({"discarded": 1, "not_found": [424242], "already_replayed": [], "already_discarded": []})
    );
    let after = h.get("/api/v1/dead-letters").await;
    assert_eq!(
        (after["waiting"].as_u64(), after["discarded"].as_u64()),
        (Some(2), Some(1))
    );
    assert!(
        after["dead_letters"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["id"] != ids[0])
    );
    let discarded = h.get("/api/v1/dead-letters?discarded=true").await;
    let list = discarded["dead_letters"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], ids[0]);
    assert_eq!(list[0]["discarded"]["reason"], "test rows");
    assert!(list[0]["discarded"]["at_ms"].as_i64().unwrap() > 0);

    // A replay does not take it: by id it is not found, and the whole
    // queue replays the two others only.
    let (_, report) = h
        .post("/api/v1/dead-letters/replay", json!({"ids": [ids[0]]}))
        .await;
    assert_eq!(
        (report["replayed"].as_u64(), report["not_found"].as_u64()),
        (Some(0), Some(1))
    );

    // All needs a reason; an unclear body is refused.
    for body in [
        json!({"all": true}),
        json!({"all": true, "reason": "  "}),
        json!({}),
        json!({"ids": [1], "all": true, "reason": "x"}),
        json!({"ids": [1], "why": "x"}),
    ] {
        let (status, out) = h.post("/api/v1/dead-letters/discard", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {out}");
    }
    let (status, out) = h
        .post(
            "/api/v1/dead-letters/discard",
            json!({"all": true, "reason": "bad batch"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["discarded"], 2);
    let end = h.get("/api/v1/dead-letters").await;
    assert_eq!(
        (end["waiting"].as_u64(), end["discarded"].as_u64()),
        (Some(0), Some(3))
    );
    let all = h.get("/api/v1/dead-letters?all=true").await;
    assert_eq!(all["dead_letters"].as_array().unwrap().len(), 3);
    assert_eq!(h.sink.count().await.unwrap(), 10);
}

#[tokio::test]
async fn a_discard_needs_what_any_state_change_needs() {
    let h = harness(Some(TOKEN), 0).await;
    let url = format!("{}/api/v1/dead-letters/discard", h.base);
    let body = json!({"all": true, "reason": "x"});
    // No token.
    let r = h
        .client
        .post(&url)
        .header(auth::REQUEST_HEADER, "1")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // No request header (a form from another site).
    let r = h
        .client
        .post(&url)
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let (status, _) = h.post("/api/v1/dead-letters/discard", body).await;
    assert_eq!(status, StatusCode::OK);
}
