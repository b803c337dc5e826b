//! The Kafka log beside Kafka's own performance tools, on the same broker
//! and the same records (the seed stack's flat JSON, about 500 bytes).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::{Measure, end_to_end_with, measure, median, rate, tempdir};
use crate::pipeline::log::{KafkaLogConfig, Log, LogConfig, LogRecord};
use crate::pipeline::source::Generator;

/// Messages the consumers read, at least.
const CONSUMER_RECORDS: u64 = 1_000_000;
/// Runs of each consumer; the medians are compared.
const CONSUMER_RUNS: usize = 3;
/// ProducerPerformance's settings: ours (acks=all, idempotence, lz4, linger
/// 5 ms).
const PRODUCER_PROPS: [&str; 5] = [
    "acks=all",
    "enable.idempotence=true",
    "compression.type=lz4",
    "linger.ms=5",
    "batch.size=1000000",
];

/// `ProducerPerformance` writing `n` lines of `payloads` to `topic` at full
/// speed with [`PRODUCER_PROPS`].
fn perf_producer(brokers: &str, topic: &str, n: u64, payloads: &std::path::Path) -> Vec<String> {
    [
        "kafka-perf-producer".into(),
        "--topic".into(),
        topic.to_owned(),
        "--num-records".into(),
        n.to_string(),
        "--payload-file".into(),
        payloads.display().to_string(),
        "--throughput".into(),
        "-1".into(),
        "--producer-props".into(),
        format!("bootstrap.servers={brokers}"),
    ]
    .into_iter()
    .chain(PRODUCER_PROPS.map(str::to_owned))
    .collect()
}

fn config(brokers: &str, topic: &str) -> LogConfig {
    LogConfig::Kafka(KafkaLogConfig {
        brokers: brokers.to_owned(),
        topic: topic.to_owned(),
        create_topics: true,
        partitions: 3,
        replication_factor: None,
        compression: "lz4".into(),
        properties: Default::default(),
        lock_dir: None,
    })
}

async fn tool(infra: &Path, args: &[String]) -> anyhow::Result<String> {
    let mut cmd = tokio::process::Command::new("bash");
    cmd.arg(infra).args(args);
    // The binary turns transparent huge pages off for itself (see `main`),
    // and children inherit that: the JVM tools measured as ceilings get the
    // machine's own setting back.
    #[cfg(target_os = "linux")]
    // SAFETY: only prctl, async-signal-safe, between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_THP_DISABLE, 0, 0, 0, 0);
            Ok(())
        });
    }
    let out = cmd
        .output()
        .await
        .with_context(|| format!("cannot run {}", infra.display()))?;
    if !out.status.success() {
        bail!(
            "{} {}: {}",
            infra.display(),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub async fn bench(
    brokers: &str,
    infra: &Path,
    n: u64,
) -> anyhow::Result<(Vec<Measure>, Option<u64>)> {
    let stamp = crate::pipeline::source::generator::random_seed();
    let rows: Vec<LogRecord> = {
        let g = Generator::new("bench", vec![], None);
        (0..n)
            .map(|k| {
                let row = g.user(k).to_row().expect("generated users flatten");
                LogRecord {
                    key: Some(row.key()),
                    payload: row.to_json(),
                }
            })
            .collect()
    };
    let avg = rows.iter().map(|r| r.payload.len()).sum::<usize>() / rows.len();
    eprintln!("bench kafka: {n} records of {avg} bytes on average, brokers {brokers}");

    // Producer: ours vs ProducerPerformance with the same payloads,
    // acks=all, idempotence, lz4, linger 5 ms.
    let ours_topic = format!("bench-ours-{stamp}");
    let log = Log::open(&config(brokers, &ours_topic)).await?;
    let t = Instant::now();
    for chunk in rows.chunks(10_000) {
        log.append(chunk.to_vec()).await?;
    }
    let ours_produce = t.elapsed();
    let dir = tempdir()?;
    let payloads = dir.join("payloads.txt");
    let mut text = Vec::with_capacity(rows.len() * (avg + 1));
    for r in &rows {
        text.extend_from_slice(&r.payload);
        text.push(b'\n');
    }
    std::fs::write(&payloads, text)?;
    let tools_topic = format!("bench-tools-{stamp}");
    // Same topic layout for the tool: create it through our log.
    Log::open(&config(brokers, &tools_topic)).await?;
    let out = tool(infra, &perf_producer(brokers, &tools_topic, n, &payloads)).await?;
    let tools_produce = out
        .lines()
        .rev()
        .find(|l| l.contains("records/sec"))
        .and_then(|l| {
            let before = l.split(" records/sec").next()?;
            before.rsplit(", ").next()?.trim().parse::<f64>().ok()
        })
        .with_context(|| format!("no records/sec in ProducerPerformance output: {out}"))?;

    // Consumer: ours (poll to a null sink) vs ConsumerPerformance on a
    // topic of at least CONSUMER_RECORDS messages the tool writes (random
    // lines of the same payloads), each reading it CONSUMER_RUNS times as a
    // new group; the medians are compared.
    let consumed = n.max(CONSUMER_RECORDS);
    let consumer_topic = format!("bench-consume-{stamp}");
    Log::open(&config(brokers, &consumer_topic)).await?;
    tool(
        infra,
        &perf_producer(brokers, &consumer_topic, consumed, &payloads),
    )
    .await?;
    std::fs::remove_dir_all(&dir).ok();
    let reader_log = Log::open(&config(brokers, &consumer_topic)).await?;
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for run in 0..CONSUMER_RUNS {
        let mut reader = reader_log
            .reader(&format!("bench-ours-{stamp}-{run}"))
            .await?;
        // Like ConsumerPerformance's fetch.nMsg.sec: from the first message
        // (the group join before it is reported separately).
        let joined = Instant::now();
        let mut read = reader.poll(5000, Duration::from_secs(60)).await?.len() as u64;
        let t = Instant::now();
        let join = t - joined;
        while read < consumed {
            read += reader.poll(5000, Duration::from_secs(1)).await?.len() as u64;
            if t.elapsed() > Duration::from_secs(300) {
                bail!("our consumer read only {read} of {consumed} in 300 s");
            }
        }
        ours.push(rate(consumed, t.elapsed()));
        drop(reader);
        let out = tool(
            infra,
            &[
                "kafka-perf-consumer".into(),
                "--bootstrap-server".into(),
                brokers.to_owned(),
                "--topic".into(),
                consumer_topic.clone(),
                "--num-records".into(),
                consumed.to_string(),
                "--group".into(),
                format!("bench-tools-{stamp}-{run}"),
            ],
        )
        .await?;
        // CSV: start.time, end.time, MB, MB.sec, nMsg, nMsg.sec,
        // rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec
        let tools = out
            .lines()
            .rev()
            .find(|l| l.split(',').count() >= 10 && !l.contains("nMsg"))
            .and_then(|l| l.split(',').nth(9)?.trim().parse::<f64>().ok())
            .with_context(|| format!("no fetch.nMsg.sec in ConsumerPerformance output: {out}"))?;
        eprintln!(
            "bench kafka: consumer run {}: ours {:.0} msg/s (joined in {} ms), ConsumerPerformance {tools:.0} msg/s",
            run + 1,
            ours[run],
            join.as_millis()
        );
        theirs.push(tools);
    }
    let (ours_consume, tools_consume) = (median(&mut ours), median(&mut theirs));

    // The full path through Kafka, as a user runs it.
    let e2e_topic = format!("bench-e2e-{stamp}");
    let url = format!("kafka://{brokers}/{e2e_topic}");
    let (e2e, rss) = end_to_end_with(n, &["--log", &url, "--group", &e2e_topic]).await?;

    Ok((
        vec![
            measure(
                "kafka producer",
                rate(n, ours_produce),
                "ProducerPerformance (same payloads)",
                tools_produce,
            ),
            measure(
                "kafka consumer (null sink, median of 3, ≥1M msgs)",
                ours_consume,
                "ConsumerPerformance (fetch.nMsg.sec)",
                tools_consume,
            ),
            measure(
                "end to end via Kafka",
                rate(n, e2e),
                "ProducerPerformance (path ceiling)",
                tools_produce,
            ),
        ],
        rss,
    ))
}
