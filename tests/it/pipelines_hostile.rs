//! User pipelines against input and configs meant to break them: records
//! of one key many times in one batch, two pipelines on one table, a source
//! file that is a FIFO. Each test states what must hold.

use std::collections::BTreeMap;
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Sandbox, stderr, unique};
use tributary::pipeline::processor::REPLAY_PAGE;

fn ok(s: &Sandbox, args: &[&str]) -> String {
    let out = s.run(args);
    assert!(
        out.status.success(),
        "{args:?} failed ({:?}):\n{}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every row `show --json` prints, keyed by `id`.
fn rows(s: &Sandbox, args: &[&str]) -> BTreeMap<String, Value> {
    let mut all = vec!["show", "--json", "--limit", "100000"];
    all.extend_from_slice(args);
    ok(s, &all)
        .lines()
        .map(|l| {
            let row: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            (row["id"].as_str().expect("a text id").to_owned(), row)
        })
        .collect()
}

/// An NDJSON file in the sandbox: `n` records over `keys` ids, `n` the
/// record's place in the file.
fn versions_file(s: &Sandbox, name: &str, n: usize, keys: usize) {
    let text: String = (0..n)
        .map(|i| format!("{{\"id\":\"k{}\",\"n\":{i}}}\n", i % keys))
        .collect();
    std::fs::write(s.dir.path().join(name), text).expect("file written");
}

/// Two versions of every key in one batch, and hundreds of one key: the
/// store keeps the last record of each key, as the embedded store does.
/// Writes of one batch run concurrently, so writing every version lets an
/// older one land last.
#[test]
fn cassandra_keeps_the_last_record_of_a_key_repeated_in_a_batch() {
    let Some(node) = crate::support::cassandra("cassandra_keeps_the_last_record_of_a_key") else {
        return;
    };
    let s = Sandbox::new();
    versions_file(&s, "versions.ndjson", 2000, 5);
    let ks = unique("lastwins");
    s.config(&format!(
        r#"
[[pipelines]]
name = "versions"
source = {{ file = "versions.ndjson" }}
sink = "cassandra://{node}/{ks}.versions"
table = {{ key = ["id"], columns = {{ id = "text", n = "int" }} }}
"#
    ));
    let out = ok(&s, &["run", "--json"]);
    let sum: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(sum["balanced"], true, "{sum}");
    assert_eq!(sum["stored"], 2000, "{sum}");
    let got = rows(&s, &[]);
    let want: BTreeMap<String, Value> = (1995..2000)
        .map(|i| {
            (
                format!("k{}", i % 5),
                serde_json::json!({"id": format!("k{}", i % 5), "n": i}),
            )
        })
        .collect();
    assert_eq!(got, want);
}

/// `a-b` and `a_b` are two pipelines, but a table name cannot hold `-`, so
/// both become table `a_b`; with one `[sink]` file they would overwrite
/// each other's rows. So would a `table.name` that differs only in case
/// (SQLite ignores it). Both configs are refused at start, naming the table.
#[test]
fn two_pipelines_on_one_table_are_refused() {
    let s = Sandbox::new();
    std::fs::write(s.dir.path().join("a.ndjson"), "{\"id\":\"a\",\"n\":1}\n").unwrap();
    let two = |first: &str, second: &str| {
        format!(
            r#"
[sink]
url = "sqlite:shared.db"

[[pipelines]]
name = "a-b"
source = {{ file = "a.ndjson" }}
table = {{ {first} key = ["id"], columns = {{ id = "text", n = "int" }} }}

[[pipelines]]
name = "a_b"
source = {{ file = "a.ndjson" }}
table = {{ {second} key = ["id"], columns = {{ id = "text", n = "int" }} }}
"#
        )
    };
    for (first, second) in [("", ""), ("name = \"Orders\",", "name = \"orders\",")] {
        s.config(&two(first, second));
        for args in [&["config", "check"][..], &["run", "--pipeline", "a-b"]] {
            let out = s.run(args);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
            assert!(
                stderr(&out).contains("write the same table"),
                "{args:?}: {}",
                stderr(&out)
            );
        }
    }
    // Their own tables in the one file are fine.
    s.config(&two("name = \"first\",", "name = \"second\","));
    ok(&s, &["run", "--pipeline", "a-b"]);
    ok(&s, &["run", "--pipeline", "a_b"]);
    assert_eq!(rows(&s, &["--pipeline", "a-b"]).len(), 1);
}

/// One pipeline's topic is another's dead-letter topic (`<topic>.dlq`),
/// on brokers listed in other orders: the first would read the second's
/// letters as records, and the second list the first's records as letters
/// (and replay them into its table). Refused at start, naming the topic;
/// no broker is asked.
#[test]
fn a_pipeline_on_another_pipelines_dead_letter_topic_is_refused() {
    let s = Sandbox::new();
    std::fs::write(s.dir.path().join("a.ndjson"), "{\"id\":\"a\"}\n").unwrap();
    let config = |second_topic: &str| {
        format!(
            r#"
[[pipelines]]
name = "pa"
source = {{ file = "a.ndjson" }}
log = "kafka://127.0.0.1:1,h2:9/orders"
table = {{ key = ["id"], columns = {{ id = "text" }} }}

[[pipelines]]
name = "pb"
source = {{ file = "a.ndjson" }}
log = "kafka://h2:9/{second_topic}"
table = {{ key = ["id"], columns = {{ id = "text" }} }}
"#
        )
    };
    s.config(&config("orders.dlq"));
    let out = s.run(&["config", "check"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("share the topic orders.dlq"),
        "{}",
        stderr(&out)
    );
    s.config(&config("orders_b"));
    ok(&s, &["config", "check"]);
}

/// `--source` replaces a file pipeline's source (it was refused as "give
/// url or file, not both", blaming the file), and `--seed` on a pipeline
/// that reads a file or a JSON API is refused (it was silently ignored).
#[test]
fn source_and_seed_flags_on_a_file_pipeline() {
    let s = Sandbox::new();
    std::fs::write(s.dir.path().join("a.ndjson"), "{\"id\":\"a\"}\n").unwrap();
    s.config(
        "[[pipelines]]\nname = \"f\"\nsource = { file = \"a.ndjson\" }\n\
         table = { key = [\"id\"], columns = { id = \"text\" } }\n",
    );
    let text = ok(
        &s,
        &["config", "check", "--source", "http://127.0.0.1:9/orders"],
    );
    assert!(text.contains("http://127.0.0.1:9/orders"), "{text}");
    for args in [
        &["run", "--seed", "7"][..],
        &["ingest", "--seed", "7"],
        &[
            "run",
            "--source",
            "http://127.0.0.1:9/orders",
            "--seed",
            "7",
        ],
    ] {
        let out = s.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("--seed") && stderr(&out).contains("pipeline f: reads a"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}

/// A transform of 5,000 additions in one expression, or of objects nested
/// 300 deep: VRL's compiler recursed once per level and overflowed the
/// stack, aborting the process (`config check` and `run` alike). Refused
/// now, at the place where it passes the bound.
#[test]
fn a_transform_too_deep_for_the_compiler_is_refused_not_a_crash() {
    let s = Sandbox::new();
    std::fs::write(s.dir.path().join("a.ndjson"), "{\"id\":\"a\"}\n").unwrap();
    for (program, said) in [
        (
            format!(".x = {}1", "1 + ".repeat(5000)),
            "more than 128 operators",
        ),
        (
            format!(".x = {}1{}", "{\\\"a\\\":".repeat(300), "}".repeat(300)),
            "brackets nest more than 32 deep",
        ),
    ] {
        s.config(&format!(
            "[[pipelines]]\nname = \"f\"\nsource = {{ file = \"a.ndjson\" }}\n\
             transform = \"{program}\"\n\
             table = {{ key = [\"id\"], columns = {{ id = \"text\" }}, unknown_fields = \"ignore\" }}\n"
        ));
        for args in [&["config", "check"][..], &["run"]] {
            let out = s.run(args);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
            assert!(stderr(&out).contains(said), "{args:?}: {}", stderr(&out));
        }
    }
}

/// Waits for `child` at most `limit`; kills it if it is still running.
fn wait_at_most(mut child: std::process::Child, limit: Duration) -> Option<Output> {
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait works").is_some() {
            return Some(child.wait_with_output().expect("output read"));
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A FIFO as the source file: opening it waits for a writer, and a blocked
/// read cannot be abandoned, so SIGTERM could not stop the run; a record
/// read from it and not yet logged would be gone. It is refused at once.
#[cfg(unix)]
#[test]
fn a_fifo_source_is_refused_at_once() {
    let s = Sandbox::new();
    let made = std::process::Command::new("mkfifo")
        .arg(s.dir.path().join("orders.fifo"))
        .status()
        .expect("mkfifo runs");
    assert!(made.success());
    id_pipeline(&s, "fifo", r#"{ file = "orders.fifo" }"#);
    let child = s
        .cmd(&["run"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("tributary starts");
    let out = wait_at_most(child, Duration::from_secs(30))
        .expect("run with a FIFO source ends by itself instead of waiting for a writer");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not a regular file"),
        "{}",
        stderr(&out)
    );
}

/// A server that answers 200 and then sends its body a byte every 50 ms,
/// for ever: every read comes well within the read timeout.
fn trickling_server() -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                let mut request = [0u8; 4096];
                let _ = conn.read(&mut request);
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                            Transfer-Encoding: chunked\r\n\r\n1\r\n[\r\n";
                if conn.write_all(head.as_bytes()).is_err() {
                    return;
                }
                while conn.write_all(b"1\r\n \r\n").is_ok() {
                    std::thread::sleep(Duration::from_millis(50));
                }
            });
        }
    });
    port
}

/// A slow-loris API: the read timeout alone never fires, so one page would
/// stay open for good, without a word. The whole request has a deadline:
/// each attempt times out, and the run gives up after its attempts, exit 1.
#[test]
fn an_api_that_trickles_its_answer_times_out() {
    let port = trickling_server();
    let s = Sandbox::new();
    s.config(&format!(
        r#"
[[pipelines]]
name = "loris"
source = {{ url = "http://127.0.0.1:{port}/orders", connect_timeout = "200ms", read_timeout = "200ms", max_attempts = 2, backoff_initial = "10ms", backoff_max = "10ms" }}
table = {{ key = ["id"], columns = {{ id = "text" }} }}
"#
    ));
    let child = s
        .cmd(&["run"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("tributary starts");
    let out = wait_at_most(child, Duration::from_secs(60))
        .expect("run against a trickling API ends by itself");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("timed out"), "{}", stderr(&out));
}

/// A pipeline whose transform refuses records marked `bad`, over `records`.
fn refusing_pipeline(s: &Sandbox, records: &str, refuse: bool) {
    refusing_pipeline_into(s, records, refuse, "");
}

/// [`refusing_pipeline`] with a `sink = …` line (none: the embedded store).
fn refusing_pipeline_into(s: &Sandbox, records: &str, refuse: bool, sink: &str) {
    std::fs::write(s.dir.path().join("r.ndjson"), records).unwrap();
    let guard = if refuse {
        "if .bad == true { abort \"bad\" }"
    } else {
        ""
    };
    s.config(&format!(
        r#"
[[pipelines]]
name = "r"
source = {{ file = "r.ndjson" }}
{sink}
transform = '''
{guard}
del(.bad)
'''
table = {{ key = ["id"], columns = {{ id = "text", v = "int" }} }}
"#
    ));
}

/// A record the transform refused, replayed after the fix, is in the store
/// and in the log: when the store is lost and refilled from the log
/// (`process`), the replayed record is there again. Before, replay wrote
/// the store alone and marked the letter replayed, so a refill lost the
/// record without a word.
#[test]
fn a_replayed_record_survives_a_store_refilled_from_the_log() {
    let s = Sandbox::new();
    refusing_pipeline(
        &s,
        "{\"id\":\"a\",\"v\":1,\"bad\":true}\n{\"id\":\"b\",\"v\":2}\n",
        true,
    );
    ok(&s, &["run"]);
    refusing_pipeline(&s, "", false);
    let replayed = ok(&s, &["dlq", "replay"]);
    assert!(replayed.contains("replayed 1 "), "{replayed}");
    assert_eq!(rows(&s, &[]).len(), 2);
    let dir = s.data_dir().join("pipelines").join("r");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("store.db") {
            std::fs::remove_file(&path).unwrap();
        }
    }
    ok(&s, &["process"]);
    let got = rows(&s, &[]);
    assert_eq!(
        got.keys().map(String::as_str).collect::<Vec<_>>(),
        ["a", "b"],
        "{got:?}"
    );
    assert_eq!(got["a"]["v"], 1);
}

/// A record refused while a newer record of its key was stored: replaying
/// it after the fix would write the older record over the newer row,
/// without a word. Its record was never stored, so any row of its key came
/// from another record: the letter stays waiting, saying why, until
/// `--overwrite` asks for it.
#[test]
fn a_replayed_old_record_does_not_overwrite_a_newer_row() {
    replaying_an_old_record_leaves_the_newer_row("");
}

/// The same with the rows in Cassandra, where the row of the key is read
/// by its key.
#[test]
fn a_replayed_old_record_does_not_overwrite_a_newer_row_in_cassandra() {
    let Some(node) = crate::support::cassandra("a_replayed_old_record_in_cassandra") else {
        return;
    };
    let ks = unique("replay_old");
    replaying_an_old_record_leaves_the_newer_row(&format!("sink = \"cassandra://{node}/{ks}.r\""));
}

/// The same with the log and its dead letters on Kafka, where a letter
/// that fails again gets its new reason by a marker message (before, it
/// kept the old one).
#[test]
fn a_replayed_old_record_does_not_overwrite_a_newer_row_from_kafka() {
    let Some(broker) = crate::support::kafka("a_replayed_old_record_from_kafka") else {
        return;
    };
    let topic = unique("replay_old");
    replaying_an_old_record_leaves_the_newer_row(&format!(
        "log = \"kafka://{broker}/{topic}\"\ngroup = \"{topic}\""
    ));
}

fn replaying_an_old_record_leaves_the_newer_row(sink: &str) {
    let s = Sandbox::new();
    // A thousand letters between m's two: the later one is replayed a page
    // after the earlier one (each page used to know only its own writes,
    // so the later letter was held back by the earlier one's row).
    let mut lines = String::from(concat!(
        "{\"id\":\"k\",\"v\":1,\"bad\":true}\n{\"id\":\"k\",\"v\":2}\n",
        "{\"id\":\"j\",\"v\":3,\"bad\":true}\n",
        "{\"id\":\"m\",\"v\":4,\"bad\":true}\n",
    ));
    for i in 0..REPLAY_PAGE {
        lines.push_str(&format!("{{\"id\":\"f{i}\",\"v\":0,\"bad\":true}}\n"));
    }
    lines.push_str("{\"id\":\"m\",\"v\":5,\"bad\":true}\n");
    refusing_pipeline_into(&s, &lines, true, sink);
    ok(&s, &["run"]);
    assert_eq!(rows(&s, &[])["k"]["v"], 2);
    refusing_pipeline_into(&s, "", false, sink);
    let out = s.run(&["dlq", "replay", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            report["replayed"].as_u64(),
            report["still_failing"].as_u64()
        ),
        (Some(3 + REPLAY_PAGE as u64), Some(1)),
        "j, m and the others have no row and are written, m's later letter last; k has one and \
         waits: {report}"
    );
    let got = rows(&s, &[]);
    assert_eq!(got["k"]["v"], 2, "the newer row stays");
    assert_eq!(got["j"]["v"], 3);
    assert_eq!(
        got["m"]["v"], 5,
        "of two letters of a key, the later one is stored"
    );
    let listed = ok(&s, &["dlq", "list", "--json"]);
    let waiting: Vec<Value> = listed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(waiting.len(), 1, "{listed}");
    assert!(
        waiting[0]
            .to_string()
            .contains("another row of this record's key"),
        "{listed}"
    );
    let replayed = ok(&s, &["dlq", "replay", "--overwrite"]);
    assert!(replayed.contains("replayed 1 "), "{replayed}");
    assert_eq!(rows(&s, &[])["k"]["v"], 1, "written over it when asked");
}

/// A table another program made (`orders`, with other columns), named in
/// the config with other case (`Orders`): SQLite names are one table
/// whatever their case, so it is the same table, and it must be checked
/// against the declared one like any existing table. Before, it was taken
/// for missing: rows went into a table of another schema, unchecked, and
/// `show` failed on them. The positions table is tributary's own in any
/// case.
#[test]
fn an_existing_sqlite_table_named_with_other_case_is_checked() {
    let s = Sandbox::new();
    let store = s.dir.path().join("theirs.db");
    let conn = rusqlite::Connection::open(&store).unwrap();
    conn.execute_batch(
        "CREATE TABLE orders (id TEXT PRIMARY KEY, total TEXT, note TEXT);
         INSERT INTO orders VALUES ('z', 'not a number', 'theirs');",
    )
    .unwrap();
    drop(conn);
    std::fs::write(
        s.dir.path().join("o.ndjson"),
        "{\"id\":\"a\",\"total\":2.5}\n",
    )
    .unwrap();
    let config = |name: &str| {
        format!(
            r#"
[[pipelines]]
name = "o"
source = {{ file = "o.ndjson" }}
sink = "sqlite:theirs.db"
table = {{ name = "{name}", key = ["id"], columns = {{ id = "text", total = "double" }} }}
"#
        )
    };
    s.config(&config("Orders"));
    let out = s.run(&["run"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("exists with another schema"),
        "{}",
        stderr(&out)
    );
    let conn = rusqlite::Connection::open(&store).unwrap();
    let n: i64 = conn
        .query_row("SELECT count(*) FROM orders", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1, "their table is left as it was");
    drop(conn);
    // The store's own table, in any case: refused with the configuration.
    s.config(&config("Tributary_Positions"));
    let out = s.run(&["run"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("keeps its position in the log"),
        "{}",
        stderr(&out)
    );
}

/// A server answering every request with one JSON array of `n` empty
/// objects (three bytes each).
fn many_records_server(n: usize) -> u16 {
    let mut body = Vec::with_capacity(n * 3 + 2);
    body.push(b'[');
    for i in 0..n {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(b"{}");
    }
    body.push(b']');
    serving(body)
}

/// A server answering every request with `body` as JSON.
fn serving(body: Vec<u8>) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let port = listener.local_addr().unwrap().port();
    let body = std::sync::Arc::new(body);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let body = body.clone();
            std::thread::spawn(move || {
                let mut request = [0u8; 4096];
                let _ = conn.read(&mut request);
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(head.as_bytes());
                let _ = conn.write_all(&body);
            });
        }
    });
    port
}

/// A user pipeline `name` reading `source` (a TOML value) into a table
/// keyed by a text `id`.
fn id_pipeline(s: &Sandbox, name: &str, source: &str) {
    s.config(&format!(
        r#"
[[pipelines]]
name = "{name}"
source = {source}
table = {{ key = ["id"], columns = {{ id = "text" }} }}
"#
    ));
}

/// [`id_pipeline`] reading the API at `port`.
fn api_pipeline(s: &Sandbox, name: &str, port: u16) {
    id_pipeline(
        s,
        name,
        &format!("{{ url = \"http://127.0.0.1:{port}/orders\" }}"),
    );
}

/// The positions of the dead letters `dlq list` shows, sorted.
fn letter_positions(s: &Sandbox) -> Vec<String> {
    let mut out: Vec<String> = ok(s, &["dlq", "list", "--json"])
        .lines()
        .map(|l| {
            let letter: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            letter["source_position"]
                .as_str()
                .unwrap_or("none")
                .to_owned()
        })
        .collect();
    out.sort();
    out
}

/// A record the table refuses is named by its own place in the source, as
/// a record the source refuses is: its index in an API's answer, its line
/// in a file. It was named by its index among the page's objects: the `{}`
/// at index 1 of `[1, {}, …]` got `#0`, the number's position, and a `{}`
/// on line 4 of a file got `…#lines=1-5#1`.
#[test]
fn a_refused_record_is_named_by_its_place_in_the_source() {
    let port = serving(br#"[1, {}, "x", {"id":"a"}, null]"#.to_vec());
    let s = Sandbox::new();
    api_pipeline(&s, "api", port);
    ok(&s, &["run"]);
    let at = format!("http://127.0.0.1:{port}/orders#");
    assert_eq!(
        letter_positions(&s),
        [0, 1, 2, 4].map(|i| format!("{at}{i}")),
    );

    let s = Sandbox::new();
    std::fs::write(
        s.dir.path().join("f.ndjson"),
        "{\"id\":\"b\"}\n5\n\n{}\n{\"id\":\"c\"}\n",
    )
    .unwrap();
    id_pipeline(&s, "file", r#"{ file = "f.ndjson" }"#);
    ok(&s, &["run"]);
    let positions = letter_positions(&s);
    assert_eq!(positions.len(), 2, "{positions:?}");
    assert!(positions[0].ends_with("f.ndjson#line=2"), "{positions:?}");
    assert!(positions[1].ends_with("f.ndjson#line=4"), "{positions:?}");
}

/// Users a burst's tick cut from their page keep their places in it: the
/// rest of a page of five taken three a tick is `#3` and `#4`, not `#0`
/// and `#1` again. A run that fetches the same page later names them the
/// same way, so it adds no second letter of any of them.
#[test]
fn users_split_across_burst_ticks_keep_their_places() {
    let s = Sandbox::new();
    s.config(
        r#"
[[pipelines]]
name = "refused_users"
source = { url = "gen:?seed=42" }
transform = '''abort "not today"'''
table = { key = ["id"], columns = { id = "text" } }
"#,
    );
    let burst = [
        "run",
        "--json",
        "--duration",
        "1s",
        "--interval",
        "200ms",
        "--per-tick",
        "3",
        "--batch-size",
        "5",
    ];
    let out = ok(&s, &burst);
    let sum: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let fetched = sum["fetched"].as_u64().unwrap();
    assert!(fetched >= 6, "two ticks at least: {sum}");
    let positions = letter_positions(&s);
    assert_eq!(positions.len() as u64, fetched, "{positions:?}");
    let mut unique = positions.clone();
    unique.dedup();
    assert_eq!(unique, positions, "each user its own place");
    let first_page: Vec<&String> = positions
        .iter()
        .filter(|p| p.contains("page-1-of-5#"))
        .collect();
    assert_eq!(first_page.len(), 5, "{positions:?}");
    // The first page again, whole: the same five places, no new letter.
    ok(&s, &["run", "--records", "5", "--batch-size", "5"]);
    assert_eq!(letter_positions(&s), positions);
}

/// One answer of 4 MB holding 1.4 million tiny records (each a dead letter
/// here: no `id`). Parsed at once, such an answer takes some twenty bytes
/// of memory per byte of body (a 30 MB answer of ten million took 566 MiB).
/// The answer is kept as its text and its records are parsed, shaped and
/// logged a thousand at a time: the process stays near its size without
/// it (40 MiB; the 30 MB answer, 64 MiB).
#[test]
fn a_page_of_millions_of_tiny_records_stays_within_bounded_memory() {
    let port = many_records_server(1_400_000);
    let s = Sandbox::new();
    api_pipeline(&s, "tiny", port);
    let out = ok(&s, &["run", "--json"]);
    let sum: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(sum["dead_lettered"], 1_400_000, "{sum}");
    let rss = sum["peak_rss_bytes"].as_u64().unwrap();
    assert!(rss < 64 << 20, "peak RSS {} MiB for a 4 MB page", rss >> 20);
}

/// A Cassandra sink URL names its table; a `table.name` naming another one
/// beside it was ignored, and the rows went to the URL's table. It is a
/// config error now; the same name in both places is fine.
#[test]
fn a_table_name_that_the_cassandra_url_contradicts_is_refused() {
    let s = Sandbox::new();
    let config = |name: &str| {
        format!(
            r#"
[[pipelines]]
name = "tn"
source = {{ file = "tn.ndjson" }}
sink = "cassandra://127.0.0.1:9042/shop.first"
table = {{ name = "{name}", key = ["id"], columns = {{ id = "text" }} }}
"#
        )
    };
    s.config(&config("second"));
    let out = s.run(&["config", "check"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("names table shop.first, the table second"),
        "{}",
        stderr(&out)
    );
    s.config(&config("First"));
    ok(&s, &["config", "check"]);
}
