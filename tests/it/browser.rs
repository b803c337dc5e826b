//! The dashboard in a real browser: Debian's Chromium driven by
//! playwright-core (`tests/browser/dashboard.mjs`) against a running
//! `serve`. The page must show the row count rising live and a click on
//! "Trigger" must make a new run appear; with two pipelines, the selector
//! must switch every view to the other one, show its table's schema and its
//! transform as text, and its rows once its job ran. A key search on the
//! topic must list only that key's messages, a seek to offset 0 must start
//! there and page on, a row lookup must show the one row, and the store's
//! row count must read the same everywhere; with the browser's clock 90 s
//! ahead of the server's, the next run must still read "in …". Every view is laid out at
//! 420 px and 1400 px wide and must fit (nothing sticks out sideways but
//! inside a box that scrolls on purpose; every button within reach). Needs
//! TRIBUTARY_TEST_BROWSER=1 and `npm ci --prefix tests/browser` (`.ci/run`
//! installs both); skips loudly otherwise.
//!
//! Screenshots go to TRIBUTARY_SCREENSHOT_DIR (default: the target's temp
//! dir); the live page at both widths, `dashboard-420.png` and
//! `dashboard-1400.png`, to TRIBUTARY_DOCS_SCREENSHOT_DIR when set (the
//! documentation's copies: `TRIBUTARY_DOCS_SCREENSHOT_DIR=docs`), else beside
//! the others.

use std::path::PathBuf;
use std::process::Command;

use crate::dashboard::{TOKEN, serve};
use crate::support::{Sandbox, terminate};

/// The built-in pipeline alone. Bursts every 2 s, so rows keep arriving
/// while the page is open.
const CONFIG: &str = r#"
[[jobs]]
name = "random_users"
schedule = "@every 2s"
burst = { duration = "1500ms", interval = "250ms", records = 5 }
"#;

/// Two pipelines: the users, bursting as above, and orders read from a
/// file into a typed table when their job is triggered (the third order's
/// total is not a number: a dead letter). The transform and the orders
/// carry markup that must stay text.
const TWO_PIPELINES: &str = r#"
[[pipelines]]
name = "users"
source = { url = "gen:?seed=browser" }

[[pipelines]]
name = "orders"
source = { file = "orders.ndjson" }
transform = '''
# <img src=x onerror="window.pwned=1" data-pwned> is text
.id = to_string!(.order_id)
del(.order_id)
'''
table = { key = ["shop"], clustering = ["id"], columns = { shop = "text", id = "text", total = "double", tags = "list<text>" } }

[[jobs]]
name = "random_users"
pipeline = "users"
schedule = "@every 2s"
burst = { duration = "1500ms", interval = "250ms", records = 5 }

[[jobs]]
name = "orders_import"
pipeline = "orders"
schedule = "0 0 1 1 *"
"#;

const ORDERS: &str = r#"{"order_id": 1, "shop": "<b data-pwned>north</b>", "total": 2.5, "tags": ["a", "b"]}
{"order_id": 2, "shop": "south", "total": 4, "tags": []}
{"order_id": 3, "shop": "west", "total": "a lot, with a reason long enough to wrap on a phone's screen", "tags": []}
"#;

fn browser_enabled(test: &str) -> bool {
    if std::env::var("TRIBUTARY_TEST_BROWSER").is_ok_and(|v| v == "1") {
        return true;
    }
    crate::support::missing(
        test,
        "set TRIBUTARY_TEST_BROWSER=1 with chromium and `npm ci --prefix tests/browser` installed",
    );
    false
}

/// Where screenshots go: TRIBUTARY_SCREENSHOT_DIR or the target's temp dir.
fn screenshot(name: &str) -> PathBuf {
    let dir = std::env::var_os("TRIBUTARY_SCREENSHOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Where the live page at both widths goes: TRIBUTARY_DOCS_SCREENSHOT_DIR, or
/// beside the other screenshots.
fn widths_dir() -> PathBuf {
    let dir = std::env::var_os("TRIBUTARY_DOCS_SCREENSHOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| screenshot("x").with_file_name(""));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn drive(port: u16, shot: &PathBuf, token: Option<&str>, extra: &[&str]) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/dashboard.mjs");
    let url = format!("http://127.0.0.1:{port}/");
    let mut cmd = Command::new("node");
    cmd.args([script, "--url", &url, "--screenshot"])
        .arg(shot)
        .args(["--job", "random_users"]);
    if let Some(t) = token {
        cmd.args(["--token", t]);
    }
    cmd.args(extra);
    let out = cmd.output().expect("node runs");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "browser test failed:\n{printed}");
    printed
}

#[test]
fn the_page_shows_rows_rising_and_a_click_triggers_a_run() {
    if !browser_enabled("browser::the_page_shows_rows_rising_and_a_click_triggers_a_run") {
        return;
    }
    let s = Sandbox::new();
    std::fs::write(s.dir.path().join("tributary.toml"), CONFIG).unwrap();
    let mut serve = serve(&s, &[], &[]);
    let shot = screenshot("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let widths = widths_dir();
    let at = |w: u32| widths.join(format!("dashboard-{w}.png"));
    for w in [420, 1400] {
        let _ = std::fs::remove_file(at(w));
    }
    let seen = report(&drive(
        serve.port,
        &shot,
        None,
        &["--widths-dir", widths.to_str().unwrap()],
    ));
    assert_eq!(seen["ok"], true, "{seen}");
    // Laid out at both widths without sticking out (the script fails if not).
    assert_eq!(seen["widths_checked"], serde_json::json!([420, 1400]));
    for w in [420, 1400] {
        let png = std::fs::read(at(w)).expect("a screenshot at each width");
        assert!(png.starts_with(b"\x89PNG"), "{w}");
        // The PNG's width, from its header, is the window's.
        let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
        assert_eq!(width, w);
    }
    // The job's history lists its runs, the new one too.
    assert!(seen["history_runs"].as_u64() >= Some(2), "{seen}");
    // A run triggered while the job was paused stayed queued, showed its
    // lines and was cancelled from the history.
    assert!(
        seen["cancelled_run"].as_i64() > seen["new_run_id"].as_i64(),
        "{seen}"
    );
    let lines = seen["run_lines"].as_array().unwrap();
    assert!(
        lines.iter().any(|l| l.as_str().unwrap().contains("queued")),
        "{seen}"
    );
    // The key search found the key's messages; the lookup its row.
    assert!(seen["found_with_key"].as_u64() >= Some(1), "{seen}");
    assert_eq!(
        seen["looked_up_id"].as_str().map(str::len),
        Some(36),
        "{seen}"
    );
    assert!(
        seen["row_count"].as_str().is_some_and(|c| c != "–"),
        "{seen}"
    );
    // With the browser's clock 90 s ahead of the server's, the next run is
    // still to come and the runs that ended are past.
    let next = seen["skewed_next_run"].as_str().unwrap();
    assert!(next.starts_with("in ") || next == "due now", "{seen}");
    let runs = seen["skewed_runs"].as_array().unwrap();
    assert!(!runs.is_empty(), "{seen}");
    for run in runs {
        let t = run.as_str().unwrap();
        assert!(t.ends_with(" ago") || t == "just now", "{seen}");
    }
    // One pipeline: nothing to pick.
    assert_eq!(seen["selector_shown"], false, "{seen}");
    assert_eq!(seen["pipelines"], serde_json::json!(["randomuser"]));
    assert!(
        seen["last_store_rows"].as_u64() > seen["first_store_rows"].as_u64(),
        "{seen}"
    );
    assert!(seen["rows_count"].as_u64() > Some(0), "{seen}");
    assert!(
        seen["new_run_id"].as_i64() > seen["old_run_id"].as_i64(),
        "{seen}"
    );
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000);
    terminate(&serve.child.0);
    assert_eq!(serve.child.0.wait().unwrap().code(), Some(0));
}

/// The script reports what it saw as one JSON line.
fn report(printed: &str) -> serde_json::Value {
    printed
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON report: {printed}"))
}

#[test]
fn the_selector_shows_each_pipeline_its_schema_and_transform_as_text() {
    if !browser_enabled(
        "browser::the_selector_shows_each_pipeline_its_schema_and_transform_as_text",
    ) {
        return;
    }
    let s = Sandbox::new();
    std::fs::write(s.dir.path().join("tributary.toml"), TWO_PIPELINES).unwrap();
    std::fs::write(s.dir.path().join("orders.ndjson"), ORDERS).unwrap();
    let mut serve = serve(&s, &[], &[]);
    let shot = screenshot("dashboard-pipelines.png");
    let _ = std::fs::remove_file(&shot);
    let seen = report(&drive(
        serve.port,
        &shot,
        None,
        &["--table-pipeline", "orders", "--table-job", "orders_import"],
    ));
    assert_eq!(seen["ok"], true, "{seen}");
    assert_eq!(seen["selector_shown"], true, "{seen}");
    assert_eq!(seen["pipelines"], serde_json::json!(["users", "orders"]));
    assert_eq!(seen["shown_pipeline"], "users", "the first is shown first");
    // The users' rows rose and their job ran, as with one pipeline.
    assert!(
        seen["last_store_rows"].as_u64() > seen["first_store_rows"].as_u64(),
        "{seen}"
    );
    assert_eq!(seen["job"], "random_users");
    // The orders: their table and transform as written, as text.
    assert_eq!(
        seen["schema"],
        serde_json::json!([
            ["shop", "text", "partition"],
            ["id", "text", "clustering 1"],
            ["total", "double", ""],
            ["tags", "list<text>", ""],
        ]),
        "{seen}"
    );
    assert_eq!(
        seen["transform"],
        "# <img src=x onerror=\"window.pwned=1\" data-pwned> is text\n.id = to_string!(.order_id)\ndel(.order_id)\n"
    );
    assert_eq!(seen["jobs"], serde_json::json!(["orders_import"]), "{seen}");
    assert_eq!(seen["run"]["job"], "orders_import", "{seen}");
    assert_eq!(
        seen["row_headers"],
        serde_json::json!(["shop", "id", "total", "tags"])
    );
    assert_eq!(seen["table_rows_count"], 2, "{seen}");
    assert_eq!(seen["table_dead_letters"], 1, "{seen}");
    // Replayed with "overwrite" ticked: asked for, and the letter the table
    // still refuses stays waiting.
    let letter = seen["discarded"].clone();
    assert_eq!(
        seen["replay_request"],
        serde_json::json!({"ids": [letter], "overwrite": true}),
        "{seen}"
    );
    assert_eq!(
        seen["replay_result"], "replayed 0, still failing 1",
        "{seen}"
    );
    assert_eq!(seen["replay_still_listed"], 1, "{seen}");
    // Discarded from the page: gone from the waiting list, counted.
    assert!(seen["discarded"].as_i64() > Some(0), "{seen}");
    // The rows of the first row's shop, and only those.
    let shop = seen["lookup_key"].as_str().unwrap();
    let found = seen["lookup_rows"].as_array().unwrap();
    assert_eq!(found.len(), 1, "{seen}");
    assert_eq!(found[0][0], shop, "{seen}");
    assert_eq!(seen["table_store_rows"], 2, "{seen}");
    let rows = seen["rows"].as_array().unwrap();
    assert!(
        rows.contains(&serde_json::json!([
            "<b data-pwned>north</b>",
            "1",
            "2.5",
            "[\"a\",\"b\"]"
        ])),
        "{seen}"
    );
    for path in [&shot, &shot.with_file_name("dashboard-pipelines-table.png")] {
        let png = std::fs::read(path).expect("a screenshot");
        assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000);
    }
    terminate(&serve.child.0);
    assert_eq!(serve.child.0.wait().unwrap().code(), Some(0));
}

#[test]
fn with_a_token_the_page_asks_for_it_first() {
    if !browser_enabled("browser::with_a_token_the_page_asks_for_it_first") {
        return;
    }
    let s = Sandbox::new();
    std::fs::write(s.dir.path().join("tributary.toml"), CONFIG).unwrap();
    let mut serve = serve(&s, &[], &[("TRIBUTARY_WEB_TOKEN", TOKEN)]);
    let shot = screenshot("dashboard-login.png");
    drive(serve.port, &shot, Some(TOKEN), &[]);
    terminate(&serve.child.0);
    assert_eq!(serve.child.0.wait().unwrap().code(), Some(0));
    assert!(!serve.all_output().contains(TOKEN));
}
