//! The dashboard page: its files embedded in the binary at build time, so
//! running tributary needs no Node, no build step and no files beside it.
//! Plain HTML, CSS and a few scripts loaded in order, sharing one scope
//! (`app.js` first; see ARCHITECTURE.md for why).

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");
/// The jobs and their runs.
const JOBS_JS: &str = include_str!("assets/jobs.js");
/// The dead letters.
const LETTERS_JS: &str = include_str!("assets/letters.js");
/// The message browser and the row lookup.
const BROWSE_JS: &str = include_str!("assets/browse.js");

/// Headers every asset carries: no framing by other sites, no sniffing, and
/// a policy that lets the page load only its own script and style.
fn page(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; style-src 'self'; \
                 script-src 'self'; connect-src 'self'; frame-ancestors 'none'; \
                 base-uri 'none'; form-action 'self'",
            ),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

pub async fn index() -> Response {
    page("text/html; charset=utf-8", INDEX)
}

pub async fn file(Path(name): Path<String>) -> Response {
    match name.as_str() {
        "app.js" => page("text/javascript; charset=utf-8", APP_JS),
        "jobs.js" => page("text/javascript; charset=utf-8", JOBS_JS),
        "letters.js" => page("text/javascript; charset=utf-8", LETTERS_JS),
        "browse.js" => page("text/javascript; charset=utf-8", BROWSE_JS),
        "app.css" => page("text/css; charset=utf-8", APP_CSS),
        _ => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}
