//! `jobs backfill` confirmed when large, `jobs cancel` of queued runs that
//! then never start (not even in a fresh `serve`), `jobs runs` paged and
//! one run with its lines.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::ok;
use crate::support::{Reap, Sandbox, stderr, terminate};

/// A job on the built-in generator, 5 users a run.
const CONFIG: &str = r#"
[[jobs]]
name = "users"
schedule = "@every 1s"
records = 5
"#;

fn runs(s: &Sandbox, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["jobs", "runs", "users", "--json", "--limit", "1000"];
    args.extend_from_slice(extra);
    serde_json::from_str(&ok(s, &args)).unwrap()
}

fn backfill(s: &Sandbox, to: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "jobs",
        "backfill",
        "users",
        "--from",
        "2025-01-01T00:00:00Z",
        "--to",
        to,
    ];
    args.extend_from_slice(extra);
    s.run(&args)
}

#[test]
fn a_large_backfill_without_a_terminal_needs_yes() {
    let s = Sandbox::new();
    s.config(CONFIG);
    // 150 slots of 1 s; stdin is not a terminal.
    let out = backfill(&s, "2025-01-01T00:02:30Z", &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--yes"), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("150 run(s) to queue"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(runs(&s, &[]).is_empty(), "nothing queued");
    let out = backfill(&s, "2025-01-01T00:02:30Z", &["--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("queued 150 run(s)"));
    assert_eq!(runs(&s, &[]).len(), 150);
}

#[test]
fn a_backfill_into_the_future_queues_nothing() {
    let s = Sandbox::new();
    s.config(CONFIG);
    let out = s.run(&[
        "jobs",
        "backfill",
        "users",
        "--from",
        "2025-01-01T00:00:00Z",
        "--to",
        "2999-01-01T00:00:05Z",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("in the future"), "{}", stderr(&out));
    assert!(runs(&s, &[]).is_empty(), "nothing queued");
}

#[test]
fn runs_come_in_pages() {
    let s = Sandbox::new();
    s.config(CONFIG);
    assert!(backfill(&s, "2025-01-01T00:00:05Z", &[]).status.success());
    let all: Vec<i64> = runs(&s, &[])
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(all.len(), 5);
    let text = ok(&s, &["jobs", "runs", "users", "--limit", "2"]);
    let next = format!("older runs: tributary jobs runs users --before {}", all[1]);
    assert!(text.contains(&next), "{text}");
    let older = runs(&s, &["--before", &all[1].to_string()]);
    let ids: Vec<i64> = older.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, all[2..]);
    let text = ok(
        &s,
        &["jobs", "runs", "users", "--before", &all[3].to_string()],
    );
    assert!(!text.contains("older runs"), "{text}");
}

/// Queued runs cancelled (one, then the rest) show as cancelled; a fresh
/// `serve` runs a trigger queued after them and never them.
#[test]
fn cancelled_runs_never_start() {
    let s = Sandbox::new();
    s.config(&CONFIG.replace("@every 1s", "0 0 1 1 *"));
    // Three yearly slots.
    let out = s.run(&[
        "jobs",
        "backfill",
        "users",
        "--from",
        "2021-06-01T00:00:00Z",
        "--to",
        "2024-06-01T00:00:00Z",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let ids: Vec<i64> = runs(&s, &[])
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 3);
    let out = ok(
        &s,
        &["jobs", "cancel", "users", "--run", &ids[2].to_string()],
    );
    assert!(out.contains("cancelled 1 queued run(s)"), "{out}");
    let out = s.run(&["jobs", "cancel", "users", "--run", "987654"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no run #987654 of users"),
        "{}",
        stderr(&out)
    );
    let out = s.run(&["jobs", "cancel", "users"]);
    assert_eq!(out.status.code(), Some(2), "--run or --queued is needed");
    let out = ok(&s, &["jobs", "cancel", "users", "--queued"]);
    assert!(out.contains("cancelled 2 queued run(s)"), "{out}");
    let out = s.run(&["jobs", "cancel", "users", "--run", &ids[0].to_string()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is cancelled, not queued"),
        "{}",
        stderr(&out)
    );

    // A trigger after them: serve takes the oldest queued run first, so
    // once the trigger's run is done, a cancelled run would have run first.
    let trigger = ok(&s, &["jobs", "trigger", "users"]);
    assert!(trigger.contains("queued run #"), "{trigger}");
    let mut serve = Reap(
        s.cmd(&["serve"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let all = runs(&s, &[]);
        if all[0]["state"] == "success" {
            break;
        }
        assert!(Instant::now() < deadline, "{all:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    terminate(&serve.0);
    assert_eq!(serve.0.wait().unwrap().code(), Some(0));
    let all = runs(&s, &[]);
    assert_eq!(all.len(), 4, "{all:?}");
    for r in &all[1..] {
        assert_eq!(r["state"], "cancelled", "{r}");
        assert_eq!(r["started_ms"], Value::Null, "{r}");
    }

    // The trigger's run tells what it did; a cancelled one when it was.
    let run = all[0]["id"].as_i64().unwrap().to_string();
    let text = ok(&s, &["jobs", "runs", "users", "--run", &run]);
    for line in [
        "users: success",
        "queued by a trigger",
        "attempt 1 started",
        "fetched 5, appended 5",
        "ended: success",
    ] {
        assert!(text.contains(line), "{line:?} in {text}");
    }
    let one: Value = serde_json::from_str(&ok(
        &s,
        &[
            "jobs",
            "runs",
            "users",
            "--run",
            &ids[2].to_string(),
            "--json",
        ],
    ))
    .unwrap();
    assert_eq!(one["state"], "cancelled");
    let texts: Vec<&str> = one["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        ["queued", "cancelled before it started (jobs cancel)"]
    );
    let out = s.run(&["jobs", "runs", "users", "--run", "987654"]);
    assert_eq!(out.status.code(), Some(1));
}
