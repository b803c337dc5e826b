//! The web side of `tributary serve`: the dashboard page, the JSON API under
//! `/api/v1/` (described in `docs/openapi.yaml`), `/metrics` for Prometheus,
//! and `/healthz` / `/readyz`.
//!
//! It sees every pipeline `serve` runs, each by its name (a request that
//! names none gets the first), and only looks at them and queues work for
//! them: counters come from each pipeline's shared [`Stats`], offsets and
//! rows from its log and store through their public methods (sampled by
//! `sampler.rs`, so many open pages cost each pipeline one query per
//! second), runs from the scheduler's history file. `auth.rs` owns who may
//! call what; `api/` the endpoints; `assets.rs` the page, embedded in the
//! binary; `server.rs` the HTTP server and its bounds on slow clients and
//! open connections.

mod api;
mod assets;
mod auth;
mod sampler;
mod server;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::routing::{MethodRouter, get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, PipelineConfig};
use crate::pipeline::log::Log;
use crate::pipeline::shape::Shape;
use crate::pipeline::sink::Sink;
use crate::pipeline::stats::Stats;
use crate::scheduler::{Health, History};

pub use crate::config::{Token, WebConfig};
use sampler::Sampler;

/// What the web side reads and acts on: the same handles the pipelines use.
pub struct Parts {
    pub config: Arc<Config>,
    /// Every pipeline `serve` runs, in config order (at least one); a
    /// request that names no pipeline gets the first.
    pub pipelines: Vec<PipelineParts>,
    pub history: History,
    /// How the scheduler is doing (`/readyz` needs it running).
    pub scheduler: Health,
    pub metrics: PrometheusHandle,
}

/// One pipeline's handles, as `serve` opened them.
pub struct PipelineParts {
    pub config: PipelineConfig,
    pub log: Log,
    pub sink: Sink,
    /// The pipeline's totals (its scheduled runs and its processor).
    pub stats: Arc<Stats>,
    /// A user pipeline's table as the store has it, and its transform;
    /// `None` for the built-in users.
    pub shape: Option<Arc<Shape>>,
}

impl PipelineParts {
    /// The parts of `config`'s pipeline; its shape comes from the opened
    /// store (a table read from the store when none is declared).
    pub fn new(config: PipelineConfig, log: Log, sink: Sink, stats: Arc<Stats>) -> PipelineParts {
        let shape = Shape::of(&config.dataset, sink.schema());
        PipelineParts {
            config,
            log,
            sink,
            stats,
            shape,
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }
}

/// Shared by every handler.
struct AppState {
    config: Arc<Config>,
    history: History,
    scheduler: Health,
    metrics: PrometheusHandle,
    /// In the order of [`Parts::pipelines`].
    pipelines: Vec<Watched>,
    auth: auth::Auth,
    started: Instant,
}

/// A pipeline with what the web side keeps of it.
struct Watched {
    parts: PipelineParts,
    sampler: Arc<Sampler>,
    /// Held while a replay of this pipeline's dead letters runs (one at a
    /// time), with what replays wrote (see
    /// [`crate::pipeline::processor::ReplayWrites`]).
    replaying: tokio::sync::Mutex<crate::pipeline::processor::ReplayWrites>,
    /// Looks at the log by offset, time or key (read fresh, not shared):
    /// a few at a time.
    browsing: tokio::sync::Semaphore,
}

/// Looks at one pipeline's log by offset, time or key at once; more wait.
const BROWSING: usize = 2;

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
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            std::io::Error::new(
                e.kind(),
                format!(
                    "port {} is in use by another program; choose another with \
                     --listen HOST:PORT or [web] listen (port 0 picks a free one)",
                    addr.port()
                ),
            )
        } else {
            e
        }
    })?;
    let addr = listener.local_addr()?;
    assert!(
        !parts.pipelines.is_empty(),
        "serve runs at least one pipeline"
    );
    let pipelines: Vec<Watched> = parts
        .pipelines
        .into_iter()
        .map(|p| Watched {
            sampler: Arc::new(Sampler::new(p.name(), &p.log, &p.sink)),
            parts: p,
            replaying: tokio::sync::Mutex::default(),
            browsing: tokio::sync::Semaphore::new(BROWSING),
        })
        .collect();
    sampler::spawn(
        pipelines
            .iter()
            .map(|w| {
                (
                    w.sampler.clone(),
                    sampler::Sources {
                        log: w.parts.log.clone(),
                        sink: w.parts.sink.clone(),
                        group: w.parts.config.group.clone(),
                        stats: w.parts.stats.clone(),
                    },
                )
            })
            .collect(),
        parts.metrics.clone(),
        shutdown.clone(),
    );
    let state = Arc::new(AppState {
        config: parts.config,
        history: parts.history,
        scheduler: parts.scheduler,
        metrics: parts.metrics,
        pipelines,
        auth: auth::Auth::new(token, addr),
        started: Instant::now(),
    });
    let limits = server::Limits {
        header_timeout: state.config.web.header_timeout,
        max_connections: state.config.web.max_connections,
    };
    let app = router(state, limits);
    let task = tokio::spawn(server::serve(listener, app, limits, shutdown));
    Ok(WebServer { addr, task })
}

/// The API's routes: method, path, handler. The router is built from this
/// list, and `tests::every_route_is_in_the_openapi_file` checks
/// `docs/openapi.yaml` against it (the page's own files are not API).
fn routes() -> Vec<(&'static str, &'static str, MethodRouter<Arc<AppState>>)> {
    vec![
        ("get", "/api/v1/pipelines", get(api::pipelines)),
        ("get", "/api/v1/status", get(api::status)),
        ("get", "/api/v1/throughput", get(api::throughput)),
        ("get", "/api/v1/jobs", get(api::jobs)),
        ("get", "/api/v1/jobs/{name}/runs", get(api::runs)),
        ("get", "/api/v1/jobs/{name}/runs/{run}", get(api::run)),
        ("post", "/api/v1/jobs/{name}/cancel", post(api::cancel)),
        ("post", "/api/v1/jobs/{name}/trigger", post(api::trigger)),
        ("post", "/api/v1/jobs/{name}/pause", post(api::pause)),
        ("post", "/api/v1/jobs/{name}/unpause", post(api::unpause)),
        ("get", "/api/v1/topic", get(api::topic)),
        ("get", "/api/v1/topic/messages", get(api::messages)),
        ("get", "/api/v1/rows", get(api::rows)),
        ("get", "/api/v1/dead-letters", get(api::dead_letters)),
        ("post", "/api/v1/dead-letters/replay", post(api::replay)),
        ("post", "/api/v1/dead-letters/discard", post(api::discard)),
        ("get", "/api/v1/config", get(api::config)),
        ("post", "/api/v1/login", post(auth::login)),
        ("post", "/api/v1/logout", post(auth::logout)),
        ("get", "/api/v1/session", get(auth::session)),
        ("get", "/metrics", get(api::metrics)),
        ("get", "/healthz", get(api::healthz)),
        ("get", "/readyz", get(api::readyz)),
    ]
}

fn router(state: Arc<AppState>, limits: server::Limits) -> Router {
    let page = Router::new()
        .route("/", get(assets::index))
        .route("/assets/{file}", get(assets::file));
    routes()
        .into_iter()
        .fold(page, |router, (_, path, handler)| {
            router.route(path, handler)
        })
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            limits.header_timeout,
            server::read_body,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::guard,
        ))
        .with_state(state)
}

#[cfg(test)]
mod tests;
