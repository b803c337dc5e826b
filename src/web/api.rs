//! The JSON API under `/api/v1/`, `/metrics` and the health checks. Each
//! handler reads through the pipeline's own handles (log, store, history,
//! counters) or the sampler's cache; nothing here holds pipeline state.
//! Shapes are those of `docs/openapi.yaml`.

use std::collections::HashSet;

use axum::Json;
use axum::extract::{Path, Query};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};

use super::State;
use super::sampler::LATEST_MAX;
use crate::config::redact;
use crate::pipeline::ingest::IngestPlan;
use crate::pipeline::log::{Log, LogMessage};
use crate::pipeline::processor;
use crate::pipeline::shape::Shape;
use crate::pipeline::sink::Sink;
use crate::pipeline::source::SourceConfig;
use crate::pipeline::stats::Counter;
use crate::scheduler::history::HistoryError;
use crate::scheduler::history::now_ms;
use crate::scheduler::{History, JobConfig, RunState};
use crate::telemetry::prometheus;

/// Payload bytes shown per message or dead letter.
const PREVIEW_BYTES: usize = 4096;

/// An error as the API says it: a status and `{"error": "..."}`.
pub struct ApiError(StatusCode, String);

impl ApiError {
    fn internal(e: impl std::fmt::Display) -> ApiError {
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

type ApiResult = Result<Json<Value>, ApiError>;

#[derive(Deserialize)]
pub struct Limit {
    limit: Option<usize>,
    all: Option<bool>,
    seconds: Option<usize>,
}

fn limit(q: &Limit, default: usize, max: usize) -> usize {
    q.limit.unwrap_or(default).clamp(1, max)
}

fn source_url(source: &SourceConfig) -> String {
    match source {
        SourceConfig::Generator { nats, .. } if nats.is_empty() => "gen:".into(),
        SourceConfig::Generator { nats, .. } => format!("gen:?nat={}", nats.join(",")),
        SourceConfig::Http(h) => redact(&h.url),
        SourceConfig::JsonApi(c) => redact(&c.url),
        SourceConfig::File(f) => format!("file:{}", f.path.display()),
    }
}

/// History calls run SQLite under a lock: off the async threads, which the
/// processor shares.
async fn history<T: Send + 'static>(
    state: &State,
    f: impl FnOnce(&History) -> Result<T, HistoryError> + Send + 'static,
) -> Result<T, ApiError> {
    let h = state.parts.history.clone();
    tokio::task::spawn_blocking(move || f(&h))
        .await
        .expect("history task panicked")
        .map_err(|e| {
            if e.is_busy() {
                // Another process holds the history's lock: worth a retry.
                ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            } else {
                ApiError::internal(e)
            }
        })
}

pub async fn status(state: State) -> Json<Value> {
    let p = &state.parts;
    let s = &p.stats;
    let get = |c| s.get(c);
    let rates = state.sampler.rates(5);
    let probe = state.sampler.probe();
    let (dead, decode, rejected) = (
        get(Counter::DeadLettered),
        get(Counter::DecodeFailed),
        get(Counter::SinkRejected),
    );
    let lag: i64 = probe.lag.iter().map(|l| l.lag()).sum();
    let names: Vec<String> = p.config.jobs.iter().map(|j| j.name.clone()).collect();
    let running = history(&state, move |h| {
        let mut n = 0;
        for name in &names {
            n += usize::from(h.running(name)?);
        }
        Ok(n)
    })
    .await
    .unwrap_or(0);
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": state.started.elapsed().as_secs_f64(),
        "rss_bytes": prometheus::resident_bytes(),
        "source": {
            "url": source_url(&p.config.pipeline.source),
            "total": get(Counter::Fetched),
            "rate": rates.fetched,
            "errors": dead.saturating_sub(decode + rejected),
            "retries": get(Counter::SourceRetries),
        },
        "log": {
            "kind": match p.log { Log::Sqlite(_) => "sqlite", Log::Kafka(_) => "kafka" },
            "topic": p.log.topic(),
            "total": get(Counter::Logged),
            "rate": rates.logged,
            "errors": 0,
            "lag": lag,
            "dead_letters_waiting": probe.dead_letters_waiting,
        },
        "processor": {
            "group": p.config.pipeline.group,
            "total": get(Counter::Read),
            "rate": rates.read,
            "errors": decode,
        },
        "store": {
            "kind": match p.sink { Sink::Sqlite(_) => "sqlite", Sink::Cassandra(_) | Sink::CassandraTable(_) => "cassandra" },
            "describe": p.sink.describe(),
            "total": get(Counter::Stored),
            "unchanged": get(Counter::Unchanged),
            "rate": rates.stored,
            "errors": rejected,
            "retries": get(Counter::SinkRetries),
            "rows": probe.rows,
        },
        "jobs": { "count": p.config.jobs.len(), "running": running },
        "scheduler": p.scheduler.get(),
        "probe_error": probe.error(),
    }))
}

pub async fn throughput(state: State, Query(q): Query<Limit>) -> Json<Value> {
    let seconds = q.seconds.unwrap_or(300).clamp(1, 900);
    Json(json!({
        "interval_secs": 1,
        "samples": state.sampler.series(seconds),
    }))
}

fn find<'a>(state: &'a State, name: &str) -> Result<&'a JobConfig, ApiError> {
    state
        .parts
        .config
        .jobs
        .iter()
        .find(|j| j.name == name)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no job {name:?}")))
}

fn burst(plan: &IngestPlan) -> Option<String> {
    match plan {
        IngestPlan::Burst {
            duration,
            interval,
            per_tick,
        } => Some(format!(
            "{} every {}, {per_tick} per tick",
            humantime::format_duration(*duration),
            humantime::format_duration(*interval)
        )),
        IngestPlan::Records { .. } => None,
    }
}

pub async fn jobs(state: State) -> ApiResult {
    let names: Vec<String> = state
        .parts
        .config
        .jobs
        .iter()
        .map(|j| j.name.clone())
        .collect();
    let per_job = history(&state, move |h| {
        names
            .iter()
            .map(|n| Ok((h.runs(n, 5)?, h.is_paused(n)?, h.running(n)?)))
            .collect::<Result<Vec<_>, HistoryError>>()
    })
    .await?;
    let now = Utc::now();
    let mut jobs = Vec::new();
    for (j, (runs, paused, running)) in state.parts.config.jobs.iter().zip(per_job) {
        jobs.push(json!({
            "name": j.name,
            "schedule": j.schedule.to_string(),
            "next_run": j.schedule.next_after(now).map(|t| t.to_rfc3339()),
            "paused": paused,
            "running": running,
            "burst": burst(&j.plan),
            "recent_runs": runs,
        }));
    }
    Ok(Json(json!({ "jobs": jobs })))
}

pub async fn runs(state: State, Path(name): Path<String>, Query(q): Query<Limit>) -> ApiResult {
    find(&state, &name)?;
    let n = limit(&q, 20, 500);
    let runs = history(&state, move |h| h.runs(&name, n)).await?;
    Ok(Json(json!({ "runs": runs })))
}

pub async fn trigger(state: State, Path(name): Path<String>) -> Result<Response, ApiError> {
    find(&state, &name)?;
    let id = history(&state, move |h| h.add(&name, now_ms(), RunState::Queued)).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "run_id": id }))).into_response())
}

async fn set_paused(state: State, name: String, paused: bool) -> ApiResult {
    find(&state, &name)?;
    let job = name.clone();
    history(&state, move |h| h.set_paused(&job, paused)).await?;
    Ok(Json(json!({ "name": name, "paused": paused })))
}

pub async fn pause(state: State, Path(name): Path<String>) -> ApiResult {
    set_paused(state, name, true).await
}

pub async fn unpause(state: State, Path(name): Path<String>) -> ApiResult {
    set_paused(state, name, false).await
}

/// Offsets as the sampler last saw them: a page polling this never opens
/// a Kafka client of its own.
pub async fn topic(state: State) -> Json<Value> {
    let p = &state.parts;
    let lag = state.sampler.probe().lag;
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
    Json(json!({
        "topic": p.log.topic(),
        "group": p.config.pipeline.group,
        "lag": total,
        "partitions": partitions,
    }))
}

/// The payload as JSON when it is, else as (lossy, cut) text.
fn payload_fields(payload: &[u8]) -> (Value, Value) {
    match serde_json::from_slice::<Value>(payload) {
        Ok(v) if payload.len() <= PREVIEW_BYTES * 16 => (v, Value::Null),
        _ => (Value::Null, Value::String(preview(payload))),
    }
}

fn preview(payload: &[u8]) -> String {
    let cut = &payload[..payload.len().min(PREVIEW_BYTES)];
    String::from_utf8_lossy(cut).into_owned()
}

fn message_json(m: &LogMessage) -> Value {
    let (json, text) = payload_fields(&m.payload);
    json!({
        "partition": m.partition,
        "offset": m.offset,
        "timestamp_ms": m.timestamp_ms,
        "key": m.key.as_ref().map(|k| String::from_utf8_lossy(k).into_owned()),
        "payload_bytes": m.payload.len(),
        "json": json,
        "text": text,
    })
}

pub async fn messages(state: State, Query(q): Query<Limit>) -> ApiResult {
    let log = &state.parts.log;
    let messages = state
        .sampler
        .latest
        .get((), || log.latest(LATEST_MAX))
        .await
        .map_err(ApiError::internal)?;
    let n = limit(&q, 20, LATEST_MAX);
    let messages: Vec<Value> = messages.iter().take(n).map(message_json).collect();
    Ok(Json(json!({ "messages": messages })))
}

/// Rows a look may ask for; the cache holds this many, so looks with
/// different limits share one read.
const ROWS_MAX: usize = 200;

/// The count as the sampler last saw it (a Cassandra `count(*)` is costly),
/// the rows fresh.
pub async fn rows(state: State, Query(q): Query<Limit>) -> ApiResult {
    let sink = &state.parts.sink;
    let rows = state
        .sampler
        .rows
        .get((), || sink.rows(ROWS_MAX))
        .await
        .map_err(ApiError::internal)?;
    let n = limit(&q, 20, ROWS_MAX);
    let count = state.sampler.probe().rows;
    Ok(Json(json!({
        "count": count,
        "store": sink.describe(),
        "rows": &rows[..n.min(rows.len())],
    })))
}

pub async fn dead_letters(state: State, Query(q): Query<Limit>) -> ApiResult {
    let log = &state.parts.log;
    let key = (q.all.unwrap_or(false), limit(&q, 50, 1000));
    let letters = state
        .sampler
        .dead_letters
        .get(key, || log.dead_letters(key.0, None, key.1))
        .await
        .map_err(ApiError::internal)?;
    // On Kafka a count reads the whole DLQ topic: the sampler's (every
    // 25 s, and after a replay) is enough. On SQLite it is one indexed query.
    let waiting = match log {
        Log::Kafka(_) => state.sampler.probe().dead_letters_waiting,
        Log::Sqlite(_) => Some(
            state
                .sampler
                .waiting
                .get((), || log.dead_letters_waiting(None))
                .await
                .map_err(ApiError::internal)?,
        ),
    };
    Ok(Json(json!({
        "waiting": waiting,
        "dead_letters": letters.iter().map(|l| l.to_json(PREVIEW_BYTES)).collect::<Vec<_>>(),
    })))
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
pub async fn replay(state: State, body: axum::body::Bytes) -> Result<Response, ApiError> {
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
    let Ok(_one_at_a_time) = state.replaying.try_lock() else {
        return Err(ApiError(
            StatusCode::CONFLICT,
            "a replay is already running".into(),
        ));
    };
    let p = &state.parts;
    if request.ids.len() > REPLAY_MAX {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("at most {REPLAY_MAX} ids a call"),
        ));
    }
    let max_bytes = p.config.processor.max_message_bytes;
    let shape = Shape::of(&p.config.pipeline.dataset, p.sink.schema());
    let shape = shape.as_ref();
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
    state.sampler.dead_letters.clear().await;
    state.sampler.waiting.clear().await;
    state.sampler.rows.clear().await;
    if let Ok(n) = p.log.dead_letters_waiting(None).await {
        state.sampler.set_dead_letters_waiting(n);
    }
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

pub async fn config(state: State) -> Json<Value> {
    let c = &state.parts.config;
    Json(json!({
        "file": c.file.as_ref().map(|f| f.display().to_string()),
        "toml": c.to_toml(),
    }))
}

pub async fn metrics(state: State) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        prometheus::render(&state.parts.metrics),
    )
        .into_response()
}

pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready when the log and store answer and the scheduler runs. Open to
/// anyone, so a refusal names only the part that is not ready, in fixed
/// words; the errors themselves are in `/api/v1/status` (`probe_error`,
/// `scheduler`) and the log.
pub async fn readyz(state: State) -> Response {
    let mut why = Vec::new();
    if !state.sampler.probe().ready() {
        why.push("log or store not answering");
    }
    let scheduler = state.parts.scheduler.get();
    why.extend(scheduler.not_ready_because());
    if why.is_empty() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", why.join("; ")),
        )
            .into_response()
    }
}

pub async fn not_found() -> ApiError {
    ApiError(StatusCode::NOT_FOUND, "no such route".into())
}
