//! User pipelines (`[[pipelines]]`) from the outside, against a paginated
//! JSON API of orders served by the test itself: each pagination style
//! walked to the end through a 429 and an error body, the records reshaped
//! by a VRL transform into a typed table (SQLite or Cassandra), the bearer
//! token never printed; dead letters and their replay after a fix; config
//! mistakes named with their place; a table read from Cassandra; two
//! pipelines in one `serve`; `preview` writing nothing.

use std::collections::BTreeSet;
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::json_api::{self, NULL_SKU, ORDERS, OrdersApi};
use crate::support::{Sandbox, stderr, unique};

/// The API's bearer token, given to `tributary` as `SHOP_TOKEN`.
const TOKEN: &str = "shop-token-5b0e7d1c9a34f2";

/// The transform of the orders: nested fields flattened, the amount's
/// decimal string made a number, the items reduced to their SKUs (an item
/// without one stands as `no-sku`).
const TRANSFORM: &str = r#"
. = {
  "id": to_string!(.order_id),
  "status": .status,
  "total": to_float!(.amount.value),
  "currency": .amount.currency,
  "placed_at": .created_at,
  "country": .shipping.country,
  "skus": map_values(array!(.items)) -> |item| { string(item.sku) ?? "no-sku" },
}
"#;

const COLUMNS: &str = r#"key = ["id"]
columns = { id = "text", status = "text", total = "double", currency = "text", placed_at = "timestamp", country = "text", skus = "list<text>" }"#;

/// The four ways to walk the API: (endpoint, `paginate`).
const STYLES: [(&str, &str); 4] = [
    (
        "cursor",
        r#"{ cursor = "/meta/next_cursor", param = "cursor" }"#,
    ),
    ("page", r#"{ page = "page", first = 1 }"#),
    ("offset", r#"{ offset = "offset" }"#),
    ("link", "{ link = true }"),
];

/// A `[[pipelines]]` entry named `name` reading the API's `style` endpoint
/// 50 orders a page; `extra` goes right after the name (a `sink`, a
/// `transform`), `table` is the body of its `[pipelines.table]`.
fn pipeline(api: &OrdersApi, name: &str, style: &str, extra: &str, table: &str) -> String {
    let paginate = STYLES
        .iter()
        .find(|(s, _)| *s == style)
        .map(|(_, p)| *p)
        .expect("a known style");
    format!(
        r#"
[[pipelines]]
name = "{name}"
{extra}

[pipelines.source]
url = "{base}/{style}/orders"
records = "/data"
error = "/error"
paginate = {paginate}
page_size = {{ param = "limit", size = 50 }}
headers = {{ Authorization = "Bearer ${{SHOP_TOKEN}}" }}
backoff_initial = "10ms"
backoff_max = "100ms"

[pipelines.table]
{table}
"#,
        base = api.base
    )
}

/// A sandbox whose one pipeline, `orders`, walks the API's cursor endpoint
/// through [`TRANSFORM`] into [`COLUMNS`].
fn cursor_orders(api: &OrdersApi) -> Sandbox {
    let s = Sandbox::new();
    s.config(&pipeline(
        api,
        "orders",
        "cursor",
        &transform(TRANSFORM),
        COLUMNS,
    ));
    s
}

/// `transform = '''…'''` for a pipeline's `extra`.
fn transform(program: &str) -> String {
    format!("transform = '''{program}'''")
}

/// Runs `tributary ARGS` with the token in the environment and checks that
/// no line of what it printed (stdout and stderr) holds the token.
fn run(s: &Sandbox, args: &[&str]) -> Output {
    let out = s
        .cmd(args)
        .env("SHOP_TOKEN", TOKEN)
        .output()
        .expect("tributary starts");
    for line in String::from_utf8_lossy(&out.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
    {
        assert!(!line.contains(TOKEN), "{args:?} printed the token: {line}");
    }
    out
}

/// [`run`], expecting success; returns stdout.
fn ok(s: &Sandbox, args: &[&str]) -> String {
    let out = run(s, args);
    assert!(
        out.status.success(),
        "{args:?} failed ({:?}):\n{}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The last line of `ARGS --json`, parsed.
fn summary(s: &Sandbox, args: &[&str]) -> Value {
    let stdout = ok(s, args);
    serde_json::from_str(stdout.lines().last().expect("a summary line"))
        .unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn count(s: &Sandbox, args: &[&str]) -> u64 {
    let mut all = vec!["count"];
    all.extend_from_slice(args);
    ok(s, &all).trim().parse().expect("a number")
}

/// Every row `show --json` prints, keyed by `id`.
fn rows(s: &Sandbox, args: &[&str]) -> std::collections::BTreeMap<String, Value> {
    let mut all = vec!["show", "--json", "--limit", "100000"];
    all.extend_from_slice(args);
    ok(s, &all)
        .lines()
        .map(|l| {
            let row: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            (row["id"].as_str().expect("a text id").to_owned(), row)
        })
        .collect()
}

/// Dead letters waiting, as `dlq list --json` prints them.
fn dead_letters(s: &Sandbox, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["dlq", "list", "--json"];
    all.extend_from_slice(args);
    ok(s, &all)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Rows worked out by hand from the dataset's rules: the first (no items),
/// one at a negative offset, one whose UTC day differs from its local day
/// (across the leap day), two with microseconds (truncated to
/// milliseconds), the one with an item without a SKU, and the last.
fn expected_rows() -> Vec<Value> {
    vec![
        json!({"id": "1000", "status": "shipped", "total": 5.0, "currency": "EUR",
               "placed_at": "2024-02-28T20:00:00.000Z", "country": "DE", "skus": []}),
        json!({"id": "1001", "status": "paid", "total": 42.13, "currency": "EUR",
               "placed_at": "2024-02-28T21:37:00.000Z", "country": "US", "skus": ["SKU-1-0"]}),
        json!({"id": "1003", "status": "shipped", "total": 116.39, "currency": "EUR",
               "placed_at": "2024-02-29T00:51:00.123Z", "country": "JP",
               "skus": ["SKU-3-0", "SKU-3-1", "SKU-3-2"]}),
        json!({"id": "1004", "status": "paid", "total": 153.52, "currency": "EUR",
               "placed_at": "2024-02-29T02:28:00.000Z", "country": "BR", "skus": []}),
        json!({"id": "1150", "status": "shipped", "total": 355.5, "currency": "EUR",
               "placed_at": "2024-03-09T22:30:00.123Z", "country": "JP",
               "skus": ["SKU-150-0", "no-sku"]}),
        json!({"id": "1236", "status": "paid", "total": 337.68, "currency": "EUR",
               "placed_at": "2024-03-15T17:32:00.000Z", "country": "IN", "skus": []}),
    ]
}

/// The rows hold every order once, and the hand-checked ones exactly.
fn assert_orders(rows: &std::collections::BTreeMap<String, Value>) {
    let ids: BTreeSet<String> = (0..ORDERS).map(|i| (1000 + i).to_string()).collect();
    assert_eq!(
        rows.keys().cloned().collect::<BTreeSet<_>>(),
        ids,
        "every order once"
    );
    for want in expected_rows() {
        let id = want["id"].as_str().unwrap();
        assert_eq!(rows[id], want, "row {id}");
    }
    // Every total is a double and every time UTC with milliseconds.
    for (id, row) in rows {
        assert!(row["total"].is_f64(), "{id}: {row}");
        let t = row["placed_at"].as_str().unwrap();
        assert!(t.len() == 24 && t.ends_with('Z'), "{id}: {t}");
    }
}

/// The source sent the expanded token and the page size on every request,
/// met one 429 and one error body and got past both.
fn assert_requests(api: &OrdersApi, style: &str, pages: usize) {
    let seen = api.seen();
    let want = format!("Bearer {TOKEN}");
    for r in &seen {
        assert_eq!(r.headers.get("authorization"), Some(&want), "{r:?}");
        assert!(r.uri.contains("limit=50"), "{r:?}");
        assert!(r.uri.starts_with(&format!("/{style}/orders")), "{r:?}");
        assert!(
            r.headers
                .get("user-agent")
                .is_some_and(|a| a.starts_with("tributary/")),
            "{r:?}"
        );
    }
    assert_eq!(api.answered(401), 0, "{seen:#?}");
    assert_eq!(api.answered(429), 1, "{seen:#?}");
    // The pages, the trailing empty page of the counted styles, and the
    // error body's 200.
    assert_eq!(api.answered(200), pages + 1, "{seen:#?}");
}

/// One pagination style end to end on the embedded store.
fn walk(style: &str) {
    let api = OrdersApi::start(TOKEN, true);
    let s = Sandbox::new();
    s.config(&pipeline(
        &api,
        "orders",
        style,
        &transform(TRANSFORM),
        COLUMNS,
    ));
    let shown = ok(&s, &["config", "check"]);
    assert!(
        shown.contains("Authorization = \"Bearer ${SHOP_TOKEN}\""),
        "{shown}"
    );
    let sum = summary(&s, &["run", "--json"]);
    assert_eq!(sum["fetched"], ORDERS, "{sum}");
    assert_eq!(sum["stored"], ORDERS, "{sum}");
    assert_eq!(sum["dead_lettered"], 0, "{sum}");
    assert_eq!(
        sum["source_retries"], 2,
        "the 429 and the error body: {sum}"
    );
    // 237 orders at 50 a page: 5 pages; page numbers and offsets ask once
    // more and get the empty page that ends the walk.
    let pages = match style {
        "page" | "offset" => 6,
        _ => 5,
    };
    assert_requests(&api, style, pages);
    assert_eq!(count(&s, &[]), ORDERS as u64);
    assert_orders(&rows(&s, &[]));
    assert!(dead_letters(&s, &[]).is_empty());
    // A second run reads the API again and changes nothing.
    let again = summary(&s, &["run", "--json"]);
    assert_eq!(again["fetched"], ORDERS, "{again}");
    assert_eq!(count(&s, &[]), ORDERS as u64);
}

/// A burst's ticks go on with one walk of the API: each takes the next 120
/// orders where the last stopped (the rest of a page cut at 120 comes
/// first in the next tick), and the tick after the end starts again. Once
/// the ticks fetched at least one walk's worth, every order is stored,
/// none only ever the first 120.
#[test]
fn a_burst_goes_on_through_the_pages_tick_after_tick() {
    let api = OrdersApi::start(TOKEN, false);
    let s = cursor_orders(&api);
    let sum = summary(
        &s,
        &[
            "run",
            "--json",
            "--duration",
            "1s",
            "--interval",
            "100ms",
            "--per-tick",
            "120",
        ],
    );
    let fetched = sum["fetched"].as_u64().unwrap();
    assert!(fetched >= 2 * 120, "two ticks at least: {sum}");
    assert_eq!(sum["dead_lettered"], 0, "{sum}");
    assert_eq!(count(&s, &[]), ORDERS as u64, "{sum}");
    assert_orders(&rows(&s, &[]));
    // Each page is asked for once a walk: the five pages, then again.
    let uris: Vec<String> = api
        .seen()
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| r.uri.clone())
        .collect();
    assert!(uris.len() > 5, "{uris:?}");
    let walk = &uris[..5];
    assert!(walk[1..].iter().all(|u| u.contains("cursor=")), "{uris:?}");
    for (k, uri) in uris.iter().enumerate() {
        assert_eq!(uri, &walk[k % 5], "request {k}: {uris:?}");
    }
}

/// `config check` says when a variable the source names is not set here
/// (the file is still valid: `run` may see another environment).
#[test]
fn config_check_warns_of_a_variable_this_environment_lacks() {
    let api = OrdersApi::start(TOKEN, false);
    let s = cursor_orders(&api);
    let out = s
        .cmd(&["config", "check"])
        .env_remove("SHOP_TOKEN")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.starts_with("warning: pipeline orders: ")
            && err.contains("header Authorization: environment variable SHOP_TOKEN is not set"),
        "{err}"
    );
    let out = run(&s, &["config", "check"]);
    assert!(
        out.status.success() && !stderr(&out).contains("warning"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn cursor_pages_become_typed_rows_and_the_token_is_never_printed() {
    walk("cursor");
}

#[test]
fn numbered_pages_become_typed_rows_and_the_token_is_never_printed() {
    walk("page");
}

#[test]
fn offset_pages_become_typed_rows_and_the_token_is_never_printed() {
    walk("offset");
}

#[test]
fn link_header_pages_become_typed_rows_and_the_token_is_never_printed() {
    walk("link");
}

#[test]
fn debug_logs_do_not_show_the_token_either() {
    let api = OrdersApi::start(TOKEN, true);
    let s = cursor_orders(&api);
    let out = s
        .cmd(&["run", "-vv"])
        .env("SHOP_TOKEN", TOKEN)
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    // The retries were logged: the log level reached the requests.
    assert!(printed.contains("retrying"), "{printed}");
    assert!(!printed.contains(TOKEN), "the token was printed: {printed}");
    assert_eq!(count(&s, &[]), ORDERS as u64);
}

#[test]
fn a_wrong_token_fails_the_run_without_printing_it() {
    let api = OrdersApi::start("another-token-entirely", false);
    let s = cursor_orders(&api);
    let out = run(&s, &["run"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("401"), "{}", stderr(&out));
    assert_eq!(api.answered(401), 1, "a 401 is not retried");
}

#[test]
fn cursor_pages_into_cassandra() {
    let Some(node) = crate::support::cassandra("pipelines_into_cassandra") else {
        return;
    };
    let api = OrdersApi::start(TOKEN, true);
    let s = Sandbox::new();
    let ks = unique("orders");
    let sink = format!("sink = \"cassandra://{node}/{ks}.orders\"");
    s.config(&pipeline(
        &api,
        "orders",
        "cursor",
        &format!("{sink}\n{}", transform(TRANSFORM)),
        COLUMNS,
    ));
    let sum = summary(&s, &["run", "--json"]);
    assert_eq!(sum["stored"], ORDERS, "{sum}");
    assert_eq!(sum["source_retries"], 2, "{sum}");
    assert_eq!(count(&s, &[]), ORDERS as u64);
    assert_orders(&rows(&s, &[]));
}

/// The first version of the transform refuses cancelled orders and keeps
/// the SKUs as they are (a missing one is a null, which a `list<text>`
/// cannot hold).
const STRICT: &str = r#"
if .status == "cancelled" { abort "cancelled orders are not loaded" }
. = {
  "id": to_string!(.order_id),
  "status": .status,
  "total": to_float!(.amount.value),
  "currency": .amount.currency,
  "placed_at": .created_at,
  "country": .shipping.country,
  "skus": map_values(array!(.items)) -> |item| { item.sku },
}
"#;

#[test]
fn rejected_and_ill_fitting_records_are_dead_letters_until_a_fixed_config_replays_them() {
    let api = OrdersApi::start(TOKEN, false);
    let s = Sandbox::new();
    s.config(&pipeline(
        &api,
        "orders",
        "cursor",
        &transform(STRICT),
        COLUMNS,
    ));
    let cancelled: Vec<usize> = (0..ORDERS).filter(|i| json_api::is_cancelled(*i)).collect();
    assert_eq!(cancelled.len(), 6);
    let rejected = cancelled.len() as u64 + 1;
    let sum = summary(&s, &["run", "--json"]);
    assert_eq!(sum["fetched"], ORDERS, "{sum}");
    assert_eq!(sum["dead_lettered"], rejected, "{sum}");
    assert_eq!(sum["stored"], ORDERS as u64 - rejected, "{sum}");
    assert_eq!(count(&s, &[]), ORDERS as u64 - rejected);

    let letters = dead_letters(&s, &[]);
    assert_eq!(letters.len() as u64, rejected, "{letters:#?}");
    let order_of = |l: &Value| -> usize {
        let record: Value = serde_json::from_str(l["payload"].as_str().unwrap()).unwrap();
        record["order_id"].as_u64().unwrap() as usize - 1000
    };
    for l in &letters {
        assert_eq!(l["stage"], "transform", "{l}");
        let reason = l["reason"].as_str().unwrap();
        let i = order_of(l);
        if i == NULL_SKU {
            assert!(reason.contains("column skus"), "{reason}");
            assert!(reason.contains("list<text>"), "{reason}");
            assert!(reason.contains("null"), "{reason}");
        } else {
            assert!(json_api::is_cancelled(i), "{l}");
            assert!(
                reason.contains("cancelled orders are not loaded"),
                "{reason}"
            );
        }
    }
    let stored = rows(&s, &[]);
    assert!(!stored.contains_key("1007") && !stored.contains_key("1150"));

    // The fix: every order loaded, a missing SKU written as `no-sku`.
    s.config(&pipeline(
        &api,
        "orders",
        "cursor",
        &transform(TRANSFORM),
        COLUMNS,
    ));
    let out = ok(&s, &["dlq", "replay"]);
    assert!(out.contains("replayed 7 dead letters"), "{out}");
    assert!(out.contains("0 still failing"), "{out}");
    assert_eq!(count(&s, &[]), ORDERS as u64);
    assert!(dead_letters(&s, &[]).is_empty());
    assert_orders(&rows(&s, &[]));
}

#[test]
fn a_transform_mistake_names_its_line_in_the_config_file() {
    let s = Sandbox::new();
    // The mistake is on line 6 of the file.
    let config = r#"[[pipelines]]
name = "orders"
source = { file = "orders.ndjson" }
transform = '''
.id = to_string!(.order_id)
.total = to_flaot(.amount)
'''
table = { key = ["id"], columns = { id = "text", total = "double" } }
"#;
    std::fs::write(s.dir.path().join("orders.toml"), config).unwrap();
    std::fs::write(s.dir.path().join("orders.ndjson"), "{\"order_id\": 1}\n").unwrap();
    for command in [&["run"][..], &["config", "check"], &["preview"]] {
        let mut args = vec!["--config", "orders.toml"];
        args.extend_from_slice(command);
        let out = run(&s, &args);
        assert_eq!(out.status.code(), Some(2), "{command:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("orders.toml:6:"), "{command:?}: {err}");
        assert!(err.contains("undefined function"), "{command:?}: {err}");
    }
    assert!(!s.data_dir().exists(), "a config error writes nothing");
}

#[test]
fn an_unknown_column_type_is_a_config_error_naming_it() {
    let s = Sandbox::new();
    s.config(
        r#"[[pipelines]]
name = "orders"
source = { file = "orders.ndjson" }
table = { key = ["id"], columns = { id = "text", total = "float64" } }
"#,
    );
    let out = run(&s, &["run"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("\"float64\""), "{err}");
    assert!(err.contains("column total"), "{err}");
}

#[test]
fn a_cassandra_table_without_declared_columns_is_read_from_the_node() {
    let Some(node) = crate::support::cassandra("pipelines_existing_cassandra_table") else {
        return;
    };
    let api = OrdersApi::start(TOKEN, false);
    let ks = unique("existing");
    let sink = |table: &str| format!("sink = \"cassandra://{node}/{ks}.{table}\"");
    let cassandra_count = |s: &Sandbox| count(s, &[]);

    // A pipeline that declares the columns creates the table.
    let creator = Sandbox::new();
    creator.config(&pipeline(
        &api,
        "orders",
        "cursor",
        &format!("{}\n{}", sink("orders"), transform(TRANSFORM)),
        COLUMNS,
    ));
    assert_eq!(summary(&creator, &["run", "--json"])["stored"], ORDERS);

    // Another one, with its own log and no `columns`, reads the table's
    // columns from the node. Its ids have a prefix, so its rows are new.
    let reader = Sandbox::new();
    let prefixed = TRANSFORM.replace("to_string!(.order_id)", "\"b-\" + to_string!(.order_id)");
    assert_ne!(prefixed, TRANSFORM);
    // First at a table that is not there: an error naming it.
    reader.config(&pipeline(
        &api,
        "orders",
        "cursor",
        &format!("{}\n{}", sink("missing"), transform(&prefixed)),
        "",
    ));
    let out = run(&reader, &["run"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("table {ks}.missing does not exist")),
        "{}",
        stderr(&out)
    );
    reader.config(&pipeline(
        &api,
        "orders",
        "cursor",
        &format!("{}\n{}", sink("orders"), transform(&prefixed)),
        "",
    ));
    let sum = summary(&reader, &["run", "--json"]);
    assert_eq!(sum["stored"], ORDERS, "{sum}");
    assert_eq!(sum["dead_lettered"], 0, "{sum}");
    assert_eq!(cassandra_count(&reader), 2 * ORDERS as u64);
    let both = rows(&reader, &[]);
    for want in expected_rows() {
        let id = want["id"].as_str().unwrap();
        assert_eq!(both[id], want, "row {id}");
        let mut theirs = want.clone();
        theirs["id"] = json!(format!("b-{id}"));
        assert_eq!(both[&format!("b-{id}")], theirs, "row b-{id}");
    }

    // A transform that always sets a field the table lacks: an error at
    // start naming the field (not a dead letter for every record), exit 2,
    // nothing fetched or stored.
    let extra = Sandbox::new();
    let with_coupon = TRANSFORM.replace(
        "\"status\": .status,",
        "\"status\": .status, \"coupon\": \"SPRING\",",
    );
    assert_ne!(with_coupon, TRANSFORM);
    extra.config(&pipeline(
        &api,
        "orders",
        "cursor",
        &format!("{}\n{}", sink("orders"), transform(&with_coupon)),
        "",
    ));
    let out = extra.run(&["run", "--json"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("field coupon") && err.contains("no column"),
        "{err}"
    );
    assert!(dead_letters(&extra, &["--limit", "1000"]).is_empty());
    assert_eq!(cassandra_count(&extra), 2 * ORDERS as u64);
}

/// The scheduled pipeline of the `serve` test: 40 events in a file.
const EVENTS: usize = 40;

#[test]
fn two_pipelines_in_one_serve_each_fill_their_own_table() {
    use crate::dashboard::{http, serve};

    let api = OrdersApi::start(TOKEN, true);
    let s = Sandbox::new();
    let events: String = (0..EVENTS)
        .map(|i| {
            format!(
                "{{\"id\": \"ev-{i}\", \"kind\": \"{}\", \"at\": {}}}\n",
                ["view", "click"][i % 2],
                1_700_000_000_000u64 + i as u64 * 1000
            )
        })
        .collect();
    std::fs::write(s.dir.path().join("events.ndjson"), events).unwrap();
    s.config(&format!(
        r#"{orders}
[[pipelines]]
name = "events"
source = {{ file = "events.ndjson" }}
table = {{ key = ["id"], columns = {{ id = "text", kind = "text", at = "timestamp" }} }}

[[jobs]]
name = "events_every_second"
pipeline = "events"
schedule = "@every 1s"

[[jobs]]
name = "orders_on_demand"
pipeline = "orders"
schedule = "0 0 1 1 *"
"#,
        orders = pipeline(&api, "orders", "cursor", &transform(TRANSFORM), COLUMNS)
    ));
    let mut serve = serve(&s, &[], &[("SHOP_TOKEN", TOKEN)]);
    let out = ok(&s, &["jobs", "trigger", "orders_on_demand"]);
    assert!(out.contains("queued run #1"), "{out}");

    let successes = |job: &str| -> usize {
        let runs: Value =
            serde_json::from_str(&ok(&s, &["jobs", "runs", job, "--json", "--limit", "100"]))
                .unwrap();
        runs.as_array()
            .unwrap()
            .iter()
            .filter(|r| r["state"] == "success")
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (orders, events) = (
            successes("orders_on_demand"),
            successes("events_every_second"),
        );
        if orders == 1
            && events >= 2
            && count(&s, &["--pipeline", "orders"]) == ORDERS as u64
            && count(&s, &["--pipeline", "events"]) == EVENTS as u64
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "orders runs {orders}, events runs {events}: {}",
            serve.output.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Each table holds exactly its own rows.
    assert_orders(&rows(&s, &["--pipeline", "orders"]));
    let ev = rows(&s, &["--pipeline", "events"]);
    let want: BTreeSet<String> = (0..EVENTS).map(|i| format!("ev-{i}")).collect();
    assert_eq!(ev.keys().cloned().collect::<BTreeSet<_>>(), want);
    assert_eq!(
        ev["ev-3"],
        json!({"id": "ev-3", "kind": "click", "at": "2023-11-14T22:13:23.000Z"})
    );
    assert!(ev.values().all(|r| r.get("total").is_none()));

    // The counters carry each pipeline's name.
    let (status, text) = http(serve.port, "GET", "/metrics", &[], "");
    assert_eq!(status, 200, "{text}");
    let m = crate::dashboard::parse_prometheus(&text);
    assert_eq!(
        m.get(r#"tributary_source_records_total{pipeline="orders"}"#),
        Some(&(ORDERS as f64)),
        "{text}"
    );
    assert_eq!(
        m.get(r#"tributary_sink_written_rows_total{pipeline="orders"}"#),
        Some(&(ORDERS as f64)),
        "{text}"
    );
    // Every run of the events job reads the whole file again.
    let fetched = m[r#"tributary_source_records_total{pipeline="events"}"#];
    assert!(
        fetched >= 2.0 * EVENTS as f64 && fetched % EVENTS as f64 == 0.0,
        "{text}"
    );
    assert!(
        m.contains_key(r#"tributary_processor_read_records_total{pipeline="events"}"#),
        "{text}"
    );
    assert!(
        m[r#"tributary_scheduler_runs_total{job="events_every_second",state="success"}"#] >= 2.0,
        "{text}"
    );

    crate::support::terminate(&serve.child.0);
    assert_eq!(serve.child.0.wait().unwrap().code(), Some(0));
    let printed = serve.all_output();
    assert!(
        !printed.contains(TOKEN),
        "serve printed the token: {printed}"
    );
}

#[test]
fn preview_shows_rows_and_would_be_dead_letters_and_writes_nothing() {
    let api = OrdersApi::start(TOKEN, true);
    let s = Sandbox::new();
    s.config(&pipeline(
        &api,
        "orders",
        "cursor",
        &transform(STRICT),
        COLUMNS,
    ));
    let out = ok(&s, &["preview", "--json", "--limit", "160"]);
    let preview: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(preview["pipeline"], "orders");
    assert_eq!(
        preview["columns"],
        json!([
            "id",
            "status",
            "total",
            "currency",
            "placed_at",
            "country",
            "skus"
        ])
    );
    // Of the first 160 orders, four are cancelled and one has an item
    // without a SKU.
    let rows = preview["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 155, "{preview}");
    for want in &expected_rows()[..4] {
        assert!(rows.contains(want), "{want} not in {preview}");
    }
    let letters = preview["dead_letters"].as_array().unwrap();
    let mut rejected: Vec<u64> = letters
        .iter()
        .map(|l| {
            let record: Value = serde_json::from_str(l["record"].as_str().unwrap()).unwrap();
            record["order_id"].as_u64().unwrap()
        })
        .collect();
    rejected.sort();
    assert_eq!(rejected, [1007, 1047, 1087, 1127, 1150], "{preview}");
    for l in letters {
        let reason = l["reason"].as_str().unwrap();
        assert!(
            reason.contains("cancelled orders are not loaded") || reason.contains("column skus"),
            "{l}"
        );
        assert!(
            l["position"].as_str().unwrap().contains("/cursor/orders"),
            "{l}"
        );
    }
    // The text form says the same.
    let text = ok(&s, &["preview", "--limit", "160"]);
    assert!(text.contains("pipeline orders: 155 rows"), "{text}");
    assert!(text.contains("5 would be dead letters"), "{text}");
    // The API was asked (with the token), and nothing was written.
    assert!(api.answered(200) >= 4, "{:#?}", api.seen());
    assert!(!s.data_dir().exists(), "preview wrote {:?}", s.data_dir());
    let out = run(&s, &["count"]);
    assert!(stderr(&out).contains("no data in"), "{}", stderr(&out));
}
