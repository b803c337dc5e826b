//! The README's promises from the outside: idempotent runs, exit codes for bad
//! usage and config, graceful shutdown, burst mode.

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{Sandbox, distinct_ids, stderr};

#[test]
fn same_seed_twice_stores_once_and_a_new_seed_adds() {
    let s = Sandbox::new();
    let first = s.run_json(&["run", "--records", "10000", "--seed", "7", "--json"]);
    assert_eq!(first["fetched"], 10000);
    assert_eq!(first["logged"], 10000);
    assert_eq!(first["stored"], 10000);
    assert_eq!(first["dead_lettered"], 0);
    assert_eq!(s.count(), 10000);
    assert_eq!(distinct_ids(&s.store_path()), 10000);

    let again = s.run_json(&["run", "--records", "10000", "--seed", "7", "--json"]);
    assert_eq!(again["stored"], 0);
    assert_eq!(again["duplicates_skipped"], 10000);
    assert_eq!(s.count(), 10000);

    let other = s.run_json(&["run", "--records", "10000", "--seed", "8", "--json"]);
    assert_eq!(other["stored"], 10000);
    assert_eq!(s.count(), 20000);
    assert_eq!(distinct_ids(&s.store_path()), 20000);
}

#[test]
fn ingest_then_process_equals_run() {
    let s = Sandbox::new();
    let ingested = s.run_json(&["ingest", "--records", "3000", "--seed", "split", "--json"]);
    assert_eq!(ingested["logged"], 3000);
    assert_eq!(s.count(), 0, "ingest must not touch the store");
    let processed = s.run_json(&["process", "--json"]);
    assert_eq!(processed["stored"], 3000);
    // A second process finds nothing new: its offsets were committed.
    let idle = s.run_json(&["process", "--json"]);
    assert_eq!(idle["read"], 0);
    assert_eq!(s.count(), 3000);
}

#[test]
fn show_prints_a_table_of_rows() {
    let s = Sandbox::new();
    s.run_json(&["run", "--records", "50", "--seed", "show", "--json"]);
    let out = s.run(&["show", "--limit", "5"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let header = text.lines().next().unwrap();
    for col in [
        "id",
        "first_name",
        "post_code",
        "registered_date",
        "picture",
    ] {
        assert!(header.contains(col), "{header}");
    }
    assert!(text.contains("(5 rows)"), "{text}");
}

#[test]
fn bad_flags_exit_2_and_name_the_problem() {
    let s = Sandbox::new();
    let cases: &[(&[&str], &str)] = &[
        (&["run", "--records", "many"], "--records"),
        (&["run", "--batch-size", "0"], "batch_size"),
        (&["run", "--batch-size", "6000"], "batch_size"),
        (&["run", "--source", "ftp://example.com/api/"], "source.url"),
        (&["run", "--source", "gen:?nat=XX"], "nationality"),
        (&["run", "--log", "postgres://x"], "log.url"),
        (&["run", "--duration", "2m"], "--interval"),
        (&["frobnicate"], "frobnicate"),
    ];
    for (args, needle) in cases {
        let out = s.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn bad_config_files_exit_2_with_file_and_line() {
    let s = Sandbox::new();
    let file = s.dir.path().join("tributary.toml");
    std::fs::write(&file, "[source]\nurl = \"gen:\"\nseeed = \"7\"\n").unwrap();
    let out = s.run(&["count"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("tributary.toml") && err.contains("line 3"),
        "{err}"
    );
    assert!(err.contains("seeed"), "{err}");

    std::fs::write(&file, "[source\nurl = ").unwrap();
    let out = s.run(&["count"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("line 1"), "{}", stderr(&out));

    std::fs::write(&file, "[processor]\nbatch_size = \"big\"\n").unwrap();
    let out = s.run(&["count"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("line 2"), "{}", stderr(&out));

    let out = s.run(&["--config", "/nonexistent/t.toml", "count"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("/nonexistent/t.toml"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn config_file_env_and_flags_layer_in_that_order() {
    let s = Sandbox::new();
    std::fs::write(
        s.dir.path().join("tributary.toml"),
        "[source]\nseed = \"file\"\n[processor]\nbatch_size = 17\n[log]\ntopic = \"from_file\"\n",
    )
    .unwrap();
    let out = s
        .cmd(&["config", "check"])
        .env("TRIBUTARY_TOPIC", "from_env")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("seed = \"file\""), "{text}");
    assert!(text.contains("batch_size = 17"), "{text}");
    assert!(text.contains("topic = \"from_env\""), "{text}");

    // TRIBUTARY_CONFIG names another file; empty, it is unset like every
    // other variable, and the file in the working directory counts.
    std::fs::write(
        s.dir.path().join("other.toml"),
        "[log]\ntopic = \"other\"\n",
    )
    .unwrap();
    for (value, topic) in [("other.toml", "other"), ("", "from_file")] {
        let out = s
            .cmd(&["config", "check"])
            .env("TRIBUTARY_CONFIG", value)
            .output()
            .unwrap();
        assert!(out.status.success(), "{value:?}: {}", stderr(&out));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&format!("topic = \"{topic}\"")),
            "{value:?}: {text}"
        );
    }
}

#[test]
fn config_check_shows_what_the_environment_sets_and_refuses_what_it_cannot_use() {
    let s = Sandbox::new();
    let out = s
        .cmd(&["config", "check"])
        .env("TRIBUTARY_BATCH_SIZE", "7")
        .env("TRIBUTARY_SEED", "42")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("batch_size = 7"), "{text}");
    assert!(text.contains("seed = \"42\""), "{text}");
    for command in [
        &["config", "check"][..],
        &["run", "--records", "1"],
        &["count"],
    ] {
        let out = s
            .cmd(command)
            .env("TRIBUTARY_BATCH_SIZE", "garbage")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{command:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("TRIBUTARY_BATCH_SIZE") && stderr(&out).contains("garbage"),
            "{command:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn files_the_config_names_must_be_regular_and_small() {
    let s = Sandbox::new();
    // Before: /dev/zero was read until the kernel killed the process.
    let out = s.run(&["--config", "/dev/zero", "config", "check"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("is a device"), "{}", stderr(&out));
    let out = s.run(&["--config", ".", "count"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("is a directory"), "{}", stderr(&out));
    for (toml, key) in [
        ("[web]\ntoken_file = \"/dev/zero\"\n", "web.token_file"),
        (
            "[sink]\nurl = \"cassandra://127.0.0.1:9/ks.t\"\n[sink.cassandra]\npassword_file = \"/dev/urandom\"\n",
            "sink.cassandra.password_file",
        ),
        (
            "[sink]\nurl = \"cassandra://127.0.0.1:9/ks.t\"\n[sink.cassandra]\ntls_ca_file = \"/dev/zero\"\n",
            "sink.cassandra.tls_ca_file",
        ),
        (
            "[log]\nurl = \"kafka://127.0.0.1:9/t\"\n[log.kafka.properties]\n\"ssl.ca.location\" = \"/dev/zero\"\n",
            "ssl.ca.location",
        ),
    ] {
        s.config(toml);
        let out = s.run(&["config", "check"]);
        assert_eq!(out.status.code(), Some(2), "{toml}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains(key) && err.contains("is a device"),
            "{toml}: {err}"
        );
    }
    let big = s.dir.path().join("big.toml");
    std::fs::write(&big, vec![b'#'; 5 << 20]).unwrap();
    let out = s
        .cmd(&["config", "check"])
        .arg("--config")
        .arg(&big)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("larger than 4096 KiB"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn unusable_data_dir_exits_1_and_names_it() {
    let s = Sandbox::new();
    let file = s.dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let out = s
        .cmd(&["run", "--records", "10"])
        .arg("--data-dir")
        .arg(file.join("data"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("data dir"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"));
    // The data dir itself a file: the message says so, not "File exists".
    let out = s
        .cmd(&["run", "--records", "10"])
        .arg("--data-dir")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("a-file is a file, not a directory"),
        "{}",
        stderr(&out)
    );
}

/// Runs `tributary ARGS`, and once the store holds `rows`, sends SIGTERM;
/// its exit code, stdout and stderr.
fn stopped_once_stored(s: &Sandbox, args: &[&str], rows: u64) -> (Option<i32>, String, String) {
    let mut child = s
        .cmd(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while crate::support::rows_now(&s.store_path()) < rows {
        assert!(
            Instant::now() < deadline,
            "{args:?} never stored {rows} rows"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    crate::support::terminate(&child);
    let code = child.wait().unwrap();
    let (mut out, mut err) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (code.code(), out, err)
}

#[test]
fn sigterm_drains_commits_and_exits_0() {
    let s = Sandbox::new();
    s.run_json(&["ingest", "--records", "2000", "--seed", "term", "--json"]);
    // Ready once it has stored everything there is; then ask it to stop.
    let (code, out, _) =
        stopped_once_stored(&s, &["process", "--follow", "--batch-size", "100"], 2000);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("tributary process: done"), "{out}");
    assert!(out.contains("stored               2000"), "{out}");
    // Its offsets were committed: nothing is left to read.
    let idle = s.run_json(&["process", "--json"]);
    assert_eq!(idle["read"], 0);
}

#[test]
fn burst_mode_keeps_to_its_ticks() {
    let s = Sandbox::new();
    let started = Instant::now();
    let sum = s.run_json(&[
        "run",
        "--duration",
        "2s",
        "--interval",
        "200ms",
        "--per-tick",
        "3",
        "--seed",
        "burst",
        "--json",
    ]);
    let took = started.elapsed();
    let ticks = sum["fetched"].as_u64().unwrap() / 3;
    let skipped = sum["ticks_skipped"].as_u64().unwrap();
    assert_eq!(ticks + skipped, 10, "{sum}");
    assert!(ticks >= 1);
    assert_eq!(sum["stored"].as_u64().unwrap(), ticks * 3);
    assert!(took >= Duration::from_millis(1800), "{took:?}");
}

#[test]
fn status_shows_lag_rows_and_dead_letters() {
    let s = Sandbox::new();
    s.run_json(&["ingest", "--records", "300", "--seed", "st", "--json"]);
    let out = s.run(&["status", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["lag"], 300);
    assert_eq!(v["rows"], 0);
    assert_eq!(v["partitions"][0]["end"], 300);
    s.run_json(&["process", "--json"]);
    let out = s.run(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["lag"], 0);
    assert_eq!(v["rows"], 300);
    assert_eq!(v["partitions"][0]["committed"], 300);
    assert_eq!(v["dead_letters_waiting"], 0);
}

#[test]
fn a_file_of_the_wrong_kind_is_refused_when_opened_before_anything_is_logged() {
    let s = Sandbox::new();
    s.run_json(&["run", "--records", "50", "--seed", "kind", "--json"]);
    let logged = || -> i64 {
        rusqlite::Connection::open(s.log_path())
            .unwrap()
            .query_row("SELECT next_offset FROM topics", [], |r| r.get(0))
            .unwrap()
    };
    let before = logged();
    let log = format!("sqlite:{}", s.log_path().display());
    let store = format!("sqlite:{}", s.store_path().display());
    let cases: [(&[&str], &str); 2] = [
        (&["--sink", &log], "is a tributary log, not a store"),
        (&["--log", &store], "is a tributary store, not a log"),
    ];
    for (flags, want) in cases {
        let mut args = vec!["run", "--records", "50", "--seed", "other"];
        args.extend_from_slice(flags);
        let out = s.run(&args);
        assert_eq!(out.status.code(), Some(1), "{flags:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(want), "{flags:?}: {}", stderr(&out));
    }
    // Someone else's database, with a table of the seed table's name.
    let foreign = s.dir.path().join("theirs.db");
    rusqlite::Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE created_users (a, b); CREATE TABLE topics (x);")
        .unwrap();
    let foreign_url = format!("sqlite:{}", foreign.display());
    let out = s.run(&[
        "run",
        "--records",
        "50",
        "--seed",
        "other",
        "--sink",
        &foreign_url,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("table created_users exists without the columns of the users table (id,"),
        "{err}"
    );
    let out = s.run(&[
        "run",
        "--records",
        "50",
        "--seed",
        "other",
        "--log",
        &foreign_url,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("holds tables (created_users, topics) and is not a tributary log"),
        "{}",
        stderr(&out)
    );
    assert_eq!(logged(), before, "nothing was logged by the refused runs");
    // Another application's database as the store: refused, left as it was.
    let theirs = s.dir.path().join("app.db");
    rusqlite::Connection::open(&theirs)
        .unwrap()
        .execute_batch("CREATE TABLE users (name); INSERT INTO users VALUES ('precious');")
        .unwrap();
    let theirs_url = format!("sqlite:{}", theirs.display());
    for args in [
        &["count", "--sink", &theirs_url][..],
        &["process", "--sink", &theirs_url],
    ] {
        let out = s.run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("holds tables (users) and no table created_users"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    let tables: i64 = rusqlite::Connection::open(&theirs)
        .unwrap()
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 1, "nothing created in someone else's database");
}

#[test]
fn a_backfill_is_capped_before_anything_is_queued() {
    let s = Sandbox::new();
    s.config("[[jobs]]\nname = \"fast\"\nschedule = \"@every 1s\"\n");
    // Thirty years of 1 s slots: before, every slot was built in memory
    // first (a billion; the process aborted on a large allocation).
    let out = s.run(&[
        "jobs",
        "backfill",
        "fast",
        "--from",
        "1996-01-01T00:00:00Z",
        "--to",
        "2026-01-01T00:00:00Z",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("more than 10000 slots"),
        "{}",
        stderr(&out)
    );
    let queued = || -> usize {
        let out = s.run(&["jobs", "runs", "fast", "--json", "--limit", "500"]);
        let runs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        runs.as_array().map(Vec::len).unwrap()
    };
    assert_eq!(queued(), 0, "nothing queued");
    // Within the cap, every slot is queued.
    let out = s.run(&[
        "jobs",
        "backfill",
        "fast",
        "--from",
        "2025-01-01T00:00:00Z",
        "--to",
        "2025-01-01T00:01:40Z",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("queued 100 run(s)"));
    assert_eq!(queued(), 100);
    // The same backfill again queues nothing new.
    let out = s.run(&[
        "jobs",
        "backfill",
        "fast",
        "--from",
        "2025-01-01T00:00:00Z",
        "--to",
        "2025-01-01T00:01:40Z",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("queued 0 run(s)"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(queued(), 100);
    // A range given the wrong way round is a usage error, not "queued 0".
    let out = s.run(&[
        "jobs",
        "backfill",
        "fast",
        "--from",
        "2025-01-02T00:00:00Z",
        "--to",
        "2025-01-01T00:00:00Z",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is not before --to"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn mistakes_in_urls_and_counts_name_the_fix() {
    let s = Sandbox::new();
    let cases: [(&[&str], &str); 7] = [
        (
            &["config", "check", "--log", "kafka:/127.0.0.1:9092"],
            "kafka://HOST:PORT/TOPIC",
        ),
        (
            &["config", "check", "--sink", "cassandra:127.0.0.1"],
            "cassandra://HOST:PORT/KEYSPACE.TABLE",
        ),
        (
            &["config", "check", "--source", "randomuser.me"],
            "write https://randomuser.me/api/",
        ),
        (
            &["config", "check", "--source", "gen:?natt=US"],
            "unknown setting \"natt\"; gen: knows seed, nat and gender",
        ),
        (&["run", "--records", "0"], "give a whole number from 1 up"),
        (&["run", "--records", "-5"], "give a whole number from 1 up"),
        (
            &["run", "--records", "many"],
            "give a count of records from 1 up",
        ),
    ];
    for (args, want) in cases {
        let out = s.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
    }
    // A name that resolves to loopback is a loopback address.
    let out = s
        .cmd(&["config", "check"])
        .env("TRIBUTARY_WEB_LISTEN", "localhost:9000")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("listen = \"127.0.0.1:9000\"") || text.contains("listen = \"[::1]:9000\""),
        "{text}"
    );
}

#[test]
fn a_first_run_prints_no_warning() {
    let s = Sandbox::new();
    let out = s.run(&["run", "--records", "100"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("WARN"), "{}", stderr(&out));
    // The seed it drew is still said, in the summary.
    assert!(String::from_utf8_lossy(&out.stdout).contains("(seed "));
}

#[test]
fn log_lines_carry_no_colour_codes_when_stderr_is_not_a_terminal() {
    let s = Sandbox::new();
    let out = s
        .cmd(&["run", "--records", "10"])
        .env("RUST_LOG", "tributary=info")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("INFO"), "there are log lines to check: {err}");
    assert!(!err.contains('\u{1b}'), "escape codes in {err:?}");
}

#[test]
fn looking_at_a_data_dir_with_nothing_in_it_says_so_and_creates_nothing() {
    let s = Sandbox::new();
    for command in [&["count"][..], &["show"], &["status"], &["dlq", "list"]] {
        let out = s.run(command);
        assert_eq!(out.status.code(), Some(1), "{command:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("no data in") && stderr(&out).contains("tributary run"),
            "{command:?}: {}",
            stderr(&out)
        );
        assert!(!s.data_dir().exists(), "{command:?} created the data dir");
    }
    // An id that names no dead letter is named back, with exit 1.
    s.run_json(&["run", "--records", "10", "--seed", "ids", "--json"]);
    let out = s.run(&["dlq", "replay", "--id", "99", "--id", "98"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no dead letter with id 99, 98"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_stopped_run_says_what_is_left_in_the_log_and_how_to_store_it() {
    let s = Sandbox::new();
    // Ready once rows are being stored; then ask it to stop mid-way.
    let args = [
        "run",
        "--records",
        "5000000",
        "--seed",
        "left",
        "--batch-size",
        "500",
    ];
    let (code, _, err) = stopped_once_stored(&s, &args, 1000);
    assert_eq!(code, Some(0), "{err}");
    // What it says is left is exactly what the next `process` stores.
    let left: u64 = err
        .split("stopped: ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .map(|n| n.parse().unwrap())
        .unwrap_or(0);
    if left > 0 {
        assert!(err.contains("`tributary process`"), "{err}");
    }
    let after = s.run_json(&["process", "--json"]);
    assert_eq!(after["read"], left, "{err}");
}

#[test]
fn a_kafka_url_without_a_topic_says_which_topic_it_uses() {
    let s = Sandbox::new();
    let out = s
        .cmd(&["config", "check", "--log", "kafka://127.0.0.1:9"])
        .env("RUST_LOG", "tributary=info")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let first = stderr(&out).lines().next().unwrap_or_default().to_owned();
    assert!(
        first.contains("names no topic: using users_created"),
        "the first log line: {first}"
    );
}
