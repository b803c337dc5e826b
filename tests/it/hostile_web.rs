//! The dashboard and the inspection commands against hostile clients and
//! huge messages: previews of huge messages and dead letters in bounded
//! memory, slow and half-open connections closed, `show | head` quiet,
//! `show` streaming, source text escaped, duplicate and cross-scheme
//! headers refused, a port in use named.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use tributary::pipeline::log::Log;

use crate::dashboard::{CONFIG, get_json, http, serve};
use crate::support::{Sandbox, run_measured, stderr, terminate};

const MIB: u64 = 1 << 20;

/// The child's peak resident memory so far (VmHWM), in bytes.
fn peak_rss(child: &Child) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kb * 1024
}

fn topic_table(conn: &rusqlite::Connection) -> String {
    let id: i64 = conn
        .query_row(
            "SELECT id FROM topics WHERE name = 'users_created'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    format!("log_{id}")
}

/// Appends `n` messages of `bytes` each straight into the embedded log
/// (not JSON: the processor dead-letters them).
async fn huge_messages(s: &Sandbox, n: i64, bytes: usize) {
    std::fs::create_dir_all(s.data_dir()).unwrap();
    drop(Log::open(&s.log_config()).await.unwrap());
    let conn = rusqlite::Connection::open(s.log_path()).unwrap();
    let table = topic_table(&conn);
    let next: i64 = conn
        .query_row(
            "SELECT next_offset FROM topics WHERE name = 'users_created'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    for i in next..next + n {
        let mut payload = vec![b'x'; bytes];
        payload[0] = b'0' + (i % 10) as u8;
        conn.execute(
            &format!("INSERT INTO {table} (offset, ts_ms, key, payload) VALUES (?1, ?2, ?3, ?4)"),
            rusqlite::params![
                i,
                1_700_000_000_000i64 + i,
                format!("k{i}").into_bytes(),
                payload
            ],
        )
        .unwrap();
    }
    conn.execute(
        "UPDATE topics SET next_offset = ?1 WHERE name = 'users_created'",
        [next + n],
    )
    .unwrap();
}

/// Writes `n` dead letters straight into the embedded log.
fn dead_letters(s: &Sandbox, n: usize, reason: &str, payload: impl Fn(usize) -> Vec<u8>) {
    let conn = rusqlite::Connection::open(s.log_path()).unwrap();
    let tx = conn.unchecked_transaction().unwrap();
    for i in 0..n {
        tx.execute(
            "INSERT INTO dead_letters (created_ms, stage, reason, payload, source_position,
                                       fingerprint)
             VALUES (1700000000000, 'source', ?1, ?2, ?3, ?3)",
            rusqlite::params![reason, payload(i), format!("test#{i}")],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

fn wait_ready(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = http(port, "GET", "/readyz", &[], "");
        if status == 200 {
            return;
        }
        assert!(Instant::now() < deadline, "never ready: {status} {body}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_answers_previews_of_huge_messages_in_bounded_memory() {
    let s = Sandbox::new();
    s.config(CONFIG);
    // 20 users stored, then given 5 MiB first names.
    let run = s.run(&["run", "--records", "20", "--seed", "7"]);
    assert!(run.status.success(), "{}", stderr(&run));
    let store = rusqlite::Connection::open(s.store_path()).unwrap();
    store
        .execute(
            "UPDATE created_users SET first_name = id || ?1",
            [("n".repeat(5 << 20))],
        )
        .unwrap();
    drop(store);
    huge_messages(&s, 20, 10 << 20).await;
    dead_letters(&s, 20, "too big", |_| vec![b'y'; 10 << 20]);
    // The processor's work is done before serve starts, so serve's memory is
    // the dashboard's.
    let out = s.run(&["process"]);
    let status = s.run_json(&["status", "--json"]);
    assert_eq!(status["lag"], 0, "{status}\n{}", stderr(&out));
    let mut srv = serve(&s, &[], &[]);
    let port = srv.port;
    let messages = get_json(port, "/api/v1/topic/messages?limit=200", &[]);
    let messages = messages["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 40);
    for m in &messages[..20] {
        assert_eq!(m["payload_bytes"], 10 << 20, "{}", m["key"]);
        assert!(m["text"].as_str().unwrap().len() <= 4096);
    }
    let rows = get_json(port, "/api/v1/rows?limit=200", &[]);
    let rows = rows["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 20);
    for r in rows {
        let name = r["first_name"].as_str().unwrap();
        assert!(
            name.ends_with('…') && name.chars().count() <= 1025,
            "{}",
            name.len()
        );
    }
    let letters = get_json(port, "/api/v1/dead-letters?limit=1000&all=true", &[]);
    let letters = letters["dead_letters"].as_array().unwrap();
    assert!(letters.len() >= 20, "{}", letters.len());
    for l in letters {
        assert_eq!(l["payload_bytes"], 10 << 20);
        assert!(l["payload"].as_str().unwrap().len() <= 4096);
    }
    let rss = peak_rss(&srv.child.0);
    eprintln!("serve peak RSS: {} MiB", rss / MIB);
    terminate(&srv.child.0);
    let _ = srv.child.0.wait();
    assert!(
        rss < 128 * MIB,
        "serve peaked at {} MiB answering previews",
        rss / MIB
    );
    // `dlq list` reads its page of letters cut to a line's preview.
    let (code, rss) = run_measured(s.cmd(&["dlq", "list", "--all", "--limit", "1000"]));
    assert_eq!(code, Some(0));
    eprintln!("dlq list peak RSS: {} MiB", rss / MIB);
    assert!(rss < 96 * MIB, "dlq list peaked at {} MiB", rss / MIB);
}

#[test]
fn half_open_and_idle_connections_are_closed_and_readyz_still_answers() {
    let s = Sandbox::new();
    s.config(CONFIG);
    let srv = serve(&s, &[], &[("TRIBUTARY_WEB_HEADER_TIMEOUT", "1s")]);
    let port = srv.port;
    wait_ready(port);
    let mut half_open: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
            c.write_all(b"GET / HTTP/1.1\r\nHost: x").unwrap();
            c
        })
        .collect();
    // A kept-alive connection that goes quiet after one request.
    let mut idle = TcpStream::connect(("127.0.0.1", port)).unwrap();
    idle.write_all(format!("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").as_bytes())
        .unwrap();
    // A body that never arrives.
    let mut slow_body = TcpStream::connect(("127.0.0.1", port)).unwrap();
    slow_body
        .write_all(
            format!(
                "POST /api/v1/login HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
                 X-Tributary-Request: 1\r\nContent-Length: 100\r\n\r\n{{\"tok"
            )
            .as_bytes(),
        )
        .unwrap();
    assert_eq!(http(port, "GET", "/readyz", &[], "").0, 200);
    // Each is closed by the server (EOF or reset), well before this bound.
    half_open.push(idle);
    for (i, c) in half_open.iter_mut().enumerate() {
        c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let mut sink = Vec::new();
        match c.read_to_end(&mut sink) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("connection {i} still open: {e}"),
        }
    }
    slow_body
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut answer = String::new();
    let _ = slow_body.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(http(port, "GET", "/readyz", &[], "").0, 200);
}

#[test]
fn small_refusals_405_origin_scheme_and_repeated_headers() {
    let s = Sandbox::new();
    s.config(CONFIG);
    let srv = serve(&s, &[], &[]);
    let port = srv.port;
    let (status, body) = http(port, "GET", "/api/v1/jobs/random_users/trigger", &[], "");
    assert_eq!(status, 405);
    let v: serde_json::Value = serde_json::from_str(&body).expect("a JSON body");
    assert!(v["error"].is_string(), "{v}");
    let post = |headers: &[(&str, &str)]| {
        let mut all = vec![("X-Tributary-Request", "1")];
        all.extend_from_slice(headers);
        http(port, "POST", "/api/v1/jobs/random_users/pause", &all, "").0
    };
    let this = format!("http://127.0.0.1:{port}");
    let https = format!("https://127.0.0.1:{port}");
    assert_eq!(post(&[("Origin", &this)]), 200);
    // Another scheme on the same host and port is another site.
    assert_eq!(post(&[("Origin", &https)]), 403);
    // A second Origin is not left unchecked: the request is refused.
    assert_eq!(
        post(&[("Origin", &this), ("Origin", "http://evil.example")]),
        400
    );
    assert_eq!(
        post(&[
            ("Sec-Fetch-Site", "same-origin"),
            ("Sec-Fetch-Site", "cross-site")
        ]),
        400
    );
}

/// Spawns `args` with stdout piped, reads one line and closes the pipe:
/// the command must end without a panic (0, or SIGPIPE's quiet death).
fn closed_early(s: &Sandbox, args: &[&str]) {
    use std::os::unix::process::ExitStatusExt;
    let mut child = s
        .cmd(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(!first.is_empty(), "{args:?} printed nothing");
    // The reader is gone now.
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    assert!(
        out.status.success() || out.status.signal() == Some(libc::SIGPIPE),
        "{args:?}: {:?} {err}",
        out.status
    );
}

#[test]
fn show_and_dlq_list_end_quietly_when_the_reader_goes_away() {
    let s = Sandbox::new();
    assert!(
        s.run(&["run", "--records", "3000", "--seed", "7"])
            .status
            .success()
    );
    dead_letters(&s, 3000, "not a user", |i| {
        format!("payload {i} ").repeat(20).into_bytes()
    });
    closed_early(&s, &["show", "--limit", "3000"]);
    closed_early(&s, &["show", "--json", "--limit", "3000"]);
    closed_early(&s, &["dlq", "list", "--limit", "3000"]);
    closed_early(&s, &["dlq", "list", "--json", "--limit", "3000"]);
}

#[test]
fn show_streams_rows_in_bounded_memory_whatever_the_limit() {
    let s = Sandbox::new();
    assert!(
        s.run(&["run", "--records", "20", "--seed", "7"])
            .status
            .success()
    );
    let conn = rusqlite::Connection::open(s.store_path()).unwrap();
    // 20 rows of 5 MiB first names: 100 MiB of rows.
    conn.execute(
        "UPDATE created_users SET first_name = id || ?1",
        [("n".repeat(5 << 20))],
    )
    .unwrap();
    drop(conn);
    let (code, rss) = run_measured(s.cmd(&["show", "--json", "--limit", "1000000"]));
    assert_eq!(code, Some(0));
    eprintln!("show --json peak RSS: {} MiB", rss / MIB);
    assert!(rss < 96 * MIB, "show peaked at {} MiB", rss / MIB);
}

#[test]
fn source_control_characters_are_escaped_in_show_and_dlq_list() {
    let s = Sandbox::new();
    assert!(
        s.run(&["run", "--records", "5", "--seed", "7"])
            .status
            .success()
    );
    let conn = rusqlite::Connection::open(s.store_path()).unwrap();
    conn.execute(
        "UPDATE created_users SET first_name = ?1
         WHERE rowid = (SELECT max(rowid) FROM created_users)",
        ["Eve\u{1b}[2J\u{1b}]0;pwned\u{7}"],
    )
    .unwrap();
    dead_letters(&s, 1, "bad \u{1b}[31mred", |_| b"\x1b[2Jwiped".to_vec());
    for args in [&["show"][..], &["dlq", "list"][..]] {
        let out = s.run(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}'),
            "{args:?}: {text:?}"
        );
        assert!(text.contains("\\x1b["), "{args:?}: {text}");
    }
}

#[test]
fn a_port_in_use_is_the_same_usage_error_for_serve_and_mock_api() {
    let s = Sandbox::new();
    s.config(CONFIG);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let serve = s.run(&["serve", "--listen", &listen]);
    let mock = s.run(&["mock-api", "--port", &port]);
    for (what, out, flag) in [("serve", &serve, "--listen"), ("mock-api", &mock, "--port")] {
        let err = stderr(out);
        assert_eq!(out.status.code(), Some(2), "{what}: {err}");
        assert!(
            err.contains(&port) && err.contains("in use"),
            "{what}: {err}"
        );
        assert!(err.contains(flag), "{what}: {err}");
    }
}
