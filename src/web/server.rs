//! The dashboard's HTTP/1 server, bounded against clients that hold
//! connections open: a connection that has not sent a whole request head
//! within the header timeout is closed (a half-open or slow client, and a
//! keep-alive connection idle that long between requests), a request body
//! must arrive within the same time and fit [`MAX_BODY`], and at most
//! `max_connections` connections are served at once (the next ones wait in
//! the kernel's backlog until one closes).
//!
//! The bounds are `[web] header_timeout` and `max_connections` (or
//! `TRIBUTARY_WEB_HEADER_TIMEOUT` / `TRIBUTARY_WEB_MAX_CONNECTIONS`).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::api::ApiError;

/// A request body is read whole before its handler runs, at most this big
/// (the API's bodies are a token or a list of ids).
pub const MAX_BODY: usize = 1 << 20;

/// How long a client may take, and how many may be connected (`[web]`
/// `header_timeout` and `max_connections`, defaults in `config/web.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// To send a request head (and, on a kept-alive connection, the next
    /// one), and then its body.
    pub header_timeout: Duration,
    pub max_connections: usize,
}

/// Serves `app` on `listener` until `shutdown`, then lets the open
/// connections finish their requests.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let mut full_warned = false;
    loop {
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => {
                full_warned = false;
                p
            }
            Err(_) => {
                if !full_warned {
                    warn!(
                        max = limits.max_connections,
                        "the dashboard has as many connections as it serves at once; \
                         new ones wait until one closes"
                    );
                    full_warned = true;
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
                }
            }
        };
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, mostly: wait for some to close.
                    warn!(error = %e, "cannot accept a dashboard connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let http = http.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let conn = http.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let ended = tokio::select! {
                ended = conn.as_mut() => ended,
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = ended {
                // A client that went away or was too slow: its business.
                debug!(error = %e, "dashboard connection closed");
            }
        });
    }
    drop(listener);
    // Every permit back: every connection has ended.
    let _ = permits
        .acquire_many(u32::try_from(limits.max_connections).unwrap_or(u32::MAX))
        .await;
    Ok(())
}

/// Reads a request's body whole, within the header timeout and
/// [`MAX_BODY`], before the handler runs: a client that sends a body
/// slowly, or one too big, is answered 408 or 413 instead of holding a
/// handler.
pub async fn read_body(
    axum::extract::State(timeout): axum::extract::State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD) {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let bytes = match tokio::time::timeout(timeout, axum::body::to_bytes(body, MAX_BODY)).await {
        Err(_) => {
            return ApiError(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {}",
                    humantime::format_duration(timeout)
                ),
            )
            .into_response();
        }
        Ok(Err(_)) => {
            return ApiError(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("a request body may hold at most {MAX_BODY} bytes"),
            )
            .into_response();
        }
        Ok(Ok(bytes)) => bytes,
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}
