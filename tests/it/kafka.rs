//! The Kafka log against a real broker (started by `scripts/infra` in CI;
//! `TRIBUTARY_TEST_KAFKA=host:port` names it). Each test has its own topic
//! and group. Without a broker the tests say loudly that they skipped.

use std::process::Stdio;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use tributary::pipeline::log::discard::Discard;
use tributary::pipeline::log::{DeadLetter, Letters, Log, LogRecord, Origin, Stage};
use tributary::pipeline::source::Generator;

use crate::support::{Args, Sandbox, distinct_ids, rows_now, stderr, unique};

fn broker(test: &str) -> Option<String> {
    crate::support::kafka(test)
}

fn log_url(broker: &str, topic: &str) -> String {
    format!("kafka://{broker}/{topic}")
}

#[test]
fn fifty_thousand_through_kafka_into_the_store_exactly_once() {
    let Some(b) = broker("fifty_thousand_through_kafka") else {
        return;
    };
    let s = Sandbox::new();
    let topic = unique("e2e");
    let url = log_url(&b, &topic);
    let first = s.summary(
        Args::run()
            .records(50_000)
            .seed("k")
            .log(&url)
            .group(&topic),
    );
    assert_eq!(first["logged"], 50000, "{first}");
    assert_eq!(first["stored"], 50000, "{first}");
    assert_eq!(s.count(), 50000);
    assert_eq!(distinct_ids(&s.store_path()), 50000);
    // The same seed again: 50,000 more messages on the topic, no new rows.
    let again = s.summary(
        Args::run()
            .records(50_000)
            .seed("k")
            .log(&url)
            .group(&topic),
    );
    assert_eq!(again["duplicates_skipped"], 50000, "{again}");
    assert_eq!(s.count(), 50000);
}

#[test]
fn processor_killed_three_times_on_kafka_stores_exactly_n_and_commits_to_the_end() {
    let Some(b) = broker("processor_killed_on_kafka") else {
        return;
    };
    const N: u64 = 30_000;
    let s = Sandbox::new();
    let topic = unique("crash");
    let url = log_url(&b, &topic);
    let ingested = s.summary(Args::ingest().records(N).seed("kc").log(&url));
    assert_eq!(ingested["logged"], N);
    // Kill points spread over the stream (varied by the clock, so each run
    // kills at different places).
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
        % 1000;
    for (round, at) in [N / 6 + jitter, N / 3 + jitter, N / 2 + jitter]
        .into_iter()
        .enumerate()
    {
        let mut child = s
            .cmd(&[
                "process",
                "--follow",
                "--batch-size",
                "50",
                "--log",
                &url,
                "--group",
                &topic,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        while rows_now(&s.store_path()) < at {
            assert!(Instant::now() < deadline, "round {round}: no progress");
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    let before = rows_now(&s.store_path());
    assert!(
        before < N,
        "finished before the last kill ({before}); raise N"
    );
    let resumed = s.summary(Args::process().batch_size(50).log(&url).group(&topic));
    assert_eq!(s.count(), N, "{resumed}");
    assert_eq!(distinct_ids(&s.store_path()), N);
    assert_eq!(resumed["stored"].as_u64().unwrap(), N - before, "{resumed}");
    // The group's committed offsets reach the end of every partition.
    let out = s.run(&["status", "--json", "--log", &url, "--group", &topic]);
    assert!(out.status.success(), "{}", stderr(&out));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["lag"], 0, "{status}");
    let parts = status["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 3);
    let end: u64 = parts.iter().map(|p| p["end"].as_u64().unwrap()).sum();
    assert_eq!(end, N);
    for p in parts {
        assert_eq!(p["committed"], p["end"], "{status}");
    }
}

#[test]
fn two_processors_in_one_group_one_killed_the_other_finishes() {
    let Some(b) = broker("two_processors") else {
        return;
    };
    const N: u64 = 30_000;
    let s = Sandbox::new();
    let topic = unique("pair");
    let url = log_url(&b, &topic);
    s.summary(Args::ingest().records(N).seed("pair").log(&url));
    let spawn = || {
        s.cmd(
            &Args::process()
                .follow()
                .batch_size(50)
                .log(&url)
                .group(&topic)
                .strs(),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
    };
    let mut victim = spawn();
    let mut survivor = spawn();
    let deadline = Instant::now() + Duration::from_secs(120);
    while rows_now(&s.store_path()) < N / 4 {
        assert!(Instant::now() < deadline, "no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    victim.kill().unwrap();
    victim.wait().unwrap();
    // The survivor takes the victim's partitions (after its session times
    // out) and finishes the topic alone.
    let deadline = Instant::now() + Duration::from_secs(120);
    while rows_now(&s.store_path()) < N {
        assert!(
            Instant::now() < deadline,
            "survivor never finished: {}",
            rows_now(&s.store_path())
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    crate::support::terminate(&survivor);
    assert_eq!(survivor.wait().unwrap().code(), Some(0));
    assert_eq!(s.count(), N);
    assert_eq!(distinct_ids(&s.store_path()), N);
}

#[test]
fn unreachable_broker_and_missing_topic_fail_fast_and_clearly() {
    let Some(b) = broker("kafka_errors") else {
        return;
    };
    let s = Sandbox::new();
    let started = Instant::now();
    let out = s.run(
        &Args::ingest()
            .records(10)
            .log("kafka://127.0.0.1:1/nowhere")
            .strs(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot reach Kafka at 127.0.0.1:1"),
        "{}",
        stderr(&out)
    );
    assert!(started.elapsed() < Duration::from_secs(60));

    std::fs::write(
        s.dir.path().join("tributary.toml"),
        "[log.kafka]\ncreate_topics = false\n",
    )
    .unwrap();
    let topic = unique("missing");
    let out = s.run(&Args::ingest().records(10).log(&log_url(&b, &topic)).strs());
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("topic {topic} does not exist")),
        "{err}"
    );
    assert!(!err.contains("panicked"));
}

#[tokio::test]
async fn poison_messages_on_kafka_go_to_the_dlq_topic() {
    let Some(b) = broker("poison_on_kafka") else {
        return;
    };
    let s = Sandbox::new();
    let topic = unique("poison");
    let log = Log::open(&crate::support::kafka_log(&b, &topic, 3))
        .await
        .unwrap();
    let generator = Generator::new("kp", vec![], None);
    let mut records: Vec<LogRecord> = (0..100)
        .map(|k| {
            let row = generator.user(k).to_row().unwrap();
            LogRecord {
                key: Some(row.key()),
                payload: row.to_json(),
            }
        })
        .collect();
    for bad in [&b"not json"[..], br#"{"id": 1}"#, b"{\"id\": \"trunc"] {
        records.push(LogRecord {
            key: Some(b"bad".to_vec()),
            payload: bad.to_vec(),
        });
    }
    log.append(records).await.unwrap();
    let url = log_url(&b, &topic);
    let sum = s.summary(Args::process().log(&url).group(&topic));
    assert_eq!(sum["stored"], 100, "{sum}");
    assert_eq!(sum["dead_lettered"], 3, "{sum}");
    let out = s.run(&["dlq", "list", "--json", "--log", &url]);
    assert!(out.status.success(), "{}", stderr(&out));
    let letters: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(letters.len(), 3);
    for l in &letters {
        assert_eq!(l["stage"], "decode");
        assert_eq!(l["topic"], topic.as_str());
        assert!(l["offset"].as_i64().is_some());
        assert!(!l["reason"].as_str().unwrap().is_empty());
    }
}

/// Letters written again (a batch retried after a crash before its commit,
/// a page fetched again) are one letter on Kafka, as they are in the
/// embedded log: by stage and origin, or by stage, source position and
/// bytes. The first one's reason stands.
#[tokio::test]
async fn letters_written_again_are_one_letter_on_both_logs() {
    let Some(b) = broker("dlq_twice") else {
        return;
    };
    let from_log = |stage, reason: &str| DeadLetter {
        stage,
        reason: reason.into(),
        origin: Some(Origin {
            topic: "users_created".into(),
            partition: 0,
            offset: 5,
        }),
        source_position: None,
        key: Some(b"k".to_vec()),
        payload: b"not json".to_vec(),
    };
    let fetched = |position: &str, reason: &str| DeadLetter {
        stage: Stage::Source,
        reason: reason.into(),
        origin: None,
        source_position: Some(position.into()),
        key: None,
        payload: b"{\"broken\"".to_vec(),
    };
    let dir = tempfile::tempdir().unwrap();
    let embedded =
        tributary::pipeline::log::LogConfig::Sqlite(tributary::pipeline::log::SqliteLogConfig {
            path: dir.path().join("log.db"),
            topic: "users_created".into(),
            retention_messages: None,
            retention_age: None,
            durable_fsync: false,
            offset_reset: Default::default(),
        });
    for config in [
        embedded,
        crate::support::kafka_log(&b, &unique("dlqtwice"), 1),
    ] {
        let log = Log::open(&config).await.unwrap();
        log.dead_letter(vec![
            from_log(Stage::Decode, "first"),
            fetched("page 1 #3", "first"),
            fetched("page 1 #4", "first"),
        ])
        .await
        .unwrap();
        log.dead_letter(vec![
            from_log(Stage::Decode, "again"),
            from_log(Stage::Sink, "another stage"),
            fetched("page 1 #3", "again"),
        ])
        .await
        .unwrap();
        // Another process reads the topic from its start.
        let other = Log::open(&config).await.unwrap();
        for log in [&log, &other] {
            assert_eq!(log.dead_letters_waiting(None).await.unwrap(), 4);
            let letters = log.dead_letters_in(Letters::All, None, 100).await.unwrap();
            let reasons: Vec<&str> = letters.iter().map(|l| l.letter.reason.as_str()).collect();
            assert_eq!(
                reasons,
                ["first", "first", "first", "another stage"],
                "{letters:?}"
            );
        }
    }
}

/// One open log answers about its dead letters many times (the dashboard
/// asks every few seconds): each answer must see the letters and markers
/// written since the last, by this process or any other.
#[tokio::test]
async fn one_log_follows_its_dead_letters_as_they_are_discarded_replayed_and_added() {
    let Some(b) = broker("dlq_follow") else {
        return;
    };
    let topic = unique("dlqfollow");
    let config = crate::support::kafka_log(&b, &topic, 1);
    let letter = |n: u32| DeadLetter {
        stage: Stage::Decode,
        reason: format!("bad record {n}"),
        origin: None,
        source_position: None,
        key: Some(format!("k{n}").into_bytes()),
        payload: format!("payload {n}").into_bytes(),
    };
    let log = Log::open(&config).await.unwrap();
    log.dead_letter((0..4).map(letter).collect()).await.unwrap();
    assert_eq!(log.dead_letters_waiting(None).await.unwrap(), 4);
    let all = log.dead_letters_in(Letters::All, None, 100).await.unwrap();
    let ids: Vec<i64> = all.iter().map(|l| l.id).collect();
    assert_eq!(ids.len(), 4, "{all:?}");

    // A discard and a replay from this log, then letters from another.
    let out = log
        .discard_dead_letters(Discard::Ids(vec![ids[0]]), Some("noise".into()))
        .await
        .unwrap();
    assert_eq!(out.discarded, 1);
    log.settle_dead_letter(ids[1], Ok(())).await.unwrap();
    assert_eq!(log.dead_letters_waiting(None).await.unwrap(), 2);
    let other = Log::open(&config).await.unwrap();
    other
        .dead_letter((4..7).map(letter).collect())
        .await
        .unwrap();
    other
        .discard_dead_letters(Discard::Ids(vec![ids[2]]), None)
        .await
        .unwrap();

    assert_eq!(log.dead_letters_waiting(None).await.unwrap(), 4);
    assert_eq!(log.dead_letters_discarded().await.unwrap(), 2);
    let waiting = log
        .dead_letters_in(Letters::Waiting, None, 100)
        .await
        .unwrap();
    let reasons: Vec<&str> = waiting.iter().map(|l| l.letter.reason.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "bad record 3",
            "bad record 4",
            "bad record 5",
            "bad record 6"
        ]
    );
    let again = log
        .discard_dead_letters(Discard::Ids(vec![ids[2], ids[1]]), None)
        .await
        .unwrap();
    assert_eq!(again.already_discarded, [ids[2]]);
    assert_eq!(again.already_replayed, [ids[1]]);
    let discarded = log
        .dead_letters_in(Letters::Discarded, None, 100)
        .await
        .unwrap();
    assert_eq!(discarded.len(), 2);
    assert_eq!(
        discarded[0]
            .discarded
            .as_ref()
            .and_then(|d| d.reason.as_deref()),
        Some("noise")
    );
    // A log opened afresh reads the whole topic and agrees.
    let fresh = Log::open(&config).await.unwrap();
    assert_eq!(fresh.dead_letters_waiting(None).await.unwrap(), 4);
    assert_eq!(fresh.dead_letters_discarded().await.unwrap(), 2);

    // The dead-letter topic deleted and made again, then more letters than
    // it held: the log that read the old one reads the new one afresh
    // (neither the old discards nor the old ids count).
    remake_topic(&b, &format!("{topic}.dlq")).await;
    other
        .dead_letter((20..32).map(letter).collect())
        .await
        .unwrap();
    assert_eq!(log.dead_letters_waiting(None).await.unwrap(), 12);
    assert_eq!(log.dead_letters_discarded().await.unwrap(), 0);
    let waiting = log
        .dead_letters_in(Letters::Waiting, None, 100)
        .await
        .unwrap();
    assert_eq!(waiting.len(), 12);
    assert_eq!(waiting[0].letter.reason, "bad record 20");
}

/// The seed stack's topic as kafka-python makes it: one partition, and no
/// `<topic>.dlq` beside it. A log configured for three partitions opens on
/// it as it is (it waited for three partitions, then failed after 30 s).
#[tokio::test]
async fn a_log_opens_on_a_topic_of_another_partition_count_without_its_dlq() {
    let Some(b) = broker("one_partition") else {
        return;
    };
    let topic = unique("onepart");
    let admin = admin(&b);
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let new = NewTopic::new(&topic, 1, TopicReplication::Fixed(1));
    admin.create_topics(&[new], &options).await.unwrap()[0]
        .as_ref()
        .unwrap();
    let config = crate::support::kafka_log(&b, &topic, 3);
    let log = Log::open(&config)
        .await
        .expect("opens on the topic as it is");
    let lag = log.lag("onepart").await.unwrap();
    assert_eq!(lag.len(), 1, "the topic keeps its one partition: {lag:?}");
    log.dead_letter(vec![DeadLetter {
        stage: Stage::Decode,
        reason: "bad".into(),
        origin: None,
        source_position: None,
        key: None,
        payload: b"x".to_vec(),
    }])
    .await
    .unwrap();
    assert_eq!(log.dead_letters_waiting(None).await.unwrap(), 1);
}

/// On Kafka as in the embedded log, a discard waits for a replay in
/// progress (another process on this machine), and the replay then leaves
/// what was discarded. Before, a replay and a discard run at once left
/// letters both discarded and stored.
#[tokio::test]
async fn a_discard_on_kafka_waits_for_a_replay_and_the_replay_skips_it() {
    let Some(b) = broker("dlq_lock") else {
        return;
    };
    let config = crate::support::kafka_log(&b, &unique("dlqlock"), 1);
    let log = Log::open(&config).await.unwrap();
    let letter = |n: u32| DeadLetter {
        stage: Stage::Decode,
        reason: format!("bad {n}"),
        origin: None,
        source_position: None,
        key: None,
        payload: format!("payload {n}").into_bytes(),
    };
    log.dead_letter((0..3).map(letter).collect()).await.unwrap();
    let read: Vec<i64> = log
        .dead_letters(false, None, 10)
        .await
        .unwrap()
        .iter()
        .map(|l| l.id)
        .collect();
    assert_eq!(read.len(), 3);

    let replaying = log.lock_letters().await.unwrap();
    let other = Log::open(&config).await.unwrap();
    let ids = vec![read[1]];
    let mut discard = tokio::spawn(async move {
        other
            .discard_dead_letters(Discard::Ids(ids), Some("bad batch".into()))
            .await
    });
    let waited = tokio::time::timeout(Duration::from_millis(500), &mut discard).await;
    assert!(waited.is_err(), "the discard went ahead of the replay");
    assert!(log.settled_among(read.clone()).await.unwrap().is_empty());
    drop(replaying);
    assert_eq!(discard.await.unwrap().unwrap().discarded, 1);
    assert_eq!(log.settled_among(read.clone()).await.unwrap(), [read[1]]);
}

/// The commands that only look (`status`, `dlq list`) make no topic: a
/// mistyped one is named as missing, again at the second look. Before,
/// each made the topic and its `.dlq` on the cluster and said "0".
#[test]
fn looking_at_a_topic_that_does_not_exist_makes_none() {
    let Some(b) = broker("look_makes_nothing") else {
        return;
    };
    let s = Sandbox::new();
    let url = log_url(&b, &unique("typo"));
    for _ in 0..2 {
        for command in [&["status"][..], &["dlq", "list"]] {
            let mut args = command.to_vec();
            args.extend(["--log", &url]);
            let out = s.run(&args);
            assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
            assert!(
                stderr(&out).contains("does not exist") && stderr(&out).contains("mistyped"),
                "{args:?}: {}",
                stderr(&out)
            );
        }
    }
}

/// Records with an empty key keep their order: they all go to one
/// partition (librdkafka's default partitioner spreads empty keys at
/// random).
#[tokio::test]
async fn records_with_an_empty_key_go_to_one_partition() {
    let Some(b) = broker("empty_key") else {
        return;
    };
    let config = crate::support::kafka_log(&b, &unique("emptykey"), 3);
    let log = Log::open(&config).await.unwrap();
    for i in 0..12 {
        log.append(vec![LogRecord {
            key: Some(Vec::new()),
            payload: format!("{{\"n\":{i}}}").into_bytes(),
        }])
        .await
        .unwrap();
    }
    let ends: Vec<i64> = log.lag("g").await.unwrap().iter().map(|p| p.end).collect();
    assert_eq!(ends.iter().sum::<i64>(), 12, "{ends:?}");
    assert_eq!(ends.iter().filter(|&&e| e > 0).count(), 1, "{ends:?}");
}

fn admin(broker: &str) -> AdminClient<DefaultClientContext> {
    rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker)
        .create()
        .unwrap()
}

/// Deletes `topic` and makes it again, one partition, empty.
async fn remake_topic(broker: &str, topic: &str) {
    let admin = admin(broker);
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for r in admin.delete_topics(&[topic], &options).await.unwrap() {
        r.unwrap();
    }
    // The broker takes the name back once the deletion is done.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let new = NewTopic::new(topic, 1, TopicReplication::Fixed(1));
        match admin
            .create_topics(&[new], &options)
            .await
            .unwrap()
            .remove(0)
        {
            Ok(_) => return,
            Err((_, e)) => {
                assert!(Instant::now() < deadline, "{topic} not made again: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

#[test]
fn poison_from_a_plain_client_lands_in_the_dlq_with_reasons() {
    let (Some(b), Some(py)) = (broker("plain_client_poison"), python()) else {
        return;
    };
    let s = Sandbox::new();
    let topic = unique("plain_poison");
    let url = log_url(&b, &topic);
    s.summary(Args::process().log(&url).group("warmup"));
    // 100 good seed messages and 5 poison ones (see seed_interop.py).
    assert_eq!(interop(&py, "produce", &b, &topic, 100), 100);
    assert_eq!(interop(&py, "poison", &b, &topic, 0), 5);
    let sum = s.summary(Args::process().log(&url).group(&topic));
    assert_eq!(sum["stored"], 100, "{sum}");
    assert_eq!(sum["dead_lettered"], 5, "{sum}");
    let out = s.run(&["dlq", "list", "--json", "--log", &url]);
    let reasons: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["reason"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(reasons.len(), 5, "{reasons:?}");
    for needle in [
        "malformed",
        "field email is a number",
        "missing field",
        "over the",
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(needle)),
            "{needle}: {reasons:?}"
        );
    }
}

fn python() -> Option<String> {
    match std::env::var("TRIBUTARY_TEST_PYTHON") {
        Ok(p) if !p.is_empty() => Some(p),
        _ => {
            crate::support::missing(
                "seed interop",
                "set TRIBUTARY_TEST_PYTHON to a python with kafka-python",
            );
            None
        }
    }
}

fn interop(py: &str, mode: &str, broker: &str, topic: &str, n: u64) -> u64 {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/seed_interop.py");
    let out = std::process::Command::new(py)
        .args([script, mode, broker, topic, &n.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{mode}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[test]
fn messages_of_the_seed_dag_are_processed() {
    let (Some(b), Some(py)) = (broker("seed_dag_interop"), python()) else {
        return;
    };
    let s = Sandbox::new();
    let topic = unique("seed_dag");
    // Create the topic our way first (3 partitions), then write as the seed does.
    let url = log_url(&b, &topic);
    s.summary(Args::process().log(&url).group("warmup"));
    assert_eq!(interop(&py, "produce", &b, &topic, 1000), 1000);
    let sum = s.summary(Args::process().log(&url).group(&topic));
    assert_eq!(sum["stored"], 1000, "{sum}");
    assert_eq!(sum["dead_lettered"], 0, "{sum}");
    let out = s.run(&["show", "--json", "--limit", "1000"]);
    let numeric_postcodes_as_text = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("\"post_code\":\"63"))
        .count();
    assert!(numeric_postcodes_as_text > 0);
}

#[test]
fn messages_written_by_tributary_read_with_the_seed_spark_schema() {
    let (Some(b), Some(py)) = (broker("seed_spark_interop"), python()) else {
        return;
    };
    let s = Sandbox::new();
    let topic = unique("seed_spark");
    let url = log_url(&b, &topic);
    s.summary(Args::ingest().records(2000).seed("spark").log(&url));
    assert_eq!(interop(&py, "consume", &b, &topic, 2000), 2000);
}

#[test]
fn the_dashboard_shows_kafka_partitions_and_messages() {
    let Some(b) = broker("the_dashboard_shows_kafka_partitions_and_messages") else {
        return;
    };
    use crate::dashboard::{get_json, serve};
    let s = Sandbox::new();
    let topic = unique("dash");
    let url = log_url(&b, &topic);
    let ingested = s.summary(Args::ingest().records(300).seed("d").log(&url));
    assert_eq!(ingested["logged"], 300, "{ingested}");
    let served = serve(&s, &["--log", &url, "--group", &topic], &[]);
    // The processor in serve drains the topic; the sampler sees it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let topic_view = loop {
        let v = get_json(served.port, "/api/v1/topic", &[]);
        let ends: i64 = v["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["end"].as_i64().unwrap())
            .sum();
        if ends == 300 && v["lag"] == 0 {
            break v;
        }
        assert!(Instant::now() < deadline, "{v}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(topic_view["topic"], topic.as_str());
    assert_eq!(topic_view["partitions"].as_array().unwrap().len(), 3);
    // serve's processor is the group's one member and holds every
    // partition (the group is described every 5 s).
    let deadline = Instant::now() + Duration::from_secs(60);
    let topic_view = loop {
        let v = get_json(served.port, "/api/v1/topic", &[]);
        if v["group_state"] == "Stable" && v["members"].as_array().is_some_and(|m| m.len() == 1) {
            break v;
        }
        assert!(Instant::now() < deadline, "{v}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let member = &topic_view["members"][0];
    assert_eq!(
        member["partitions"],
        serde_json::json!([0, 1, 2]),
        "{topic_view}"
    );
    assert_eq!(member["client_id"], "tributary", "{topic_view}");
    for p in topic_view["partitions"].as_array().unwrap() {
        assert_eq!(p["member"], member["member_id"], "{topic_view}");
    }
    let status = get_json(served.port, "/api/v1/status", &[]);
    assert_eq!(status["log"]["kind"], "kafka", "{status}");
    assert_eq!(status["processor"]["total"], 300, "{status}");
    // The newest messages, read without joining the group.
    let m = get_json(served.port, "/api/v1/topic/messages?limit=7", &[]);
    let messages = m["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 7, "{m}");
    for msg in messages {
        assert_eq!(msg["key"], msg["json"]["id"], "{msg}");
        assert!(msg["json"]["email"].as_str().unwrap().contains('@'));
    }
    let stamps: Vec<i64> = messages
        .iter()
        .map(|m| m["timestamp_ms"].as_i64().unwrap())
        .collect();
    assert!(
        stamps.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {stamps:?}"
    );
    // Peeking joins no group and commits nothing: its group id has no
    // offsets on any partition.
    let log = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let log = Log::open(&crate::support::kafka_log(&b, &topic, 3))
            .await
            .unwrap();
        log.lag("tributary-peek").await.unwrap()
    });
    assert_eq!(log.len(), 3);
    assert!(log.iter().all(|p| p.committed == 0), "{log:?}");
}

/// Commits `offsets` for `group` as another client would, with `metadata`.
fn commit_by_hand(broker: &str, topic: &str, group: &str, offsets: &[(i32, i64)], metadata: &str) {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for &(p, o) in offsets {
        let mut elem = tpl.add_partition(topic, p);
        elem.set_offset(Offset::Offset(o)).unwrap();
        elem.set_metadata(metadata);
    }
    consumer.commit(&tpl, CommitMode::Sync).unwrap();
}

#[test]
fn a_commit_that_belongs_to_an_earlier_topic_of_the_same_name_is_reset() {
    let Some(b) = broker("commit_of_an_earlier_topic") else {
        return;
    };
    let s = Sandbox::new();
    let topic = unique("recreated");
    let url = log_url(&b, &topic);
    let ingested = s.summary(Args::ingest().records(900).seed("re").log(&url));
    assert_eq!(ingested["logged"], 900);
    // What a group left behind by a deleted topic looks like: offsets in the
    // middle of each partition, committed after messages that are not the
    // ones there now.
    let stale = "tributary/1 ts=1600000000000 h=00000000deadbeef";
    commit_by_hand(&b, &topic, &topic, &[(0, 100), (1, 100), (2, 100)], stale);

    let out = s.run(&Args::process().log(&url).group(&topic).arg("--json").strs());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("deleted and created again"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        s.count(),
        900,
        "the messages before the stale commit were skipped"
    );

    // A commit tributary made itself is trusted: nothing is read again.
    let again = s.summary(Args::process().log(&url).group(&topic));
    assert_eq!(again["read"], 0, "{again}");
}
