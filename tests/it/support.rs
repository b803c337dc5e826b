//! Helpers shared by the black-box tests: running the binary in a temporary
//! data dir, reading its JSON summaries, looking into the embedded store.

pub mod hostile;
pub mod json_api;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `tributary ARGS` with the sandbox's data dir (through
    /// TRIBUTARY_DATA_DIR, so a test may still pass --data-dir), run in the
    /// sandbox with no TRIBUTARY_* variables from outside.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_tributary"));
        for (k, _) in std::env::vars() {
            if k.starts_with("TRIBUTARY_") {
                c.env_remove(k);
            }
        }
        c.args(args)
            .env("TRIBUTARY_DATA_DIR", self.data_dir())
            // `serve` runs in parallel tests: any free port, not 8080.
            .env("TRIBUTARY_WEB_LISTEN", "127.0.0.1:0")
            .current_dir(self.dir.path())
            .env("RUST_LOG", "tributary=warn");
        c.stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("tributary starts")
    }

    /// Runs and expects success; returns the JSON summary it printed.
    pub fn run_json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout.lines().last().expect("a summary line");
        serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {stdout}"))
    }

    /// Runs `args` with `--json` and expects success; returns the JSON
    /// summary it printed.
    pub fn summary(&self, args: Args) -> serde_json::Value {
        self.run_json(&args.arg("--json").strs())
    }

    pub fn count(&self) -> u64 {
        let out = self.run(&["count"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("a number")
    }

    /// Writes `tributary.toml` in the sandbox (read by every command).
    pub fn config(&self, toml: &str) {
        std::fs::write(self.dir.path().join("tributary.toml"), toml).expect("config written");
    }

    pub fn store_path(&self) -> PathBuf {
        self.data_dir().join("store.db")
    }

    pub fn log_path(&self) -> PathBuf {
        self.data_dir().join("log.db")
    }

    /// The embedded log the binary opens by default, for tests that write
    /// to it directly.
    pub fn log_config(&self) -> tributary::pipeline::log::LogConfig {
        use tributary::pipeline::log::{LogConfig, SqliteLogConfig};
        LogConfig::Sqlite(SqliteLogConfig {
            path: self.log_path(),
            topic: "users_created".into(),
            retention_messages: None,
            retention_age: None,
            durable_fsync: false,
            offset_reset: Default::default(),
        })
    }
}

/// Distinct ids in the embedded store, read directly.
pub fn distinct_ids(store: &Path) -> u64 {
    let conn = rusqlite::Connection::open(store).expect("store opens");
    conn.query_row("SELECT count(DISTINCT id) FROM created_users", [], |r| {
        r.get::<_, i64>(0)
    })
    .expect("query") as u64
}

/// Rows in the embedded store, read directly (without the binary), or 0
/// before the table exists.
pub fn rows_now(store: &Path) -> u64 {
    let Ok(conn) =
        rusqlite::Connection::open_with_flags(store, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return 0;
    };
    conn.busy_timeout(std::time::Duration::from_secs(5)).ok();
    conn.query_row("SELECT count(*) FROM created_users", [], |r| {
        r.get::<_, i64>(0)
    })
    .map(|n| n as u64)
    .unwrap_or(0)
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Says loudly that a test skipped: written to the real stderr, which the
/// test harness does not capture, so it shows in every run's output. For a
/// test that waits for its own step (a fault mode it must be asked for).
pub fn skipped(test: &str, why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}

/// A test that cannot run because something it needs is not there (Kafka,
/// Cassandra, a browser, root): skipped on a laptop, but a failure where
/// `TRIBUTARY_REQUIRE_INFRA=1` says everything was installed (CI).
pub fn missing(test: &str, why: &str) {
    if std::env::var("TRIBUTARY_REQUIRE_INFRA").is_ok_and(|v| v == "1") {
        panic!("{test} cannot run: {why} (TRIBUTARY_REQUIRE_INFRA=1: nothing may be skipped)");
    }
    skipped(test, why);
}

/// The Kafka bootstrap servers of the test cluster, or `None` (see
/// [`missing`]).
pub fn kafka(test: &str) -> Option<String> {
    match std::env::var("TRIBUTARY_TEST_KAFKA") {
        Ok(b) if !b.is_empty() => Some(b),
        _ => {
            missing(
                test,
                "no Kafka (set TRIBUTARY_TEST_KAFKA=host:port, e.g. after `scripts/infra up kafka`)",
            );
            None
        }
    }
}

/// The Kafka log on `topic` (made with `partitions` when missing) as a test
/// opens it from the library.
pub fn kafka_log(
    broker: &str,
    topic: &str,
    partitions: i32,
) -> tributary::pipeline::log::LogConfig {
    tributary::pipeline::log::LogConfig::Kafka(tributary::pipeline::log::KafkaLogConfig {
        brokers: broker.to_owned(),
        topic: topic.to_owned(),
        create_topics: true,
        partitions,
        replication_factor: None,
        compression: "lz4".into(),
        properties: Default::default(),
        lock_dir: None,
    })
}

/// The Cassandra node of the tests, or `None` (see [`missing`]).
pub fn cassandra(test: &str) -> Option<String> {
    match std::env::var("TRIBUTARY_TEST_CASSANDRA") {
        Ok(n) if !n.is_empty() => Some(n),
        _ => {
            missing(
                test,
                "no Cassandra (set TRIBUTARY_TEST_CASSANDRA=host:port, e.g. after `scripts/infra up cassandra`)",
            );
            None
        }
    }
}

/// A topic, group or keyspace name no other test (or run) uses.
pub fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .subsec_nanos();
    format!("it_{name}_{}_{nanos}", std::process::id())
}

/// Runs `scripts/infra ARGS` (stop/start/pause a server, cqlsh, ...) and
/// returns its stdout; fails the test if it fails.
pub fn infra(args: &[&str]) -> String {
    let out = infra_output(args);
    assert!(
        out.status.success(),
        "scripts/infra {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `scripts/infra ARGS`, run, whatever its outcome.
pub fn infra_output(args: &[&str]) -> Output {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/infra");
    Command::new("bash")
        .arg(script)
        .args(args)
        .output()
        .expect("bash runs")
}

/// A child process that is killed and reaped when the test ends, even when
/// an assertion fails first (so failing tests leave no servers behind).
pub struct Reap(pub std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        // Harmless when the child was already waited for.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends SIGTERM to a child (a graceful stop, as an operator would).
pub fn terminate(child: &std::process::Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -TERM {} failed", child.id());
}

/// A running `tributary mock-api`, stopped (by pid) when dropped.
pub struct MockApi {
    child: std::process::Child,
    pub base: String,
}

impl MockApi {
    pub fn start(s: &Sandbox, extra: &[&str]) -> MockApi {
        let mut args = vec!["mock-api", "--port", "0"];
        args.extend_from_slice(extra);
        let mut child = s
            .cmd(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Ready when it prints its address (it binds before printing).
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .trim()
            .strip_prefix("mock-api: listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        MockApi { child, base }
    }
}

impl Drop for MockApi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `tributary verify --json ARGS` after a fault: asserts that the store holds
/// every id of the log (exit 0, nothing missing) and returns the report.
pub fn verified(s: &Sandbox, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["verify", "--json"];
    all.extend_from_slice(args);
    let out = s.run(&all);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("verify printed no report ({e}): {stdout}\n{}", stderr(&out)));
    assert_eq!(report["missing"], 0, "verify found missing rows: {report}");
    assert!(
        out.status.success(),
        "verify failed: {report}\n{}",
        stderr(&out)
    );
    report
}

/// `tributary ARGS`, which must end within `limit` (a hang fails the test,
/// naming the command and what it printed). Its output is read while it
/// runs, so a command that prints a lot cannot block on a full pipe.
pub fn run_within(s: &Sandbox, args: &[&str], limit: Duration) -> Output {
    let mut child = s
        .cmd(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tributary starts");
    let drain = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = pipe.read_to_end(&mut b);
            b
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            let err = err.join().unwrap();
            panic!(
                "{args:?} still running after {limit:?} (hung); stderr: {}",
                String::from_utf8_lossy(&err)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// A command line by flag, for the commands that move records:
/// `Args::run().log(&url).group(&group).sink(&sink).records(n)`.
#[derive(Debug, Clone)]
pub struct Args(Vec<String>);

impl Args {
    /// `tributary COMMAND`.
    pub fn new(command: &str) -> Args {
        Args(vec![command.to_owned()])
    }

    pub fn run() -> Args {
        Args::new("run")
    }

    pub fn ingest() -> Args {
        Args::new("ingest")
    }

    pub fn process() -> Args {
        Args::new("process")
    }

    /// Any argument, as given.
    pub fn arg(mut self, arg: impl Into<String>) -> Args {
        self.0.push(arg.into());
        self
    }

    fn flag(self, flag: &str, value: impl ToString) -> Args {
        self.arg(flag).arg(value.to_string())
    }

    pub fn records(self, n: u64) -> Args {
        self.flag("--records", n)
    }

    pub fn seed(self, seed: &str) -> Args {
        self.flag("--seed", seed)
    }

    pub fn log(self, url: &str) -> Args {
        self.flag("--log", url)
    }

    pub fn group(self, group: &str) -> Args {
        self.flag("--group", group)
    }

    pub fn sink(self, url: &str) -> Args {
        self.flag("--sink", url)
    }

    pub fn batch_size(self, n: u64) -> Args {
        self.flag("--batch-size", n)
    }

    pub fn follow(self) -> Args {
        self.arg("--follow")
    }

    /// The arguments, for `Sandbox::cmd`, `run` and `run_json`.
    pub fn strs(&self) -> Vec<&str> {
        self.0.iter().map(String::as_str).collect()
    }
}

/// Runs `cmd` (a tributary command) to its end with stdout discarded; its
/// exit code and its own peak RSS in bytes, as it logs on exit at debug level.
/// Not `ru_maxrss` from wait4: at exec Linux folds the spawning process's
/// high-water mark into the child's, and here that is this test binary.
pub fn run_measured(mut cmd: std::process::Command) -> (Option<i32>, u64) {
    let out = cmd
        .env("RUST_LOG", "tributary=debug")
        .stdout(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let rss = err
        .lines()
        .find_map(|l| l.split("peak_rss_bytes=").nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no peak_rss_bytes in the debug log:\n{err}"));
    (out.status.code(), rss)
}
