//! The operator's actions beside replay and trigger: dead letters
//! discarded (`dlq discard`), a job's queued runs cancelled (`jobs cancel`).
//! Both are POSTs, under the same checks as every state change
//! (`web/auth.rs`).

use axum::Json;
use axum::extract::Query;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, ApiResult, Which, pipeline};
use crate::pipeline::log::discard::Discard;
use crate::web::State;

/// Ids one discard call takes at most (as a replay).
const DISCARD_MAX: usize = crate::pipeline::processor::REPLAY_PAGE;
/// A reason's length at most, in characters (as `dlq discard --reason`).
const REASON_MAX: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DiscardBody {
    #[serde(default)]
    ids: Vec<i64>,
    #[serde(default)]
    all: bool,
    reason: Option<String>,
}

/// `{"ids": [..], "reason": ".."}` discards those letters (the reason is
/// optional); `{"all": true, "reason": ".."}` every waiting letter (the
/// reason is required). Unknown ids do not fail the call: they are listed
/// in `not_found`, as a replay counts them.
pub async fn discard(
    state: State,
    Query(which): Query<Which>,
    body: axum::body::Bytes,
) -> ApiResult {
    let w = pipeline(&state, &which)?;
    let bad = |m: String| ApiError(StatusCode::BAD_REQUEST, m);
    let request: DiscardBody = serde_json::from_slice(&body).map_err(|e| {
        bad(format!(
            r#"the body must be {{"ids": [..], "reason": ".."}} or {{"all": true, "reason": ".."}}: {e}"#
        ))
    })?;
    if request.ids.is_empty() != request.all {
        return Err(bad(r#"give either "ids" or "all": true"#.into()));
    }
    if request.ids.len() > DISCARD_MAX {
        return Err(bad(format!("at most {DISCARD_MAX} ids a call")));
    }
    let reason = request
        .reason
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty());
    if reason
        .as_ref()
        .is_some_and(|r| r.chars().count() > REASON_MAX)
    {
        return Err(bad(format!("a reason has at most {REASON_MAX} characters")));
    }
    if request.all && reason.is_none() {
        return Err(bad(r#"discarding every letter needs a "reason""#.into()));
    }
    let what = if request.all {
        Discard::AllWaiting
    } else {
        Discard::Ids(request.ids)
    };
    // Not while a replay of this pipeline runs: it waits for the page.
    let outcome = {
        let _no_replay = w.replaying.lock().await;
        w.parts.log.discard_dead_letters(what, reason).await
    };
    super::log::forget_letters(w).await;
    let outcome = outcome.map_err(ApiError::internal)?;
    Ok(Json(json!({
        "discarded": outcome.discarded,
        "not_found": outcome.not_found,
        "already_replayed": outcome.already_replayed,
        "already_discarded": outcome.already_discarded,
    })))
}
