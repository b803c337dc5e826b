//! The Random User and JSON API sources against a hostile server (the test's
//! own raw HTTP/1.1): answers larger than any page in every framing, a body
//! that never ends, a server that trickles, gzip and HTML where JSON was
//! expected, a user with invalid UTF-8 or the nil UUID among good ones,
//! and pages that hold nothing for ever. Each ends in bounded memory and a
//! clear outcome: a dead letter, or exit 1 naming the URL.

use std::io::Write;
use std::net::TcpStream;
use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use tributary::pipeline::source::Generator;

use crate::support::hostile::{Hostile, chunk, head, stream};
use crate::support::{Sandbox, run_within, stderr};

/// Two attempts a page, quick backoff: failures show in a second or two.
const TWO_ATTEMPTS: &str =
    "[source]\nmax_attempts = 2\nbackoff_initial = \"10ms\"\nbackoff_max = \"20ms\"\n";

/// What a run may hold at most, whatever the server sends.
const RSS_LIMIT: u64 = 256 << 20;

/// More than any page may be: the servers below offer this much (they stop
/// when the client goes).
const HUGE: usize = 300 << 20;

/// The `--json` summary a run prints, even when it fails.
fn summary(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_else(|| {
        panic!("no summary; stderr: {}", stderr(out));
    });
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// `run` of `records` users from `api` in pages of `page`, with its summary.
fn run(s: &Sandbox, api: &Hostile, records: u64, page: u64) -> (Output, Value) {
    let (records, page) = (records.to_string(), page.to_string());
    let out = run_within(
        s,
        &[
            "run",
            "--source",
            &api.base,
            "--records",
            &records,
            "--batch-size",
            &page,
            "--seed",
            "h",
            "--json",
        ],
        Duration::from_secs(120),
    );
    let sum = summary(&out);
    (out, sum)
}

fn assert_failed_naming(out: &Output, api: &Hostile, says: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&api.base), "the URL is named: {err}");
    for s in says {
        assert!(err.contains(s), "{s:?} expected in: {err}");
    }
    assert!(!err.contains("panicked"), "{err}");
}

fn assert_bounded(sum: &Value) {
    let rss = sum["peak_rss_bytes"]
        .as_u64()
        .expect("peak RSS in the summary");
    assert!(
        rss < RSS_LIMIT,
        "peak RSS {} MiB is over {} MiB",
        rss >> 20,
        RSS_LIMIT >> 20
    );
}

/// A JSON page with no users, padded to `HUGE` bytes or without end.
fn padded_page(conn: &mut TcpStream, framing: &str) -> std::io::Result<()> {
    let json = "Content-Type: application/json";
    match framing {
        "chunked" => {
            conn.write_all(&head("200 OK", &[json, "Transfer-Encoding: chunked"]))?;
            chunk(conn, br#"{"results": [], "pad": ""#)?;
            stream(conn, HUGE, true)?;
            chunk(conn, br#""}"#)?;
            conn.write_all(b"0\r\n\r\n")
        }
        "until-close" => {
            conn.write_all(&head("200 OK", &[json]))?;
            conn.write_all(br#"{"results": [], "pad": ""#)?;
            stream(conn, HUGE, false)?;
            conn.write_all(br#""}"#)
        }
        "declared" => {
            let length = format!("Content-Length: {}", HUGE + 27);
            conn.write_all(&head("200 OK", &[json, &length]))?;
            conn.write_all(br#"{"results": [], "pad": ""#)?;
            stream(conn, HUGE, false)?;
            conn.write_all(br#""}"#)
        }
        "endless" => {
            conn.write_all(&head("200 OK", &[json, "Transfer-Encoding: chunked"]))?;
            chunk(conn, br#"{"results": [], "pad": ""#)?;
            loop {
                stream(conn, 64 << 20, true)?;
            }
        }
        other => unreachable!("{other}"),
    }
}

#[test]
fn an_answer_over_the_page_cap_is_cut_there_in_every_framing() {
    for framing in ["chunked", "until-close", "declared", "endless"] {
        let s = Sandbox::new();
        s.config(TWO_ATTEMPTS);
        let api = Hostile::start(move |_, _, conn| padded_page(conn, framing));
        // Pages of 5,000 users: the largest cap, 32 MiB.
        let (out, sum) = run(&s, &api, 5000, 5000);
        assert_failed_naming(
            &out,
            &api,
            &["gave up after 2 attempts", "larger than the 32 MiB cap"],
        );
        assert_bounded(&sum);
        assert_eq!(api.seen().len(), 2, "{framing}: retried once");
    }
    // A small page has a small cap.
    let s = Sandbox::new();
    s.config(TWO_ATTEMPTS);
    let api = Hostile::start(|_, _, conn| padded_page(conn, "endless"));
    let (out, _) = run(&s, &api, 200, 200);
    assert_failed_naming(&out, &api, &["larger than the 1600 KiB cap"]);
}

#[test]
fn an_error_answer_is_read_only_to_its_first_bytes() {
    for chunked in [false, true] {
        let s = Sandbox::new();
        s.config(TWO_ATTEMPTS);
        let api = Hostile::start(move |_, _, conn| {
            let length = format!("Content-Length: {HUGE}");
            let framing = if chunked {
                "Transfer-Encoding: chunked"
            } else {
                &length
            };
            conn.write_all(&head(
                "404 Not Found",
                &["Content-Type: text/plain", framing],
            ))?;
            stream(conn, HUGE, chunked)
        });
        let (out, sum) = run(&s, &api, 5000, 5000);
        assert_failed_naming(&out, &api, &["http 404 Not Found: xxxx"]);
        assert!(stderr(&out).len() < 4096, "{}", stderr(&out));
        assert_bounded(&sum);
        assert_eq!(api.seen().len(), 1, "a 404 is not retried");
    }
}

#[test]
fn a_trickling_server_times_out_each_attempt_and_the_run_fails() {
    let s = Sandbox::new();
    // A request may take connect_timeout + 10 read timeouts: 3.1 s here. The
    // server sends a byte every 100 ms, well within each read timeout.
    s.config(
        "[source]\nmax_attempts = 2\nbackoff_initial = \"10ms\"\nbackoff_max = \"20ms\"\n\
         connect_timeout = \"100ms\"\nread_timeout = \"300ms\"\n",
    );
    let api = Hostile::start(|_, _, conn| {
        conn.write_all(&head(
            "200 OK",
            &[
                "Content-Type: application/json",
                "Transfer-Encoding: chunked",
            ],
        ))?;
        loop {
            chunk(conn, b" ")?;
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let (out, _) = run(&s, &api, 10, 10);
    assert_failed_naming(
        &out,
        &api,
        &[
            "gave up after 2 attempts",
            "timed out (no data for 300ms, or the whole answer not within 3s 100ms)",
        ],
    );
    assert_eq!(api.seen().len(), 2);
}

#[test]
fn gzip_and_html_answers_say_what_arrived() {
    for (headers, body, says) in [
        (
            vec!["Content-Type: text/html; charset=utf-8"],
            &b"<!DOCTYPE html><html><body>Service Unavailable</body></html>"[..],
            r#"got text/html; charset=utf-8: "<!DOCTYPE html><html><body>Service Unavailable"#,
        ),
        (
            // Compressed though nothing asked for it: the client does not
            // decompress, so the cap counts these very bytes.
            vec!["Content-Type: application/json", "Content-Encoding: gzip"],
            &b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xed\xc1\x01\x0d\x00\x00\x00"[..],
            r#"got application/json (content-encoding gzip): "\x1f\x8b\x08\x00"#,
        ),
    ] {
        let s = Sandbox::new();
        s.config(TWO_ATTEMPTS);
        let api = Hostile::start(move |_, _, conn| {
            let length = format!("Content-Length: {}", body.len());
            let mut all = headers.clone();
            all.push(&length);
            conn.write_all(&head("200 OK", &all))?;
            conn.write_all(body)
        });
        let (out, _) = run(&s, &api, 10, 10);
        assert_failed_naming(&out, &api, &["malformed api response", says]);
        assert!(!stderr(&out).contains("expected value at line 1 column 1"));
    }
}

/// Ten generated users as the API serves them, the one at `bad` replaced by
/// what `spoil` makes of its JSON.
fn page_with_one_bad_user(bad: usize, spoil: impl Fn(Vec<u8>) -> Vec<u8>) -> Vec<u8> {
    let users = Generator::new("bad-neighbour", Vec::new(), None).page(1, 10);
    let mut body = br#"{"results": ["#.to_vec();
    for (i, user) in users.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        let json = serde_json::to_vec(user).unwrap();
        body.extend(if i == bad { spoil(json) } else { json });
    }
    body.extend_from_slice(
        br#"], "info": {"seed": "h", "results": 10, "page": 1, "version": "1.4"}}"#,
    );
    body
}

/// Serves `body` as the answer to every request.
fn serving(body: Vec<u8>) -> Hostile {
    Hostile::start(move |_, _, conn| {
        let length = format!("Content-Length: {}", body.len());
        conn.write_all(&head(
            "200 OK",
            &["Content-Type: application/json", &length],
        ))?;
        conn.write_all(&body)
    })
}

/// `json` with the first `from` replaced by `to`.
fn replaced(json: Vec<u8>, from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = json
        .windows(from.len())
        .position(|w| w == from)
        .expect("the field is there");
    [&json[..at], to, &json[at + from.len()..]].concat()
}

/// The source's dead letters, as `dlq list --json` prints them.
fn letters(s: &Sandbox) -> Vec<Value> {
    let out = s.run(&["dlq", "list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_user_with_invalid_utf8_is_a_dead_letter_and_its_neighbours_are_stored() {
    let s = Sandbox::new();
    s.config(TWO_ATTEMPTS);
    let api = serving(page_with_one_bad_user(4, |json| {
        replaced(json, br#""first":""#, b"\"first\":\"Bj\xF6rn ")
    }));
    let (out, sum) = run(&s, &api, 10, 10);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(sum["stored"], 9, "{sum}");
    assert_eq!(sum["dead_lettered"], 1, "{sum}");
    assert_eq!(s.count(), 9);
    let letters = letters(&s);
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["stage"], "source");
    let reason = letters[0]["reason"].as_str().unwrap();
    assert!(reason.contains("malformed json"), "{reason}");
    assert!(
        letters[0]["payload"]
            .as_str()
            .unwrap()
            .contains("Bj\u{FFFD}rn"),
        "the user's bytes are kept: {}",
        letters[0]["payload"]
    );
    assert_eq!(api.seen().len(), 1, "the page is not fetched again");
}

#[test]
fn a_user_with_the_nil_uuid_is_a_dead_letter() {
    let s = Sandbox::new();
    s.config(TWO_ATTEMPTS);
    let api = serving(page_with_one_bad_user(7, |json| {
        let uuid = serde_json::from_slice::<Value>(&json).unwrap()["login"]["uuid"]
            .as_str()
            .unwrap()
            .to_owned();
        replaced(
            json,
            uuid.as_bytes(),
            b"00000000-0000-0000-0000-000000000000",
        )
    }));
    let (out, sum) = run(&s, &api, 10, 10);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(sum["stored"], 9, "{sum}");
    assert_eq!(sum["dead_lettered"], 1, "{sum}");
    let letters = letters(&s);
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["stage"], "source");
    let reason = letters[0]["reason"].as_str().unwrap();
    assert!(reason.contains("nil UUID"), "{reason}");
}

#[test]
fn empty_pages_in_a_row_fail_the_run_naming_the_url() {
    let s = Sandbox::new();
    s.config(TWO_ATTEMPTS);
    let api =
        serving(br#"{"results": [], "info": {"seed": "h", "results": 0, "page": 1}}"#.to_vec());
    let (out, sum) = run(&s, &api, 100_000, 1000);
    assert_failed_naming(&out, &api, &["3 pages in a row held no users"]);
    assert_eq!(sum["fetched"], 0, "{sum}");
    assert_eq!(api.seen().len(), 3);
}

#[test]
fn a_json_api_whose_empty_pages_keep_naming_a_next_cursor_fails() {
    let s = Sandbox::new();
    let api = Hostile::start(|n, _, conn| {
        let body = format!(r#"{{"data": [], "meta": {{"next": "c{n}"}}}}"#);
        let length = format!("Content-Length: {}", body.len());
        conn.write_all(&head(
            "200 OK",
            &["Content-Type: application/json", &length],
        ))?;
        conn.write_all(body.as_bytes())
    });
    s.config(&format!(
        r#"
[[pipelines]]
name = "endless"

[pipelines.source]
url = "{}orders"
records = "/data"
paginate = {{ cursor = "/meta/next", param = "cursor" }}

[pipelines.table]
key = ["id"]
columns = {{ id = "text" }}
"#,
        api.base
    ));
    let out = run_within(&s, &["run", "--json"], Duration::from_secs(120));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("3 pages in a row held no records"), "{err}");
    assert!(err.contains(&format!("{}orders", api.base)), "{err}");
    assert_eq!(api.seen().len(), 3);
}

#[test]
fn other_query_parameters_of_a_random_user_url_reach_the_api() {
    let s = Sandbox::new();
    let users = Generator::new("q", Vec::new(), None).page(1, 5);
    let body = serde_json::to_vec(&serde_json::json!({ "results": users })).unwrap();
    let api = serving(body);
    let url = format!("{}?apikey=k3y-value&seed=q&nat=US&results=77", api.base);
    let out = run_within(
        &s,
        &[
            "run",
            "--source",
            &url,
            "--records",
            "5",
            "--batch-size",
            "5",
            "--json",
        ],
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let seen = api.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].contains("apikey=k3y-value"), "{seen:?}");
    assert!(
        seen[0].contains("results=5&seed=q&page=1&nat=US"),
        "{seen:?}"
    );
    assert!(!seen[0].contains("results=77"), "{seen:?}");
    assert!(!stderr(&out).contains("k3y-value"), "{}", stderr(&out));
}

/// The longest message the embedded log holds.
fn longest_logged(log: &std::path::Path) -> i64 {
    rusqlite::Connection::open(log)
        .unwrap()
        .query_row(
            "SELECT coalesce(max(length(payload)), 0) FROM log_1",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

#[test]
fn a_record_over_the_message_cap_is_a_dead_letter_and_never_logged() {
    let s = Sandbox::new();
    s.config(TWO_ATTEMPTS);
    // A first name of 600 KB: the page is within its cap, the user is not
    // within the log's 256 KiB a message.
    let api = serving(page_with_one_bad_user(3, |json| {
        let first = serde_json::from_slice::<Value>(&json).unwrap()["name"]["first"]
            .as_str()
            .unwrap()
            .to_owned();
        let huge = format!("\"first\":\"{}\"", "x".repeat(600_000));
        replaced(
            json,
            format!("\"first\":\"{first}\"").as_bytes(),
            huge.as_bytes(),
        )
    }));
    for round in 0..2 {
        let (out, sum) = run(&s, &api, 10, 10);
        assert!(out.status.success(), "{}", stderr(&out));
        if round == 0 {
            assert_eq!(sum["stored"], 9, "{sum}");
        }
        assert_eq!(sum["dead_lettered"], 1, "{sum}");
    }
    assert!(
        longest_logged(&s.log_path()) < 256 << 10,
        "nothing oversize in the log"
    );
    let letters = letters(&s);
    assert_eq!(letters.len(), 1, "fetched twice, one letter: {letters:?}");
    let reason = letters[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("over the log's limit of 262144 bytes"),
        "{reason}"
    );
    assert_eq!(
        letters[0]["payload_bytes"], 4096,
        "the letter keeps the first bytes"
    );
    // Its replay cannot store it, and keeps saying why.
    let out = s.run(&["dlq", "replay"]);
    assert!(!out.status.success(), "{}", stderr(&out));
    let again = crate::hostile_source::letters(&s);
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0]["reason"], letters[0]["reason"]);
    assert!(reason.contains("cannot be replayed"), "{reason}");

    // A user pipeline's record: the same rule.
    let s = Sandbox::new();
    let big = "y".repeat(400_000);
    std::fs::write(
        s.dir.path().join("events.ndjson"),
        format!("{{\"id\": 1, \"note\": \"small\"}}\n{{\"id\": 2, \"note\": \"{big}\"}}\n{{\"id\": 3, \"note\": \"\"}}\n"),
    )
    .unwrap();
    s.config(
        r#"[[pipelines]]
name = "events"
source = { file = "events.ndjson" }
table = { key = ["id"], columns = { id = "bigint", note = "text" } }
"#,
    );
    let out = s.run(&["run", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let sum: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sum["stored"], 2, "{sum}");
    assert_eq!(sum["dead_lettered"], 1, "{sum}");
    let log = s.data_dir().join("pipelines/events/log.db");
    assert!(longest_logged(&log) < 256 << 10);
}
