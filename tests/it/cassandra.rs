//! The Cassandra store against a real node (started by `scripts/infra` in
//! CI; `TRIBUTARY_TEST_CASSANDRA=host:port` names it). Each test has its own
//! keyspace. Tests that pause, kill or restart the node, or need `--auth`,
//! run only when `TRIBUTARY_TEST_CASSANDRA_FAULTS` asks for them, in their
//! own CI step. Without a node the tests say loudly that they skipped.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{Args, Sandbox, infra, skipped, stderr, unique};

fn node(test: &str) -> Option<String> {
    crate::support::cassandra(test)
}

fn faults(mode: &str, test: &str) -> Option<String> {
    let n = node(test)?;
    if std::env::var("TRIBUTARY_TEST_CASSANDRA_FAULTS").as_deref() == Ok(mode) {
        Some(n)
    } else {
        skipped(
            test,
            &format!("needs TRIBUTARY_TEST_CASSANDRA_FAULTS={mode} (it disturbs the node)"),
        );
        None
    }
}

/// `SELECT count(*)` through cqlsh, as the seed stack's users check it.
/// The count reads the whole table at consistency ONE; a node busy with a
/// flush or a compaction may fail it ("ReadFailure", "ReadTimeout"), and
/// it is asked again, up to three times.
fn cqlsh_count(table: &str, auth: &[&str]) -> u64 {
    let query = format!("SELECT count(*) FROM {table}");
    let mut args = vec!["cqlsh"];
    args.extend_from_slice(auth);
    args.extend_from_slice(&["-e", &query]);
    for attempt in 1..=3 {
        let out = crate::support::infra_output(&args);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let errors = String::from_utf8_lossy(&out.stderr).into_owned();
        let transient = [&text, &errors]
            .iter()
            .any(|t| t.contains("ReadFailure") || t.contains("ReadTimeout"));
        if out.status.success() || !transient || attempt == 3 {
            assert!(out.status.success(), "cqlsh {query}: {text}{errors}");
            return text
                .lines()
                .filter_map(|l| l.trim().parse::<u64>().ok())
                .next()
                .unwrap_or_else(|| panic!("no count in cqlsh output: {text}"));
        }
        eprintln!("cqlsh {query}, attempt {attempt}: {errors}");
    }
    unreachable!("the third attempt returns or fails")
}

fn sink_url(node: &str, keyspace: &str) -> String {
    format!("cassandra://{node}/{keyspace}.created_users")
}

#[test]
fn fifty_thousand_into_cassandra_exactly_once() {
    let Some(n) = node("fifty_thousand_into_cassandra") else {
        return;
    };
    let s = Sandbox::new();
    let ks = unique("ks");
    let url = sink_url(&n, &ks);
    let first = s.summary(Args::run().records(50_000).seed("c").sink(&url));
    assert_eq!(first["stored"], 50000, "{first}");
    let count = |s: &Sandbox| {
        let out = s.run(&["count", "--sink", &url]);
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<u64>()
            .unwrap()
    };
    assert_eq!(count(&s), 50000);
    assert_eq!(cqlsh_count(&format!("{ks}.created_users"), &[]), 50000);
    let again = s.summary(Args::run().records(50_000).seed("c").sink(&url));
    assert_eq!(again["read"], 50000, "{again}");
    assert_eq!(count(&s), 50000);
    let out = s.run(&["show", "--limit", "3", "--sink", &url]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("(3 rows)"));
}

#[test]
fn a_table_with_other_columns_is_refused_with_the_differences() {
    let Some(n) = node("cassandra_schema_mismatch") else {
        return;
    };
    let s = Sandbox::new();
    let ks = unique("ks");
    infra(&[
        "cqlsh",
        "-e",
        &format!(
            "CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}; \
             CREATE TABLE {ks}.created_users (id TEXT PRIMARY KEY, first_name TEXT, age INT);"
        ),
    ]);
    let out = s.run(&Args::run().records(10).sink(&sink_url(&n, &ks)).strs());
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("differs from the seed table"), "{err}");
    assert!(err.contains("column id is text, want uuid"), "{err}");
    assert!(err.contains("column email is missing"), "{err}");
    assert!(err.contains("column age is not in the seed table"), "{err}");
}

/// The table dropped under a running processor: every write is refused
/// with "table … does not exist". The processor stops, exit 1, naming
/// what happened and how to write the log into the table again, and no
/// record becomes a dead letter. Before, every row left was dead-lettered
/// and the run ended with exit 0.
#[test]
fn a_table_dropped_under_the_processor_stops_it_and_dead_letters_nothing() {
    let Some(n) = node("cassandra_table_dropped") else {
        return;
    };
    const N: u64 = 50_000;
    let s = Sandbox::new();
    // Two writes at a time: the drain lasts long enough to drop the table
    // in the middle of it.
    s.config("[sink.cassandra]\nconcurrency = 2\n");
    let ks = unique("dropped");
    let url = sink_url(&n, &ks);
    s.summary(Args::ingest().records(N).seed("dropped"));
    let child = s
        .cmd(&["process", "--batch-size", "200", "--sink", &url, "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while cassandra_rows(&s, &url) < 1_000 {
        assert!(Instant::now() < deadline, "no rows before the drop");
        std::thread::sleep(Duration::from_millis(100));
    }
    infra(&["cqlsh", "-e", &format!("DROP TABLE {ks}.created_users;")]);
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("dropped while in use"), "{err}");
    assert!(err.contains("--group"), "{err}");
    // `status` shows the log's side and says the table is not there; it
    // makes no table.
    let out = s.run(&["status", "--json", "--sink", &url]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["dead_letters_waiting"], 0, "{status}");
    assert!(
        status["lag"].as_u64().unwrap() > 0,
        "what was not stored stays in the log: {status}"
    );
    assert_eq!(status["rows"], 0, "{status}");
    assert!(
        status["sink"]
            .as_str()
            .is_some_and(|e| e.contains("does not exist")),
        "{status}"
    );
    let count = s.run(&["count", "--sink", &url]);
    assert!(
        count.status.code() == Some(1) && stderr(&count).contains("does not exist"),
        "no table was made: {}",
        stderr(&count)
    );
}

/// `count` and `show` on a keyspace and table that do not exist make
/// neither: the table is named as missing, again at the second look.
/// Before, each made them on the cluster and printed 0 rows.
#[test]
fn looking_at_a_table_that_does_not_exist_makes_none() {
    let Some(n) = node("cassandra_look_makes_nothing") else {
        return;
    };
    let s = Sandbox::new();
    let url = sink_url(&n, &unique("typo"));
    for _ in 0..2 {
        for command in ["count", "show"] {
            let out = s.run(&[command, "--log", "sqlite:", "--sink", &url]);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(1), "{command}: {err}");
            assert!(
                err.contains("does not exist") && err.contains("mistyped"),
                "{command}: {err}"
            );
        }
    }
}

#[test]
fn processor_killed_between_kafka_and_cassandra_stores_exactly_n() {
    let (Some(n), Ok(b)) = (
        node("kafka_to_cassandra_crash"),
        std::env::var("TRIBUTARY_TEST_KAFKA"),
    ) else {
        crate::support::missing("kafka_to_cassandra_crash", "needs TRIBUTARY_TEST_KAFKA too");
        return;
    };
    const N: u64 = 20_000;
    let s = Sandbox::new();
    let name = unique("kc");
    let log = format!("kafka://{b}/{name}");
    let sink = sink_url(&n, &name);
    s.summary(Args::ingest().records(N).seed("kc").log(&log));
    let mut child = s
        .cmd(&[
            "process",
            "--follow",
            "--batch-size",
            "100",
            "--log",
            &log,
            "--sink",
            &sink,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill once the table has rows (it is created by the processor).
    let table = format!("{name}.created_users");
    let deadline = Instant::now() + Duration::from_secs(120);
    while cassandra_rows(&s, &sink) < 2_000 {
        assert!(Instant::now() < deadline, "processor made no progress");
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    s.summary(Args::process().log(&log).sink(&sink));
    assert_eq!(cqlsh_count(&table, &[]), N);
}

/// Runs a stream into Cassandra while `disturb` happens to the node, then
/// checks that exactly every record arrived and memory stayed bounded.
fn survive(n: &str, name: &str, disturb: impl FnOnce(u32)) {
    const N: u64 = 30_000;
    let s = Sandbox::new();
    let ks = unique(name);
    let url = sink_url(n, &ks);
    s.summary(Args::ingest().records(N).seed(name));
    let child = s
        .cmd(&["process", "--batch-size", "200", "--sink", &url, "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while crate::support::rows_now(&s.store_path()) == 0 && cassandra_rows(&s, &url) < 3_000 {
        assert!(Instant::now() < deadline, "no progress before the outage");
        std::thread::sleep(Duration::from_millis(100));
    }
    disturb(child.id());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let summary: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    assert!(summary["read"].as_u64().unwrap() >= N, "{summary}");
    assert_eq!(cqlsh_count(&format!("{ks}.created_users"), &[]), N);
    let report = crate::support::verified(&s, &["--sink", &url]);
    assert_eq!(report["present"], N, "{report}");
}

fn cassandra_rows(s: &Sandbox, url: &str) -> u64 {
    let out = s.run(&["count", "--sink", url]);
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn cassandra_paused_for_20_s_mid_stream_loses_nothing() {
    let Some(n) = faults("outage", "cassandra_paused") else {
        return;
    };
    survive(&n, "paused", |pid| {
        infra(&["pause", "cassandra"]);
        // The outage itself is what is tested: 20 s without answers.
        let start = Instant::now();
        let mut peak = 0;
        while start.elapsed() < Duration::from_secs(20) {
            peak = peak.max(rss_kib(pid));
            std::thread::sleep(Duration::from_millis(500));
        }
        infra(&["resume", "cassandra"]);
        assert!(
            peak < 200 * 1024,
            "processor RSS grew to {peak} KiB during the outage"
        );
    });
}

#[test]
fn cassandra_slowed_by_pauses_makes_the_adaptive_write_limit_back_off_losing_nothing() {
    let Some(n) = faults("outage", "cassandra_slowed") else {
        return;
    };
    const N: u64 = 30_000;
    let s = Sandbox::new();
    let ks = unique("slowed");
    let url = sink_url(&n, &ks);
    s.summary(Args::ingest().records(N).seed("slowed"));
    let errors = s.dir.path().join("process.err");
    let child = s
        // The default write limit: adaptive.
        .cmd(&["process", "--batch-size", "200", "--sink", &url, "--json"])
        .env("RUST_LOG", "tributary=debug")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&errors).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while cassandra_rows(&s, &url) < 3_000 {
        assert!(Instant::now() < deadline, "no progress before the pauses");
        std::thread::sleep(Duration::from_millis(100));
    }
    // A node that stalls now and then (a GC pause, a saturated disk): the
    // writes in flight wait, their round trips rise far above the usual.
    for _ in 0..3 {
        infra(&["pause", "cassandra"]);
        std::thread::sleep(Duration::from_millis(1500));
        infra(&["resume", "cassandra"]);
        std::thread::sleep(Duration::from_millis(1000));
    }
    let out = child.wait_with_output().unwrap();
    let log = std::fs::read_to_string(&errors).unwrap();
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("cassandra write limit lowered"),
        "the adaptive limit never backed off:\n{log}"
    );
    assert_eq!(cqlsh_count(&format!("{ks}.created_users"), &[]), N);
    let report = crate::support::verified(&s, &["--sink", &url]);
    assert_eq!(report["present"], N, "{report}");
}

#[test]
fn cassandra_killed_and_restarted_mid_stream_loses_nothing() {
    let Some(n) = faults("outage", "cassandra_restarted") else {
        return;
    };
    survive(&n, "restarted", |_| {
        infra(&["stop", "cassandra"]);
        infra(&["start", "cassandra"]);
    });
}

#[test]
fn auth_right_credentials_work_and_wrong_ones_fail_clearly_committing_nothing() {
    let Some(n) = faults("auth", "cassandra_auth") else {
        return;
    };
    let s = Sandbox::new();
    let ks = unique("auth");
    s.summary(Args::ingest().records(500).seed("auth"));
    let wrong = format!("cassandra://cassandra:wrong@{n}/{ks}.created_users");
    let out = s.run(&Args::process().sink(&wrong).strs());
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("cannot connect to Cassandra"), "{err}");
    assert!(
        !err.contains("wrong"),
        "the password must not be printed: {err}"
    );
    // Nothing was committed: the whole log is still there for the right run.
    let status: serde_json::Value =
        serde_json::from_slice(&s.run(&["status", "--json"]).stdout).unwrap();
    assert_eq!(status["lag"], 500, "{status}");
    let right = format!("cassandra://cassandra:cassandra@{n}/{ks}.created_users");
    let ok = s.summary(Args::process().sink(&right));
    assert_eq!(ok["stored"], 500, "{ok}");
    let report = crate::support::verified(&s, &["--sink", &right]);
    assert_eq!(report["present"], 500, "{report}");
    assert_eq!(
        cqlsh_count(
            &format!("{ks}.created_users"),
            &["-u", "cassandra", "-p", "cassandra"]
        ),
        500
    );
}
