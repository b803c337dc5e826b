//! `tributary serve` and the `jobs` commands, from the outside: a trigger
//! from another process starts a run, its users reach the store, the run is
//! recorded; pause persists; the Airflow export names the burst.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{Sandbox, rows_now, stderr};

const CONFIG: &str = r#"
[[jobs]]
name = "random_users"
schedule = "0 0 1 1 *"
burst = { duration = "1s", interval = "100ms", records = 2 }
retries = 2
retry_delay = "1s"
"#;

fn json(s: &Sandbox, args: &[&str]) -> serde_json::Value {
    let out = s.run(args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_trigger_reaches_the_store_through_serve_and_is_recorded() {
    let s = Sandbox::new();
    std::fs::write(s.dir.path().join("tributary.toml"), CONFIG).unwrap();
    let mut serve = s
        .cmd(&["serve"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = s.run(&["jobs", "trigger", "random_users"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("queued run #1"));
    // The run logs 10 ticks x 2 users; the processor in the same process
    // stores them.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let runs = json(&s, &["jobs", "runs", "random_users", "--json"]);
        if runs[0]["state"] == "success" && rows_now(&s.store_path()) == 20 {
            assert_eq!(runs[0]["fetched"], 20, "{runs}");
            assert_eq!(runs[0]["logged"], 20, "{runs}");
            assert_eq!(runs[0]["attempts"], 1, "{runs}");
            break;
        }
        assert!(Instant::now() < deadline, "{runs}");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::process::Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(serve.wait().unwrap().code(), Some(0));
}

#[test]
fn pause_persists_and_unknown_jobs_are_usage_errors() {
    let s = Sandbox::new();
    std::fs::write(s.dir.path().join("tributary.toml"), CONFIG).unwrap();
    assert!(s.run(&["jobs", "pause", "random_users"]).status.success());
    let list = json(&s, &["jobs", "list", "--json"]);
    assert_eq!(list[0]["paused"], true, "{list}");
    assert_eq!(list[0]["schedule"], "0 0 1 1 *");
    assert!(
        list[0]["next_run"]
            .as_str()
            .unwrap()
            .contains("-01-01T00:00:00")
    );
    assert!(s.run(&["jobs", "unpause", "random_users"]).status.success());
    assert_eq!(json(&s, &["jobs", "list", "--json"])[0]["paused"], false);
    let out = s.run(&["jobs", "trigger", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("random_users"), "{}", stderr(&out));
}

#[test]
fn airflow_export_runs_the_jobs_burst() {
    let s = Sandbox::new();
    std::fs::write(s.dir.path().join("tributary.toml"), CONFIG).unwrap();
    let out = s.run(&["export", "airflow-dag"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let dag = String::from_utf8_lossy(&out.stdout);
    assert!(dag.contains("dag_id=\"tributary_random_users\""), "{dag}");
    assert!(
        dag.contains("tributary ingest --duration 1s --interval 100ms --per-tick 2"),
        "{dag}"
    );
    assert!(dag.contains("\"retries\": 2"), "{dag}");
}
