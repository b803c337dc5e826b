//! The HTTP source against `tributary mock-api` with injected faults: every
//! record arrives, retries are counted, and the users are the generator's.

use crate::support::{MockApi, Sandbox, stderr};

#[test]
fn all_records_arrive_through_500s_429s_error_bodies_and_latency() {
    let s = Sandbox::new();
    let api = MockApi::start(
        &s,
        &[
            "--fail-rate",
            "0.2",
            "--rate-limit-rate",
            "0.1",
            "--error-body-rate",
            "0.1",
            "--retry-after",
            "0",
            "--latency",
            "5ms",
            "--fault-seed",
            "42",
        ],
    );
    let sum = s.run_json(&[
        "run",
        "--source",
        &api.base,
        "--records",
        "5000",
        "--batch-size",
        "250",
        "--seed",
        "h",
        "--json",
    ]);
    assert_eq!(sum["fetched"], 5000);
    assert_eq!(sum["stored"], 5000);
    assert_eq!(sum["dead_lettered"], 0);
    let retries = sum["source_retries"].as_u64().unwrap();
    assert!(
        retries > 0,
        "faults were injected, so retries must be counted: {sum}"
    );

    // The mock serves the generator: the same seed through `gen:` gives the
    // very same users, so a second run changes nothing.
    let same = s.run_json(&["run", "--records", "5000", "--seed", "h", "--json"]);
    assert_eq!(same["duplicates_skipped"], 5000, "{same}");
    assert_eq!(s.count(), 5000);
}

/// An API that answers page 1 whatever the page asked: the same users come
/// again and again. They are stored once, the repeats are counted, and a
/// warning names what the API ignores, once, not at every page.
#[test]
fn an_api_that_ignores_the_page_is_named_once_and_its_repeats_counted() {
    let s = Sandbox::new();
    let api = MockApi::start(&s, &["--ignore-page"]);
    let out = s.run(&[
        "run",
        "--source",
        &api.base,
        "--records",
        "2000",
        "--batch-size",
        "500",
        "--seed",
        "p",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let sum: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(sum["fetched"], 2000, "{sum}");
    assert_eq!(s.count(), 500, "{sum}");
    assert_eq!(sum["duplicates_skipped"], 1500, "{sum}");
    let err = stderr(&out);
    assert_eq!(err.matches("it ignores `page`").count(), 1, "{err}");
    assert!(
        err.contains("answered page 1 when asked for page "),
        "{err}"
    );

    // An API that follows `page` gets no such word.
    let api = MockApi::start(&s, &[]);
    let out = s.run(&[
        "run",
        "--source",
        &api.base,
        "--records",
        "1000",
        "--batch-size",
        "500",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("it ignores"), "{}", stderr(&out));
}

#[test]
fn versioned_paths_and_nationalities_work() {
    let s = Sandbox::new();
    let api = MockApi::start(&s, &[]);
    for version in ["1.0", "1.3", "1.4"] {
        let url = format!("{}{version}/?nat=IR,UA", api.base);
        let sum = s.run_json(&[
            "run",
            "--source",
            &url,
            "--records",
            "300",
            "--seed",
            version,
            "--json",
        ]);
        assert_eq!(sum["stored"], 300, "{version}: {sum}");
    }
    let out = s.run(&["show", "--json", "--limit", "900"]);
    let non_ascii = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_ascii())
        .count();
    assert!(
        non_ascii > 400,
        "Persian and Cyrillic names expected, got {non_ascii}"
    );
}

#[test]
fn an_api_that_always_fails_gives_up_with_a_clear_error() {
    let s = Sandbox::new();
    let api = MockApi::start(&s, &["--fail-rate", "1"]);
    std::fs::write(
        s.dir.path().join("tributary.toml"),
        "[source]\nmax_attempts = 3\nbackoff_initial = \"10ms\"\n",
    )
    .unwrap();
    let out = s.run(&[
        "run",
        "--source",
        &api.base,
        "--records",
        "10",
        "--seed",
        "x",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("gave up after 3 attempts"), "{err}");
    assert!(err.contains("500"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn mock_api_refuses_non_loopback_binds() {
    let s = Sandbox::new();
    let out = s.run(&["mock-api", "--bind", "0.0.0.0", "--port", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("loopback"), "{}", stderr(&out));
}

#[test]
fn a_slow_api_times_out_and_gives_up_with_a_clear_error() {
    let s = Sandbox::new();
    let api = MockApi::start(&s, &["--latency", "3s"]);
    std::fs::write(
        s.dir.path().join("tributary.toml"),
        "[source]\nmax_attempts = 2\nread_timeout = \"200ms\"\nbackoff_initial = \"10ms\"\n",
    )
    .unwrap();
    let out = s.run(&[
        "ingest",
        "--source",
        &api.base,
        "--records",
        "10",
        "--seed",
        "x",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("gave up after 2 attempts"), "{err}");
    assert!(err.contains("timed out"), "{err}");
}
