//! Transport security against real servers: Kafka's SASL_SSL listener
//! (SCRAM-SHA-512) and a TLS-only Cassandra, both with the throwaway CA of
//! `scripts/infra up kafka --secure` / `up cassandra --tls`. The right
//! credentials and CA carry every record end to end; a wrong password, a
//! wrong CA and plaintext to a TLS port each end the run by itself with an
//! error that names the cause, and no password is ever printed. Without the
//! secure servers (`TRIBUTARY_TEST_KAFKA_SECURE`, `TRIBUTARY_TEST_CASSANDRA_TLS`)
//! the tests say loudly that they skipped.

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Sandbox, infra, missing, skipped, unique};

/// Records each end-to-end test moves.
const N: u64 = 2_000;

/// A safety net only: a failing run is expected to end by itself long
/// before this (its connect timeouts are seconds); the tests assert that it
/// did, not how fast.
const KILL_AFTER: Duration = Duration::from_secs(240);

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The SASL_SSL listener and what it takes to use it.
struct SecureKafka {
    bootstrap: String,
    user: String,
    password: String,
    ca: String,
    other_ca: String,
}

/// These tests need servers restarted with TLS, so they run in their own
/// step, when asked (`TRIBUTARY_TEST_TRANSPORT=1`).
fn asked(test: &str) -> bool {
    let asked = std::env::var("TRIBUTARY_TEST_TRANSPORT").is_ok_and(|v| v == "1");
    if !asked {
        skipped(
            test,
            "needs TRIBUTARY_TEST_TRANSPORT=1 and servers started with \
             `scripts/infra up all --secure --tls`",
        );
    }
    asked
}

fn secure_kafka(test: &str) -> Option<SecureKafka> {
    if !asked(test) {
        return None;
    }
    let found = (|| {
        let file = var("TRIBUTARY_TEST_KAFKA_SASL_PASSWORD_FILE")?;
        Some(SecureKafka {
            bootstrap: var("TRIBUTARY_TEST_KAFKA_SECURE")?,
            user: var("TRIBUTARY_TEST_KAFKA_SASL_USER")?,
            password: std::fs::read_to_string(file).ok()?.trim_end().to_owned(),
            ca: var("TRIBUTARY_TEST_TLS_CA")?,
            other_ca: var("TRIBUTARY_TEST_TLS_OTHER_CA")?,
        })
    })();
    if found.is_none() {
        missing(
            test,
            "no Kafka SASL_SSL listener (TRIBUTARY_TEST_KAFKA_SECURE, _SASL_USER, \
             _SASL_PASSWORD_FILE, TRIBUTARY_TEST_TLS_CA, _OTHER_CA; \
             `scripts/infra up kafka --secure` and `scripts/infra env`)",
        );
    }
    found
}

/// The TLS-only Cassandra node and the CAs.
struct TlsCassandra {
    node: String,
    ca: String,
    other_ca: String,
}

fn tls_cassandra(test: &str) -> Option<TlsCassandra> {
    if !asked(test) {
        return None;
    }
    let found = (|| {
        Some(TlsCassandra {
            node: var("TRIBUTARY_TEST_CASSANDRA_TLS")?,
            ca: var("TRIBUTARY_TEST_TLS_CA")?,
            other_ca: var("TRIBUTARY_TEST_TLS_OTHER_CA")?,
        })
    })();
    if found.is_none() {
        missing(
            test,
            "no TLS-only Cassandra (TRIBUTARY_TEST_CASSANDRA_TLS, TRIBUTARY_TEST_TLS_CA, \
             _OTHER_CA; `scripts/infra up cassandra --tls` and `scripts/infra env`)",
        );
    }
    found
}

/// A `[log]` on the SASL_SSL listener trusting `ca`; the password comes
/// from the environment, never from the file.
fn kafka_config(k: &SecureKafka, topic: &str, ca: &str) -> String {
    format!(
        r#"[log]
url = "kafka://{}/{topic}"
[log.kafka]
partitions = 3
[log.kafka.properties]
"security.protocol" = "SASL_SSL"
"sasl.mechanism" = "SCRAM-SHA-512"
"sasl.username" = "{}"
"ssl.ca.location" = "{ca}"
"#,
        k.bootstrap, k.user
    )
}

fn cassandra_config(node: &str, keyspace: &str, ca: Option<&str>) -> String {
    let tls = ca.map_or(String::new(), |ca| format!("tls_ca_file = \"{ca}\"\n"));
    format!(
        "[sink]\nurl = \"cassandra://{node}/{keyspace}.created_users\"\n[sink.cassandra]\n{tls}"
    )
}

/// How a run ended: by itself (`status`), or killed by the safety net.
struct Ended {
    status: ExitStatus,
    killed: bool,
    stdout: String,
    stderr: String,
}

impl Ended {
    fn both(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Runs `cmd` to its end, killing it only if it is still running after
/// [`KILL_AFTER`] (which the caller then reports as a failure).
fn run_to_end(mut cmd: Command) -> Ended {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tributary starts");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + KILL_AFTER;
    let mut killed = false;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            killed = true;
            let _ = child.kill();
            break child.wait().expect("wait");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Ended {
        status,
        killed,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// A run that must fail: it ended by itself, with exit code 1 and an error
/// containing `cause`, and printed none of `secrets`.
fn assert_refused(what: &str, ended: &Ended, cause: &str, secrets: &[&str]) {
    assert!(
        !ended.killed,
        "{what}: still running after {KILL_AFTER:?}, killed; it must give up by itself\n{}",
        ended.stderr
    );
    assert_eq!(ended.status.code(), Some(1), "{what}: {}", ended.both());
    let last = ended.stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("error: "), "{what}: {}", ended.stderr);
    assert!(
        last.contains(cause),
        "{what}: the error should say {cause:?}: {last}"
    );
    for secret in secrets {
        assert!(
            !ended.both().contains(secret),
            "{what}: a password was printed:\n{}",
            ended.both()
        );
    }
}

/// `run --records N` on `s` with its config and `TRIBUTARY_KAFKA_SASL_PASSWORD`.
fn run_cmd(s: &Sandbox, password: Option<&str>, args: &[&str]) -> Command {
    let records = N.to_string();
    let mut all = vec!["run", "--records", &records, "--seed", "tls", "--json"];
    all.extend_from_slice(args);
    let mut c = s.cmd(&all);
    if let Some(pw) = password {
        c.env("TRIBUTARY_KAFKA_SASL_PASSWORD", pw);
    }
    // Debug output too: nothing at any level may print a password.
    c.env("RUST_LOG", "debug");
    c
}

#[test]
fn kafka_sasl_ssl_with_the_right_password_and_ca_logs_and_stores_every_record() {
    let Some(k) = secure_kafka("kafka_sasl_ssl_right") else {
        return;
    };
    let s = Sandbox::new();
    let topic = unique("sasl");
    s.config(&kafka_config(&k, &topic, &k.ca));
    let ended = run_to_end(run_cmd(&s, Some(&k.password), &["--group", &topic]));
    assert!(ended.status.success(), "{}\n{}", ended.stdout, ended.stderr);
    assert!(
        !ended.both().contains(&k.password),
        "the password was printed"
    );
    let summary: serde_json::Value =
        serde_json::from_str(ended.stdout.lines().last().expect("a summary")).unwrap();
    assert_eq!(summary["logged"], N, "{summary}");
    assert_eq!(summary["stored"], N, "{summary}");
    assert_eq!(s.count(), N);
    // The whole topic read back over SASL_SSL: every record is in the store.
    let mut verify = s.cmd(&["verify", "--json", "--group", &topic]);
    verify.env("TRIBUTARY_KAFKA_SASL_PASSWORD", &k.password);
    let out = verify.output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert!(out.status.success(), "{report}");
    assert_eq!(report["present"], N, "{report}");
    assert_eq!(report["missing"], 0, "{report}");
}

#[test]
fn kafka_sasl_ssl_with_a_wrong_password_fails_by_itself_naming_the_refusal() {
    let Some(k) = secure_kafka("kafka_sasl_ssl_wrong_password") else {
        return;
    };
    let s = Sandbox::new();
    let topic = unique("sasl_pw");
    s.config(&kafka_config(&k, &topic, &k.ca));
    let wrong = format!("not-{}", k.password);
    let ended = run_to_end(run_cmd(&s, Some(&wrong), &["--group", &topic]));
    assert_refused(
        "wrong password",
        &ended,
        "SASL authentication error",
        &[&wrong, &k.password],
    );
    assert_eq!(crate::support::rows_now(&s.store_path()), 0);
}

#[test]
fn kafka_sasl_ssl_with_a_wrong_ca_fails_by_itself_naming_the_certificate() {
    let Some(k) = secure_kafka("kafka_sasl_ssl_wrong_ca") else {
        return;
    };
    let s = Sandbox::new();
    let topic = unique("sasl_ca");
    s.config(&kafka_config(&k, &topic, &k.other_ca));
    let ended = run_to_end(run_cmd(&s, Some(&k.password), &["--group", &topic]));
    assert_refused(
        "wrong CA",
        &ended,
        "certificate verify failed",
        &[&k.password],
    );
}

#[test]
fn kafka_plaintext_to_the_sasl_ssl_listener_fails_by_itself_pointing_at_security_protocol() {
    let Some(k) = secure_kafka("kafka_plaintext_to_sasl_ssl") else {
        return;
    };
    let s = Sandbox::new();
    let topic = unique("sasl_plain");
    let url = format!("kafka://{}/{topic}", k.bootstrap);
    let ended = run_to_end(run_cmd(&s, None, &["--log", &url, "--group", &topic]));
    assert_refused("plaintext", &ended, "security.protocol", &[&k.password]);
}

#[test]
fn cassandra_tls_with_the_right_ca_stores_every_record() {
    let Some(c) = tls_cassandra("cassandra_tls_right") else {
        return;
    };
    let s = Sandbox::new();
    let ks = unique("tls");
    s.config(&cassandra_config(&c.node, &ks, Some(&c.ca)));
    let ended = run_to_end(run_cmd(&s, None, &[]));
    assert!(ended.status.success(), "{}\n{}", ended.stdout, ended.stderr);
    let summary: serde_json::Value =
        serde_json::from_str(ended.stdout.lines().last().expect("a summary")).unwrap();
    assert_eq!(summary["stored"], N, "{summary}");
    // Read back by tributary over TLS, and by cqlsh (TLS, verifying the CA).
    assert_eq!(s.count(), N);
    let out = infra(&[
        "cqlsh",
        "-e",
        &format!("SELECT count(*) FROM {ks}.created_users"),
    ]);
    let rows = out
        .lines()
        .find_map(|l| l.trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no count from cqlsh: {out}"));
    assert_eq!(rows, N);
}

#[test]
fn cassandra_tls_with_a_wrong_ca_fails_by_itself_naming_the_certificate() {
    let Some(c) = tls_cassandra("cassandra_tls_wrong_ca") else {
        return;
    };
    let s = Sandbox::new();
    let ks = unique("tls_ca");
    s.config(&cassandra_config(&c.node, &ks, Some(&c.other_ca)));
    let ended = run_to_end(run_cmd(&s, None, &[]));
    assert_refused("wrong CA", &ended, "invalid peer certificate", &[]);
}

#[test]
fn cassandra_plaintext_to_a_tls_port_fails_by_itself_pointing_at_tls_ca_file() {
    let Some(c) = tls_cassandra("cassandra_plaintext_to_tls") else {
        return;
    };
    let s = Sandbox::new();
    let ks = unique("tls_plain");
    s.config(&cassandra_config(&c.node, &ks, None));
    let ended = run_to_end(run_cmd(&s, None, &[]));
    assert_refused("plaintext", &ended, "sink.cassandra.tls_ca_file", &[]);
}
