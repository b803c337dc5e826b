//! The JSON API under `/api/v1/`, `/metrics` and the health checks. Each
//! handler reads through a pipeline's own handles (log, store, history,
//! counters) or its sampler's cache; nothing here holds pipeline state.
//! A pipeline's views take it as `?pipeline=NAME` (default: the first
//! pipeline, so the URLs of a one-pipeline `serve` stay as they were).
//! Shapes are those of `docs/openapi.yaml`. The views of the log (its
//! messages and dead letters) and the replay are in `log.rs`; the
//! operator's other actions (discard, cancel) in `actions.rs`.

mod actions;
pub(super) mod log;

pub use actions::{cancel, discard};
pub use log::{dead_letters, messages, replay, topic};

use axum::Json;
use axum::extract::{Path, Query};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{State, Watched};
use crate::config::redact;
use crate::pipeline::ingest::IngestPlan;
use crate::pipeline::log::Log;
use crate::pipeline::shape::Dataset;
use crate::pipeline::sink::Sink;
use crate::pipeline::source::SourceConfig;
use crate::pipeline::stats::Counter;
use crate::pipeline::table::UnknownFields;
use crate::scheduler::history::HistoryError;
use crate::scheduler::{History, JobConfig};
use crate::telemetry::prometheus;

/// An error as the API says it: a status and `{"error": "..."}`.
pub struct ApiError(pub(super) StatusCode, pub(super) String);

impl ApiError {
    pub(super) fn internal(e: impl std::fmt::Display) -> ApiError {
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

pub(super) type ApiResult = Result<Json<Value>, ApiError>;

#[derive(Deserialize)]
pub struct Limit {
    limit: Option<usize>,
    pub(super) all: Option<bool>,
    seconds: Option<usize>,
}

/// `?limit=N`: `default` when absent, at most `max`; 0 is refused (a page
/// of nothing is a mistake, not a request).
pub(super) fn limit(q: &Limit, default: usize, max: usize) -> Result<usize, ApiError> {
    match q.limit {
        Some(0) => Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("limit must be between 1 and {max}"),
        )),
        n => Ok(n.unwrap_or(default).min(max)),
    }
}

/// A query string as the API reads it: one it cannot read is a 400 with
/// `{"error": ...}`, as every other API error, not axum's plain text.
pub struct ApiQuery<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(q)) => Ok(ApiQuery(q)),
            Err(e) => Err(ApiError(StatusCode::BAD_REQUEST, e.body_text())),
        }
    }
}

/// `?pipeline=NAME`: which pipeline a view is of.
#[derive(Deserialize)]
pub struct Which {
    pipeline: Option<String>,
}

/// The pipeline `which` names (404 if none has that name), or the first.
pub(super) fn pipeline<'a>(state: &'a State, which: &Which) -> Result<&'a Watched, ApiError> {
    let Some(name) = &which.pipeline else {
        return Ok(&state.pipelines[0]);
    };
    state
        .pipelines
        .iter()
        .find(|w| w.parts.name() == name)
        .ok_or_else(|| {
            let known: Vec<&str> = state.pipelines.iter().map(|w| w.parts.name()).collect();
            ApiError(
                StatusCode::NOT_FOUND,
                format!("no pipeline {name:?}; pipelines: {}", known.join(", ")),
            )
        })
}

fn source_kind(source: &SourceConfig) -> &'static str {
    match source {
        SourceConfig::Generator { .. } => "generator",
        SourceConfig::Http(_) => "randomuser",
        SourceConfig::JsonApi(_) => "json_api",
        SourceConfig::File(_) => "file",
    }
}

fn log_kind(log: &Log) -> &'static str {
    match log {
        Log::Sqlite(_) => "sqlite",
        Log::Kafka(_) => "kafka",
    }
}

fn store_kind(sink: &Sink) -> &'static str {
    match sink {
        Sink::Sqlite(_) => "sqlite",
        Sink::Cassandra(_) | Sink::CassandraTable(_) => "cassandra",
    }
}

fn dataset_kind(dataset: &Dataset) -> &'static str {
    match dataset {
        Dataset::Users => "users",
        Dataset::Table(_) => "table",
    }
}

/// The names of the jobs that feed `pipeline`, in config order.
fn job_names(state: &State, pipeline: &str) -> Vec<String> {
    state
        .config
        .jobs
        .iter()
        .filter(|j| j.pipeline == pipeline)
        .map(|j| j.name.clone())
        .collect()
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
    let h = state.history.clone();
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

/// Every pipeline: where it reads, what it makes of the records (a user
/// pipeline's table and transform) and where it logs and stores them.
pub async fn pipelines(state: State) -> Json<Value> {
    let list: Vec<Value> = state
        .pipelines
        .iter()
        .map(|w| describe(&state, w))
        .collect();
    Json(json!({ "pipelines": list }))
}

fn describe(state: &State, w: &Watched) -> Value {
    let p = &w.parts;
    let c = &p.config;
    // The source as `config check` prints it: secrets redacted.
    let settings = serde_json::to_value(c.to_raw().source).unwrap_or(Value::Null);
    let table = p.shape.as_ref().map(|shape| {
        let schema = &shape.schema;
        json!({
            "columns": schema.columns.iter().map(|col| json!({
                "name": col.name,
                "type": col.ty.to_string(),
            })).collect::<Vec<_>>(),
            "partition_key": schema.partition_key,
            "clustering_key": schema.clustering_key,
            "unknown_fields": match shape.unknown_fields {
                UnknownFields::Reject => "reject",
                UnknownFields::Ignore => "ignore",
            },
        })
    });
    let transform = p
        .shape
        .as_ref()
        .and_then(|s| s.transform.as_ref())
        .map(|t| {
            json!({
                "text": t.text,
                "file": t.origin.file,
                "line": t.origin.line,
                "column": t.origin.column,
            })
        });
    json!({
        "name": c.name,
        "kind": dataset_kind(&c.dataset),
        "source": {
            "kind": source_kind(&c.source),
            "url": source_url(&c.source),
            "settings": settings,
        },
        "log": log_kind(&p.log),
        "topic": p.log.topic(),
        "group": c.group,
        "store": { "kind": store_kind(&p.sink), "describe": p.sink.describe() },
        "table": table,
        "transform": transform,
        "jobs": job_names(state, &c.name),
    })
}

pub async fn status(state: State, ApiQuery(which): ApiQuery<Which>) -> ApiResult {
    let w = pipeline(&state, &which)?;
    let p = &w.parts;
    let s = &p.stats;
    let get = |c| s.get(c);
    let rates = w.sampler.rates(5);
    w.sampler.viewed();
    let probe = w.sampler.probe();
    let (dead, decode, rejected) = (
        get(Counter::DeadLettered),
        get(Counter::DecodeFailed),
        get(Counter::SinkRejected),
    );
    let lag: i64 = probe.lag.iter().map(|l| l.lag()).sum();
    let names = job_names(&state, p.name());
    let count = names.len();
    let running = history(&state, move |h| {
        let mut n = 0;
        for name in &names {
            n += usize::from(h.running(name)?);
        }
        Ok(n)
    })
    .await
    .unwrap_or(0);
    Ok(Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": state.started.elapsed().as_secs_f64(),
        "rss_bytes": prometheus::resident_bytes(),
        "pipeline": p.name(),
        "kind": dataset_kind(&p.config.dataset),
        "source": {
            "url": source_url(&p.config.source),
            "total": get(Counter::Fetched),
            "rate": rates.fetched,
            "errors": dead.saturating_sub(decode + rejected),
            "retries": get(Counter::SourceRetries),
        },
        "log": {
            "kind": log_kind(&p.log),
            "topic": p.log.topic(),
            "total": get(Counter::Logged),
            "rate": rates.logged,
            "errors": 0,
            "lag": lag,
            "dead_letters_waiting": probe.dead_letters_waiting,
        },
        "processor": {
            "group": p.config.group,
            "total": get(Counter::Read),
            "rate": rates.read,
            "errors": decode,
        },
        "store": {
            "kind": store_kind(&p.sink),
            "describe": p.sink.describe(),
            "total": get(Counter::Stored),
            "unchanged": get(Counter::Unchanged),
            "rate": rates.stored,
            "errors": rejected,
            "retries": get(Counter::SinkRetries),
            "rows": probe.rows,
            "nodes": p.sink.nodes(),
            "concurrency_limit": probe.concurrency_limit,
        },
        "jobs": { "count": count, "running": running },
        "scheduler": state.scheduler.get(),
        "probe_error": probe.error(),
    })))
}

pub async fn throughput(
    state: State,
    ApiQuery(which): ApiQuery<Which>,
    ApiQuery(q): ApiQuery<Limit>,
) -> ApiResult {
    let w = pipeline(&state, &which)?;
    let seconds = q.seconds.unwrap_or(300).clamp(1, 900);
    Ok(Json(json!({
        "interval_secs": 1,
        "samples": w.sampler.series(seconds),
    })))
}

fn find<'a>(state: &'a State, name: &str) -> Result<&'a JobConfig, ApiError> {
    state
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

/// Every job, or with `?pipeline=NAME` the jobs that feed that pipeline.
pub async fn jobs(state: State, ApiQuery(which): ApiQuery<Which>) -> ApiResult {
    let only = match &which.pipeline {
        Some(_) => Some(pipeline(&state, &which)?.parts.name().to_owned()),
        None => None,
    };
    let listed: Vec<&JobConfig> = state
        .config
        .jobs
        .iter()
        .filter(|j| only.as_ref().is_none_or(|p| j.pipeline == *p))
        .collect();
    let names: Vec<String> = listed.iter().map(|j| j.name.clone()).collect();
    let per_job = history(&state, move |h| {
        names
            .iter()
            .map(|n| Ok((h.runs(n, 5)?, h.is_paused(n)?, h.running(n)?)))
            .collect::<Result<Vec<_>, HistoryError>>()
    })
    .await?;
    let now = Utc::now();
    let mut jobs = Vec::new();
    for (j, (runs, paused, running)) in listed.into_iter().zip(per_job) {
        jobs.push(json!({
            "name": j.name,
            "pipeline": j.pipeline,
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

/// `?before=RUN`: the page of runs older than this one.
#[derive(Deserialize)]
pub struct Before {
    before: Option<i64>,
}

/// A job's runs, newest first, a page at a time: `next_before` is the
/// `before` of the next page (null on the last).
pub async fn runs(
    state: State,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<Limit>,
    ApiQuery(b): ApiQuery<Before>,
) -> ApiResult {
    find(&state, &name)?;
    let n = limit(&q, 20, 500)?;
    let page = history(&state, move |h| h.runs_page(&name, n, b.before)).await?;
    Ok(Json(
        json!({ "runs": page.runs, "next_before": page.next_before }),
    ))
}

/// One run with its lines (what it did, in order).
pub async fn run(state: State, Path((name, id)): Path<(String, i64)>) -> ApiResult {
    find(&state, &name)?;
    let job = name.clone();
    let found = history(&state, move |h| h.run_with_events(&job, id)).await?;
    let Some((run, events)) = found else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no run {id} of job {name}"),
        ));
    };
    let mut v = serde_json::to_value(&run).map_err(ApiError::internal)?;
    v["events"] = serde_json::to_value(&events).map_err(ApiError::internal)?;
    Ok(Json(v))
}

/// Queues a run. A paused job's run waits for the unpause; the answer
/// says so (`"paused": true`).
pub async fn trigger(state: State, Path(name): Path<String>) -> Result<Response, ApiError> {
    find(&state, &name)?;
    let (id, paused) = history(&state, move |h| {
        let id = h.trigger(&name)?;
        Ok((id, h.is_paused(&name)?))
    })
    .await?;
    let mut answer = json!({ "run_id": id, "paused": paused });
    if paused {
        answer["note"] = json!("the job is paused: this run waits until it is unpaused");
    }
    Ok((StatusCode::ACCEPTED, Json(answer)).into_response())
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

/// Rows a look may ask for; the cache holds this many, so looks with
/// different limits share one read.
const ROWS_MAX: usize = 200;
/// Characters shown per text cell; a longer one is cut (and ends in `…`)
/// in the read, so a page of huge rows is never held whole.
const CELL_CHARS: usize = 1024;

/// `?key=`: the rows of one key instead of the newest.
#[derive(Deserialize)]
pub struct RowKey {
    key: Option<String>,
}

/// The count as the sampler last saw it (a Cassandra `count(*)` is costly),
/// the rows fresh, as JSON objects of the table's columns (`columns`, in
/// table order). With `?key=`, the rows of that key (the users' `id`, a
/// user table's partition key or a JSON object of key columns), read by
/// the key, never by a scan.
pub async fn rows(
    state: State,
    ApiQuery(which): ApiQuery<Which>,
    ApiQuery(q): ApiQuery<Limit>,
    ApiQuery(by): ApiQuery<RowKey>,
) -> ApiResult {
    let w = pipeline(&state, &which)?;
    let sink = &w.parts.sink;
    let n = limit(&q, 20, ROWS_MAX)?;
    w.sampler.viewed();
    let count = w.sampler.probe().rows;
    let columns = sink.columns();
    let key = by
        .key
        .as_deref()
        .map(|k| k.trim())
        .filter(|k| !k.is_empty());
    let rows = match key {
        None => {
            let rows = w
                .sampler
                .rows
                .get((), || sink.record_previews(ROWS_MAX, CELL_CHARS))
                .await
                .map_err(ApiError::internal)?;
            rows[..n.min(rows.len())].to_vec()
        }
        Some(key) => {
            let filter = sink
                .key_filter(key)
                .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?;
            sink.record_lookup(&filter, n, CELL_CHARS)
                .await
                .map_err(ApiError::internal)?
        }
    };
    let key_columns: Vec<&str> = match sink.schema() {
        Some(schema) => schema.primary_key().collect(),
        None => vec!["id"],
    };
    Ok(Json(json!({
        "pipeline": w.parts.name(),
        "count": count,
        "store": sink.describe(),
        "columns": columns,
        "key_columns": key_columns,
        "key": key,
        "rows": rows,
    })))
}

pub async fn config(state: State) -> Json<Value> {
    let c = &state.config;
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
        prometheus::render(&state.metrics),
    )
        .into_response()
}

pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready when every pipeline's log and store answer and the scheduler runs.
/// Open to anyone, so a refusal names only the part that is not ready, in
/// fixed words; the errors themselves are in `/api/v1/status` (`probe_error`
/// of each pipeline, `scheduler`) and the log.
pub async fn readyz(state: State) -> Response {
    let mut why = Vec::new();
    if !state.pipelines.iter().all(|w| w.sampler.probe().ready()) {
        why.push("log or store not answering");
    }
    let scheduler = state.scheduler.get();
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

pub async fn method_not_allowed() -> ApiError {
    ApiError(
        StatusCode::METHOD_NOT_ALLOWED,
        "this route does not answer this method (see the Allow header)".into(),
    )
}
