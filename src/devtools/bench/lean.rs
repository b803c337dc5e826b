//! The Kafka → Cassandra path as `tributary process` meets it, at the
//! default settings: its memory while it drains a topic, and how soon
//! after its start the first row is stored.
//!
//! - **drain**: a topic of `n` messages written by `tributary ingest`,
//!   then `tributary process` (a child, a fresh group and keyspace) reads it
//!   to the end; its rows/s and its own peak RSS (VmHWM, from its summary).
//! - **first row**: [`FIRST_ROW_TRIES`] times, a topic of
//!   [`FIRST_ROW_MESSAGES`] messages and an existing, empty table, then
//!   `tributary process`; the time from spawning it to the earliest
//!   `WRITETIME` in the table (Cassandra's clock, not our log lines). Both
//!   run on this machine, so the two clocks are one.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;

use super::{rate, succeeded, tempdir, tributary};
use crate::pipeline::shape::Dataset;
use crate::pipeline::sink::{Sink, SinkConfig};

/// Messages waiting in the topic when the first-row run starts.
const FIRST_ROW_MESSAGES: u64 = 500;
/// First-row runs; the median is reported.
pub const FIRST_ROW_TRIES: usize = 3;

/// What [`bench`] measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Lean {
    pub drained: u64,
    pub drain_rows_per_sec: f64,
    pub drain_peak_rss_bytes: Option<u64>,
    /// Milliseconds from spawn to the first row, one per try, ascending.
    pub first_row_ms: Vec<f64>,
}

impl Lean {
    pub fn first_row_median_ms(&self) -> Option<f64> {
        self.first_row_ms.get(self.first_row_ms.len() / 2).copied()
    }
}

pub async fn bench(brokers: &str, node: &str, n: u64) -> anyhow::Result<Lean> {
    let stamp = crate::pipeline::source::generator::random_seed();
    let dir = tempdir()?;
    let session = SessionBuilder::new()
        .known_nodes(node.split(','))
        .build()
        .await
        .with_context(|| format!("cannot connect to Cassandra at {node}"))?;

    // Drain.
    let name = format!("bench_drain_{stamp}");
    let log = format!("kafka://{brokers}/{name}");
    let sink = format!("cassandra://{node}/{name}.created_users");
    eprintln!("bench lean: writing {n} messages to topic {name}");
    ingest(&dir, &log, &name, n).await?;
    eprintln!("bench lean: `tributary process` drains them into Cassandra");
    let t = Instant::now();
    let summary = process(&dir, &log, &name, &sink).await?;
    let drain = t.elapsed();
    if summary["stored"].as_u64() != Some(n) {
        bail!("process stored {} of {n}", summary["stored"]);
    }
    let drain_peak_rss_bytes = summary["peak_rss_bytes"].as_u64();

    // First row.
    let mut first_row_ms = Vec::new();
    for i in 0..FIRST_ROW_TRIES {
        let name = format!("bench_first_{stamp}_{i}");
        let log = format!("kafka://{brokers}/{name}");
        ingest(&dir, &log, &name, FIRST_ROW_MESSAGES).await?;
        // The table exists before the processor starts, empty.
        Sink::open(
            &SinkConfig::Cassandra(super::cassandra::sink_config(node, &name, None)),
            &Dataset::Users,
        )
        .await
        .context("cannot create the first-row table")?;
        let sink = format!("cassandra://{node}/{name}.created_users");
        let started = SystemTime::now();
        process(&dir, &log, &name, &sink).await?;
        let first = earliest_write(&session, &name).await?;
        let start_us = started.duration_since(UNIX_EPOCH)?.as_micros() as i64;
        let ms = (first - start_us) as f64 / 1e3;
        eprintln!("bench lean: first row {ms:.0} ms after `tributary process` was spawned");
        first_row_ms.push(ms);
    }
    first_row_ms.sort_by(f64::total_cmp);
    std::fs::remove_dir_all(&dir).ok();
    Ok(Lean {
        drained: n,
        drain_rows_per_sec: rate(n, drain),
        drain_peak_rss_bytes,
        first_row_ms,
    })
}

async fn ingest(dir: &std::path::Path, log: &str, name: &str, n: u64) -> anyhow::Result<()> {
    let mut cmd = tributary(None, &dir.join(name));
    cmd.args(["ingest", "--seed", name, "--log", log, "--records"])
        .arg(n.to_string());
    succeeded(cmd, "ingest").await.map(drop)
}

/// `tributary process` to the end of the topic, in a group named `name`;
/// its JSON summary.
async fn process(
    dir: &std::path::Path,
    log: &str,
    name: &str,
    sink: &str,
) -> anyhow::Result<serde_json::Value> {
    let mut cmd = tributary(None, &dir.join(name));
    cmd.args(["process", "--json", "--log", log, "--group", name])
        .args(["--sink", sink]);
    let out = succeeded(cmd, "process").await?;
    serde_json::from_slice(&out.stdout).context("tributary process printed no JSON summary")
}

/// The earliest `WRITETIME` in the table, in microseconds since the epoch.
async fn earliest_write(session: &Session, keyspace: &str) -> anyhow::Result<i64> {
    let rows = session
        .query_unpaged(
            format!("SELECT writetime(first_name) FROM {keyspace}.created_users"),
            (),
        )
        .await
        .context("cannot read the rows' write times")?
        .into_rows_result()?;
    let mut earliest = None;
    for row in rows.rows::<(Option<i64>,)>()? {
        if let (Some(t),) = row? {
            earliest = Some(earliest.map_or(t, |e: i64| e.min(t)));
        }
    }
    earliest.with_context(|| format!("no rows in {keyspace}.created_users"))
}
