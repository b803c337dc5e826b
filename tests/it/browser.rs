//! The dashboard in a real browser: Debian's Chromium driven by
//! playwright-core (`tests/browser/dashboard.mjs`) against a running
//! `serve`. The page must show the row count rising live and a click on
//! "Trigger" must make a new run appear. Needs TRIBUTARY_TEST_BROWSER=1 and
//! `npm ci --prefix tests/browser` (`.ci/run` installs both); skips loudly
//! otherwise.

use std::path::PathBuf;
use std::process::Command;

use crate::dashboard::{TOKEN, serve};
use crate::support::{Sandbox, terminate};

/// Bursts every 2 s, so rows keep arriving while the page is open.
const CONFIG: &str = r#"
[[jobs]]
name = "random_users"
schedule = "@every 2s"
burst = { duration = "1500ms", interval = "250ms", records = 5 }
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

fn drive(port: u16, shot: &PathBuf, token: Option<&str>) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/dashboard.mjs");
    let url = format!("http://127.0.0.1:{port}/");
    let mut cmd = Command::new("node");
    cmd.args([script, "--url", &url, "--screenshot"])
        .arg(shot)
        .args(["--job", "random_users"]);
    if let Some(t) = token {
        cmd.args(["--token", t]);
    }
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
    let printed = drive(serve.port, &shot, None);
    // The script reports what it saw as one JSON line.
    let seen: serde_json::Value = printed
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON report: {printed}"));
    assert_eq!(seen["ok"], true, "{seen}");
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

#[test]
fn with_a_token_the_page_asks_for_it_first() {
    if !browser_enabled("browser::with_a_token_the_page_asks_for_it_first") {
        return;
    }
    let s = Sandbox::new();
    std::fs::write(s.dir.path().join("tributary.toml"), CONFIG).unwrap();
    let mut serve = serve(&s, &[], &[("TRIBUTARY_WEB_TOKEN", TOKEN)]);
    let shot = screenshot("dashboard-login.png");
    drive(serve.port, &shot, Some(TOKEN));
    terminate(&serve.child.0);
    assert_eq!(serve.child.0.wait().unwrap().code(), Some(0));
    assert!(!serve.all_output().contains(TOKEN));
}
