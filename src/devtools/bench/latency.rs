//! `tributary bench --latency`: how long a record waits between the log
//! and the store at half load. The real `serve` first runs one job at full
//! speed (the ceiling), then a burst at half that rate for 30 s; the
//! per-message histogram `tributary_processor_end_to_end_latency_seconds`
//! gives p50 and p99 (interpolated within its buckets). With `--kafka`
//! and/or `--cassandra` both runs use them, each on a fresh topic and
//! keyspace.

use std::time::Duration;

use anyhow::bail;

use super::dashboard::{metric, metrics_text, start_serve, trigger};
use super::{rate, tempdir};

const HISTOGRAM: &str = crate::telemetry::metrics::PROCESSOR_END_TO_END_LATENCY.name;
const BURST: Duration = Duration::from_secs(30);
/// Start-up (a Kafka consumer joining its group, the first fetch) is left
/// out of the steady-state figures: they count what arrived after this.
const WARM_UP: Duration = Duration::from_secs(5);

/// Where the runs log and store: the embedded default, or Kafka and/or
/// Cassandra.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stages<'a> {
    pub kafka: Option<&'a str>,
    pub cassandra: Option<&'a str>,
}

impl Stages<'_> {
    fn describe(&self) -> String {
        let log = self.kafka.map_or("SQLite".into(), |b| format!("Kafka {b}"));
        let sink = self
            .cassandra
            .map_or("SQLite".into(), |n| format!("Cassandra {n}"));
        format!("{log} → {sink}")
    }

    /// `[log]`/`[sink]` tables naming a fresh topic and keyspace.
    fn config(&self) -> String {
        let name = format!(
            "bench_latency_{}",
            crate::pipeline::source::generator::random_seed()
        );
        let mut out = String::new();
        if let Some(brokers) = self.kafka {
            // A group of its own: a killed earlier run's member would hold
            // up the join until its session timed out (10 s).
            out.push_str(&format!(
                "[log]\nurl = \"kafka://{brokers}/{name}\"\ngroup = \"{name}\"\n"
            ));
        }
        if let Some(node) = self.cassandra {
            out.push_str(&format!(
                "[sink]\nurl = \"cassandra://{node}/{name}.created_users\"\n"
            ));
        }
        out
    }
}

/// Runs the `bench` job of a fresh `serve` until `n` rows are written;
/// returns the seconds it took, the histogram at the end, and the histogram
/// [`WARM_UP`] after the trigger.
async fn serve_job(
    plan: &str,
    n: u64,
    stages: Stages<'_>,
) -> anyhow::Result<(f64, Buckets, Buckets, String)> {
    let dir = tempdir()?;
    let mut serve = start_serve(&dir, plan, &stages.config()).await?;
    let client = reqwest::Client::new();
    let warm = async {
        tokio::time::sleep(WARM_UP).await;
        metrics_text(&client, serve.port).await
    };
    let (done, warm) = tokio::join!(run_to_the_end(&client, serve.port, n), warm);
    let secs = done?;
    let text = metrics_text(&client, serve.port).await?;
    let _ = serve.child.kill().await;
    std::fs::remove_dir_all(&dir).ok();
    Ok((secs, buckets(&text), buckets(&warm?), text))
}

/// Triggers the `bench` job and waits until its run has ended and the
/// store has every row it logged (a burst on a busy machine skips ticks,
/// so it may log fewer than `n`). Returns the seconds from the trigger.
async fn run_to_the_end(client: &reqwest::Client, port: u16, n: u64) -> anyhow::Result<f64> {
    use crate::telemetry::metrics::{LOG_APPENDED_RECORDS, SCHEDULER_RUNS, SINK_WRITTEN_ROWS};
    let t = std::time::Instant::now();
    trigger(client, port).await?;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let ended = metric(client, port, SCHEDULER_RUNS.name).await? >= 1.0;
        let logged = metric(client, port, LOG_APPENDED_RECORDS.name).await?;
        let written = metric(client, port, SINK_WRITTEN_ROWS.name).await?;
        if (ended && written >= logged) || written >= n as f64 {
            return Ok(t.elapsed().as_secs_f64());
        }
        if t.elapsed() > Duration::from_secs(600) {
            bail!("{n} rows not stored within 10 minutes");
        }
    }
}

/// A histogram's cumulative buckets: (upper bound, count), ascending.
type Buckets = Vec<(f64, f64)>;

fn buckets(text: &str) -> Buckets {
    buckets_of(text, HISTOGRAM)
}

fn buckets_of(text: &str, histogram: &str) -> Buckets {
    let mut buckets: Buckets = text
        .lines()
        .filter(|l| l.starts_with(&format!("{histogram}_bucket")))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, l.rsplit_once(' ')?.1.parse().ok()?))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    buckets
}

/// What was counted between two looks at the same histogram.
fn since(end: &Buckets, start: &Buckets) -> Buckets {
    end.iter()
        .map(|&(le, n)| {
            let before = start.iter().find(|b| b.0 == le).map_or(0.0, |b| b.1);
            (le, n - before)
        })
        .collect()
}

/// The `q` quantile from cumulative buckets, linear within a bucket.
fn quantile(buckets: &Buckets, q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    let want = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= want {
            if le.is_infinite() {
                return Some(lower);
            }
            let within = if count > below {
                (want - below) / (count - below)
            } else {
                0.0
            };
            return Some(lower + (le - lower) * within);
        }
        (lower, below) = (le, count);
    }
    None
}

/// The half-load figures of one [`latency`] run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HalfLoad {
    pub ceiling_per_sec: f64,
    pub half_per_sec: u64,
    pub tick_ms: u64,
    /// p50 and p99 in milliseconds, over the whole burst and after its
    /// first 5 s.
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub steady_p50_ms: f64,
    pub steady_p99_ms: f64,
}

pub async fn latency(n: u64, tick: Duration, stages: Stages<'_>) -> anyhow::Result<HalfLoad> {
    eprintln!(
        "bench --latency ({}): the ceiling ({n} users at full speed), then half of it for {BURST:?}",
        stages.describe()
    );
    let (secs, _, _, _) = serve_job(&format!("records = {n}"), n, stages).await?;
    let ceiling = rate(n, Duration::from_secs_f64(secs));
    let per_tick = ((ceiling / 2.0) * tick.as_secs_f64())
        .round()
        .clamp(1.0, 5000.0) as u64;
    let half = (per_tick as f64 / tick.as_secs_f64()) as u64;
    let total = per_tick * (BURST.as_millis() / tick.as_millis()) as u64;
    let plan = format!(
        "burst = {{ duration = \"{}s\", interval = \"{}ms\", records = {per_tick} }}",
        BURST.as_secs(),
        tick.as_millis()
    );
    let (_, end, warm, text) = serve_job(&plan, total, stages).await?;
    let steady = since(&end, &warm);
    println!("{}", stages.describe());
    println!("ceiling: {ceiling:.0} rec/s; half load: {half} rec/s ({per_tick} every {tick:?})");
    let mut figures = Vec::new();
    for (what, b) in [("whole run", &end), ("after the first 5 s", &steady)] {
        let (Some(p50), Some(p99)) = (quantile(b, 0.50), quantile(b, 0.99)) else {
            bail!("no latency histogram in /metrics");
        };
        println!(
            "log → store latency at half load, {what}: p50 {:.1} ms, p99 {:.1} ms ({} messages)",
            p50 * 1e3,
            p99 * 1e3,
            b.last().map_or(0.0, |l| l.1)
        );
        figures.push((p50 * 1e3, p99 * 1e3));
    }
    // Where the time goes: the stages' own histograms over the burst.
    use crate::telemetry::metrics::{
        LOG_APPEND_DURATION, PROCESSOR_READ_LATENCY, SINK_WRITE_DURATION,
    };
    for (what, name) in [
        ("a message's wait in the log", PROCESSOR_READ_LATENCY.name),
        ("a store write (one batch)", SINK_WRITE_DURATION.name),
        ("a log append (one page)", LOG_APPEND_DURATION.name),
    ] {
        let b = buckets_of(&text, name);
        if let (Some(p50), Some(p99)) = (quantile(&b, 0.50), quantile(&b, 0.99)) {
            println!(
                "  of which {what}: p50 {:.1} ms, p99 {:.1} ms ({} of them)",
                p50 * 1e3,
                p99 * 1e3,
                b.last().map_or(0.0, |l| l.1)
            );
        }
    }
    Ok(HalfLoad {
        ceiling_per_sec: ceiling,
        half_per_sec: half,
        tick_ms: tick.as_millis() as u64,
        p50_ms: figures[0].0,
        p99_ms: figures[0].1,
        steady_p50_ms: figures[1].0,
        steady_p99_ms: figures[1].1,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn quantiles_interpolate_within_buckets() {
        let text = format!(
            "{h}_bucket{{le=\"0.01\"}} 50\n{h}_bucket{{le=\"0.1\"}} 100\n{h}_bucket{{le=\"+Inf\"}} 100\n",
            h = super::HISTOGRAM
        );
        let b = super::buckets(&text);
        assert_eq!(super::quantile(&b, 0.25), Some(0.005));
        let p99 = super::quantile(&b, 0.99).unwrap();
        assert!((p99 - 0.0982).abs() < 1e-9, "{p99}");
        // Less the first look's 40 fast ones: 10 fast, 50 slow remain.
        let early = super::buckets(&text.replace("} 50", "} 40").replace("} 100", "} 40"));
        let late = super::since(&b, &early);
        assert_eq!(late, vec![(0.01, 10.0), (0.1, 60.0), (f64::INFINITY, 60.0)]);
        let p50 = super::quantile(&late, 0.5).unwrap();
        assert!((p50 - 0.046).abs() < 1e-9, "{p50}");
    }
}
