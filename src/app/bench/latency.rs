//! `tributary bench --latency`: how long a record waits between the log
//! and the store at half load. The real `serve` first runs one job at full
//! speed (the ceiling), then a burst at half that rate for 30 s; the
//! per-message histogram `tributary_processor_end_to_end_latency_seconds`
//! gives p50 and p99 (interpolated within its buckets).

use std::time::Duration;

use anyhow::bail;

use super::dashboard::{metrics_text, run_job, start_serve};
use super::{rate, tempdir};

const HISTOGRAM: &str = "tributary_processor_end_to_end_latency_seconds";
const BURST: Duration = Duration::from_secs(30);
const TICK: Duration = Duration::from_millis(100);

/// Runs the `bench` job of a fresh `serve` until `n` rows are written;
/// returns the seconds it took and the final /metrics text.
async fn serve_job(plan: &str, n: u64) -> anyhow::Result<(f64, String)> {
    let dir = tempdir()?;
    let mut serve = start_serve(&dir, plan).await?;
    let client = reqwest::Client::new();
    let (secs, _) = run_job(&client, serve.port, n).await?;
    let text = metrics_text(&client, serve.port).await?;
    let _ = serve.child.kill().await;
    std::fs::remove_dir_all(&dir).ok();
    Ok((secs, text))
}

/// The `q` quantile from cumulative `le` buckets, linear within a bucket.
fn quantile(text: &str, q: f64) -> Option<f64> {
    let mut buckets: Vec<(f64, f64)> = text
        .lines()
        .filter(|l| l.starts_with(&format!("{HISTOGRAM}_bucket")))
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
    let total = buckets.last()?.1;
    let want = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for (le, count) in buckets {
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

pub async fn latency(n: u64) -> anyhow::Result<()> {
    eprintln!(
        "bench --latency: the ceiling ({n} users at full speed), then half of it for {BURST:?}"
    );
    let (secs, _) = serve_job(&format!("records = {n}"), n).await?;
    let ceiling = rate(n, Duration::from_secs_f64(secs));
    let ticks_per_sec = (1.0 / TICK.as_secs_f64()) as u64;
    let per_tick = ((ceiling / 2.0) as u64 / ticks_per_sec).clamp(1, 5000);
    let half = per_tick * ticks_per_sec;
    let total = per_tick * (BURST.as_millis() / TICK.as_millis()) as u64;
    let plan = format!(
        "burst = {{ duration = \"{}s\", interval = \"{}ms\", records = {per_tick} }}",
        BURST.as_secs(),
        TICK.as_millis()
    );
    let (_, text) = serve_job(&plan, total).await?;
    let (Some(p50), Some(p99)) = (quantile(&text, 0.50), quantile(&text, 0.99)) else {
        bail!("no latency histogram in /metrics");
    };
    println!("ceiling: {ceiling:.0} rec/s; half load: {half} rec/s ({per_tick} every {TICK:?})");
    println!(
        "log → store latency at half load: p50 {:.1} ms, p99 {:.1} ms ({total} messages)",
        p50 * 1e3,
        p99 * 1e3
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn quantiles_interpolate_within_buckets() {
        let text = format!(
            "{h}_bucket{{le=\"0.01\"}} 50\n{h}_bucket{{le=\"0.1\"}} 100\n{h}_bucket{{le=\"+Inf\"}} 100\n",
            h = super::HISTOGRAM
        );
        assert_eq!(super::quantile(&text, 0.25), Some(0.005));
        let p99 = super::quantile(&text, 0.99).unwrap();
        assert!((p99 - 0.0982).abs() < 1e-9, "{p99}");
    }
}
