//! The web side of `tributary serve`: the dashboard page, the JSON API under
//! `/api/v1/` (described in `docs/openapi.yaml`), `/metrics` for Prometheus,
//! and `/healthz` / `/readyz`.
//!
//! It only looks at the pipeline and queues work for it: counters come from
//! the shared [`Stats`], offsets and rows from the log and store through
//! their public methods (sampled by `sampler.rs`, so many open pages cost the
//! pipeline one query per second), runs from the scheduler's history file.
//! `auth.rs` owns who may call what; `api.rs` the endpoints; `assets.rs` the
//! page, embedded in the binary.

mod api;
mod assets;
mod auth;
mod sampler;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::routing::{MethodRouter, get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::pipeline::log::Log;
use crate::pipeline::sink::Sink;
use crate::pipeline::stats::Stats;
use crate::scheduler::{Health, History};

pub use auth::Token;
use sampler::Sampler;

/// Validated `[web]` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct WebConfig {
    /// Where to listen; `None` serves nothing.
    pub listen: Option<SocketAddr>,
    /// Required by the config when `listen` is not loopback.
    pub token: Option<Token>,
}

/// What the web side reads and acts on: the same handles the pipeline uses.
pub struct Parts {
    pub config: Arc<Config>,
    pub log: Log,
    pub sink: Sink,
    pub history: History,
    /// How the scheduler is doing (`/readyz` needs it running).
    pub scheduler: Health,
    /// `serve`'s totals (scheduled runs and the processor).
    pub stats: Arc<Stats>,
    pub metrics: PrometheusHandle,
}

/// Shared by every handler.
struct AppState {
    parts: Parts,
    sampler: Arc<Sampler>,
    auth: auth::Auth,
    started: Instant,
    /// Held while a replay runs: one at a time.
    replaying: tokio::sync::Mutex<()>,
}

type State = axum::extract::State<Arc<AppState>>;

/// A running web server.
pub struct WebServer {
    /// The bound address (the real port when 0 was asked for).
    pub addr: SocketAddr,
    task: JoinHandle<std::io::Result<()>>,
}

impl WebServer {
    /// Waits until the server stopped (after `shutdown`).
    pub async fn stopped(self) -> std::io::Result<()> {
        self.task.await.expect("web server task panicked")
    }
}

/// Binds `addr` and serves until `shutdown`.
pub async fn start(
    addr: SocketAddr,
    token: Option<Token>,
    parts: Parts,
    shutdown: CancellationToken,
) -> std::io::Result<WebServer> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let sampler = Arc::new(Sampler::new(&parts.log, &parts.sink));
    sampler::spawn(
        sampler.clone(),
        sampler::Sources {
            log: parts.log.clone(),
            sink: parts.sink.clone(),
            group: parts.config.pipeline.group.clone(),
            stats: parts.stats.clone(),
            metrics: parts.metrics.clone(),
        },
        shutdown.clone(),
    );
    let state = Arc::new(AppState {
        parts,
        sampler,
        auth: auth::Auth::new(token, addr),
        started: Instant::now(),
        replaying: tokio::sync::Mutex::new(()),
    });
    let app = router(state);
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
    });
    Ok(WebServer { addr, task })
}

/// The API's routes: method, path, handler. The router is built from this
/// list, and `tests::every_route_is_in_the_openapi_file` checks
/// `docs/openapi.yaml` against it (the page's own files are not API).
fn routes() -> Vec<(&'static str, &'static str, MethodRouter<Arc<AppState>>)> {
    vec![
        ("get", "/api/v1/status", get(api::status)),
        ("get", "/api/v1/throughput", get(api::throughput)),
        ("get", "/api/v1/jobs", get(api::jobs)),
        ("get", "/api/v1/jobs/{name}/runs", get(api::runs)),
        ("post", "/api/v1/jobs/{name}/trigger", post(api::trigger)),
        ("post", "/api/v1/jobs/{name}/pause", post(api::pause)),
        ("post", "/api/v1/jobs/{name}/unpause", post(api::unpause)),
        ("get", "/api/v1/topic", get(api::topic)),
        ("get", "/api/v1/topic/messages", get(api::messages)),
        ("get", "/api/v1/rows", get(api::rows)),
        ("get", "/api/v1/dead-letters", get(api::dead_letters)),
        ("post", "/api/v1/dead-letters/replay", post(api::replay)),
        ("get", "/api/v1/config", get(api::config)),
        ("post", "/api/v1/login", post(auth::login)),
        ("post", "/api/v1/logout", post(auth::logout)),
        ("get", "/api/v1/session", get(auth::session)),
        ("get", "/metrics", get(api::metrics)),
        ("get", "/healthz", get(api::healthz)),
        ("get", "/readyz", get(api::readyz)),
    ]
}

fn router(state: Arc<AppState>) -> Router {
    let page = Router::new()
        .route("/", get(assets::index))
        .route("/assets/{file}", get(assets::file));
    routes()
        .into_iter()
        .fold(page, |router, (_, path, handler)| {
            router.route(path, handler)
        })
        .fallback(api::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::guard,
        ))
        .with_state(state)
}

#[cfg(test)]
mod tests;
