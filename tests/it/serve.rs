//! `tributary serve` and the `jobs` commands, from the outside: a trigger
//! from another process starts a run, its users reach the store, the run is
//! recorded; pause persists; the Airflow export names the burst.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{Reap, Sandbox, rows_now, stderr};

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
    let mut serve = Reap(
        s.cmd(&["serve"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
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
    crate::support::terminate(&serve.0);
    assert_eq!(serve.0.wait().unwrap().code(), Some(0));
}

/// With several pipelines, a store that cannot be opened is named by its
/// pipeline: `serve` said only "cannot open the store: …".
#[test]
fn serve_names_the_pipeline_whose_store_cannot_be_opened() {
    let s = Sandbox::new();
    std::fs::write(s.dir.path().join("a.ndjson"), "{\"id\":\"a\",\"n\":1}\n").unwrap();
    // Another program's table of that name, without a key.
    let theirs = s.dir.path().join("theirs.db");
    rusqlite::Connection::open(&theirs)
        .unwrap()
        .execute_batch("CREATE TABLE b (x TEXT)")
        .unwrap();
    s.config(
        r#"
[[pipelines]]
name = "a"
source = { file = "a.ndjson" }
table = { key = ["id"], columns = { id = "text", n = "int" } }

[[pipelines]]
name = "b"
source = { file = "a.ndjson" }
sink = "sqlite:theirs.db"
table = { key = ["id"], columns = { id = "text", n = "int" } }
"#,
    );
    let out = s.run(&["serve"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("error: pipeline b: cannot open the store"),
        "{}",
        stderr(&out)
    );
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
    // The table: a header, and a paused job shows no next run.
    let out = s.run(&["jobs", "list"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("JOB") && lines[0].contains("NEXT RUN"),
        "{text}"
    );
    assert!(
        lines[1].contains("paused") && !lines[1].contains("-01-01"),
        "{text}"
    );
    assert!(s.run(&["jobs", "unpause", "random_users"]).status.success());
    let out = s.run(&["jobs", "list"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("-01-01 00:00:00 UTC"),
        "to the second, in the job's zone: {text}"
    );
    assert_eq!(json(&s, &["jobs", "list", "--json"])[0]["paused"], false);
    let out = s.run(&["jobs", "trigger", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("random_users"), "{}", stderr(&out));
}

/// The generated DAG, read by Python's own parser: the `DAG(...)` call's
/// schedule and start date as source text, and the command's words.
const READ_DAG: &str = r#"
import ast, json, sys
tree = ast.parse(open(sys.argv[1]).read())
out = {}
for node in ast.walk(tree):
    if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "DAG":
        for k in node.keywords:
            out[k.arg] = ast.unparse(k.value)
    if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "BashOperator":
        for k in node.keywords:
            if k.arg == "bash_command":
                out["words"] = ast.literal_eval(k.value.args[0])
print(json.dumps(out))
"#;

fn read_dag(s: &Sandbox, args: &[&str]) -> serde_json::Value {
    let path = s.dir.path().join("dag.py");
    let mut all = vec!["export", "airflow-dag", "--out", path.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = s.run(&all);
    assert!(out.status.success(), "{}", stderr(&out));
    let python = std::env::var("TRIBUTARY_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let parsed = std::process::Command::new(python)
        .args(["-c", READ_DAG])
        .arg(&path)
        .output()
        .expect("python runs");
    assert!(
        parsed.status.success(),
        "the DAG is not valid Python: {}\n{}",
        String::from_utf8_lossy(&parsed.stderr),
        std::fs::read_to_string(&path).unwrap()
    );
    serde_json::from_slice(&parsed.stdout).unwrap()
}

#[test]
fn airflow_export_runs_the_jobs_burst_on_the_jobs_schedule() {
    let s = Sandbox::new();
    s.config(&format!(
        "{CONFIG}timezone = \"Europe/Berlin\"\n\n[[jobs]]\nname = \"often\"\nschedule = \"@every 30s\"\nrecords = 50\n"
    ));
    let dag = read_dag(&s, &[]);
    assert_eq!(dag["dag_id"], "'tributary_random_users'", "{dag}");
    assert_eq!(dag["schedule"], "'0 0 1 1 *'");
    assert_eq!(
        dag["start_date"],
        "pendulum.datetime(2026, 1, 1, tz='Europe/Berlin')"
    );
    assert_eq!(
        dag["default_args"],
        "{'retries': 2, 'retry_delay': timedelta(seconds=1)}"
    );
    let words: Vec<String> = serde_json::from_value(dag["words"].clone()).unwrap();
    let config = s.dir.path().join("tributary.toml");
    let data = s.data_dir();
    assert_eq!(
        words,
        [
            "tributary",
            "ingest",
            "--config",
            config.to_str().unwrap(),
            "--source",
            "gen:",
            "--seed",
            &format!(
                "{}-{{{{ data_interval_end.int_timestamp * 1000 }}}}",
                words[7].split('-').next().unwrap()
            ),
            "--log",
            &format!("sqlite:{}", data.join("log.db").display()),
            "--sink",
            &format!("sqlite:{}", data.join("store.db").display()),
            "--duration",
            "1s",
            "--interval",
            "100ms",
            "--per-tick",
            "2",
        ]
    );
    // `@every 30s` is a timedelta to Airflow, not a cron string.
    let dag = read_dag(&s, &["--job", "often"]);
    assert_eq!(dag["schedule"], "timedelta(milliseconds=30000)", "{dag}");
    assert_eq!(dag["start_date"], "pendulum.datetime(2026, 1, 1, tz='UTC')");
    let words: Vec<String> = serde_json::from_value(dag["words"].clone()).unwrap();
    assert_eq!(words[words.len() - 2..], ["--records", "50"]);
}

/// Airflow runs the command in a directory of its own: embedded files named
/// relative to this one are written into the DAG by their absolute paths.
#[test]
fn airflow_export_names_relative_embedded_files_by_absolute_paths() {
    let s = Sandbox::new();
    s.config(CONFIG);
    let out = s
        .cmd(&["export", "airflow-dag"])
        .env("TRIBUTARY_DATA_DIR", "rel-data")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let dag = String::from_utf8_lossy(&out.stdout);
    let dir = s.dir.path().canonicalize().unwrap().join("rel-data");
    for file in ["log.db", "store.db"] {
        let url = format!("\"sqlite:{}\"", dir.join(file).display());
        assert!(dag.contains(&url), "{url} not in\n{dag}");
    }
}

/// `serve` with `@every 2s` and a burst against `mock-api`: runs succeed,
/// the store holds exactly what the runs logged; a serve killed mid-run
/// leaves an `interrupted` run and the next serve goes on scheduling.
#[test]
fn serve_every_2s_against_mock_api_then_a_crash_and_a_restart() {
    use std::io::{BufRead, BufReader};
    let s = Sandbox::new();
    let mut api = Reap(
        s.cmd(&["mock-api", "--port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(api.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("mock-api: listening on ")
        .unwrap()
        .to_owned();
    std::fs::write(
        s.dir.path().join("tributary.toml"),
        format!(
            "[[jobs]]\nname = \"every2\"\nschedule = \"@every 2s\"\nsource = \"{base}\"\nburst = {{ duration = \"1500ms\", interval = \"100ms\", records = 3 }}\n"
        ),
    )
    .unwrap();
    let runs = |s: &Sandbox| json(s, &["jobs", "runs", "every2", "--json", "--limit", "100"]);
    let successes = |v: &serde_json::Value| {
        v.as_array()
            .unwrap()
            .iter()
            .filter(|r| r["state"] == "success")
            .count()
    };

    let mut serve = Reap(
        s.cmd(&["serve"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while successes(&runs(&s)) < 2 {
        assert!(Instant::now() < deadline, "{}", runs(&s));
        std::thread::sleep(Duration::from_millis(100));
    }
    // Kill it in the middle of a run.
    while runs(&s)[0]["state"] != "running" {
        assert!(Instant::now() < deadline, "{}", runs(&s));
        std::thread::sleep(Duration::from_millis(20));
    }
    serve.0.kill().unwrap();
    serve.0.wait().unwrap();

    let mut serve = Reap(
        s.cmd(&["serve"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let before = successes(&runs(&s));
    let deadline = Instant::now() + Duration::from_secs(60);
    while successes(&runs(&s)) < before + 1 {
        assert!(Instant::now() < deadline, "{}", runs(&s));
        std::thread::sleep(Duration::from_millis(100));
    }
    crate::support::terminate(&serve.0);
    assert_eq!(serve.0.wait().unwrap().code(), Some(0));
    drop(api);

    let all = runs(&s);
    let states: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["state"].as_str().unwrap())
        .collect();
    assert!(states.contains(&"interrupted"), "{states:?}");
    // Exactly once: every logged user of every run is one row. (Each slot
    // has its own seed, so runs do not repeat users.)
    let logged: u64 = all
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["logged"].as_u64().unwrap())
        .sum();
    assert!(logged >= 2 * 45, "{all}");
    s.run_json(&["process", "--json"]);
    let status: serde_json::Value =
        serde_json::from_slice(&s.run(&["status", "--json"]).stdout).unwrap();
    assert_eq!(status["lag"], 0);
    // Every message on the log is a distinct user stored once (the killed
    // run's partial burst included).
    let end = status["partitions"][0]["end"].as_u64().unwrap();
    assert_eq!(status["rows"].as_u64().unwrap(), end, "{status}");
    assert!(end >= logged, "{status} {all}");
}
