//! Tests of the JSON API source against an in-process server that serves a
//! fixed data set in all four pagination styles, checks a bearer token and
//! injects 429s and error bodies on demand.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap as AxumHeaders, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::super::json_page::RejectedRecord;
use super::paging::{Link, parse_link_header};
use super::secrets::parse_template;
use super::*;

const TOKEN: &str = "s3cr3t-T0KEN-9f8e7d";
const TOKEN_VAR: &str = "SHOP_TOKEN";
const RECORDS: usize = 95;
/// The one record that is not an object (1-based id place).
const ODD_ONE: usize = 42;
/// The most records `/offset` gives per page, whatever the client asks.
const OFFSET_CAP: usize = 7;

fn dataset() -> Vec<Value> {
    (1..=RECORDS)
        .map(|i| {
            if i == ODD_ONE {
                json!("not an object")
            } else {
                json!({"id": i, "name": format!("user {i}")})
            }
        })
        .collect()
}

/// The ids a complete read must give, in order.
fn expected_ids() -> Vec<u64> {
    (1..=RECORDS as u64)
        .filter(|&i| i != ODD_ONE as u64)
        .collect()
}

#[derive(Default)]
struct Served {
    requests: AtomicU64,
    /// 429s still to send (with `Retry-After: 0`).
    rate_limits: AtomicU32,
    /// `{"error": …}` bodies with status 200 still to send.
    error_bodies: AtomicU32,
    /// Every `Authorization` header received.
    auth: Mutex<Vec<String>>,
    port: AtomicU32,
}

struct TestServer {
    addr: SocketAddr,
    served: Arc<Served>,
}

impl TestServer {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let served = Arc::new(Served::default());
        served.port.store(addr.port() as u32, Ordering::Relaxed);
        let app = Router::new()
            .route("/page", get(by_page))
            .route("/offset", get(by_offset))
            .route("/cursor", get(by_cursor))
            .route("/link", get(by_link))
            .route("/all", get(all))
            .route("/loop", get(looping))
            .route("/stuck", get(stuck))
            .route("/stuck_clock", get(stuck_clock))
            .route("/echo", get(echo))
            .route("/away", get(away))
            .route("/big", get(big))
            .route("/empty", get(empty))
            .with_state(served.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        TestServer { addr, served }
    }

    fn url(&self, path: &str) -> Url {
        Url::parse(&format!("http://{}{path}", self.addr)).unwrap()
    }

    fn requests(&self) -> u64 {
        self.served.requests.load(Ordering::Relaxed)
    }

    /// A config for `path` with the bearer token from `${SHOP_TOKEN}`, the
    /// records under `/data`, pages of 10 and fast retries.
    fn config(&self, path: &str, pagination: Pagination) -> JsonApiConfig {
        let mut c = JsonApiConfig::new(self.url(path));
        c.headers = vec![("Authorization".into(), format!("Bearer ${{{TOKEN_VAR}}}"))];
        c.records = Some("/data".into());
        c.pagination = pagination;
        c.page_size = Some(PageSize {
            param: "limit".into(),
            size: 10,
        });
        c.max_attempts = 4;
        c.backoff_initial = Duration::from_millis(1);
        c.backoff_max = Duration::from_millis(5);
        c
    }
}

fn env(name: &str) -> Option<String> {
    (name == TOKEN_VAR).then(|| TOKEN.to_owned())
}

fn open(config: JsonApiConfig) -> JsonApiSource {
    JsonApiSource::open_with_env(config, &env).unwrap()
}

/// Authorisation and injected faults, before any route answers.
fn gate(served: &Served, headers: &AxumHeaders) -> Option<Response> {
    served.requests.fetch_add(1, Ordering::Relaxed);
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    served.auth.lock().unwrap().push(auth.clone());
    if auth != format!("Bearer {TOKEN}") {
        return Some((StatusCode::UNAUTHORIZED, "missing or wrong bearer token").into_response());
    }
    let take = |n: &AtomicU32| {
        n.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1))
            .is_ok()
    };
    if take(&served.rate_limits) {
        return Some(
            (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, "0")],
                "slow down",
            )
                .into_response(),
        );
    }
    if take(&served.error_bodies) {
        // Quoting the credential back, as careless servers do.
        let error = format!("overloaded, try again ({auth})");
        return Some(axum::Json(json!({ "error": error })).into_response());
    }
    None
}

type Params = Query<HashMap<String, String>>;

fn num(q: &HashMap<String, String>, name: &str, default: usize) -> usize {
    q.get(name).map_or(default, |v| v.parse().unwrap())
}

fn slice(from: usize, limit: usize) -> Vec<Value> {
    dataset().into_iter().skip(from).take(limit).collect()
}

async fn by_page(State(s): State<Arc<Served>>, h: AxumHeaders, Query(q): Params) -> Response {
    if let Some(r) = gate(&s, &h) {
        return r;
    }
    let (page, limit) = (num(&q, "page", 1), num(&q, "limit", 10));
    axum::Json(json!({"data": slice((page - 1) * limit, limit)})).into_response()
}

async fn by_offset(State(s): State<Arc<Served>>, h: AxumHeaders, Query(q): Params) -> Response {
    if let Some(r) = gate(&s, &h) {
        return r;
    }
    // A server that gives fewer records than asked, as many cap the limit.
    let data = slice(num(&q, "offset", 0), num(&q, "limit", 10).min(OFFSET_CAP));
    axum::Json(json!({"data": data})).into_response()
}

async fn by_cursor(State(s): State<Arc<Served>>, h: AxumHeaders, Query(q): Params) -> Response {
    if let Some(r) = gate(&s, &h) {
        return r;
    }
    let from = q
        .get("cursor")
        .map_or(0, |c| c.strip_prefix("c").unwrap().parse().unwrap());
    let limit = num(&q, "limit", 10);
    let next = (from + limit < RECORDS).then(|| format!("c{}", from + limit));
    axum::Json(json!({"data": slice(from, limit), "meta": {"next_cursor": next}})).into_response()
}

/// A bare array, the next page in a `Link` header among others, relative.
async fn by_link(State(s): State<Arc<Served>>, h: AxumHeaders, Query(q): Params) -> Response {
    if let Some(r) = gate(&s, &h) {
        return r;
    }
    let (page, limit) = (num(&q, "page", 1), num(&q, "limit", 10));
    let mut links = vec![format!(
        "</link?page=1&limit={limit}>; rel=\"first\"; title=\"a, b; c\""
    )];
    if page > 1 {
        links.push(format!("</link?page={}&limit={limit}>; rel=prev", page - 1));
    }
    if page * limit < RECORDS {
        links.push(format!(
            "</link?page={}&limit={limit}>; rel=\"next last-but-not-really\"",
            page + 1
        ));
    }
    (
        [(header::LINK, links.join(", "))],
        axum::Json(slice((page - 1) * limit, limit)),
    )
        .into_response()
}

async fn all(State(s): State<Arc<Served>>, h: AxumHeaders) -> Response {
    if let Some(r) = gate(&s, &h) {
        return r;
    }
    axum::Json(dataset()).into_response()
}

/// Records in one answer: more than one page's worth.
const BIG: usize = 2_345;
/// The one of them that is not an object (its index).
const BIG_ODD_ONE: usize = 1_500;

/// `BIG` records from offset 0, pretty printed; none after.
async fn big(State(s): State<Arc<Served>>, h: AxumHeaders, Query(q): Params) -> Response {
    if let Some(r) = gate(&s, &h) {
        return r;
    }
    let data: Vec<Value> = (0..BIG)
        .filter(|_| num(&q, "offset", 0) == 0)
        .map(|i| match i {
            BIG_ODD_ONE => json!(null),
            _ => json!({"id": i}),
        })
        .collect();
    let body = serde_json::to_string_pretty(&json!({"data": data})).unwrap();
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// No records, in both ways: an empty array, or null.
async fn empty(State(s): State<Arc<Served>>, h: AxumHeaders, Query(q): Params) -> Response {
    if let Some(r) = gate(&s, &h) {
        return r;
    }
    let data = if q.contains_key("null") {
        json!(null)
    } else {
        json!([])
    };
    axum::Json(json!({"data": data, "meta": {"next_cursor": null}})).into_response()
}

/// Cursors a → b → a: a loop.
async fn looping(State(s): State<Arc<Served>>, h: AxumHeaders, Query(q): Params) -> Response {
    if let Some(r) = gate(&s, &h) {
        return r;
    }
    let next = match q.get("cursor").map(String::as_str) {
        Some("a") => "b",
        _ => "a",
    };
    axum::Json(json!({"data": [{"id": 1}], "meta": {"next_cursor": next}})).into_response()
}

/// Ignores the page parameter.
async fn stuck(State(s): State<Arc<Served>>, h: AxumHeaders) -> Response {
    if let Some(r) = gate(&s, &h) {
        return r;
    }
    axum::Json(json!({"data": slice(0, 3)})).into_response()
}

/// The same records whatever the page, with the time of the answer beside
/// them: no two bodies are alike.
async fn stuck_clock(State(s): State<Arc<Served>>, h: AxumHeaders) -> Response {
    if let Some(r) = gate(&s, &h) {
        return r;
    }
    let at = s.requests.load(Ordering::Relaxed);
    axum::Json(json!({"data": slice(0, 3), "served_at": at})).into_response()
}

/// Refuses the request, quoting the credential back.
async fn echo(State(s): State<Arc<Served>>, h: AxumHeaders) -> Response {
    if let Some(r) = gate(&s, &h) {
        return r;
    }
    let auth = h.get(header::AUTHORIZATION).unwrap().to_str().unwrap();
    (
        StatusCode::BAD_REQUEST,
        format!("bad request from {auth} (token {TOKEN})"),
    )
        .into_response()
}

/// Redirects to the same server under another host name: another origin.
async fn away(State(s): State<Arc<Served>>, h: AxumHeaders) -> Response {
    if let Some(r) = gate(&s, &h) {
        return r;
    }
    let port = s.port.load(Ordering::Relaxed);
    (
        StatusCode::FOUND,
        [(header::LOCATION, format!("http://localhost:{port}/all"))],
    )
        .into_response()
}

/// Every page to the end: the ids of the records, the rejected records, the
/// number of pages.
async fn drain(source: &mut JsonApiSource) -> (Vec<u64>, Vec<RejectedRecord>, u64) {
    let mut ids = Vec::new();
    let mut rejected = Vec::new();
    let mut pages = 0;
    while let Some(page) = source.next_page().await.unwrap() {
        pages += 1;
        assert_eq!(page.number, pages);
        ids.extend(page.records.iter().map(|r| r["id"].as_u64().unwrap()));
        rejected.extend(page.rejected);
    }
    assert!(
        source.next_page().await.unwrap().is_none(),
        "a spent source stays spent"
    );
    (ids, rejected, pages)
}

fn assert_the_odd_one(rejected: &[RejectedRecord], position_part: &str) {
    assert_the_odd_one_at(rejected, position_part, 1);
}

fn assert_the_odd_one_at(rejected: &[RejectedRecord], position_part: &str, place: usize) {
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    let r = &rejected[0];
    assert_eq!(r.raw, b"\"not an object\"");
    assert_eq!(
        r.reason,
        format!("record {place} is a string, not an object")
    );
    assert!(r.position.contains(position_part), "{}", r.position);
    assert!(r.position.ends_with(&format!("#{place}")), "{}", r.position);
}

#[tokio::test]
async fn page_numbers_give_every_record_in_order_and_stop_at_the_empty_page() {
    let server = TestServer::start().await;
    let mut source = open(server.config(
        "/page",
        Pagination::PageNumber {
            param: "page".into(),
            first: 1,
        },
    ));
    let (ids, rejected, pages) = drain(&mut source).await;
    assert_eq!(ids, expected_ids());
    assert_eq!(pages, 10);
    // Ten pages and the empty eleventh that ends it.
    assert_eq!(server.requests(), 11);
    assert_the_odd_one(&rejected, "page=5");
    assert_eq!(source.retries(), 0);
}

#[tokio::test]
async fn offsets_advance_by_the_records_received() {
    let server = TestServer::start().await;
    let mut source = open(server.config(
        "/offset",
        Pagination::Offset {
            param: "offset".into(),
        },
    ));
    let (ids, rejected, pages) = drain(&mut source).await;
    assert_eq!(ids, expected_ids());
    // 95 records, 7 a page: 14 pages and the empty one that ends them.
    assert_eq!(pages, 14);
    assert_eq!(server.requests(), 15);
    // The non-object counts as received: it is the 7th of the page at 35.
    assert_the_odd_one_at(&rejected, "offset=35", 6);
}

#[tokio::test]
async fn cursors_are_followed_until_null() {
    let server = TestServer::start().await;
    let mut source = open(server.config(
        "/cursor",
        Pagination::Cursor {
            pointer: "/meta/next_cursor".into(),
            param: "cursor".into(),
        },
    ));
    let (ids, rejected, pages) = drain(&mut source).await;
    assert_eq!(ids, expected_ids());
    assert_eq!(pages, 10);
    assert_eq!(server.requests(), 10);
    assert_the_odd_one(&rejected, "cursor=c40");
}

#[tokio::test]
async fn link_headers_are_followed_until_there_is_no_next() {
    let server = TestServer::start().await;
    let mut config = server.config("/link", Pagination::LinkHeader);
    config.records = None;
    let mut source = open(config);
    let (ids, rejected, pages) = drain(&mut source).await;
    assert_eq!(ids, expected_ids());
    assert_eq!(pages, 10);
    assert_eq!(server.requests(), 10);
    assert_the_odd_one(&rejected, "page=5");
}

#[tokio::test]
async fn without_pagination_one_request_is_everything() {
    let server = TestServer::start().await;
    let mut config = server.config("/all", Pagination::None);
    config.records = Some(String::new());
    config.page_size = None;
    let mut source = open(config);
    let (ids, rejected, pages) = drain(&mut source).await;
    assert_eq!(ids, expected_ids());
    assert_eq!((pages, server.requests()), (1, 1));
    assert_eq!(rejected[0].position, format!("{}#41", server.url("/all")));
}

#[tokio::test]
async fn a_large_answer_is_handed_out_in_pages_of_its_records_at_their_places() {
    let server = TestServer::start().await;
    let mut source = open(server.config(
        "/big",
        Pagination::Offset {
            param: "offset".into(),
        },
    ));
    let mut pages = Vec::new();
    while let Some(page) = source.next_page().await.unwrap() {
        pages.push(page);
    }
    let sizes: Vec<usize> = pages.iter().map(|p| p.received()).collect();
    assert_eq!(sizes, [1_000, 1_000, 345], "one answer, three pages");
    assert!(pages.iter().all(|p| p.number == 1), "the answer's number");
    assert!(
        pages[1].position.ends_with("offset=0"),
        "{}",
        pages[1].position
    );
    assert_eq!(
        pages[1].position_of(0),
        format!("{}#1000", pages[1].position)
    );
    let ids: Vec<u64> = pages
        .iter()
        .flat_map(|p| p.records.iter().map(|r| r["id"].as_u64().unwrap()))
        .collect();
    let expected: Vec<u64> = (0..BIG as u64)
        .filter(|&i| i != BIG_ODD_ONE as u64)
        .collect();
    assert_eq!(ids, expected);
    assert_the_odd_one_null(&pages[1].rejected);
    // The next request asks past all of the answer's records, once.
    assert_eq!((source.pages(), server.requests()), (1, 2));
}

#[tokio::test]
async fn an_answer_without_records_is_an_empty_page() {
    let server = TestServer::start().await;
    let cursor = Pagination::Cursor {
        pointer: "/meta/next_cursor".into(),
        param: "cursor".into(),
    };
    for (path, pagination) in [
        ("/empty", Pagination::None),
        ("/empty?null=1", Pagination::None),
        ("/empty", cursor.clone()),
        ("/empty?null=1", cursor),
    ] {
        let mut source = open(server.config(path, pagination));
        let page = source.next_page().await.unwrap().expect("an empty page");
        assert_eq!((page.number, page.received()), (1, 0), "{path}");
        assert!(source.next_page().await.unwrap().is_none(), "{path}");
    }
}

fn assert_the_odd_one_null(rejected: &[RejectedRecord]) {
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0].raw, b"null");
    assert_eq!(rejected[0].reason, "record 1500 is null, not an object");
    assert!(
        rejected[0].position.ends_with("offset=0#1500"),
        "{}",
        rejected[0].position
    );
}

#[tokio::test]
async fn the_token_is_sent_and_never_shown() {
    let server = TestServer::start().await;
    let config = server.config("/page", Pagination::None);
    let mut source = open(config.clone());
    source.next_page().await.unwrap().unwrap();
    assert_eq!(
        *server.served.auth.lock().unwrap(),
        [format!("Bearer {TOKEN}")]
    );
    for shown in [
        format!("{config:?}"),
        format!("{source:?}"),
        format!("{source:#?}"),
    ] {
        assert!(!shown.contains(TOKEN), "{shown}");
        assert!(
            !shown.contains(TOKEN_VAR),
            "the template is redacted too: {shown}"
        );
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    // A server quoting the credential back: the error hides it.
    let mut source = open(server.config("/echo", Pagination::None));
    let err = source.next_page().await.unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(text.contains("400"), "{text}");
    assert!(text.contains("bad request from <redacted>"), "{text}");
    assert!(!text.contains(TOKEN), "{text}");
}

#[tokio::test]
async fn without_the_token_the_answer_is_a_refusal_not_a_retry() {
    let server = TestServer::start().await;
    let mut config = server.config("/page", Pagination::None);
    config.headers.clear();
    let mut source = open(config);
    let err = source.next_page().await.unwrap_err();
    assert!(matches!(err, SourceError::Refused { .. }), "{err}");
    assert!(err.to_string().contains("401"), "{err}");
    assert_eq!((server.requests(), source.retries()), (1, 0));
}

#[test]
fn a_missing_variable_is_named_and_nothing_else_is_shown() {
    let mut config = JsonApiConfig::new(Url::parse("https://shop.example/api").unwrap());
    config.headers = vec![
        ("X-Api-Key".into(), format!("${{{TOKEN_VAR}}}")),
        ("X-Other".into(), "pre-${MISSING_VAR}".into()),
    ];
    let err = JsonApiSource::open_with_env(config, &env).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("header X-Other"), "{text}");
    assert!(text.contains("MISSING_VAR is not set"), "{text}");
    assert!(!text.contains(TOKEN), "{text}");
}

#[tokio::test]
async fn a_429_and_an_error_body_are_retried_and_warned_of_without_the_token() {
    let server = TestServer::start().await;
    server.served.rate_limits.store(1, Ordering::Relaxed);
    server.served.error_bodies.store(1, Ordering::Relaxed);
    let mut config = server.config(
        "/page",
        Pagination::PageNumber {
            param: "page".into(),
            first: 1,
        },
    );
    config.error_pointer = Some("/error".into());
    let mut source = open(config);
    let (ids, _, pages) = drain(&mut source).await;
    assert_eq!(ids, expected_ids());
    assert_eq!(pages, 10);
    assert_eq!(source.retries(), 2);
    assert_eq!(server.requests(), 13);

    let logs = source.warned.lock().unwrap().join("\n");
    assert_eq!(source.warned.lock().unwrap().len(), 2);
    assert!(logs.contains("http 429"), "{logs}");
    assert!(
        logs.contains("the answer reports an error at /error: overloaded, try again"),
        "{logs}"
    );
    assert!(!logs.contains(TOKEN), "{logs}");
}

#[tokio::test]
async fn an_error_body_that_persists_gives_up_with_its_message() {
    let server = TestServer::start().await;
    server.served.error_bodies.store(100, Ordering::Relaxed);
    let mut config = server.config("/page", Pagination::None);
    config.error_pointer = Some("/error".into());
    config.max_attempts = 3;
    let mut source = open(config);
    let err = source.next_page().await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("gave up after 3 attempts"), "{text}");
    assert!(
        text.contains("overloaded, try again (<redacted>)"),
        "{text}"
    );
    assert!(!text.contains(TOKEN), "{text}");
    assert_eq!(source.retries(), 2);
}

#[tokio::test]
async fn without_an_error_pointer_an_error_body_is_still_not_records() {
    let server = TestServer::start().await;
    server.served.error_bodies.store(1, Ordering::Relaxed);
    let mut source = open(server.config("/page", Pagination::None));
    let page = source.next_page().await.unwrap().unwrap();
    assert_eq!(page.records.len(), 10);
    assert_eq!(source.retries(), 1, "nothing at /data is retried");
}

#[tokio::test]
async fn a_cursor_loop_is_an_error_after_the_pages_it_gave() {
    let server = TestServer::start().await;
    let mut source = open(server.config(
        "/loop",
        Pagination::Cursor {
            pointer: "/meta/next_cursor".into(),
            param: "cursor".into(),
        },
    ));
    // No cursor → a, a → b, b → a again.
    for _ in 0..3 {
        assert_eq!(source.next_page().await.unwrap().unwrap().records.len(), 1);
    }
    let err = source.next_page().await.unwrap_err();
    assert!(
        err.to_string().contains("\"a\" was already followed"),
        "{err}"
    );
    assert_eq!(server.requests(), 3);
    assert!(source.next_page().await.unwrap().is_none());
}

#[tokio::test]
async fn max_pages_bounds_the_run() {
    let server = TestServer::start().await;
    let mut config = server.config(
        "/cursor",
        Pagination::Cursor {
            pointer: "/meta/next_cursor".into(),
            param: "cursor".into(),
        },
    );
    config.max_pages = Some(3);
    let mut source = open(config);
    let (ids, _, pages) = drain(&mut source).await;
    assert_eq!(ids, (1..=30).collect::<Vec<_>>());
    assert_eq!((pages, server.requests()), (3, 3));
    assert!(source.hit_max_pages());
}

#[tokio::test]
async fn an_api_that_ignores_the_page_parameter_is_caught() {
    let server = TestServer::start().await;
    let mut source = open(server.config(
        "/stuck",
        Pagination::PageNumber {
            param: "page".into(),
            first: 1,
        },
    ));
    assert!(source.next_page().await.unwrap().is_some());
    let err = source.next_page().await.unwrap_err();
    assert!(
        err.to_string().contains("seems to ignore \"page\""),
        "{err}"
    );
}

#[tokio::test]
async fn an_api_that_ignores_the_page_parameter_is_caught_by_its_records() {
    let server = TestServer::start().await;
    let mut source = open(server.config(
        "/stuck_clock",
        Pagination::PageNumber {
            param: "page".into(),
            first: 1,
        },
    ));
    assert!(source.next_page().await.unwrap().is_some());
    let err = source.next_page().await.unwrap_err();
    assert!(
        err.to_string().contains("seems to ignore \"page\""),
        "{err}"
    );
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn a_redirect_to_another_origin_is_not_followed() {
    let server = TestServer::start().await;
    let mut source = open(server.config("/away", Pagination::None));
    let err = source.next_page().await.unwrap_err();
    assert!(err.to_string().contains("302"), "{err}");
    assert_eq!(server.requests(), 1, "the other origin was never asked");
}

#[test]
fn positions_hide_credentials_but_keep_the_page() {
    let mut config = JsonApiConfig::new(
        Url::parse("https://user:pw@shop.example/api?api_key=k-123456&sort=asc#frag").unwrap(),
    );
    config.query = vec![("account".into(), "${ACCOUNT}".into())];
    config.pagination = Pagination::PageNumber {
        param: "page".into(),
        first: 1,
    };
    let source =
        JsonApiSource::open_with_env(config, &|n| (n == "ACCOUNT").then(|| "acct-777".into()))
            .unwrap();
    let Next::Fetch(url) = &source.next else {
        panic!("a fresh source fetches")
    };
    assert_eq!(
        url.as_str(),
        "https://user:pw@shop.example/api?api_key=k-123456&sort=asc&account=acct-777&page=1"
    );
    assert_eq!(
        source.position(url),
        "https://shop.example/api?api_key=REDACTED&sort=asc&account=REDACTED&page=1"
    );
    let shown = format!("{source:?}");
    for secret in ["k-123456", "acct-777", ":pw@"] {
        assert!(!shown.contains(secret), "{shown}");
    }
}

#[test]
fn validation_names_the_setting() {
    let base = || JsonApiConfig::new(Url::parse("https://shop.example/api").unwrap());
    let field = |c: JsonApiConfig| c.validate().unwrap_err().field;
    assert!(base().validate().is_ok());

    let mut c = base();
    c.url = Url::parse("ftp://shop.example/").unwrap();
    assert_eq!(field(c), "url");
    let mut c = base();
    c.records = Some("data".into());
    assert_eq!(field(c), "records");
    let mut c = base();
    c.error_pointer = Some("/a~2".into());
    assert_eq!(field(c), "error_pointer");
    let mut c = base();
    c.pagination = Pagination::Cursor {
        pointer: String::new(),
        param: "cursor".into(),
    };
    assert_eq!(field(c), "paginate.cursor");
    let mut c = base();
    c.pagination = Pagination::Offset {
        param: "offset".into(),
    };
    c.query = vec![("offset".into(), "5".into())];
    assert_eq!(field(c), "paginate.param");
    let mut c = base();
    c.pagination = Pagination::PageNumber {
        param: "n".into(),
        first: 0,
    };
    c.page_size = Some(PageSize {
        param: "n".into(),
        size: 5,
    });
    assert_eq!(field(c), "page_size.param");
    let mut c = base();
    c.page_size = Some(PageSize {
        param: "n".into(),
        size: 0,
    });
    assert_eq!(field(c), "page_size.size");
    let mut c = base();
    c.max_pages = Some(0);
    assert_eq!(field(c), "max_pages");
    let mut c = base();
    c.headers = vec![("Bad Name".into(), "x".into())];
    assert_eq!(field(c), "headers.Bad Name");
    let mut c = base();
    c.headers = vec![("Authorization".into(), "Bearer ${TOKEN".into())];
    let err = c.validate().unwrap_err();
    assert_eq!(err.field, "headers.Authorization");
    assert!(err.reason.contains("unclosed"), "{err}");
}

#[test]
fn templates_expand_variables_and_dollar_dollar() {
    let mut secrets = Secrets::default();
    let env = |n: &str| match n {
        "A" => Some("alpha".to_owned()),
        "EMPTY" => Some(String::new()),
        _ => None,
    };
    let got = expand("h", "x-${A}-$$-$5-${A}", false, &env, &mut secrets).unwrap();
    assert_eq!(got, "x-alpha-$-$5-alpha");
    assert_eq!(secrets.scrub("alpha beta"), "<redacted> beta");
    let err = expand("h", "${EMPTY}", false, &env, &mut secrets).unwrap_err();
    assert!(err.to_string().contains("EMPTY is empty"), "{err}");
    assert!(parse_template("${1A}").is_err());
    assert!(parse_template("${}").is_err());
}

#[test]
fn debug_redacts_secret_looking_names_and_variables_only() {
    let mut config = JsonApiConfig::new(Url::parse("https://shop.example/api").unwrap());
    config.headers = vec![
        ("X-Api-Key".into(), "literal-key-value".into()),
        ("Cookie".into(), "sid=abcdef".into()),
        ("X-Tenant".into(), "${TENANT}".into()),
        ("Accept-Language".into(), "en".into()),
    ];
    let shown = format!("{config:?}");
    for hidden in ["literal-key-value", "sid=abcdef", "TENANT"] {
        assert!(!shown.contains(hidden), "{shown}");
    }
    assert!(shown.contains("\"Accept-Language\": \"en\""), "{shown}");
}

#[test]
fn link_headers_parse_per_rfc_8288() {
    let links = parse_link_header(
        r#"<https://a.example/?p=2>; rel="next", <https://a.example/?p=1,2>;rel=prev;title="x, \"y\"; z""#,
    )
    .unwrap();
    assert_eq!(
        links,
        [
            Link {
                target: "https://a.example/?p=2".into(),
                params: vec![("rel".into(), "next".into())],
            },
            Link {
                target: "https://a.example/?p=1,2".into(),
                params: vec![
                    ("rel".into(), "prev".into()),
                    ("title".into(), "x, \"y\"; z".into()),
                ],
            },
        ]
    );
    let next = |fields: &[&str]| {
        let mut h = HeaderMap::new();
        for f in fields {
            h.append(reqwest::header::LINK, HeaderValue::from_str(f).unwrap());
        }
        next_link(&h)
    };
    assert_eq!(next(&[]), Ok(None));
    assert_eq!(next(&["</p1>; rel=prev"]), Ok(None));
    // Relation types are a space-separated, case-insensitive list.
    assert_eq!(
        next(&["</p1>; rel=prev", "</p3>; REL=\"last NEXT\""]),
        Ok(Some("/p3".into()))
    );
    // rel given twice: only the first counts.
    assert_eq!(next(&["</p3>; rel=prev; rel=next"]), Ok(None));
    // `nextish` is not `next`.
    assert_eq!(next(&["</p3>; rel=nextish"]), Ok(None));
    for broken in [
        "/p3; rel=next",
        "</p3; rel=next",
        "</p3> rel=next",
        "</p3>; rel=\"next",
    ] {
        assert!(next(&[broken]).is_err(), "{broken}");
    }
}

#[test]
fn cursors_may_be_numbers_and_end_on_null_or_empty() {
    let body = json!({"n": 12, "s": "x", "e": "", "z": null, "o": {}});
    assert_eq!(cursor_at(&body, "/n").unwrap().as_deref(), Some("12"));
    assert_eq!(cursor_at(&body, "/s").unwrap().as_deref(), Some("x"));
    for end in ["/e", "/z", "/absent"] {
        assert_eq!(cursor_at(&body, end).unwrap(), None, "{end}");
    }
    assert!(!cursor_at(&body, "/o").unwrap_err().retryable);
}
