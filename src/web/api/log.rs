//! The views of a pipeline's log: its offsets, its newest messages and its
//! dead letters (previews cut in the read: `log::preview`), and the replay
//! of dead letters.

use std::collections::HashSet;

use axum::Json;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiResult, Limit, Which, limit, pipeline};
use crate::pipeline::log::{Letters, Log, MessagePreview};
use crate::pipeline::processor;
use crate::pipeline::shape::Shape;
use crate::web::State;
use crate::web::sampler::LATEST_MAX;

/// Payload bytes shown per message or dead letter.
pub const PREVIEW_BYTES: usize = 4096;

/// Offsets as the sampler last saw them: a page polling this never opens
/// a Kafka client of its own.
pub async fn topic(state: State, Query(which): Query<Which>) -> ApiResult {
    let w = pipeline(&state, &which)?;
    let p = &w.parts;
    let lag = w.sampler.probe().lag;
    let total: i64 = lag.iter().map(|l| l.lag()).sum();
    let partitions: Vec<Value> = lag
        .iter()
        .map(|l| {
            json!({
                "partition": l.partition,
                "committed": l.committed,
                "end": l.end,
                "lag": l.lag(),
            })
        })
        .collect();
    Ok(Json(json!({
        "pipeline": p.name(),
        "topic": p.log.topic(),
        "group": p.config.group,
        "lag": total,
        "partitions": partitions,
    })))
}

/// A message is read up to this many bytes: one no bigger is shown as
/// JSON when it is JSON.
const JSON_MAX: usize = PREVIEW_BYTES * 16;

/// The payload as JSON when it is (and was read whole), else as (lossy,
/// cut) text.
fn payload_fields(payload: &[u8], whole: u64) -> (Value, Value) {
    match serde_json::from_slice::<Value>(payload) {
        Ok(v) if whole <= JSON_MAX as u64 => (v, Value::Null),
        _ => (Value::Null, Value::String(preview(payload))),
    }
}

fn preview(payload: &[u8]) -> String {
    let cut = &payload[..payload.len().min(PREVIEW_BYTES)];
    String::from_utf8_lossy(cut).into_owned()
}

fn message_json(p: &MessagePreview) -> Value {
    let m = &p.message;
    let (json, text) = payload_fields(&m.payload, p.payload_bytes);
    json!({
        "partition": m.partition,
        "offset": m.offset,
        "timestamp_ms": m.timestamp_ms,
        "key": m.key.as_ref().map(|k| preview(k)),
        "payload_bytes": p.payload_bytes,
        "json": json,
        "text": text,
    })
}

pub async fn messages(
    state: State,
    Query(which): Query<Which>,
    Query(q): Query<Limit>,
) -> ApiResult {
    let w = pipeline(&state, &which)?;
    let log = &w.parts.log;
    let messages = w
        .sampler
        .latest
        .get((), || log.latest_previews(LATEST_MAX, JSON_MAX))
        .await
        .map_err(ApiError::internal)?;
    let n = limit(&q, 20, LATEST_MAX);
    let messages: Vec<Value> = messages.iter().take(n).map(message_json).collect();
    Ok(Json(json!({ "messages": messages })))
}

/// `?discarded=true`: only the discarded letters.
#[derive(Deserialize)]
pub struct Discarded {
    discarded: Option<bool>,
}

/// The waiting letters; `?all=true` every one, `?discarded=true` the
/// discarded ones. Each letter's `discarded` is `{at_ms, reason}` or null;
/// `waiting` and `discarded` count them.
pub async fn dead_letters(
    state: State,
    Query(which): Query<Which>,
    Query(q): Query<Limit>,
    Query(d): Query<Discarded>,
) -> ApiResult {
    let w = pipeline(&state, &which)?;
    let log = &w.parts.log;
    let letters = match (q.all.unwrap_or(false), d.discarded.unwrap_or(false)) {
        (true, _) => Letters::All,
        (false, true) => Letters::Discarded,
        (false, false) => Letters::Waiting,
    };
    let key = (letters, limit(&q, 50, 1000));
    let letters = w
        .sampler
        .dead_letters
        .get(key, || {
            log.dead_letter_previews(key.0, None, key.1, PREVIEW_BYTES)
        })
        .await
        .map_err(ApiError::internal)?;
    // On Kafka a count reads the whole DLQ topic: the sampler's (every
    // 25 s, and after a replay) is enough. On SQLite it is one indexed query.
    let waiting = match log {
        Log::Kafka(_) => w.sampler.probe().dead_letters_waiting,
        Log::Sqlite(_) => Some(
            w.sampler
                .waiting
                .get((), || log.dead_letters_waiting(None))
                .await
                .map_err(ApiError::internal)?,
        ),
    };
    let discarded = w
        .sampler
        .discarded
        .get((), || log.dead_letters_discarded())
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(json!({
        "waiting": waiting,
        "discarded": discarded,
        "dead_letters": letters.iter().map(|l| l.to_json()).collect::<Vec<_>>(),
    })))
}

/// After a replay or a discard: the next look reads the letters and their
/// counts anew.
pub(super) async fn forget_letters(w: &crate::web::Watched) {
    w.sampler.dead_letters.clear().await;
    w.sampler.waiting.clear().await;
    w.sampler.discarded.clear().await;
    if let Ok(n) = w.parts.log.dead_letters_waiting(None).await {
        w.sampler.set_dead_letters_waiting(n);
    }
}

/// Letters replayed by one call at most; the answer says how many remain.
const REPLAY_MAX: usize = processor::REPLAY_PAGE;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayBody {
    #[serde(default)]
    ids: Vec<i64>,
    #[serde(default)]
    all: bool,
    /// With `all`: start after this id (the `next_after` of the last call).
    after: Option<i64>,
}

/// `{"ids": [...]}` replays those; `{"all": true}` the oldest
/// [`REPLAY_MAX`] waiting letters, and `{"all": true, "after": id}` the
/// next ones, so a client walks the queue with `next_after` even when
/// letters keep failing. The body is read as JSON whatever its content
/// type, and an empty or unclear one replays nothing.
pub async fn replay(
    state: State,
    Query(which): Query<Which>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let w = pipeline(&state, &which)?;
    let request: ReplayBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!(r#"the body must be {{"ids": [..]}} or {{"all": true}}: {e}"#),
        )
    })?;
    if request.ids.is_empty() != request.all || (request.after.is_some() && !request.all) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            r#"give either "ids" or "all": true (with "after" to go on)"#.into(),
        ));
    }
    let Ok(_one_at_a_time) = w.replaying.try_lock() else {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!("a replay of pipeline {} is already running", w.parts.name()),
        ));
    };
    let p = &w.parts;
    if request.ids.len() > REPLAY_MAX {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("at most {REPLAY_MAX} ids a call"),
        ));
    }
    let max_bytes = state.config.processor.max_message_bytes;
    let shape: Option<&std::sync::Arc<Shape>> = p.shape.as_ref();
    let outcome = if request.all {
        processor::replay_page(&p.log, &p.sink, shape, request.after, max_bytes)
            .await
            .map(|(report, last)| (report, last, 0))
    } else {
        let wanted: HashSet<i64> = request.ids.iter().copied().collect();
        let letters = p
            .log
            .dead_letters_by_id(wanted.iter().copied().collect())
            .await
            .map_err(ApiError::internal)?;
        let not_found = wanted.len() - letters.len();
        processor::replay(&p.log, &p.sink, shape, letters, max_bytes)
            .await
            .map(|report| (report, None, not_found))
    };
    // Whatever happened, the next look must see it.
    forget_letters(w).await;
    w.sampler.rows.clear().await;
    let (report, next_after, not_found) = outcome.map_err(ApiError::internal)?;
    // How many wait beyond this page (for `ids`, the caller chose).
    let remaining = if request.all {
        p.log
            .dead_letters_waiting(next_after.or(request.after))
            .await
            .map_err(ApiError::internal)?
    } else {
        0
    };
    Ok(Json(json!({
        "replayed": report.replayed,
        "still_failing": report.still_failing,
        "remaining": remaining,
        "not_found": not_found,
        "next_after": next_after,
    }))
    .into_response())
}
