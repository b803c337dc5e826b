//! Bad messages in the log: each becomes a dead letter with a reason, the
//! good ones around them are stored, nothing kills the processor; a dead
//! letter can be replayed once its cause is fixed.

use tributary::pipeline::log::{DeadLetter, Log, LogRecord, Stage};
use tributary::pipeline::source::Generator;

use crate::support::{Sandbox, stderr};

fn good(k: u64) -> Vec<u8> {
    Generator::new("poison", vec![], None)
        .user(k)
        .to_row()
        .unwrap()
        .to_json()
}

#[tokio::test]
async fn every_bad_message_is_a_dead_letter_and_every_good_one_is_stored() {
    let s = Sandbox::new();
    std::fs::create_dir_all(s.data_dir()).unwrap();
    let log = Log::open(&s.log_config()).await.unwrap();

    let valid: serde_json::Value = serde_json::from_slice(&good(0)).unwrap();
    let with = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v = valid.clone();
        f(&mut v);
        v.to_string().into_bytes()
    };
    let mut invalid_utf8 = good(1);
    invalid_utf8[20] = 0xff;
    let mut huge = br#"{"id":"x","first_name":""#.to_vec();
    huge.extend(std::iter::repeat_n(b'a', 10 << 20));
    huge.extend(br#""}"#);
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("malformed", b"this is not json".to_vec()),
        ("malformed", good(2)[..40].to_vec()),
        ("malformed", invalid_utf8),
        ("wrong shape", with(&|v| v["email"] = serde_json::json!(42))),
        (
            "missing field",
            with(&|v| {
                v.as_object_mut().unwrap().remove("username");
            }),
        ),
        ("null", with(&|v| v["phone"] = serde_json::Value::Null)),
        (
            "invalid first_name",
            with(&|v| v["first_name"] = serde_json::json!("")),
        ),
        ("UUID", with(&|v| v["id"] = serde_json::json!("not-a-uuid"))),
        ("limit", huge),
    ];
    // Interleave: good, bad, good, bad, ... good.
    let mut records = Vec::new();
    for (i, (_, payload)) in bad.iter().enumerate() {
        records.push(LogRecord {
            key: None,
            payload: good(100 + i as u64),
        });
        records.push(LogRecord {
            key: Some(b"bad".to_vec()),
            payload: payload.clone(),
        });
    }
    records.push(LogRecord {
        key: None,
        payload: good(999),
    });
    let goods = bad.len() as u64 + 1;
    log.append(records).await.unwrap();

    let summary = s.run_json(&["process", "--batch-size", "4", "--json"]);
    assert_eq!(summary["stored"], goods);
    assert_eq!(summary["dead_lettered"], bad.len() as u64);
    assert_eq!(s.count(), goods);

    let out = s.run(&["dlq", "list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let letters: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(letters.len(), bad.len());
    for (letter, (needle, payload)) in letters.iter().zip(&bad) {
        assert_eq!(letter["stage"], "decode");
        assert_eq!(letter["topic"], "users_created");
        assert!(letter["offset"].as_i64().unwrap() % 2 == 1, "{letter}");
        let reason = letter["reason"].as_str().unwrap();
        assert!(reason.contains(needle), "{needle:?} not in {reason:?}");
        assert_eq!(
            letter["payload_bytes"].as_u64().unwrap(),
            payload.len() as u64
        );
    }

    // Processing the same log again adds no letters twice.
    let again = s.run(&["process", "--group", "second-look"]);
    assert!(again.status.success());
    let out = s.run(&["dlq", "list", "--json", "--limit", "1000"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        bad.len()
    );
    // The table's footer says how many wait, not only how many it showed.
    let out = s.run(&["dlq", "list", "--limit", "3"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("(3 of {} waiting dead letters shown", bad.len())),
        "{text}"
    );
}

#[tokio::test]
async fn replay_stores_fixed_letters_and_keeps_failing_ones() {
    let s = Sandbox::new();
    std::fs::create_dir_all(s.data_dir()).unwrap();
    let log = Log::open(&s.log_config()).await.unwrap();
    // A letter whose cause has since been fixed (its bytes now decode), and
    // one that is still bad.
    log.dead_letter(vec![
        DeadLetter {
            stage: Stage::Sink,
            reason: "store was full".into(),
            origin: None,
            source_position: None,
            key: None,
            payload: good(5),
        },
        DeadLetter {
            stage: Stage::Decode,
            reason: "malformed json".into(),
            origin: None,
            source_position: None,
            key: None,
            payload: b"{".to_vec(),
        },
        DeadLetter {
            stage: Stage::Source,
            reason: "missing field login.uuid".into(),
            origin: None,
            source_position: None,
            key: None,
            payload: serde_json::to_vec(&Generator::new("poison", vec![], None).user(6)).unwrap(),
        },
    ])
    .await
    .unwrap();

    // One still fails: the report is printed, and the exit code says so.
    let out = s.run(&["dlq", "replay", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("1 dead letters still fail"),
        "{}",
        stderr(&out)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["replayed"], 2);
    assert_eq!(report["still_failing"], 1);
    assert_eq!(s.count(), 2);

    let out = s.run(&["dlq", "list", "--json"]);
    let left: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(left.len(), 1);
    assert!(
        left[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("malformed json")
    );
}

/// More letters than a replay page (1000): `dlq replay` pages through them
/// all with a cursor, so the 1200 that fail again do not hide the 1300
/// behind them, and `--id` takes more ids than a page too.
#[tokio::test]
async fn replay_pages_past_letters_that_keep_failing() {
    let s = Sandbox::new();
    std::fs::create_dir_all(s.data_dir()).unwrap();
    let log = Log::open(&s.log_config()).await.unwrap();
    let letter = |stage, payload| DeadLetter {
        stage,
        reason: "before the fix".into(),
        origin: None,
        source_position: None,
        key: None,
        payload,
    };
    log.dead_letter(
        (0..1200)
            .map(|_| letter(Stage::Decode, b"{".to_vec()))
            .collect(),
    )
    .await
    .unwrap();
    log.dead_letter((0..1300).map(|k| letter(Stage::Sink, good(k))).collect())
        .await
        .unwrap();

    let out = s.run(&["dlq", "replay", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["replayed"], 1300, "{report}");
    assert_eq!(report["still_failing"], 1200, "{report}");
    assert_eq!(s.count(), 1300);

    // By id, across pages: the 1200 failing ones, asked for by name.
    let waiting = log.dead_letters(false, None, 5000).await.unwrap();
    assert_eq!(waiting.len(), 1200);
    let mut args = vec!["dlq".to_owned(), "replay".into(), "--json".into()];
    for l in &waiting {
        args.extend(["--id".to_owned(), l.id.to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = s.run(&args);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["replayed"], 0, "{report}");
    assert_eq!(report["still_failing"], 1200, "{report}");
}
