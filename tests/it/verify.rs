//! `tributary verify`: a clean run passes; a row deleted from the store, a
//! deleted log, an extra row (with --strict), a message dropped without a
//! dead letter and messages not processed yet fail it, each named; dead
//! letters account for poison messages; the log and store may be Kafka and
//! Cassandra.

use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use tributary::pipeline::log::{Log, LogRecord};
use tributary::pipeline::source::Generator;

use crate::support::{Reap, Sandbox, rows_now, stderr, unique};

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `verify --json ARGS`: the exit code and the report.
fn verify_json(s: &Sandbox, args: &[&str]) -> (i32, serde_json::Value) {
    let mut all = vec!["verify", "--json"];
    all.extend_from_slice(args);
    let out = s.run(&all);
    let code = out.status.code().expect("an exit code");
    let report = serde_json::from_str(stdout(&out).trim())
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(&out), stderr(&out)));
    (code, report)
}

fn clean_run(s: &Sandbox, records: u64) {
    let summary = s.run_json(&[
        "run",
        "--records",
        &records.to_string(),
        "--seed",
        "1",
        "--json",
    ]);
    assert_eq!(summary["stored"], records, "{summary}");
}

fn store(s: &Sandbox) -> rusqlite::Connection {
    rusqlite::Connection::open(s.store_path()).expect("store opens")
}

/// Some id of the store, by its row order.
fn an_id(s: &Sandbox, nth: i64) -> String {
    store(s)
        .query_row(
            "SELECT id FROM created_users ORDER BY rowid LIMIT 1 OFFSET ?1",
            [nth],
            |r| r.get(0),
        )
        .unwrap()
}

fn good(k: u64) -> Vec<u8> {
    Generator::new("verify", vec![], None)
        .user(k)
        .to_row()
        .unwrap()
        .to_json()
}

fn good_id(k: u64) -> String {
    Generator::new("verify", vec![], None)
        .user(k)
        .to_row()
        .unwrap()
        .id
        .to_string()
}

#[test]
fn a_clean_run_verifies() {
    let s = Sandbox::new();
    clean_run(&s, 5000);
    let (code, r) = verify_json(&s, &[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["log_messages"], 5000, "{r}");
    assert_eq!(r["log_ids"], 5000, "{r}");
    assert_eq!(r["present"], 5000, "{r}");
    assert_eq!(r["missing"], 0, "{r}");
    assert_eq!(r["store_rows"], 5000, "{r}");
    assert_eq!(r["extra"], 0, "{r}");
    assert_eq!(r["missing_ids"], serde_json::json!([]), "{r}");
    assert_eq!(r["log"]["partitions"][0]["end"], 5000, "{r}");
    assert_eq!(r["log"]["partitions"][0]["committed"], 5000, "{r}");

    let out = s.run(&["verify"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("verify: OK"), "{text}");
    assert!(text.contains("present in the store"), "{text}");
    // No scratch file is left behind.
    let left: Vec<_> = std::fs::read_dir(s.data_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".verify-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_row_deleted_from_the_store_is_named() {
    let s = Sandbox::new();
    clean_run(&s, 5000);
    let victim = an_id(&s, 1234);
    let deleted = store(&s)
        .execute("DELETE FROM created_users WHERE id = ?1", [&victim])
        .unwrap();
    assert_eq!(deleted, 1);

    let out = s.run(&["verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(text.contains(&victim), "{text}");
    assert!(text.contains("missing ids (1)"), "{text}");
    assert!(
        stderr(&out).contains("1 id of the log is missing from the store"),
        "{}",
        stderr(&out)
    );

    let (code, r) = verify_json(&s, &[]);
    assert_eq!(code, 1);
    assert_eq!(r["missing"], 1, "{r}");
    assert_eq!(r["present"], 4999, "{r}");
    let listed = r["missing_ids"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{r}");
    assert_eq!(listed[0]["id"], victim.as_str(), "{r}");
}

#[test]
fn show_limits_the_list_and_json_has_all_of_it() {
    let s = Sandbox::new();
    clean_run(&s, 2000);
    let n = store(&s)
        .execute(
            "DELETE FROM created_users WHERE rowid IN (SELECT rowid FROM created_users LIMIT 30)",
            [],
        )
        .unwrap();
    assert_eq!(n, 30);
    let out = s.run(&["verify", "--show", "5"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("missing ids (30, first 5"), "{text}");
    let listed = text
        .lines()
        .filter(|l| l.contains("  partition 0 offset "))
        .count();
    assert_eq!(listed, 5, "{text}");
    let (_, r) = verify_json(&s, &["--show", "5"]);
    assert_eq!(r["missing_ids"].as_array().unwrap().len(), 30);
}

#[test]
fn a_deleted_log_is_reported_not_passed() {
    let s = Sandbox::new();
    clean_run(&s, 1000);
    for entry in std::fs::read_dir(s.data_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("log.db")
        {
            std::fs::remove_file(path).unwrap();
        }
    }
    let out = s.run(&["verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        all.contains("the log holds no messages: nothing to verify against"),
        "{all}"
    );
    assert!(all.contains("does not exist"), "{all}");
    assert!(!s.log_path().exists(), "verify must not create a new log");

    // An empty log (not deleted, just nothing in it) beside a full store
    // fails too.
    let other = format!("sqlite:{}", s.dir.path().join("empty.db").display());
    assert!(s.run(&["status", "--log", &other]).status.success());
    let out = s.run(&["verify", "--log", &other]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("nothing to verify against; the store has 1000 rows"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn strict_fails_on_a_row_the_log_never_had() {
    let s = Sandbox::new();
    clean_run(&s, 1000);
    let stranger = "00000000-0000-4000-8000-00000000beef";
    let mut cols = vec!["?1"];
    cols.extend(std::iter::repeat_n("'x'", 11));
    store(&s)
        .execute(
            &format!("INSERT INTO created_users VALUES ({})", cols.join(", ")),
            [stranger],
        )
        .unwrap();

    // Without --strict it is counted, not failed on.
    let (code, r) = verify_json(&s, &[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["extra"], 1, "{r}");
    assert!(r.get("extra_ids").is_none(), "{r}");

    let (code, r) = verify_json(&s, &["--strict"]);
    assert_eq!(code, 1, "{r}");
    assert_eq!(r["extra_ids"], serde_json::json!([stranger]), "{r}");
    let out = s.run(&["verify", "--strict"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains(stranger), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("1 id of the store is not in the log"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn poison_messages_are_accounted_for_by_their_dead_letters() {
    let s = Sandbox::new();
    std::fs::create_dir_all(s.data_dir()).unwrap();
    let log = Log::open(&s.log_config()).await.unwrap();
    let mut records = Vec::new();
    for k in 0..50 {
        // The seed DAG's way: no key, the id in the JSON.
        records.push(LogRecord {
            key: None,
            payload: good(k),
        });
    }
    // A message with no id at all, one that is not JSON, one with an id
    // but a field missing, one keyed by a row that will not decode.
    let mut no_phone: serde_json::Value = serde_json::from_slice(&good(100)).unwrap();
    no_phone.as_object_mut().unwrap().remove("phone");
    records.extend([
        LogRecord {
            key: None,
            payload: br#"{"first_name":"no id"}"#.to_vec(),
        },
        LogRecord {
            key: None,
            payload: b"this is not json".to_vec(),
        },
        LogRecord {
            key: None,
            payload: no_phone.to_string().into_bytes(),
        },
        LogRecord {
            key: Some(good_id(101).into_bytes()),
            payload: good(101)[..40].to_vec(),
        },
    ]);
    // The same message twice (a harmless repeat), and one id with another
    // payload (a conflict; the store keeps the last).
    records.push(LogRecord {
        key: None,
        payload: good(0),
    });
    let mut changed: serde_json::Value = serde_json::from_slice(&good(1)).unwrap();
    changed["phone"] = "000".into();
    records.push(LogRecord {
        key: None,
        payload: changed.to_string().into_bytes(),
    });
    log.append(records).await.unwrap();
    let summary = s.run_json(&["process", "--json"]);
    assert_eq!(summary["dead_lettered"], 4, "{summary}");

    let (code, r) = verify_json(&s, &[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["log_messages"], 56, "{r}");
    assert_eq!(r["log_ids"], 52, "{r}");
    assert_eq!(r["present"], 50, "{r}");
    assert_eq!(r["dead_lettered"], 2, "{r}");
    assert_eq!(r["missing"], 0, "{r}");
    assert_eq!(r["undecodable"], 2, "{r}");
    assert_eq!(r["undecodable_dead_lettered"], 2, "{r}");
    assert_eq!(r["undecodable_lost"], 0, "{r}");
    assert_eq!(r["repeats"], 1, "{r}");
    assert_eq!(r["conflicting_ids"], 1, "{r}");
    let undecodable = r["undecodable_messages"].as_array().unwrap();
    assert_eq!(undecodable.len(), 2, "{r}");
    assert!(undecodable.iter().all(|u| u["dead_letter"].is_i64()), "{r}");

    // A dead letter lost by hand: its id is missing, its message is
    // dropped silently; both fail.
    let conn = rusqlite::Connection::open(s.log_path()).unwrap();
    let gone = conn
        .execute("DELETE FROM dead_letters WHERE offset IN (50, 53)", [])
        .unwrap();
    assert_eq!(gone, 2);
    let (code, r) = verify_json(&s, &[]);
    assert_eq!(code, 1, "{r}");
    assert_eq!(r["undecodable_lost"], 1, "{r}");
    assert_eq!(r["missing"], 1, "{r}");
    assert_eq!(r["missing_ids"][0]["id"], good_id(101).as_str(), "{r}");
    assert_eq!(r["missing_ids"][0]["offset"], 53, "{r}");
    let out = s.run(&["verify"]);
    assert!(
        stdout(&out).contains("partition 0 offset 50  NO dead letter"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn messages_not_processed_yet_fail_unless_allowed() {
    let s = Sandbox::new();
    let summary = s.run_json(&["ingest", "--records", "300", "--seed", "2", "--json"]);
    assert_eq!(summary["logged"], 300);
    let (code, r) = verify_json(&s, &[]);
    assert_eq!(code, 1, "{r}");
    assert_eq!(r["pending"], 300, "{r}");
    assert_eq!(r["missing"], 0, "{r}");
    assert_eq!(
        r["store"]["absent"]
            .as_str()
            .map(|a| a.contains("does not exist")),
        Some(true),
        "{r}"
    );
    let (code, r) = verify_json(&s, &["--allow-pending"]);
    assert_eq!(code, 0, "{r}");
    assert!(!s.store_path().exists(), "verify must not create the store");
    let processed = s.run_json(&["process", "--json"]);
    assert_eq!(processed["stored"], 300);
    let (code, r) = verify_json(&s, &[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["present"], 300, "{r}");
}

#[test]
fn a_store_without_its_table_is_empty_not_recreated() {
    let s = Sandbox::new();
    clean_run(&s, 500);
    store(&s).execute("DROP TABLE created_users", []).unwrap();
    let (code, r) = verify_json(&s, &[]);
    assert_eq!(code, 1, "{r}");
    assert_eq!(r["missing"], 500, "{r}");
    assert_eq!(r["store_rows"], 0, "{r}");
    assert!(
        r["store"]["absent"]
            .as_str()
            .unwrap()
            .contains("has no table created_users"),
        "{r}"
    );
    let tables: i64 = store(&s)
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'created_users'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 0, "verify must not create the table");

    // And with the store's file gone.
    std::fs::remove_file(s.store_path()).unwrap();
    let (code, r) = verify_json(&s, &[]);
    assert_eq!(code, 1, "{r}");
    assert_eq!(r["missing"], 500, "{r}");
    assert!(
        r["store"]["absent"]
            .as_str()
            .unwrap()
            .contains("does not exist"),
        "{r}"
    );
    assert!(!s.store_path().exists(), "verify must not create the store");
}

#[test]
fn both_empty_passes_and_bad_flags_are_usage_errors() {
    let s = Sandbox::new();
    std::fs::create_dir_all(s.data_dir()).unwrap();
    // A log that exists but holds nothing, and no store: nothing to lose.
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(tributary::pipeline::log::Log::open(&s.log_config()))
        .unwrap();
    let (code, r) = verify_json(&s, &[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["log_messages"], 0, "{r}");
    let out = s.run(&["verify", "--show", "many"]);
    assert_eq!(out.status.code(), Some(2));
    let out = s.run(&["verify", "--log", "ftp://nowhere"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// While `run` appends and stores, `verify --allow-pending` never reports a
/// missing row: what is behind the commit it read first is in the store.
#[test]
fn verify_during_a_run_never_reports_a_missing_row() {
    let s = Sandbox::new();
    let child = s
        .cmd(&[
            "run",
            "--records",
            "60000",
            "--seed",
            "3",
            "--batch-size",
            "200",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Reap(child);
    let deadline = Instant::now() + Duration::from_secs(120);
    while rows_now(&s.store_path()) < 2000 {
        assert!(Instant::now() < deadline, "no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut checks = 0;
    while child.0.try_wait().unwrap().is_none() && checks < 5 {
        let (code, r) = verify_json(&s, &["--allow-pending"]);
        assert_eq!(r["missing"], 0, "{r}");
        assert_eq!(r["undecodable_lost"], 0, "{r}");
        assert_eq!(code, 0, "{r}");
        checks += 1;
    }
    assert!(child.0.wait().unwrap().success());
    assert!(checks > 0, "the run ended before verify could look");
    let (code, r) = verify_json(&s, &["--strict"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["present"], 60000, "{r}");
}

/// Peak RSS of verify over 200,000 records stays small: ids are streamed
/// through the scratch file, never held.
#[test]
fn verify_memory_stays_flat_over_200_000_records() {
    let s = Sandbox::new();
    clean_run(&s, 200_000);
    let (code, r) = verify_json(&s, &[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["present"], 200_000, "{r}");
    let rss = r["peak_rss_bytes"].as_u64().expect("peak RSS on Linux");
    {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "verify over 200,000 records: peak RSS {:.1} MiB in {:.1} s",
            rss as f64 / (1 << 20) as f64,
            r["elapsed_secs"].as_f64().unwrap()
        );
    }
    assert!(rss < 96 << 20, "peak RSS {rss} bytes");
}

fn kafka(test: &str) -> Option<String> {
    crate::support::kafka(test)
}

fn cassandra(test: &str) -> Option<String> {
    crate::support::cassandra(test)
}

#[tokio::test]
async fn kafka_log_verifies_and_names_a_deleted_row() {
    let Some(b) = kafka("verify_kafka_log") else {
        return;
    };
    let s = Sandbox::new();
    let topic = unique("verify");
    let url = format!("kafka://{b}/{topic}");
    let summary = s.run_json(&[
        "run",
        "--records",
        "5000",
        "--seed",
        "v",
        "--log",
        &url,
        "--group",
        &topic,
        "--json",
    ]);
    assert_eq!(summary["stored"], 5000, "{summary}");
    // Seed-DAG style messages (no key) and one that is not JSON.
    let log = Log::open(&crate::support::kafka_log(&b, &topic, 3))
        .await
        .unwrap();
    log.append(vec![
        LogRecord {
            key: None,
            payload: good(7),
        },
        LogRecord {
            key: None,
            payload: b"not json".to_vec(),
        },
    ])
    .await
    .unwrap();
    let processed = s.run_json(&["process", "--log", &url, "--group", &topic, "--json"]);
    assert_eq!(processed["dead_lettered"], 1, "{processed}");

    let (code, r) = verify_json(&s, &["--log", &url, "--group", &topic]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["log_messages"], 5002, "{r}");
    assert_eq!(r["present"], 5001, "{r}");
    assert_eq!(r["missing"], 0, "{r}");
    assert_eq!(r["undecodable_dead_lettered"], 1, "{r}");
    assert_eq!(r["log"]["partitions"].as_array().unwrap().len(), 3, "{r}");

    let victim = an_id(&s, 10);
    store(&s)
        .execute("DELETE FROM created_users WHERE id = ?1", [&victim])
        .unwrap();
    let (code, r) = verify_json(&s, &["--log", &url, "--group", &topic]);
    assert_eq!(code, 1, "{r}");
    assert_eq!(r["missing_ids"][0]["id"], victim.as_str(), "{r}");

    // A topic that does not exist is reported, and not created.
    let gone = format!("kafka://{b}/{}", unique("absent"));
    let out = s.run(&["verify", "--log", &gone]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
}

/// More dead letters than a page of them: each is found by the message it
/// stands for, across the pages, none twice.
#[tokio::test]
async fn kafka_verify_pages_through_many_dead_letters() {
    let Some(b) = kafka("verify_kafka_many_letters") else {
        return;
    };
    let s = Sandbox::new();
    let topic = unique("verifyletters");
    let url = format!("kafka://{b}/{topic}");
    let log = Log::open(&crate::support::kafka_log(&b, &topic, 3))
        .await
        .unwrap();
    const POISON: u64 = 21_000;
    for chunk in 0..POISON / 1000 {
        let records = (0..1000)
            .map(|k| LogRecord {
                key: Some(format!("p{chunk}-{k}").into_bytes()),
                payload: format!("not json {chunk}-{k}").into_bytes(),
            })
            .chain(std::iter::once(LogRecord {
                key: None,
                payload: good(chunk),
            }))
            .collect();
        log.append(records).await.unwrap();
    }
    let processed = s.run_json(&["process", "--log", &url, "--group", &topic, "--json"]);
    assert_eq!(processed["dead_lettered"], POISON, "{processed}");
    let (code, r) = verify_json(&s, &["--log", &url, "--group", &topic]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["log_messages"], POISON + POISON / 1000, "{r}");
    // Each poison message's id is accounted for by its letter, not missing.
    assert_eq!(r["dead_lettered"], POISON, "{r}");
    assert_eq!(r["missing"], 0, "{r}");
    assert_eq!(r["present"], POISON / 1000, "{r}");
}

#[tokio::test]
async fn cassandra_store_verifies_and_names_a_deleted_row() {
    let Some(n) = cassandra("verify_cassandra_store") else {
        return;
    };
    let s = Sandbox::new();
    let ks = unique("verify");
    let sink = format!("cassandra://{n}/{ks}.created_users");
    let summary = s.run_json(&[
        "run",
        "--records",
        "12000",
        "--seed",
        "vc",
        "--sink",
        &sink,
        "--json",
    ]);
    assert_eq!(summary["stored"], 12000, "{summary}");
    // More ids than one page of the store's ids.
    let (code, r) = verify_json(&s, &["--sink", &sink, "--strict"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["present"], 12000, "{r}");
    assert_eq!(r["store_rows"], 12000, "{r}");
    assert_eq!(r["missing"], 0, "{r}");

    // A row deleted by hand in Cassandra is named.
    let victim: String = rusqlite::Connection::open(s.log_path())
        .unwrap()
        .query_row("SELECT key FROM log_1 WHERE offset = 777", [], |r| {
            r.get::<_, Vec<u8>>(0)
        })
        .map(|k| String::from_utf8(k).unwrap())
        .unwrap();
    let session = scylla::client::session_builder::SessionBuilder::new()
        .known_node(&n)
        .build()
        .await
        .unwrap();
    session
        .query_unpaged(
            format!("DELETE FROM {ks}.created_users WHERE id = ?"),
            (uuid::Uuid::parse_str(&victim).unwrap(),),
        )
        .await
        .unwrap();
    let (code, r) = verify_json(&s, &["--sink", &sink]);
    assert_eq!(code, 1, "{r}");
    assert_eq!(r["missing"], 1, "{r}");
    assert_eq!(r["missing_ids"][0]["id"], victim.as_str(), "{r}");
    assert_eq!(r["missing_ids"][0]["offset"], 777, "{r}");
}

#[test]
fn kafka_into_cassandra_verifies() {
    let (Some(b), Some(n)) = (
        kafka("verify_kafka_into_cassandra"),
        cassandra("verify_kafka_into_cassandra"),
    ) else {
        return;
    };
    let s = Sandbox::new();
    let topic = unique("verify_kc");
    let log = format!("kafka://{b}/{topic}");
    let sink = format!("cassandra://{n}/{topic}.created_users");
    let summary = s.run_json(&[
        "run",
        "--records",
        "8000",
        "--seed",
        "vkc",
        "--log",
        &log,
        "--group",
        &topic,
        "--sink",
        &sink,
        "--json",
    ]);
    assert_eq!(summary["stored"], 8000, "{summary}");
    let (code, r) = verify_json(&s, &["--log", &log, "--group", &topic, "--sink", &sink]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["present"], 8000, "{r}");
    assert_eq!(r["missing"], 0, "{r}");
}
