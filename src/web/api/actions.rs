//! The operator's actions beside replay and trigger: dead letters
//! discarded (`dlq discard`), a job's queued runs cancelled (`jobs cancel`).
//! Both are POSTs, under the same checks as every state change
//! (`web/auth.rs`).

use axum::Json;
use axum::extract::Path;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, ApiQuery, ApiResult, Which, pipeline};
use crate::pipeline::log::discard::Discard;
use crate::scheduler::RunState;
use crate::scheduler::history::Cancelled;
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
    ApiQuery(which): ApiQuery<Which>,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelBody {
    run: Option<i64>,
    #[serde(default)]
    queued: bool,
}

/// `{"run": N}` cancels that queued run (404 if the job has no such run,
/// 409 if it is not queued: a running run is not stopped);
/// `{"queued": true}` every queued run of the job. Cancelled runs never
/// start, even after a restart.
pub async fn cancel(state: State, Path(name): Path<String>, body: axum::body::Bytes) -> ApiResult {
    super::find(&state, &name)?;
    let request: CancelBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!(r#"the body must be {{"run": N}} or {{"queued": true}}: {e}"#),
        )
    })?;
    const WHY: &str = "cancelled before it started (API)";
    let job = name.clone();
    let cancelled = match (request.run, request.queued) {
        (Some(id), false) => {
            match super::history(&state, move |h| h.cancel_run(&job, id, WHY)).await? {
                Cancelled::Runs(n) => n,
                Cancelled::NotFound => {
                    return Err(ApiError(
                        StatusCode::NOT_FOUND,
                        format!("no run {id} of job {name}"),
                    ));
                }
                Cancelled::NotQueued(s) => {
                    let why = if s == RunState::Running {
                        "it is running; only queued runs are cancelled".to_owned()
                    } else {
                        format!("it is {}, not queued", s.as_str())
                    };
                    return Err(ApiError(
                        StatusCode::CONFLICT,
                        format!("run {id} of job {name} cannot be cancelled: {why}"),
                    ));
                }
            }
        }
        (None, true) => super::history(&state, move |h| h.cancel_queued(&job, WHY)).await?,
        _ => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                r#"give either "run": N or "queued": true"#.into(),
            ));
        }
    };
    Ok(Json(json!({ "cancelled": cancelled })))
}
