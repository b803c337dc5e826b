//! A paginated JSON API of orders, served on 127.0.0.1 from a background
//! thread, for the tests of user pipelines: 237 deterministic orders with
//! nested fields, the same data behind four pagination styles, a bearer
//! token on every call, and (when asked) one `429` and one `200` with an
//! error body in the middle of a walk. Every request is recorded, so a test
//! can check what the source sent.
//!
//! Endpoints (each takes `limit`, default 25):
//! - `/cursor/orders?cursor=C` → `{"data": [...], "meta": {"next_cursor": C'|null}}`
//! - `/page/orders?page=P` (from 1) → `{"data": [...]}`, empty past the end
//! - `/offset/orders?offset=O` → `{"data": [...]}`, empty past the end
//! - `/link/orders?after=N` → `{"data": [...]}` and `Link: <…>; rel="next"`

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Duration, FixedOffset, TimeZone, Utc};
use serde_json::{Value, json};

/// How many orders the API has.
pub const ORDERS: usize = 237;

/// Orders `7, 47, 87, …` (by index) are cancelled.
pub fn is_cancelled(i: usize) -> bool {
    i % 40 == 7
}

/// The one order (by index) with an item that has no SKU (`"sku": null`).
pub const NULL_SKU: usize = 150;

/// Order `i` (0-based) of the dataset; its `order_id` is `1000 + i`.
///
/// - `created_at` is RFC 3339 at one of five offsets (`+02:00`, `-05:00`,
///   `Z`, `+05:30`, `-09:30`), 97 minutes apart from 2024-02-28T20:00:00Z
///   on (so the walk crosses the leap day); every seventh from the fourth
///   on carries microseconds;
/// - `amount.value` is a decimal string;
/// - `items` holds `i % 4` items, each with a `sku` and a `qty`.
pub fn order(i: usize) -> Value {
    let start = Utc.with_ymd_and_hms(2024, 2, 28, 20, 0, 0).unwrap();
    let utc: DateTime<Utc> = start + Duration::minutes(97 * i as i64);
    let offset_minutes = [120, -300, 0, 330, -570][i % 5];
    let local = utc.with_timezone(&FixedOffset::east_opt(offset_minutes * 60).unwrap());
    let mut created_at = local.format("%Y-%m-%dT%H:%M:%S").to_string();
    if i % 7 == 3 {
        created_at.push_str(".123456");
    }
    if offset_minutes == 0 {
        created_at.push('Z');
    } else {
        created_at.push_str(&local.format("%:z").to_string());
    }
    let status = if is_cancelled(i) {
        "cancelled"
    } else if i.is_multiple_of(3) {
        "shipped"
    } else {
        "paid"
    };
    let countries = ["DE", "US", "FR", "JP", "BR", "IN", "AU"];
    let items: Vec<Value> = (0..i % 4)
        .map(|k| {
            let sku = if i == NULL_SKU && k == 1 {
                Value::Null
            } else {
                json!(format!("SKU-{i}-{k}"))
            };
            json!({ "sku": sku, "qty": k + 1 })
        })
        .collect();
    json!({
        "order_id": 1000 + i,
        "status": status,
        "amount": {
            "value": format!("{}.{:02}", 5 + (i * 37) % 400, (i * 13) % 100),
            "currency": "EUR",
        },
        "created_at": created_at,
        "shipping": { "country": countries[i % 7], "city": format!("City {}", i % 11) },
        "items": items,
    })
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Path and query, as sent.
    pub uri: String,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    /// The status it was answered with.
    pub status: u16,
}

struct Shared {
    token: String,
    faults: bool,
    seen: Mutex<Vec<Seen>>,
    /// Authorized requests so far (the faults are placed by this count).
    authorized: Mutex<u64>,
}

/// What a data request gets instead of its page, by its number among the
/// authorized requests: the second is rate limited, the fourth answers 200
/// with an error body. Both are retried by the source, so each fault hits
/// once and the page is served on the next attempt.
enum Fault {
    None,
    RateLimited,
    ErrorBody,
}

/// The running API; stops when dropped.
pub struct OrdersApi {
    pub base: String,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl OrdersApi {
    /// Serves the orders on a free port of 127.0.0.1, requiring
    /// `Authorization: Bearer <token>`; with `faults`, one 429 and one error
    /// body are injected early in the walk. Ready when this returns (the
    /// socket is bound and listening).
    pub fn start(token: &str, faults: bool) -> OrdersApi {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("non-blocking");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Shared {
            token: token.to_owned(),
            faults,
            seen: Mutex::new(Vec::new()),
            authorized: Mutex::new(0),
        });
        let app = Router::new()
            .route("/cursor/orders", get(by_cursor))
            .route("/page/orders", get(by_page))
            .route("/offset/orders", get(by_offset))
            .route("/link/orders", get(by_link))
            .with_state(shared.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await
                    .expect("the orders API serves");
            });
        });
        OrdersApi {
            base,
            shared,
            stop: Some(stop),
        }
    }

    /// Every request so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// The requests so far answered with `status`.
    pub fn answered(&self, status: u16) -> usize {
        self.seen().iter().filter(|s| s.status == status).count()
    }
}

impl Drop for OrdersApi {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

type Params = Query<HashMap<String, String>>;

/// Checks the token, records the request, and places the faults: `Some` is
/// the answer to give instead of the page.
fn refusal(shared: &Shared, uri: &Uri, headers: &HeaderMap) -> Option<Response> {
    let headers_seen: HashMap<String, String> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let uri = uri
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let record = |status: StatusCode| {
        shared.seen.lock().unwrap().push(Seen {
            uri: uri.clone(),
            headers: headers_seen.clone(),
            status: status.as_u16(),
        });
    };
    let want = format!("Bearer {}", shared.token);
    if headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()) != Some(want.as_bytes()) {
        record(StatusCode::UNAUTHORIZED);
        return Some(
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                axum::Json(json!({ "error": "unauthorized" })),
            )
                .into_response(),
        );
    }
    let fault = {
        let mut n = shared.authorized.lock().unwrap();
        *n += 1;
        match (shared.faults, *n) {
            (true, 2) => Fault::RateLimited,
            (true, 4) => Fault::ErrorBody,
            _ => Fault::None,
        }
    };
    match fault {
        Fault::RateLimited => {
            record(StatusCode::TOO_MANY_REQUESTS);
            Some(
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(header::RETRY_AFTER, "0")],
                    axum::Json(json!({ "error": "slow down" })),
                )
                    .into_response(),
            )
        }
        Fault::ErrorBody => {
            record(StatusCode::OK);
            Some(axum::Json(json!({ "error": "busy", "data": [] })).into_response())
        }
        Fault::None => {
            record(StatusCode::OK);
            None
        }
    }
}

fn number(params: &HashMap<String, String>, name: &str, default: usize) -> usize {
    params
        .get(name)
        .map(|v| v.parse().expect("a number parameter"))
        .unwrap_or(default)
}

fn slice(from: usize, limit: usize) -> Vec<Value> {
    (from.min(ORDERS)..(from + limit).min(ORDERS))
        .map(order)
        .collect()
}

async fn by_cursor(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    Query(params): Params,
) -> Response {
    if let Some(answer) = refusal(&shared, &uri, &headers) {
        return answer;
    }
    let limit = number(&params, "limit", 25);
    // An opaque-looking cursor: the next index in hex behind a prefix.
    let from = params.get("cursor").map_or(0, |c| {
        usize::from_str_radix(c.strip_prefix("c_").expect("a cursor of ours"), 16)
            .expect("a cursor of ours")
    });
    let next = (from + limit < ORDERS).then(|| format!("c_{:x}", from + limit));
    axum::Json(json!({ "data": slice(from, limit), "meta": { "next_cursor": next } }))
        .into_response()
}

async fn by_page(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    Query(params): Params,
) -> Response {
    if let Some(answer) = refusal(&shared, &uri, &headers) {
        return answer;
    }
    let limit = number(&params, "limit", 25);
    let page = number(&params, "page", 1);
    assert!(page >= 1, "pages count from 1");
    axum::Json(json!({ "data": slice((page - 1) * limit, limit) })).into_response()
}

async fn by_offset(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    Query(params): Params,
) -> Response {
    if let Some(answer) = refusal(&shared, &uri, &headers) {
        return answer;
    }
    let limit = number(&params, "limit", 25);
    let offset = number(&params, "offset", 0);
    axum::Json(json!({ "data": slice(offset, limit) })).into_response()
}

async fn by_link(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    Query(params): Params,
) -> Response {
    if let Some(answer) = refusal(&shared, &uri, &headers) {
        return answer;
    }
    let limit = number(&params, "limit", 25);
    let from = number(&params, "after", 0);
    let mut response = axum::Json(json!({ "data": slice(from, limit) })).into_response();
    if from + limit < ORDERS {
        // A relative target among other links, as GitHub writes them.
        let link = format!(
            "</link/orders?after={}&limit={limit}>; rel=\"next\", </link/orders?after=0&limit={limit}>; rel=\"first\"",
            from + limit
        );
        response
            .headers_mut()
            .insert(header::LINK, HeaderValue::from_str(&link).unwrap());
    }
    response
}
