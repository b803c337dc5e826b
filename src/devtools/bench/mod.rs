//! `tributary bench`: our throughput beside ceilings measured in the same run
//! on the same machine, reported as ratios. Never a pass/fail test.
//!
//! - end to end (`tributary run` as a child process) vs a raw rusqlite loop
//!   inserting the same rows into a log table and a store table;
//! - decode + flatten vs `serde_json::Value` parsing of the same bytes;
//! - a user pipeline's transform stage vs the built-in typed path
//!   (`transform.rs`);
//! - the HTTP source through `mock-api` vs plain GETs of the same pages;
//! - peak RSS of the end-to-end run;
//! - with `--dashboard`, `serve` with and without a browser on its page
//!   (`dashboard.rs`);
//! - with `--latency`, log → store latency at half load (`latency.rs`);
//! - with `--scale-out N`, processors 1…N in one group (`scale_out.rs`).

mod cassandra;
mod dashboard;
mod kafka;
mod latency;
mod lean;
mod pipeline;
mod scale_out;
mod transform;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::mock_api::{self, Faults, Served};
use crate::cli::BenchArgs;
use crate::embedded;
use crate::pipeline::source::{Generator, HttpConfig, HttpSource, MAX_RESULTS_PER_REQUEST};
use crate::record::{ROW_COLUMNS, Row, decode_page};

/// Each measurement is repeated and the best kept, to damp a busy machine.
const ROUNDS: usize = 3;
const BATCH: usize = 1000;

#[derive(Debug, Serialize)]
struct Measure {
    name: String,
    ours_per_sec: f64,
    ceiling_name: String,
    ceiling_per_sec: f64,
    ratio: f64,
}

#[derive(Debug, Serialize)]
struct BenchReport {
    records: u64,
    cores: usize,
    measures: Vec<Measure>,
    end_to_end_peak_rss_mib: Option<f64>,
    user_pipeline_peak_rss_mib: Option<f64>,
    kafka_end_to_end_peak_rss_mib: Option<f64>,
    cassandra_end_to_end_peak_rss_mib: Option<f64>,
    kafka_to_cassandra: Option<lean::Lean>,
    half_load: Option<latency::HalfLoad>,
}

fn best<F: FnMut() -> anyhow::Result<Duration>>(mut f: F) -> anyhow::Result<Duration> {
    let mut best = Duration::MAX;
    for _ in 0..ROUNDS {
        best = best.min(f()?);
    }
    Ok(best)
}

/// The middle value of `xs` (the upper one of an even count); sorts them.
fn median<T: PartialOrd + Copy>(xs: &mut [T]) -> T {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    xs[xs.len() / 2]
}

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// `tributary bench`: prints the measurements; an error is a failed run.
pub async fn bench(args: &BenchArgs) -> anyhow::Result<()> {
    if let Some(secs) = args.ticks {
        return tick_precision(secs).await;
    }
    if args.latency {
        let stages = latency::Stages {
            kafka: args.kafka.as_deref(),
            cassandra: args.cassandra.as_deref(),
        };
        let tick = std::time::Duration::from_millis(args.tick_ms);
        return latency::latency(args.records, tick, stages).await.map(drop);
    }
    if let (Some(max), Some(brokers), Some(node)) = (args.scale_out, &args.kafka, &args.cassandra) {
        return scale_out::scale_out(brokers, node, args.records, max).await;
    }
    if let Some(chromium) = &args.dashboard {
        return dashboard::dashboard(args.records, chromium).await;
    }
    let n = args.records.max(MAX_RESULTS_PER_REQUEST);
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    eprintln!("bench: {n} records a measurement, best of {ROUNDS}, {cores} cores");
    let mut measures = Vec::new();

    // Decode + flatten vs parse-only.
    let generator = Generator::new("bench", vec![], None);
    let pages: Vec<Vec<u8>> = (1..=n.div_ceil(MAX_RESULTS_PER_REQUEST))
        .map(|p| {
            let users = generator.page(p, MAX_RESULTS_PER_REQUEST);
            serde_json::to_vec(&serde_json::json!({"results": users})).expect("serialises")
        })
        .collect();
    let users_in_pages = pages.len() as u64 * MAX_RESULTS_PER_REQUEST;
    let ours = best(|| {
        let t = Instant::now();
        let mut rows = 0usize;
        for body in &pages {
            let page = decode_page(body)?;
            for u in &page.users {
                rows += usize::from(u.to_row().is_ok());
            }
        }
        if rows as u64 != users_in_pages {
            bail!("decoded {rows} of {users_in_pages}");
        }
        Ok(t.elapsed())
    })?;
    let ceiling = best(|| {
        let t = Instant::now();
        for body in &pages {
            std::hint::black_box(serde_json::from_slice::<serde_json::Value>(body)?);
        }
        Ok(t.elapsed())
    })?;
    measures.push(measure(
        "decode + flatten",
        rate(users_in_pages, ours),
        "serde_json::Value parse only",
        rate(users_in_pages, ceiling),
    ));
    drop(pages);
    measures.extend(transform::bench(n)?);

    // End to end vs the raw SQLite ceiling.
    let rows: Vec<Row> = (0..n)
        .map(|k| generator.user(k).to_row())
        .collect::<Result<_, _>>()
        .context("generated users flatten")?;
    let raw = best(|| raw_sqlite_ceiling(&rows))?;
    drop(rows);
    let mut peak_rss = None;
    let mut e2e = Duration::MAX;
    for _ in 0..ROUNDS {
        let (d, rss) = end_to_end(n).await?;
        e2e = e2e.min(d);
        peak_rss = peak_rss.max(rss);
    }
    measures.push(measure(
        "end to end (tributary run)",
        rate(n, e2e),
        "raw rusqlite log+store inserts",
        rate(n, raw),
    ));

    // A user pipeline of the same rows beside the built-in one.
    let (generic, generic_rss) = pipeline::generic_vs_built_in(n, e2e).await?;
    measures.push(generic);

    // HTTP source vs plain GETs.
    let (ours, ceiling) = http_source(n).await?;
    measures.push(measure(
        "http source via mock-api",
        rate(n, ours),
        "plain GET of the same pages",
        rate(n, ceiling),
    ));

    let mut kafka_rss = None;
    if let Some(brokers) = &args.kafka {
        let (kafka_measures, rss) = kafka::bench(brokers, &args.infra, n).await?;
        measures.extend(kafka_measures);
        kafka_rss = rss;
    }

    let mut cassandra_rss = None;
    if let Some(node) = &args.cassandra {
        let (cassandra_measures, rss) = cassandra::bench(
            node,
            args.kafka.as_deref(),
            n.min(50_000),
            args.concurrency_sweep || args.kafka.is_some(),
        )
        .await?;
        measures.extend(cassandra_measures);
        cassandra_rss = rss;
    }

    // The path Kafka → Cassandra as `process` and `serve` meet it.
    let (mut lean, mut half_load) = (None, None);
    if let (Some(brokers), Some(node)) = (&args.kafka, &args.cassandra) {
        lean = Some(lean::bench(brokers, node, n.max(200_000)).await?);
        let stages = latency::Stages {
            kafka: Some(brokers),
            cassandra: Some(node),
        };
        let tick = Duration::from_millis(args.tick_ms);
        half_load = Some(latency::latency(n, tick, stages).await?);
    }

    let report = BenchReport {
        records: n,
        cores,
        measures,
        end_to_end_peak_rss_mib: peak_rss.map(|b| b as f64 / (1 << 20) as f64),
        user_pipeline_peak_rss_mib: generic_rss.map(|b| b as f64 / (1 << 20) as f64),
        kafka_end_to_end_peak_rss_mib: kafka_rss.map(|b| b as f64 / (1 << 20) as f64),
        cassandra_end_to_end_peak_rss_mib: cassandra_rss.map(|b| b as f64 / (1 << 20) as f64),
        kafka_to_cassandra: lean,
        half_load,
    };
    println!(
        "{:<28} {:>14}   {:<32} {:>14}   {:>6}",
        "measure", "ours rec/s", "ceiling", "ceiling rec/s", "ratio"
    );
    for m in &report.measures {
        println!(
            "{:<28} {:>14.0}   {:<32} {:>14.0}   {:>5.0}%",
            m.name,
            m.ours_per_sec,
            m.ceiling_name,
            m.ceiling_per_sec,
            m.ratio * 100.0
        );
    }
    if let Some(rss) = report.end_to_end_peak_rss_mib {
        println!("end-to-end peak RSS: {rss:.1} MiB");
    }
    if let Some(rss) = report.user_pipeline_peak_rss_mib {
        println!("user pipeline end-to-end peak RSS: {rss:.1} MiB");
    }
    if let Some(rss) = report.kafka_end_to_end_peak_rss_mib {
        println!("end-to-end via Kafka peak RSS: {rss:.1} MiB");
    }
    if let Some(rss) = report.cassandra_end_to_end_peak_rss_mib {
        println!("end-to-end into Cassandra peak RSS: {rss:.1} MiB");
    }
    if let Some(lean) = &report.kafka_to_cassandra {
        println!(
            "process draining {} messages Kafka → Cassandra: {:.0} rows/s, peak RSS {}",
            lean.drained,
            lean.drain_rows_per_sec,
            lean.drain_peak_rss_bytes
                .map_or("unknown".into(), |b| format!(
                    "{:.1} MiB",
                    b as f64 / (1 << 20) as f64
                ))
        );
        println!(
            "first row stored after process starts (median of {}): {:.0} ms (all: {})",
            lean.first_row_ms.len(),
            lean.first_row_median_ms().unwrap_or(f64::NAN),
            lean.first_row_ms
                .iter()
                .map(|ms| format!("{ms:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if let Some(h) = &report.half_load {
        println!(
            "half load ({} rec/s, a page every {} ms), log → store: p50 {:.1} ms, p99 {:.1} ms \
             (after the first 5 s: p50 {:.1} ms, p99 {:.1} ms)",
            h.half_per_sec, h.tick_ms, h.p50_ms, h.p99_ms, h.steady_p50_ms, h.steady_p99_ms
        );
    }
    if let Some(path) = &args.json {
        std::fs::write(
            path,
            serde_json::to_vec_pretty(&report).expect("serialises"),
        )
        .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn measure(
    name: impl Into<String>,
    ours: f64,
    ceiling_name: impl Into<String>,
    ceiling: f64,
) -> Measure {
    Measure {
        name: name.into(),
        ours_per_sec: ours,
        ceiling_name: ceiling_name.into(),
        ceiling_per_sec: ceiling,
        ratio: ours / ceiling,
    }
}

/// The same rows straight into a log table and a store table with the same
/// pragmas and schema, in batched transactions: no decoding, no pipeline.
fn raw_sqlite_ceiling(rows: &[Row]) -> anyhow::Result<Duration> {
    let dir = tempdir()?;
    let payloads: Vec<(Vec<u8>, Vec<u8>)> = rows.iter().map(|r| (r.key(), r.to_json())).collect();
    let t = Instant::now();
    let mut log = embedded::open(&dir.join("log.db"), false)?;
    let mut store = embedded::open(&dir.join("store.db"), false)?;
    log.execute_batch(
        "CREATE TABLE log (offset INTEGER PRIMARY KEY, ts_ms INTEGER NOT NULL, key BLOB, payload BLOB NOT NULL);",
    )?;
    let columns = ROW_COLUMNS[1..]
        .iter()
        .map(|c| format!("{c} TEXT NOT NULL"))
        .collect::<Vec<_>>()
        .join(", ");
    store.execute_batch(&format!(
        "CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL, {columns});"
    ))?;
    for (chunk_rows, chunk_payloads) in rows.chunks(BATCH).zip(payloads.chunks(BATCH)) {
        let tx = log.transaction()?;
        {
            let mut ins = tx.prepare_cached(
                "INSERT INTO log (offset, ts_ms, key, payload) VALUES (NULL, 0, ?1, ?2)",
            )?;
            for (k, p) in chunk_payloads {
                ins.execute(rusqlite::params![k, p])?;
            }
        }
        tx.commit()?;
        let tx = store.transaction()?;
        {
            let mut ins = tx.prepare_cached(&format!(
                "INSERT OR REPLACE INTO t ({}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                ROW_COLUMNS.join(", ")
            ))?;
            for r in chunk_rows {
                ins.execute(rusqlite::params![
                    r.id.to_string(),
                    r.first_name,
                    r.last_name,
                    r.gender,
                    r.address,
                    r.post_code,
                    r.email,
                    r.username,
                    r.dob,
                    r.registered_date,
                    r.phone,
                    r.picture
                ])?;
            }
        }
        tx.commit()?;
    }
    let elapsed = t.elapsed();
    std::fs::remove_dir_all(&dir).ok();
    Ok(elapsed)
}

/// `tributary run` as users run it, in a fresh data dir: wall time and the
/// child's own peak RSS (from its JSON summary).
async fn end_to_end(n: u64) -> anyhow::Result<(Duration, Option<u64>)> {
    end_to_end_with(n, &[]).await
}

async fn end_to_end_with(n: u64, extra: &[&str]) -> anyhow::Result<(Duration, Option<u64>)> {
    let dir = tempdir()?;
    let exe = std::env::current_exe().context("cannot find this binary")?;
    let t = Instant::now();
    let out = tokio::process::Command::new(exe)
        .args(["run", "--quiet", "--json", "--seed", "bench", "--records"])
        .arg(n.to_string())
        .arg("--data-dir")
        .arg(&dir)
        .args(extra)
        .env_remove("TRIBUTARY_CONFIG")
        .output()
        .await
        .context("cannot start tributary run")?;
    let elapsed = t.elapsed();
    if !out.status.success() {
        bail!(
            "tributary run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let summary: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("run printed no JSON summary")?;
    if summary["stored"].as_u64() != Some(n) {
        bail!("run stored {} of {n}", summary["stored"]);
    }
    std::fs::remove_dir_all(&dir).ok();
    Ok((elapsed, summary["peak_rss_bytes"].as_u64()))
}

async fn http_source(n: u64) -> anyhow::Result<(Duration, Duration)> {
    let listener = mock_api::bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .map_err(anyhow::Error::msg)?;
    let base = format!("http://{}/api/", listener.local_addr()?);
    let stop = CancellationToken::new();
    let server = tokio::spawn(mock_api::serve(
        listener,
        Faults::default(),
        Arc::new(Served::default()),
        stop.clone(),
    ));
    let source = HttpSource::new(HttpConfig {
        url: url::Url::parse(&base)?,
        seed: "bench".into(),
        nats: vec![],
        gender: None,
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(30),
        max_attempts: 1,
        backoff_initial: Duration::from_millis(100),
        backoff_max: Duration::from_secs(1),
    })?;
    let pages = n.div_ceil(MAX_RESULTS_PER_REQUEST);
    let mut ours = Duration::MAX;
    let mut ceiling = Duration::MAX;
    let client = reqwest::Client::new();
    for _ in 0..ROUNDS {
        let t = Instant::now();
        for p in 1..=pages {
            let batch = source.fetch(p, MAX_RESULTS_PER_REQUEST).await?;
            for u in &batch.users {
                std::hint::black_box(u.to_row()?);
            }
        }
        ours = ours.min(t.elapsed());
        let t = Instant::now();
        for p in 1..=pages {
            let body = client
                .get(format!(
                    "{base}?results={MAX_RESULTS_PER_REQUEST}&seed=bench&page={p}"
                ))
                .send()
                .await?
                .bytes()
                .await?;
            std::hint::black_box(body);
        }
        ceiling = ceiling.min(t.elapsed());
    }
    stop.cancel();
    let _ = server.await;
    Ok((ours, ceiling))
}

/// How late burst ticks fire (100 ms interval) while the pipeline runs at
/// full speed in another process on the same two cores.
async fn tick_precision(secs: u64) -> anyhow::Result<()> {
    let dir = tempdir()?;
    let exe = std::env::current_exe().context("cannot find this binary")?;
    let mut load = tokio::process::Command::new(exe)
        .args([
            "run",
            "--quiet",
            "--seed",
            "load",
            "--records",
            "100000000",
            "--data-dir",
        ])
        .arg(&dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start the load")?;
    let interval = Duration::from_millis(100);
    let start = tokio::time::Instant::now();
    let mut late = Vec::new();
    let report = crate::pipeline::ingest::burst(
        Duration::from_secs(secs),
        interval,
        &CancellationToken::new(),
        |n| {
            let due = start + interval * n as u32;
            late.push(tokio::time::Instant::now().saturating_duration_since(due));
            async { true }
        },
    )
    .await;
    let _ = load.kill().await;
    std::fs::remove_dir_all(&dir).ok();
    late.sort();
    let pick = |q: f64| late[((late.len() - 1) as f64 * q).round() as usize];
    println!(
        "burst ticks under load: {} ticks, {} skipped; lateness p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        report.ticks,
        report.skipped,
        pick(0.50).as_secs_f64() * 1e3,
        pick(0.99).as_secs_f64() * 1e3,
        late.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    Ok(())
}

/// A child `tributary` with the bench config (if any), its own data dir and
/// no progress output.
fn tributary(
    config: Option<&std::path::Path>,
    data_dir: &std::path::Path,
) -> tokio::process::Command {
    let exe = std::env::current_exe().unwrap_or_else(|_| "tributary".into());
    let mut cmd = tokio::process::Command::new(exe);
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    cmd.arg("--data-dir")
        .arg(data_dir)
        .arg("--quiet")
        .env_remove("TRIBUTARY_CONFIG")
        .kill_on_drop(true);
    cmd
}

/// Runs a child `tributary` command to its end; its output if it succeeded.
async fn succeeded(
    mut cmd: tokio::process::Command,
    what: &str,
) -> anyhow::Result<std::process::Output> {
    let out = cmd
        .output()
        .await
        .with_context(|| format!("cannot start tributary {what}"))?;
    if !out.status.success() {
        bail!(
            "tributary {what} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

fn tempdir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "tributary-bench-{}-{}",
        std::process::id(),
        crate::pipeline::source::generator::random_seed()
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}
