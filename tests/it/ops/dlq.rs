//! `dlq discard`: letters set aside for audit, never replayed, listed only
//! when asked; on the embedded log and (with a broker) on Kafka.

use serde_json::Value;

use super::{notes_pipeline_on, ok};
use crate::support::{Sandbox, kafka, run_measured, stderr, unique};

/// Five records, three of which the transform refuses.
const RECORDS: &str = r#"{"id":"a","note":"fine"}
{"id":"b","note":"x","bad":true}
{"id":"c","note":"y","bad":true}
{"id":"d","note":"z","bad":true}
{"id":"e","note":"fine"}
"#;

fn letters(s: &Sandbox, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["dlq", "list", "--json"];
    all.extend_from_slice(args);
    ok(s, &all)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn ids(letters: &[Value]) -> Vec<i64> {
    letters.iter().map(|l| l["id"].as_i64().unwrap()).collect()
}

/// The whole story on one log: discard by id with a reason, the letter
/// gone from the waiting list and from replays, listed with --discarded,
/// unknown ids named with exit 1, --all needing --reason.
fn discard_story(s: &Sandbox) {
    let waiting = letters(s, &[]);
    assert_eq!(waiting.len(), 3, "{waiting:?}");
    let [b, c, d] = ids(&waiting)[..] else {
        unreachable!()
    };
    let out = ok(
        s,
        &[
            "dlq",
            "discard",
            "--id",
            &b.to_string(),
            "--reason",
            "test record",
        ],
    );
    assert!(out.contains("discarded 1 dead letters"), "{out}");
    assert_eq!(ids(&letters(s, &[])), [c, d]);
    let discarded = letters(s, &["--discarded"]);
    assert_eq!(ids(&discarded), [b]);
    assert_eq!(discarded[0]["discarded"]["reason"], "test record");
    assert!(discarded[0]["discarded"]["at_ms"].as_i64().unwrap() > 0);
    assert_eq!(letters(s, &["--all"]).len(), 3);
    let table = ok(s, &["dlq", "list", "--discarded"]);
    assert!(
        table.contains("[discarded ") && table.contains("test record"),
        "{table}"
    );
    let status = ok(s, &["status", "--json"]);
    let status: Value = serde_json::from_str(status.trim()).unwrap();
    assert_eq!(status["dead_letters_waiting"], 2, "{status}");

    // A replay by id names it and fails, as for an unknown id.
    let out = s.run(&["dlq", "replay", "--id", &b.to_string()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("dead letter {b} is discarded")),
        "{}",
        stderr(&out)
    );
    // Unknown ids are named; the known one is still discarded.
    let out = s.run(&["dlq", "discard", "--id", "987654", "--id", &c.to_string()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no dead letter with id 987654"),
        "{}",
        stderr(&out)
    );
    assert_eq!(ids(&letters(s, &[])), [d]);
    let c_letter = letters(s, &["--discarded"])
        .into_iter()
        .find(|l| l["id"] == c)
        .unwrap();
    assert_eq!(c_letter["discarded"]["reason"], Value::Null);

    // --all needs a reason.
    let out = s.run(&["dlq", "discard", "--all"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--reason"), "{}", stderr(&out));
    ok(s, &["dlq", "discard", "--all", "--reason", "bad batch"]);
    assert!(letters(s, &[]).is_empty());
    assert_eq!(letters(s, &["--discarded"]).len(), 3);
    // Nothing waits: a replay of the queue replays nothing.
    let out = ok(s, &["dlq", "replay"]);
    assert!(out.contains("replayed 0 "), "{out}");
}

#[test]
fn discarded_dead_letters_are_kept_and_never_replayed() {
    let s = Sandbox::new();
    notes_pipeline_on(&s, RECORDS, "");
    ok(&s, &["run"]);
    discard_story(&s);
}

#[test]
fn discarded_dead_letters_on_kafka() {
    let Some(b) = kafka("discarded_dead_letters_on_kafka") else {
        return;
    };
    let s = Sandbox::new();
    let topic = unique("discard");
    notes_pipeline_on(&s, RECORDS, &format!("log = \"kafka://{b}/{topic}\""));
    ok(&s, &["run"]);
    discard_story(&s);
}

/// 160 refused records of 800 KB each: 128 MB of dead letters on Kafka.
/// Their waiting count (`status`), their replay and `verify` read the
/// dead-letter topic; each once held every letter's payload in memory (up
/// to ten thousand for a count, every one for `verify`). Now a count keeps
/// ids only, a replay page stops at 64 MiB of payloads, and `verify` keeps
/// no payload.
#[test]
fn large_dead_letters_on_kafka_are_read_in_bounded_memory() {
    const MIB: u64 = 1 << 20;
    let Some(b) = kafka("large_dead_letters_on_kafka_are_read_in_bounded_memory") else {
        return;
    };
    let s = Sandbox::new();
    let topic = unique("big_letters");
    let note = "x".repeat(800_000);
    let records: String = (0..160)
        .map(|i| format!("{{\"id\":\"r{i}\",\"note\":\"{note}\",\"bad\":true}}\n"))
        .collect();
    notes_pipeline_on(&s, &records, &format!("log = \"kafka://{b}/{topic}\""));
    ok(&s, &["run"]);

    let (code, rss) = run_measured(s.cmd(&["status", "--json"]));
    assert_eq!(code, Some(0));
    let status: Value = serde_json::from_str(ok(&s, &["status", "--json"]).trim()).unwrap();
    assert_eq!(status["dead_letters_waiting"], 160, "{status}");
    eprintln!("status: {} MiB", rss / MIB);
    assert!(rss < 64 * MIB, "status peaked at {} MiB", rss / MIB);

    // Every letter is still refused: all stay waiting, read a page at a time.
    let (code, rss) = run_measured(s.cmd(&["dlq", "replay"]));
    assert_eq!(code, Some(1), "the letters still fail");
    eprintln!("dlq replay: {} MiB", rss / MIB);
    assert!(rss < 192 * MIB, "dlq replay peaked at {} MiB", rss / MIB);
    let out = s.run(&["dlq", "replay"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("160 still failing"), "{said}");

    let (_, rss) = run_measured(s.cmd(&["verify", "--json"]));
    eprintln!("verify: {} MiB", rss / MIB);
    assert!(rss < 64 * MIB, "verify peaked at {} MiB", rss / MIB);
}

/// 150 letters replayed by id in one command (read a hundred at a time),
/// with an id given twice and one that names no letter: each letter is
/// replayed once, the unknown id is named.
#[test]
fn many_letters_replayed_by_id_are_each_replayed_once() {
    let s = Sandbox::new();
    let records: String = (0..150)
        .map(|i| format!("{{\"id\":\"r{i}\",\"note\":\"n{i}\",\"bad\":true}}\n"))
        .collect();
    notes_pipeline_on(&s, &records, "");
    ok(&s, &["run"]);
    let waiting = ids(&letters(&s, &["--limit", "1000"]));
    assert_eq!(waiting.len(), 150);
    // The fix: nothing is refused any more.
    let config = std::fs::read_to_string(s.dir.path().join("tributary.toml")).unwrap();
    s.config(&config.replace("if .bad == true { abort \"refused as bad\" }", ""));
    let mut args: Vec<String> = vec!["dlq".into(), "replay".into(), "--json".into()];
    for id in waiting.iter().chain([&waiting[7], &987_654]) {
        args.extend(["--id".to_owned(), id.to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = s.run(&args);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the unknown id: {}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("no dead letter with id 987654"),
        "{}",
        stderr(&out)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["replayed"], 150, "{report}");
    assert_eq!(report["still_failing"], 0, "{report}");
    assert!(letters(&s, &[]).is_empty());
    assert_eq!(ok(&s, &["count"]).trim(), "150");
}
