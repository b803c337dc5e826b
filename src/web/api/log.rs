//! The views of a pipeline's log: its offsets, its messages (the newest,
//! or a look by partition, offset, time and key) and its dead letters (previews cut in the read: `log::preview`), and the replay
//! of dead letters.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiQuery, ApiResult, Limit, Which, limit, pipeline};
use crate::pipeline::log::browse::{Browse, BrowseError, Seek};
use crate::pipeline::log::{Letters, Log, MessagePreview};
use crate::pipeline::processor;
use crate::pipeline::shape::Shape;
use crate::web::State;
use crate::web::sampler::LATEST_MAX;

/// Payload bytes shown per message or dead letter.
pub const PREVIEW_BYTES: usize = 4096;

/// Offsets as the sampler last saw them: a page polling this never opens
/// a Kafka client of its own.
pub async fn topic(state: State, ApiQuery(which): ApiQuery<Which>) -> ApiResult {
    let w = pipeline(&state, &which)?;
    let p = &w.parts;
    let probe = w.sampler.probe();
    let (lag, members) = (probe.lag, probe.members);
    let total: i64 = lag.iter().map(|l| l.lag()).sum();
    let partitions: Vec<Value> = lag
        .iter()
        .map(|l| {
            let owner = members.as_ref().and_then(|g| g.owner(l.partition));
            json!({
                "partition": l.partition,
                "committed": l.committed,
                "end": l.end,
                "lag": l.lag(),
                "member": owner.map(|m| &m.member_id),
            })
        })
        .collect();
    Ok(Json(json!({
        "pipeline": p.name(),
        "topic": p.log.topic(),
        "group": p.config.group,
        "lag": total,
        "partitions": partitions,
        "group_state": members.as_ref().map(|g| &g.state),
        "members": members.as_ref().map(|g| &g.members),
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

/// Messages a key search looks at, at most, per request; the answer says
/// where the next request goes on.
pub const SCAN_MAX: usize = 10_000;

/// `GET /api/v1/topic/messages`: where to look (all optional).
#[derive(Deserialize)]
pub struct Look {
    partition: Option<i32>,
    /// At and after this offset, oldest first.
    offset: Option<i64>,
    /// Before this offset, newest first (the `next` of a look back).
    before: Option<i64>,
    /// At and after this time: ms since the epoch or RFC 3339.
    time: Option<String>,
    /// Only messages with exactly this key.
    key: Option<String>,
}

impl Look {
    fn is_plain(&self) -> bool {
        self.partition.is_none()
            && self.offset.is_none()
            && self.before.is_none()
            && self.time.is_none()
            && self.key.is_none()
    }

    fn seek(&self) -> Result<Seek, ApiError> {
        let bad = |m: String| ApiError(StatusCode::BAD_REQUEST, m);
        let given = [
            self.offset.is_some(),
            self.before.is_some(),
            self.time.is_some(),
        ];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err(bad("give one of offset, before and time".into()));
        }
        if let Some(o) = self.offset.or(self.before).filter(|o| *o < 0) {
            return Err(bad(format!("an offset is 0 or more, not {o}")));
        }
        Ok(match (self.offset, self.before, &self.time) {
            (Some(o), _, _) => Seek::Offset(o),
            (_, Some(o), _) => Seek::Before(o),
            (_, _, Some(t)) => Seek::Time(parse_time(t).ok_or_else(|| {
                bad(format!(
                    "time {t:?} is neither milliseconds since 1970 nor an RFC 3339 time \
                     (2026-01-31T12:00:00Z)"
                ))
            })?),
            _ => Seek::Latest,
        })
    }
}

/// Milliseconds since the epoch, or an RFC 3339 time.
fn parse_time(t: &str) -> Option<i64> {
    let t = t.trim();
    t.parse::<i64>().ok().or_else(|| {
        chrono::DateTime::parse_from_rfc3339(t)
            .ok()
            .map(|d| d.timestamp_millis())
    })
}

/// With no look given, the newest messages over every partition (shared by
/// every open page for a moment); otherwise the look asked for, read fresh,
/// a few at a time per pipeline.
pub async fn messages(
    state: State,
    ApiQuery(which): ApiQuery<Which>,
    ApiQuery(q): ApiQuery<Limit>,
    ApiQuery(look): ApiQuery<Look>,
) -> ApiResult {
    let w = pipeline(&state, &which)?;
    let log = &w.parts.log;
    let n = limit(&q, 20, LATEST_MAX)?;
    if look.is_plain() {
        let messages = w
            .sampler
            .latest
            .get((), || log.latest_previews(LATEST_MAX, JSON_MAX))
            .await
            .map_err(ApiError::internal)?;
        let messages: Vec<Value> = messages.iter().take(n).map(message_json).collect();
        return Ok(Json(json!({
            "messages": messages,
            "order": "newest_first",
            "next": null,
            "search": null,
        })));
    }
    let seek = look.seek()?;
    if look.key.as_ref().is_some_and(|k| k.len() > PREVIEW_BYTES) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("a key is at most {PREVIEW_BYTES} bytes"),
        ));
    }
    let _turn = w.browsing.acquire().await.expect("never closed");
    let found = log
        .browse(Browse {
            partition: look.partition,
            seek,
            key: look.key.as_ref().map(|k| k.as_bytes().to_vec()),
            limit: n,
            cut: JSON_MAX,
            scan_max: SCAN_MAX,
        })
        .await
        .map_err(|e| match e {
            BrowseError::Request(m) => ApiError(StatusCode::BAD_REQUEST, m),
            e => ApiError::internal(e),
        })?;
    let next = match found.next {
        Some(Seek::Offset(o)) => json!({ "offset": o }),
        Some(Seek::Before(o)) => json!({ "before": o }),
        _ => Value::Null,
    };
    let search = look.key.as_ref().map(|k| {
        json!({
            "key": k,
            "scanned": found.scanned,
            "scan_max": SCAN_MAX,
            "complete": found.complete,
        })
    });
    Ok(Json(json!({
        "messages": found.messages.iter().map(message_json).collect::<Vec<_>>(),
        "order": if found.forward { "oldest_first" } else { "newest_first" },
        "next": next,
        "search": search,
    })))
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
    ApiQuery(which): ApiQuery<Which>,
    ApiQuery(q): ApiQuery<Limit>,
    ApiQuery(d): ApiQuery<Discarded>,
) -> ApiResult {
    let w = pipeline(&state, &which)?;
    let log = &w.parts.log;
    let letters = match (q.all.unwrap_or(false), d.discarded.unwrap_or(false)) {
        (true, _) => Letters::All,
        (false, true) => Letters::Discarded,
        (false, false) => Letters::Waiting,
    };
    let key = (letters, limit(&q, 50, 1000)?);
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
    /// Write a letter's row over another stored row of its key.
    #[serde(default)]
    overwrite: bool,
}

/// `{"ids": [...]}` replays those; `{"all": true}` the oldest
/// [`REPLAY_MAX`] waiting letters, and `{"all": true, "after": id}` the
/// next ones, so a client walks the queue with `next_after` even when
/// letters keep failing. `"overwrite": true` writes a letter's row where
/// the store holds another row of its key (without it, such a letter
/// stays waiting). The body is read as JSON whatever its content
/// type, and an empty or unclear one replays nothing.
pub async fn replay(
    state: State,
    ApiQuery(which): ApiQuery<Which>,
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
    let Ok(mut written) = w.replaying.try_lock() else {
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
    let options = processor::ReplayOptions {
        max_message_bytes: state.config.processor.max_message_bytes,
        overwrite: request.overwrite,
    };
    let shape: Option<&std::sync::Arc<Shape>> = p.shape.as_ref();
    let outcome = if request.all {
        processor::replay_page(&p.log, &p.sink, shape, request.after, options, &mut written)
            .await
            .map(|(report, last)| (report, last, 0))
    } else {
        processor::replay_ids(&p.log, &p.sink, shape, &request.ids, options, &mut written)
            .await
            .map(|(report, not_found)| (report, None, not_found.len()))
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
