//! Who may call what. Three checks run before every handler:
//!
//! 1. Host: on a loopback address without a token, only loopback host names
//!    are answered, so a web page cannot reach the API by DNS rebinding.
//!    With a token the page needs it anyway, and a reverse proxy in front
//!    may pass its public name through.
//! 2. Cross-site: a request that changes state must be a POST carrying
//!    `X-Tributary-Request` (a header no form can send and no cross-site
//!    script can send without a CORS preflight, which is never granted), and
//!    its `Origin` / `Sec-Fetch-Site`, when present, must be this site.
//! 3. Token: when a token is set, everything but the page's files, the
//!    health checks and the login needs `Authorization: Bearer <token>` or
//!    the session cookie that `POST /api/v1/login` sets.
//!
//! The token is compared in constant time and never logged or echoed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::config::Token;

use super::State;

const COOKIE: &str = "tributary_session";
/// How long a login lasts.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at most; the oldest goes first.
const MAX_SESSIONS: usize = 1024;
/// How long a wrong login waits before it is answered.
const LOGIN_FAILURE_DELAY: Duration = Duration::from_millis(500);
/// The header every state-changing request carries.
pub const REQUEST_HEADER: &str = "x-tributary-request";

pub struct Auth {
    token: Option<Token>,
    /// Bound to loopback: Host names are checked.
    loopback: bool,
    sessions: Mutex<HashMap<String, Instant>>,
}

impl Auth {
    pub fn new(token: Option<Token>, addr: SocketAddr) -> Auth {
        Auth {
            token,
            loopback: addr.ip().is_loopback(),
            sessions: Mutex::new(HashMap::new()),
        }
    }

    fn session_valid(&self, id: &str) -> bool {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.retain(|_, created| created.elapsed() < SESSION_TTL);
        sessions.contains_key(id)
    }

    fn new_session(&self) -> String {
        let id = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(id.clone(), Instant::now());
        id
    }

    fn authenticated(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        if let Some(bearer) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        {
            return token.matches(bearer.trim());
        }
        session_cookie(headers).is_some_and(|id| self.session_valid(id))
    }
}

fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
}

fn refuse(status: StatusCode, reason: &str) -> Response {
    let mut r = (status, Json(json!({ "error": reason }))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
    }
    r
}

/// Routes anyone may call: the page (it holds no data), health, login.
fn is_public(path: &str) -> bool {
    path == "/"
        || path.starts_with("/assets/")
        || matches!(
            path,
            "/healthz" | "/readyz" | "/api/v1/login" | "/api/v1/logout" | "/api/v1/session"
        )
}

fn host_is_loopback(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A state-changing request that came from this site's own page (or from a
/// non-browser client, which sends neither `Origin` nor `Sec-Fetch-Site`).
fn same_site(headers: &HeaderMap) -> Result<(), &'static str> {
    if !headers.contains_key(REQUEST_HEADER) {
        return Err("state-changing requests need the X-Tributary-Request header");
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        // `null` (sandboxed frames, some redirects) is never this site.
        let origin_host = origin.split_once("://").map(|(_, h)| h);
        if origin_host.is_none() || origin_host != host {
            return Err("cross-site request refused");
        }
    }
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return Err("cross-site request refused");
    }
    Ok(())
}

/// The checks of the module doc, in order.
pub async fn guard(state: State, request: Request, next: Next) -> Response {
    let auth = &state.auth;
    let headers = request.headers();
    if auth.loopback && auth.token.is_none() {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !host_is_loopback(host) {
            return refuse(
                StatusCode::MISDIRECTED_REQUEST,
                "this server answers only to localhost names",
            );
        }
    }
    let method = request.method();
    if method != Method::GET
        && method != Method::HEAD
        && let Err(reason) = same_site(headers)
    {
        return refuse(StatusCode::FORBIDDEN, reason);
    }
    if !is_public(request.uri().path()) && !auth.authenticated(headers) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "a token is required: Authorization: Bearer <token>, or log in on the page",
        );
    }
    // The route's template, not the path: a bounded label.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let response = next.run(request).await;
    metrics::counter!(
        "tributary_web_requests_total",
        "route" => route,
        "status" => response.status().as_u16().to_string()
    )
    .increment(1);
    response
}

#[derive(Deserialize)]
pub struct Login {
    token: String,
}

pub async fn login(state: State, headers: HeaderMap, Json(body): Json<Login>) -> Response {
    let Some(token) = &state.auth.token else {
        return StatusCode::NO_CONTENT.into_response();
    };
    if !token.matches(&body.token) {
        // Guessing costs time.
        tokio::time::sleep(LOGIN_FAILURE_DELAY).await;
        return refuse(StatusCode::UNAUTHORIZED, "wrong token");
    }
    let id = state.auth.new_session();
    // Behind a TLS proxy the cookie must never travel in clear.
    // The first entry is what the client used (`https, http` after two
    // proxies).
    let https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"));
    let cookie = format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}",
        SESSION_TTL.as_secs(),
        if https { "; Secure" } else { "" }
    );
    (StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response()
}

pub async fn logout(state: State, headers: HeaderMap) -> Response {
    if let Some(id) = session_cookie(&headers) {
        state
            .auth
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }
    let expired = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    (StatusCode::NO_CONTENT, [(header::SET_COOKIE, expired)]).into_response()
}

pub async fn session(state: State, headers: HeaderMap) -> Json<serde_json::Value> {
    Json(json!({
        "authenticated": state.auth.authenticated(&headers),
        "token_required": state.auth.token.is_some(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_only_themselves() {
        let t = Token::new("correct horse battery staple".into());
        assert!(t.matches("correct horse battery staple"));
        assert!(!t.matches("correct horse battery stapl"));
        assert!(!t.matches("correct horse battery staplee"));
        assert!(!t.matches(""));
        assert_eq!(format!("{t:?}"), "Token(***)");
    }

    #[test]
    fn loopback_host_names() {
        for h in [
            "localhost",
            "localhost:8080",
            "127.0.0.1:1",
            "[::1]:80",
            "127.0.0.2",
        ] {
            assert!(host_is_loopback(h), "{h}");
        }
        for h in ["evil.example", "evil.example:8080", "10.0.0.1:8080", ""] {
            assert!(!host_is_loopback(h), "{h}");
        }
    }
}
