//! The operator's actions through the API: dead letters discarded, queued
//! runs cancelled, run history paged and one run read with its events.

use super::*;
use crate::scheduler::RunState;

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

#[tokio::test]
async fn runs_come_in_pages_and_one_run_tells_its_story() {
    let h = harness(None, 0).await;
    let ids: Vec<i64> = (0..5)
        .map(|i| h.history.add("random_users", i, RunState::Queued).unwrap())
        .collect();
    h.history.start_attempt(ids[0], 1).unwrap();
    h.history
        .finish(
            ids[0],
            RunState::Failed,
            &Default::default(),
            Some("HTTP 500"),
        )
        .unwrap();
    let first = h.get("/api/v1/jobs/random_users/runs?limit=2").await;
    let shown: Vec<i64> = first["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(shown, [ids[4], ids[3]]);
    assert_eq!(first["next_before"], ids[3]);
    let last = h
        .get(&format!(
            "/api/v1/jobs/random_users/runs?limit=3&before={}",
            ids[3]
        ))
        .await;
    assert_eq!(last["runs"].as_array().unwrap().len(), 3);
    assert_eq!(last["next_before"], Value::Null);
    assert_eq!(last["runs"][2]["id"], ids[0]);

    let one = h
        .get(&format!("/api/v1/jobs/random_users/runs/{}", ids[0]))
        .await;
    assert_eq!(one["state"], "failed");
    assert_eq!(one["error"], "HTTP 500");
    let lines: Vec<&str> = one["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        lines,
        [
            "queued",
            "attempt 1 started",
            "fetched 0, appended 0, dead-lettered 0, ticks skipped 0",
            "ended: failed: HTTP 500"
        ]
    );
    assert!(one["events"][0]["at_ms"].as_i64().unwrap() > 0);
    let (status, _) = h.try_get("/api/v1/jobs/random_users/runs/987654").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A run of another job is not this job's.
    let other = h.history.add("orders_import", 1, RunState::Queued).unwrap();
    let (status, _) = h
        .try_get(&format!("/api/v1/jobs/random_users/runs/{other}"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn queued_runs_are_cancelled_and_running_ones_are_not() {
    let h = harness(None, 0).await;
    // Paused, so the scheduler of the harness starts none of them; and
    // running (ready), so its recovery at start is over and does not take
    // the run started below for one a crash left.
    h.history.set_paused("random_users", true).unwrap();
    scheduler_ready(&h).await;
    let a = h.history.add("random_users", 1, RunState::Queued).unwrap();
    let b = h.history.add("random_users", 2, RunState::Queued).unwrap();
    let c = h.history.add("random_users", 3, RunState::Queued).unwrap();
    h.history.start_attempt(c, 1).unwrap();
    let cancel = "/api/v1/jobs/random_users/cancel";
    let (status, out) = h.post(cancel, json!({"run": a})).await;
    assert_eq!((status, out), (StatusCode::OK, json!({"cancelled": 1})));
    let (status, out) = h.post(cancel, json!({"run": c})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(out["error"].as_str().unwrap().contains("running"), "{out}");
    let (status, _) = h.post(cancel, json!({"run": 987654})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for body in [
        json!({}),
        json!({"run": b, "queued": true}),
        json!({"runs": [b]}),
    ] {
        let (status, out) = h.post(cancel, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {out}");
    }
    let (status, _) = h
        .post("/api/v1/jobs/nope/cancel", json!({"queued": true}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, out) = h.post(cancel, json!({"queued": true})).await;
    assert_eq!((status, out), (StatusCode::OK, json!({"cancelled": 1})));
    let runs = h.get("/api/v1/jobs/random_users/runs").await;
    let states: Vec<&str> = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["running", "cancelled", "cancelled"]);
    assert!(h.history.next_queued("random_users").unwrap().is_none());
}

/// Waits until `/readyz` says the scheduler runs (its start-up recovery done).
async fn scheduler_ready(h: &Harness) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while h.try_get("/readyz").await.0 != StatusCode::OK {
        assert!(Instant::now() < deadline, "the scheduler never got ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
