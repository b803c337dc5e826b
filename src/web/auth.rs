//! Who may call what. Three checks run before every handler:
//!
//! 1. Host: on a loopback address without a token, only loopback host names
//!    are answered, so a web page cannot reach the API by DNS rebinding.
//!    With a token the page needs it anyway, and a reverse proxy in front
//!    may pass its public name through.
//! 2. Cross-site: a request that changes state must be a POST carrying
//!    `X-Tributary-Request` (a header no form can send and no cross-site
//!    script can send without a CORS preflight, which is never granted), and
//!    its `Origin` / `Sec-Fetch-Site`, when present, must be this site
//!    (`Origin`'s scheme, host and port those of the request).
//! 3. Token: when a token is set, everything but the page's files, the
//!    health checks and the login needs `Authorization: Bearer <token>` or
//!    the session cookie that `POST /api/v1/login` sets.
//!
//! Before them, a request that repeats a header a check reads (`Host`,
//! `Origin`, `Authorization`, ...) is refused, so no check can be shown
//! one copy while a proxy or handler acts on another.
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
            .and_then(bearer)
        {
            return token.matches(bearer.trim());
        }
        session_cookie(headers).is_some_and(|id| self.session_valid(id))
    }
}

/// The token of an `Authorization: Bearer <token>` value; the scheme's name
/// is case-insensitive (RFC 9110).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token)
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

/// Headers a check reads: a request that repeats one is refused, so no
/// check reads one copy while something else reads another.
const SINGLE_HEADERS: [&str; 6] = [
    "host",
    "origin",
    "authorization",
    "sec-fetch-site",
    "x-forwarded-proto",
    REQUEST_HEADER,
];

/// The first header of [`SINGLE_HEADERS`] that `headers` repeats.
fn repeated(headers: &HeaderMap) -> Option<&'static str> {
    SINGLE_HEADERS
        .into_iter()
        .find(|name| headers.get_all(*name).iter().nth(1).is_some())
}

/// The scheme the client used: `https` when a proxy in front says so
/// (the first entry of `X-Forwarded-Proto` after several), else `http`.
fn client_scheme(headers: &HeaderMap) -> &'static str {
    let https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"));
    if https { "https" } else { "http" }
}

/// Whether `origin` is this site: the scheme the client used, the host
/// and the port of the `Host` header (a missing port is the scheme's).
fn origin_is_this_site(origin: &str, host: Option<&str>, scheme: &str) -> bool {
    let (Ok(origin), Some(host)) = (url::Url::parse(origin), host) else {
        return false;
    };
    // The Host header as the authority of a URL of the client's scheme.
    let Ok(site) = url::Url::parse(&format!("{scheme}://{host}/")) else {
        return false;
    };
    site.host_str().is_some_and(|h| !h.is_empty())
        && site.path() == "/"
        && site.username().is_empty()
        && origin.scheme() == site.scheme()
        && origin.host_str() == site.host_str()
        && origin.port_or_known_default() == site.port_or_known_default()
        && matches!(origin.path(), "" | "/")
        && origin.username().is_empty()
        && origin.query().is_none()
}

/// A state-changing request that came from this site's own page (or from a
/// non-browser client, which sends neither `Origin` nor `Sec-Fetch-Site`).
fn same_site(headers: &HeaderMap) -> Result<(), &'static str> {
    if !headers.contains_key(REQUEST_HEADER) {
        return Err("state-changing requests need the X-Tributary-Request header");
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if let Some(origin) = headers.get(header::ORIGIN) {
        // `null` (sandboxed frames, some redirects) is never this site.
        let same = origin
            .to_str()
            .is_ok_and(|o| origin_is_this_site(o, host, client_scheme(headers)));
        if !same {
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
    if let Some(name) = repeated(headers) {
        return refuse(
            StatusCode::BAD_REQUEST,
            &format!("the {name} header may be sent once"),
        );
    }
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
        crate::telemetry::metrics::WEB_REQUESTS.name,
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
    let https = client_scheme(&headers) == "https";
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
    fn an_origin_is_this_site_only_with_its_scheme_host_and_port() {
        let this = |o: &str, host: &str, scheme: &str| origin_is_this_site(o, Some(host), scheme);
        assert!(this("http://localhost:8080", "localhost:8080", "http"));
        assert!(this("http://LOCALHOST:8080", "localhost:8080", "http"));
        assert!(this("http://example.org", "example.org:80", "http"));
        assert!(this("https://example.org", "example.org", "https"));
        assert!(this("http://[::1]:8080", "[::1]:8080", "http"));
        // Another scheme or port on the same host is another site.
        assert!(!this("https://localhost:8080", "localhost:8080", "http"));
        assert!(!this("http://localhost:8081", "localhost:8080", "http"));
        assert!(!this("http://localhost", "localhost:8080", "http"));
        assert!(!this("http://example.org", "example.org", "https"));
        assert!(!this(
            "http://localhost:8080.evil",
            "localhost:8080",
            "http"
        ));
        assert!(!this("null", "localhost:8080", "http"));
        assert!(!this("http://localhost:8080", "", "http"));
        assert!(!this("http://localhost:8080", "localhost:8080/x", "http"));
        assert!(!origin_is_this_site("http://localhost:8080", None, "http"));
    }

    #[test]
    fn the_bearer_scheme_is_named_in_any_case() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer abc"), Some("abc"));
        assert_eq!(bearer("BEARER abc"), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearerabc"), None);
    }

    #[test]
    fn repeated_security_headers_are_found() {
        let mut h = HeaderMap::new();
        h.append(header::HOST, "localhost".parse().unwrap());
        h.append(header::COOKIE, "a=1".parse().unwrap());
        h.append(header::COOKIE, "b=2".parse().unwrap());
        assert_eq!(repeated(&h), None);
        h.append(header::ORIGIN, "http://localhost".parse().unwrap());
        h.append(header::ORIGIN, "http://evil.example".parse().unwrap());
        assert_eq!(repeated(&h), Some("origin"));
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
