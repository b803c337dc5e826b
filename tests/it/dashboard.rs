//! The web side of `serve` from the outside: the dashboard address it
//! prints, the token rules on a non-loopback address, the token never
//! printed, and `/metrics` as Prometheus text whose totals match the store.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{Reap, Sandbox, stderr, terminate};

pub const TOKEN: &str = "dashboard-test-token-8c1f2e";

/// A job that runs only when triggered: 500 users per run.
pub const CONFIG: &str = r#"
[[jobs]]
name = "random_users"
schedule = "0 0 1 1 *"
records = 500
"#;

/// A running `serve`: its port, and everything it printed so far.
pub struct Serve {
    pub child: Reap,
    pub port: u16,
    pub output: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Serve {
    /// Everything it printed, once it has exited (call after `wait`).
    pub fn all_output(&mut self) -> String {
        for r in self.readers.drain(..) {
            r.join().expect("output reader");
        }
        self.output.lock().unwrap().clone()
    }
}

/// Starts `serve ARGS` with `envs` and waits for its dashboard line.
pub fn serve(s: &Sandbox, args: &[&str], envs: &[(&str, &str)]) -> Serve {
    let mut all = vec!["serve"];
    all.extend_from_slice(args);
    let mut cmd = s.cmd(&all);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("serve starts");
    let output = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    let mut readers = Vec::new();
    for (stream, tx) in [
        (Box::new(out) as Box<dyn Read + Send>, Some(tx)),
        (Box::new(err), None),
    ] {
        let output = output.clone();
        readers.push(std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if let Some(port) = line
                    .strip_prefix("dashboard: http://127.0.0.1:")
                    .and_then(|r| r.split('/').next())
                    .and_then(|p| p.parse::<u16>().ok())
                    && let Some(tx) = &tx
                {
                    let _ = tx.send(port);
                }
                let mut o = output.lock().unwrap();
                o.push_str(&line);
                o.push('\n');
            }
        }));
    }
    let port = rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("no dashboard line: {}", output.lock().unwrap()));
    Serve {
        child: Reap(child),
        port,
        output,
        readers,
    }
}

/// A minimal HTTP/1.1 exchange: (status, body).
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not HTTP: {raw}"));
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    (
        status,
        if chunked {
            dechunk(rest)
        } else {
            rest.to_owned()
        },
    )
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

pub fn get_json(port: u16, path: &str, headers: &[(&str, &str)]) -> serde_json::Value {
    let (status, body) = http(port, "GET", path, headers, "");
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn a_non_loopback_address_without_a_token_refuses_to_start() {
    let s = Sandbox::new();
    std::fs::write(s.dir.path().join("tributary.toml"), CONFIG).unwrap();
    let out = s.run(&["serve", "--listen", "0.0.0.0:0"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("0.0.0.0:0"), "{err}");
    assert!(err.contains("TRIBUTARY_WEB_TOKEN"), "{err}");
    // A token that is too short to be one is refused too.
    let out = s
        .cmd(&["serve", "--listen", "0.0.0.0:0"])
        .env("TRIBUTARY_WEB_TOKEN", "short")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("at least 16"), "{}", stderr(&out));
}

#[test]
fn with_a_token_every_call_needs_it_and_it_is_never_printed() {
    let s = Sandbox::new();
    std::fs::write(s.dir.path().join("tributary.toml"), CONFIG).unwrap();
    // Debug logs on: the token must not show even there.
    let mut serve = serve(
        &s,
        &["--listen", "0.0.0.0:0", "-v"],
        &[("TRIBUTARY_WEB_TOKEN", TOKEN), ("RUST_LOG", "debug")],
    );
    let bearer = format!("Bearer {TOKEN}");
    for path in [
        "/api/v1/status",
        "/api/v1/config",
        "/api/v1/jobs",
        "/metrics",
    ] {
        let (status, body) = http(serve.port, "GET", path, &[], "");
        assert_eq!(status, 401, "{path}: {body}");
        let (status, body) = http(serve.port, "GET", path, &[("Authorization", &bearer)], "");
        assert_eq!(status, 200, "{path}: {body}");
        assert!(!body.contains(TOKEN), "{path} shows the token");
    }
    let (status, _) = http(
        serve.port,
        "POST",
        "/api/v1/jobs/random_users/trigger",
        &[("X-Tributary-Request", "1")],
        "",
    );
    assert_eq!(status, 401, "a trigger without the token");
    let (status, _) = http(
        serve.port,
        "POST",
        "/api/v1/login",
        &[
            ("X-Tributary-Request", "1"),
            ("Content-Type", "application/json"),
        ],
        &format!(r#"{{"token":"{TOKEN}"}}"#),
    );
    assert_eq!(status, 204);
    // `config check` with the same environment hides it too.
    let out = s
        .cmd(&["config", "check"])
        .env("TRIBUTARY_WEB_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("a token is set"), "{shown}");
    assert!(!shown.contains(TOKEN));
    terminate(&serve.child.0);
    assert_eq!(serve.child.0.wait().unwrap().code(), Some(0));
    let printed = serve.all_output();
    assert!(
        printed.contains("dashboard: http://127.0.0.1:"),
        "{printed}"
    );
    assert!(!printed.contains(TOKEN), "the token was printed: {printed}");
}

/// Prometheus text, checked line by line: `# HELP` / `# TYPE` comments and
/// `name{labels} value` samples. Returns the samples by name with labels.
pub fn parse_prometheus(text: &str) -> BTreeMap<String, f64> {
    let mut types = BTreeMap::new();
    let mut samples = BTreeMap::new();
    let is_name = |n: &str| {
        !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            && !n.starts_with(|c: char| c.is_ascii_digit())
    };
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kind, name, value) = (parts.next(), parts.next(), parts.next());
            match kind {
                Some("HELP") => assert!(name.is_some_and(is_name), "{line}"),
                Some("TYPE") => {
                    let t = value.unwrap_or_default();
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&t),
                        "{line}"
                    );
                    types.insert(name.unwrap().to_owned(), t.to_owned());
                }
                _ => panic!("unexpected comment: {line}"),
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("not a number: {line}"));
        let name = series.split('{').next().unwrap();
        assert!(is_name(name), "bad metric name: {line}");
        assert!(name.starts_with("tributary_"), "{line}");
        if let Some(labels) = series.strip_prefix(name)
            && !labels.is_empty()
        {
            assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
            for pair in labels[1..labels.len() - 1].split(',') {
                let (k, v) = pair.split_once('=').unwrap_or_else(|| panic!("{line}"));
                assert!(is_name(k), "{line}");
                assert!(v.starts_with('"') && v.ends_with('"'), "{line}");
                // Bounded labels: never a record id.
                assert!(
                    uuid::Uuid::parse_str(v.trim_matches('"')).is_err(),
                    "{line}"
                );
            }
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| types.contains_key(*f)))
            .unwrap_or(name);
        assert!(types.contains_key(family), "no # TYPE for {name}");
        samples.insert(series.to_owned(), value);
    }
    samples
}

#[test]
fn metrics_are_prometheus_text_and_their_totals_match_the_store() {
    let s = Sandbox::new();
    std::fs::write(s.dir.path().join("tributary.toml"), CONFIG).unwrap();
    let serve = serve(&s, &[], &[]);
    for _ in 0..2 {
        let (status, body) = http(
            serve.port,
            "POST",
            "/api/v1/jobs/random_users/trigger",
            &[("X-Tributary-Request", "1")],
            "",
        );
        assert_eq!(status, 202, "{body}");
    }
    // Both runs done, the processor caught up, the sampler saw the store.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = get_json(serve.port, "/api/v1/status", &[]);
        let runs = get_json(serve.port, "/api/v1/jobs/random_users/runs", &[]);
        let done = runs["runs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["state"] == "success")
            .count();
        if done == 2 && status["store"]["rows"] == 1000 && status["log"]["lag"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{status} {runs}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, text) = http(serve.port, "GET", "/metrics", &[], "");
    assert_eq!(status, 200);
    let m = parse_prometheus(&text);
    let count: f64 = String::from_utf8_lossy(&s.run(&["count"]).stdout)
        .trim()
        .parse()
        .unwrap();
    assert_eq!(count, 1000.0);
    // The built-in pipeline's totals and gauges carry its name.
    for name in [
        "tributary_source_records_total",
        "tributary_log_appended_records_total",
        "tributary_processor_read_records_total",
        "tributary_sink_written_rows_total",
    ] {
        let series = format!(r#"{name}{{pipeline="randomuser"}}"#);
        assert_eq!(m.get(&series), Some(&count), "{series}:\n{text}");
    }
    assert_eq!(
        m.get(r#"tributary_sink_stored_rows{pipeline="randomuser"}"#),
        Some(&count)
    );
    assert_eq!(
        m.get(r#"tributary_log_lag_messages{pipeline="randomuser"}"#),
        Some(&0.0)
    );
    assert_eq!(
        m.get(r#"tributary_log_dead_letters_waiting{pipeline="randomuser"}"#),
        Some(&0.0)
    );
    assert_eq!(
        m.get(r#"tributary_scheduler_runs_total{job="random_users",state="success"}"#),
        Some(&2.0)
    );
    // Latency histograms: every write counted, +Inf bucket = count.
    let writes = m[r#"tributary_sink_write_duration_seconds_count{outcome="ok"}"#];
    assert!(writes >= 1.0);
    assert_eq!(
        m[r#"tributary_sink_write_duration_seconds_bucket{outcome="ok",le="+Inf"}"#],
        writes
    );
    assert!(m["tributary_process_resident_memory_bytes"] > 1e6);
    // Every message's wait from the log to the store is measured once, and
    // so is its wait in the log before it was read.
    assert_eq!(
        m["tributary_processor_end_to_end_latency_seconds_count"],
        count
    );
    assert_eq!(m["tributary_processor_read_latency_seconds_count"], count);
}

#[test]
fn the_example_serve_config_stays_valid() {
    let s = Sandbox::new();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/serve.toml");
    // The file's own address (the sandbox's TRIBUTARY_WEB_LISTEN would win).
    let out = s
        .cmd(&["--config", example, "config", "check"])
        .env_remove("TRIBUTARY_WEB_LISTEN")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("listen = \"127.0.0.1:8080\""));
    let out = s.run(&["--config", example, "jobs", "list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let jobs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(jobs[0]["name"], "random_users");
    assert_eq!(jobs[0]["schedule"], "@every 30s");
}
