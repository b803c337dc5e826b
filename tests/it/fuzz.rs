//! Fuzz targets for what reads outside input: the Random User page decoder,
//! the log's row decoder, the config loader (TOML and environment), schedule
//! parsing and the web API's JSON bodies.
//!
//! Each target starts from its corpus in `tests/fuzz/corpus/<target>/`
//! (real inputs), replays every input once found to fail
//! (`tests/fuzz/found/<target>/`), then mutates corpus inputs with
//! proptest's generators — byte flips, inserts of the target's tokens,
//! deletions, truncations, splices of two inputs — for
//! `TRIBUTARY_FUZZ_SECONDS` (default 2) per target. An input that panics
//! or breaks a property is written to `found/` (commit it: it is then a
//! regression test) and the test fails naming the file.

use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config as RunnerConfig, RngAlgorithm, TestRng, TestRunner};

use tributary::config::{self, Config, Overrides};
use tributary::record::{Row, decode_page};
use tributary::scheduler::Schedule;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz")
}

fn inputs(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .map(|p| {
                    let bytes = std::fs::read(&p).expect("fuzz input readable");
                    (p, bytes)
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// One change to an input.
#[derive(Debug, Clone)]
enum Edit {
    Flip {
        at: usize,
        byte: u8,
    },
    Token {
        at: usize,
        token: usize,
    },
    Delete {
        at: usize,
        len: usize,
    },
    Truncate {
        at: usize,
    },
    Splice {
        at: usize,
        from: usize,
        start: usize,
    },
    Repeat {
        at: usize,
        len: usize,
        times: usize,
    },
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Edit::Flip { at, byte }),
        (any::<usize>(), any::<usize>()).prop_map(|(at, token)| Edit::Token { at, token }),
        (any::<usize>(), 1..64usize).prop_map(|(at, len)| Edit::Delete { at, len }),
        any::<usize>().prop_map(|at| Edit::Truncate { at }),
        (any::<usize>(), any::<usize>(), any::<usize>())
            .prop_map(|(at, from, start)| Edit::Splice { at, from, start }),
        (any::<usize>(), 1..32usize, 2..200usize).prop_map(|(at, len, times)| Edit::Repeat {
            at,
            len,
            times
        }),
    ]
}

fn apply(mut input: Vec<u8>, edits: &[Edit], tokens: &[&[u8]], corpus: &[Vec<u8>]) -> Vec<u8> {
    for e in edits {
        let pos = |at: usize, len: usize| if len == 0 { 0 } else { at % (len + 1) };
        match *e {
            Edit::Flip { at, byte } => {
                if !input.is_empty() {
                    let i = at % input.len();
                    input[i] = byte;
                }
            }
            Edit::Token { at, token } => {
                let i = pos(at, input.len());
                let t = tokens[token % tokens.len()];
                input.splice(i..i, t.iter().copied());
            }
            Edit::Delete { at, len } => {
                let i = pos(at, input.len());
                let end = (i + len).min(input.len());
                input.drain(i..end);
            }
            Edit::Truncate { at } => input.truncate(pos(at, input.len())),
            Edit::Splice { at, from, start } => {
                let other = &corpus[from % corpus.len()];
                let s = pos(start, other.len());
                let i = pos(at, input.len());
                input.truncate(i);
                input.extend_from_slice(&other[s..]);
            }
            Edit::Repeat { at, len, times } => {
                let i = pos(at, input.len());
                let end = (i + len).min(input.len());
                let piece = input[i..end].to_vec();
                for _ in 0..times {
                    input.splice(end..end, piece.iter().copied());
                }
            }
        }
    }
    input
}

/// Runs `check` on the corpus, the inputs found before, then mutations for
/// the time budget. `check` panics on a broken property.
fn fuzz(target: &str, tokens: &[&[u8]], check: impl Fn(&[u8]) + Sync) {
    let corpus_dir = fuzz_dir().join("corpus").join(target);
    let found_dir = fuzz_dir().join("found").join(target);
    let corpus: Vec<Vec<u8>> = inputs(&corpus_dir).into_iter().map(|(_, b)| b).collect();
    assert!(!corpus.is_empty(), "no corpus in {}", corpus_dir.display());
    // Each case on a thread with the stack of a release binary's main
    // thread and more: a debug build's frames are several times larger, and
    // libtest's threads have 2 MiB. A recursion without a bound still
    // overflows it.
    let run_one = |input: &[u8]| {
        std::thread::scope(|scope| {
            std::thread::Builder::new()
                .stack_size(32 << 20)
                .spawn_scoped(scope, || catch_unwind(AssertUnwindSafe(|| check(input))))
                .expect("a fuzz thread starts")
                .join()
                .expect("caught above")
        })
    };
    for (path, bytes) in inputs(&corpus_dir).into_iter().chain(inputs(&found_dir)) {
        assert!(
            run_one(&bytes).is_ok(),
            "{target}: {} fails",
            path.display()
        );
    }
    let seconds: u64 = std::env::var("TRIBUTARY_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let seed: u64 = std::env::var("TRIBUTARY_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    // Said at once and past the test's captured output: a case that aborts
    // the process (a stack overflow) leaves no other trace.
    let _ = writeln!(
        std::io::stderr(),
        "fuzz {target}: seed {seed} (TRIBUTARY_FUZZ_SEED={seed} replays it)"
    );
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(
        RunnerConfig::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes),
    );
    let strategy = (
        0..corpus.len(),
        prop::collection::vec(edit(), 1..8),
        prop::collection::vec(any::<u8>(), 0..64),
        any::<u8>(),
    );
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut cases = 0u64;
    while Instant::now() < deadline {
        let (pick, edits, random, mode) = strategy.new_tree(&mut runner).unwrap().current();
        // One case in sixteen is plain random bytes; the rest mutate the corpus.
        let input = if mode % 16 == 0 {
            random
        } else {
            apply(corpus[pick].clone(), &edits, tokens, &corpus)
        };
        cases += 1;
        if run_one(&input).is_err() {
            std::fs::create_dir_all(&found_dir).unwrap();
            let name = format!("{:016x}", fnv(&input));
            let path = found_dir.join(name);
            std::fs::write(&path, &input).unwrap();
            panic!(
                "{target}: an input broke a property (seed {seed}, case {cases}); \
                 saved as {}",
                path.display()
            );
        }
    }
    eprintln!("fuzz {target}: {cases} cases in {seconds} s, seed {seed}");
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

const JSON_TOKENS: &[&[u8]] = &[
    b"\"",
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b",",
    b"null",
    b"true",
    b"1e999",
    b"-0",
    b"18446744073709551616",
    b"\"\\ud800\"",
    b"\\u0000",
    b"\xff\xfe",
    b"\"results\":",
    b"\"login\":{\"uuid\":\"00000000-0000-0000-0000-000000000000\"}",
    b"\"dob\":{\"date\":\"\",\"age\":-1}",
    b"\"id\":",
    b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
];

#[test]
fn page_decoder() {
    fuzz("page", JSON_TOKENS, |input| {
        let Ok(page) = decode_page(input) else {
            return;
        };
        for user in &page.users {
            if let Ok(row) = user.to_row() {
                // A row that left the decoder reads back as itself.
                let again = Row::from_json(&row.to_json(), usize::MAX).expect("row reads back");
                assert_eq!(again, row);
            }
        }
    });
}

#[test]
fn row_decoder() {
    fuzz("row", JSON_TOKENS, |input| {
        if let Ok(row) = Row::from_json(input, 1 << 20) {
            let again = Row::from_json(&row.to_json(), 1 << 20).expect("row reads back");
            assert_eq!(again, row);
        }
    });
}

const CONFIG_TOKENS: &[&[u8]] = &[
    b"\n",
    b"[",
    b"]]\n",
    b" = ",
    b"\"",
    b"[[pipelines]]\nname = \"p\"\n",
    b"[[jobs]]\nname = \"j\"\nschedule = \"@hourly\"\n",
    b"url = \"sqlite:\"\n",
    b"url = \"kafka://127.0.0.1:9/t\"\n",
    b"url = \"cassandra://u:p@127.0.0.1:9/k.t\"\n",
    b"batch_size = 0\n",
    b"batch_size = 18446744073709551615\n",
    b"\"/dev/zero\"",
    b"transform = \".x = 1\"\n",
    b"retention_age = \"999999y\"\n",
    b"timezone = \"Mars/Olympus\"\n",
    b"{ duration = \"1ms\", interval = \"1d\" }",
];

#[test]
fn config_loader() {
    fuzz("config", CONFIG_TOKENS, |input| {
        let Ok(text) = std::str::from_utf8(input) else {
            return;
        };
        let Ok(raw) = config::parse(text) else {
            return;
        };
        // The environment's settings on top, as every command applies them.
        let env = Overrides::from_vars(|name| match name {
            "TRIBUTARY_SEED" => Some("fuzz".into()),
            "TRIBUTARY_BATCH_SIZE" => Some(text.len().to_string().into()),
            _ => None,
        })
        .expect("these variables are valid");
        let over = env.with_flags(Overrides {
            every_pipeline: true,
            ..Overrides::default()
        });
        if let Ok(config) = Config::resolve(raw, None, over) {
            // What `config check` prints is a config the parser takes.
            let printed = config.to_toml();
            config::parse(&printed).unwrap_or_else(|e| panic!("{e}\n{printed}"));
        }
    });
}

#[test]
fn schedule_parser() {
    let tokens: &[&[u8]] = &[
        b"*",
        b"/",
        b"-",
        b",",
        b" ",
        b"0",
        b"59",
        b"60",
        b"99999999999",
        b"@every ",
        b"@",
        b"L",
        b"W",
        b"#",
        b"?",
        b"ms",
        b"1s",
        b"y",
        b"JAN",
        b"MON",
    ];
    fuzz("schedule", tokens, |input| {
        let Ok(text) = std::str::from_utf8(input) else {
            return;
        };
        for tz in [None, Some("Europe/Berlin")] {
            let Ok(schedule) = Schedule::parse(text, tz) else {
                continue;
            };
            let now = chrono::Utc::now();
            if let Some(next) = schedule.next_after(now) {
                assert!(next > now, "{text:?}: next {next} is not after {now}");
            }
            let _ = schedule.latest_at_or_before(now);
        }
    });
}

/// One raw HTTP/1.1 request with `body`; the status, or `None` when the
/// connection broke.
fn post(port: u16, path: &str, body: &[u8]) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).ok()?;
    stream.write_all(body).ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    text.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn web_api_bodies() {
    let s = crate::support::Sandbox::new();
    // A dead letter to replay, so the replay body is checked against data.
    s.run(&["run", "--records", "5", "--seed", "fuzz"]);
    let serve = crate::dashboard::serve(&s, &[], &[]);
    let port = serve.port;
    fuzz("web", JSON_TOKENS, |input| {
        for path in ["/api/v1/dead-letters/replay", "/api/v1/login"] {
            let status = post(port, path, input)
                .unwrap_or_else(|| panic!("{path}: no HTTP answer (did serve die?)"));
            // A body is the client's mistake or fine: never a server error.
            assert!(
                status < 500,
                "{path}: {status} for {:?}",
                String::from_utf8_lossy(input)
            );
        }
    });
    let (status, _) = crate::dashboard::http(port, "GET", "/readyz", &[], "");
    assert_eq!(status, 200, "serve still ready after the fuzzing");
}
