//! `tributary mock-api`: the built-in generator served over HTTP with the
//! Random User API's parameters, plus optional injected faults (500s, 429s,
//! error bodies, latency). Tests and benchmarks use it; so can users. It is a
//! stand-in for the outside world, not a stage of the pipeline.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::pipeline::source::MAX_RESULTS_PER_REQUEST;
use crate::pipeline::source::generator::{self, Gender, Generator};
use crate::record::{ApiDate, ApiInfo, ApiStreet, ApiUser};

/// The body the real service sends when it is overloaded.
pub const ERROR_BODY: &str = r#"{"error":"Uh oh, something has gone wrong. Please tweet us @randomapi about the issue. Thank you."}"#;

/// Injected faults: each request rolls once against these shares.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    pub fail_rate: f64,
    pub rate_limit_rate: f64,
    pub error_body_rate: f64,
    /// Share of users sent without `login`, by seed, page and position.
    pub malformed_rate: f64,
    /// Page 1 for every `page`.
    pub ignore_page: bool,
    pub retry_after_secs: u64,
    pub latency: Duration,
    /// Seed of the dice; the same seed gives the same fault sequence.
    pub seed: u64,
}

/// Counts of what the server answered, for tests and logs.
#[derive(Debug, Default)]
pub struct Served {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    pub rate_limited: AtomicU64,
    pub error_bodies: AtomicU64,
}

struct AppState {
    faults: Faults,
    dice: Mutex<u64>,
    served: Arc<Served>,
}

impl AppState {
    /// A number in [0, 1) from the fault dice (SplitMix64).
    fn roll(&self) -> f64 {
        let mut s = self.dice.lock().unwrap_or_else(|p| p.into_inner());
        *s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The router, for embedding in tests and benchmarks.
pub fn router(faults: Faults, served: Arc<Served>) -> Router {
    let state = Arc::new(AppState {
        dice: Mutex::new(faults.seed),
        faults,
        served,
    });
    Router::new()
        .route("/api", get(latest))
        .route("/api/", get(latest))
        .route("/api/{version}", get(versioned))
        .route("/api/{version}/", get(versioned))
        .with_state(state)
}

/// Serves until `shutdown` fires. The listener is passed in, so callers (and
/// tests) choose the port, 0 included.
pub async fn serve(
    listener: TcpListener,
    faults: Faults,
    served: Arc<Served>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(faults, served))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

/// Binds `addr`, refusing anything but loopback: the mock has no auth.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    if !addr.ip().is_loopback() {
        return Err(format!(
            "mock-api binds only loopback addresses (it has no authentication), not {}",
            addr.ip()
        ));
    }
    TcpListener::bind(addr).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            format!(
                "cannot listen on {addr}: port {} is in use by another program; choose \
                 another with --port (0 picks a free one)",
                addr.port()
            )
        } else {
            format!("cannot listen on {addr}: {e}")
        }
    })
}

async fn latest(
    State(state): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    answer(state, "1.4".into(), q).await
}

async fn versioned(
    State(state): State<Arc<AppState>>,
    Path(version): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    answer(state, version, q).await
}

async fn answer(state: Arc<AppState>, version: String, mut q: HashMap<String, String>) -> Response {
    if !state.faults.latency.is_zero() {
        tokio::time::sleep(state.faults.latency).await;
    }
    let f = &state.faults;
    let roll = state.roll();
    if roll < f.fail_rate {
        state.served.failed.fetch_add(1, Ordering::Relaxed);
        return (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error").into_response();
    }
    if roll < f.fail_rate + f.rate_limit_rate {
        state.served.rate_limited.fetch_add(1, Ordering::Relaxed);
        let mut r = (StatusCode::TOO_MANY_REQUESTS, "Too Many Requests").into_response();
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(f.retry_after_secs));
        return r;
    }
    if roll < f.fail_rate + f.rate_limit_rate + f.error_body_rate {
        state.served.error_bodies.fetch_add(1, Ordering::Relaxed);
        return json_response(ERROR_BODY.as_bytes().to_vec());
    }
    let format = q.get("format").map(String::as_str).unwrap_or("json");
    if !matches!(format, "json" | "pretty" | "prettyjson") {
        return (
            StatusCode::BAD_REQUEST,
            format!(
                "{{\"error\":\"format {format:?} is not served by mock-api; use json or pretty\"}}"
            ),
        )
            .into_response();
    }
    let pretty = format != "json";
    let malformed_rate = f.malformed_rate;
    if f.ignore_page {
        q.remove("page");
    }
    let body = tokio::task::spawn_blocking(move || page_body(&version, &q, pretty, malformed_rate))
        .await
        .expect("page task panicked");
    state.served.ok.fetch_add(1, Ordering::Relaxed);
    json_response(body)
}

fn json_response(body: Vec<u8>) -> Response {
    let mut r = body.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

/// The response body for one request, as the real API shapes it.
pub(crate) fn page_body(
    version: &str,
    q: &HashMap<String, String>,
    pretty: bool,
    malformed_rate: f64,
) -> Vec<u8> {
    let results = q
        .get("results")
        .and_then(|r| r.parse::<u64>().ok())
        .filter(|&r| r > 0)
        .unwrap_or(1)
        .min(MAX_RESULTS_PER_REQUEST);
    let page = q
        .get("page")
        .and_then(|p| p.parse::<u64>().ok())
        .filter(|&p| p > 0)
        .unwrap_or(1);
    let seed = q
        .get("seed")
        .filter(|s| !s.is_empty())
        .cloned()
        .unwrap_or_else(generator::random_seed);
    let nats = q
        .get("nat")
        .map(|n| n.split(',').filter_map(generator::by_code).collect())
        .unwrap_or_default();
    let gender = q.get("gender").and_then(|g| Gender::parse(g));
    let version = match version {
        "1.0" | "1.1" | "1.2" | "1.3" | "1.4" => version,
        _ => "1.4",
    };
    let mut users = Generator::new(&seed, nats, gender).page(page, results);
    if version != "1.4" {
        users.iter_mut().for_each(|u| downgrade(u, version));
    }
    let info = ApiInfo {
        seed: Some(seed.clone()),
        results: Some(results),
        page: Some(page),
        version: Some(version.to_owned()),
    };
    let inc = q.get("inc").map(|s| field_list(s));
    let exc = q.get("exc").map(|s| field_list(s));
    let noinfo = q.contains_key("noinfo");
    let malformed = |i: usize| {
        // By the user's place in the seed's sequence, as the users are.
        let k = page.saturating_sub(1).saturating_mul(results) + i as u64;
        malformed_rate > 0.0 && unit_hash(&format!("{seed}/{k}")) < malformed_rate
    };
    let results_json = if inc.is_some() || exc.is_some() || malformed_rate > 0.0 {
        let filtered: Vec<serde_json::Value> = users
            .iter()
            .enumerate()
            .map(|(i, u)| {
                let mut v = serde_json::to_value(u).expect("users serialise");
                if let Some(obj) = v.as_object_mut() {
                    obj.retain(|k, _| {
                        inc.as_ref().is_none_or(|i| i.contains(&k.as_str()))
                            && exc.as_ref().is_none_or(|e| !e.contains(&k.as_str()))
                            && !(k == "login" && malformed(i))
                    });
                }
                v
            })
            .collect();
        serde_json::to_value(filtered)
    } else {
        serde_json::to_value(&users)
    }
    .expect("users serialise");
    let mut body = serde_json::Map::new();
    body.insert("results".into(), results_json);
    if !noinfo {
        body.insert(
            "info".into(),
            serde_json::to_value(info).expect("info serialises"),
        );
    }
    if pretty {
        serde_json::to_vec_pretty(&body)
    } else {
        serde_json::to_vec(&body)
    }
    .expect("body serialises")
}

/// A number in [0, 1) fixed by `key` (FNV-1a, then SplitMix64's finaliser).
fn unit_hash(key: &str) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((h ^ (h >> 31)) >> 11) as f64 / (1u64 << 53) as f64
}

fn field_list(s: &str) -> Vec<&str> {
    s.split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .collect()
}

/// Reshapes a 1.4 user into an older format: `street` as one string before
/// 1.4, and `dob`/`registered` as plain `YYYY-MM-DD HH:MM:SS` strings
/// before 1.3.
fn downgrade(user: &mut ApiUser, version: &str) {
    if let Some(loc) = user.location.as_mut()
        && let Some(ApiStreet::Structured { number, name }) = &loc.street
    {
        let line = match number {
            Some(n) => format!("{} {}", n.to_text(), name.clone().unwrap_or_default()),
            None => name.clone().unwrap_or_default(),
        };
        loc.street = Some(ApiStreet::Line(line.to_lowercase()));
    }
    if version < "1.3" {
        for date in [&mut user.dob, &mut user.registered] {
            if let Some(ApiDate::Structured { date: Some(d), .. }) = date {
                let plain = d.replace('T', " ").chars().take(19).collect::<String>();
                *date = Some(ApiDate::Text(plain));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::decode_page;

    fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn malformed_users_are_the_same_for_the_same_request() {
        let q = query(&[("results", "1000"), ("seed", "m"), ("page", "3")]);
        let (a, b) = (
            page_body("1.4", &q, false, 0.1),
            page_body("1.4", &q, false, 0.1),
        );
        assert_eq!(a, b);
        let page = decode_page(&a).unwrap();
        let bad = page.rejected.len() + page.users.iter().filter(|u| u.to_row().is_err()).count();
        assert!(
            (50..150).contains(&bad),
            "{bad} of 1000 malformed at rate 0.1"
        );
    }

    #[test]
    fn pages_match_the_generator_and_cap_results() {
        let body = page_body(
            "1.4",
            &query(&[("results", "9999"), ("seed", "x")]),
            false,
            0.0,
        );
        let page = decode_page(&body).unwrap();
        assert_eq!(page.users.len(), 5000);
        assert_eq!(page.users, Generator::new("x", vec![], None).page(1, 5000));
        let info = page.info.unwrap();
        assert_eq!(info.seed.as_deref(), Some("x"));
        assert_eq!(info.version.as_deref(), Some("1.4"));
    }

    #[test]
    fn old_versions_decode_and_flatten() {
        for v in ["1.0", "1.1", "1.2", "1.3"] {
            let body = page_body(v, &query(&[("results", "20"), ("seed", "old")]), false, 0.0);
            let page = decode_page(&body).unwrap();
            for u in &page.users {
                assert!(matches!(
                    u.location.as_ref().unwrap().street,
                    Some(ApiStreet::Line(_))
                ));
                u.to_row().unwrap();
            }
        }
    }

    #[test]
    fn inc_exc_noinfo_filter_fields() {
        let body = page_body(
            "1.4",
            &query(&[("results", "2"), ("inc", "name,email"), ("noinfo", "")]),
            false,
            0.0,
        );
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(v.get("info").is_none());
        let user = v["results"][0].as_object().unwrap();
        let mut keys: Vec<_> = user.keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, ["email", "name"]);
        let body = page_body("1.4", &query(&[("exc", "login")]), false, 0.0);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(v["results"][0].get("login").is_none());
        assert!(v["results"][0].get("email").is_some());
    }

    #[test]
    fn nat_and_gender_are_honoured() {
        let body = page_body(
            "1.4",
            &query(&[("results", "50"), ("nat", "fr,ir"), ("gender", "male")]),
            false,
            0.0,
        );
        for u in decode_page(&body).unwrap().users {
            assert!(matches!(u.nat.as_deref(), Some("FR" | "IR")));
            assert_eq!(u.gender.as_deref(), Some("male"));
        }
    }
}
