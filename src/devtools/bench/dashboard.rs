//! `tributary bench --dashboard`: does an open dashboard slow the pipeline?
//! The real `serve` runs one job of N users, first with nobody looking, then
//! with headless Chromium showing the page (which polls the API every 1-3 s),
//! three rounds each, the order alternating between rounds. Both sides watch completion the same way
//! (`/metrics` every 200 ms), so the ratio is the page's cost alone.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::{ROUNDS, median, rate, tempdir};

/// A `serve` under measurement: its child process and dashboard port.
pub(super) struct Served {
    pub child: Child,
    pub port: u16,
}

/// A job named `bench` that runs only when triggered; `plan` is its
/// `records = N` or `burst = {...}` line, `stages` any `[log]`/`[sink]`
/// tables (empty: the embedded default).
pub(super) async fn start_serve(dir: &Path, plan: &str, stages: &str) -> anyhow::Result<Served> {
    std::fs::write(
        dir.join("tributary.toml"),
        format!(
            "data_dir = \"data\"\n{stages}\n[source]\nseed = \"dash\"\n\
             [[jobs]]\nname = \"bench\"\nschedule = \"0 0 1 1 *\"\n{plan}\n"
        ),
    )?;
    let exe = std::env::current_exe().context("cannot find this binary")?;
    let mut child = Command::new(exe)
        .args(["serve", "--quiet", "--listen", "127.0.0.1:0"])
        .current_dir(dir)
        .env_remove("TRIBUTARY_CONFIG")
        .env_remove("TRIBUTARY_DATA_DIR")
        .env_remove("TRIBUTARY_WEB_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start tributary serve")?;
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let port = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(port) = line
                .strip_prefix("dashboard: http://127.0.0.1:")
                .and_then(|r| r.split('/').next())
                .and_then(|p| p.parse().ok())
            {
                return Ok(port);
            }
        }
        bail!("serve exited before printing its dashboard address")
    })
    .await
    .context("serve did not start within 30 s")??;
    // Keep draining stdout so serve never blocks on it.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(Served { child, port })
}

/// One sample of a metric in `/metrics` (summed over label sets matching
/// `prefix`).
pub(super) async fn metrics_text(client: &reqwest::Client, port: u16) -> anyhow::Result<String> {
    Ok(client
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await?
        .text()
        .await?)
}

pub(super) async fn metric(
    client: &reqwest::Client,
    port: u16,
    prefix: &str,
) -> anyhow::Result<f64> {
    let text = metrics_text(client, port).await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum())
}

/// Triggers the `bench` job and waits until `n` rows are written, looking
/// at `/metrics` every 200 ms. Returns the seconds from the trigger and the
/// peak RSS seen meanwhile.
/// Queues a run of the `bench` job of the `serve` on `port`.
pub(super) async fn trigger(client: &reqwest::Client, port: u16) -> anyhow::Result<()> {
    let queued = client
        .post(format!("http://127.0.0.1:{port}/api/v1/jobs/bench/trigger"))
        .header("x-tributary-request", "1")
        .send()
        .await?;
    if !queued.status().is_success() {
        bail!("trigger refused: {}", queued.status());
    }
    Ok(())
}

pub(super) async fn run_job(
    client: &reqwest::Client,
    port: u16,
    n: u64,
) -> anyhow::Result<(f64, f64)> {
    let t = Instant::now();
    trigger(client, port).await?;
    let mut peak_rss: f64 = 0.0;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        peak_rss = peak_rss.max(
            metric(
                client,
                port,
                crate::telemetry::metrics::PROCESS_RESIDENT_MEMORY.name,
            )
            .await?,
        );
        if metric(
            client,
            port,
            crate::telemetry::metrics::SINK_WRITTEN_ROWS.name,
        )
        .await?
            >= n as f64
        {
            return Ok((t.elapsed().as_secs_f64(), peak_rss));
        }
        if t.elapsed() > Duration::from_secs(600) {
            bail!("{n} rows not stored within 10 minutes");
        }
    }
}

struct Round {
    secs: f64,
    peak_rss: f64,
    page_requests: f64,
}

async fn round(n: u64, chromium: Option<&Path>) -> anyhow::Result<Round> {
    let dir = tempdir()?;
    let mut serve = start_serve(&dir, &format!("records = {n}"), "").await?;
    let port = serve.port;
    let client = reqwest::Client::new();
    let status_route = r#"tributary_web_requests_total{route="/api/v1/status""#;
    let mut browser = None;
    if let Some(exe) = chromium {
        let profile = dir.join("chromium-profile");
        browser = Some(
            Command::new(exe)
                .args([
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--no-first-run",
                    "--window-size=1280,800",
                ])
                .arg(format!("--user-data-dir={}", profile.display()))
                .arg(format!("http://127.0.0.1:{port}/"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("cannot start {}", exe.display()))?,
        );
        // The page is open once it polls the status.
        let deadline = Instant::now() + Duration::from_secs(60);
        while metric(&client, port, status_route).await? < 2.0 {
            if Instant::now() > deadline {
                bail!("the page never polled /api/v1/status");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let before = metric(&client, port, status_route).await?;
    let (secs, peak_rss) = run_job(&client, port, n).await?;
    let page_requests = metric(&client, port, status_route).await? - before;
    if let Some(mut b) = browser {
        let _ = b.kill().await;
    }
    let _ = serve.child.kill().await;
    std::fs::remove_dir_all(&dir).ok();
    Ok(Round {
        secs,
        peak_rss,
        page_requests,
    })
}

pub async fn dashboard(n: u64, chromium: &Path) -> anyhow::Result<()> {
    eprintln!(
        "bench --dashboard: serve runs a job of {n} users without and with {} on the page, best of {ROUNDS}",
        chromium.display()
    );
    let (mut alone, mut watched): (Option<Round>, Option<Round>) = (None, None);
    let (mut alone_secs, mut watched_secs) = (Vec::new(), Vec::new());
    for i in 0..ROUNDS {
        // Which goes first alternates, so neither side always gets the
        // warmer (or colder) machine.
        let (a, w) = if i % 2 == 0 {
            let a = round(n, None).await?;
            (a, round(n, Some(chromium)).await?)
        } else {
            let w = round(n, Some(chromium)).await?;
            (round(n, None).await?, w)
        };
        eprintln!(
            "  round: {:.0} rec/s alone, {:.0} rec/s watched ({} status polls during the run)",
            rate(n, Duration::from_secs_f64(a.secs)),
            rate(n, Duration::from_secs_f64(w.secs)),
            w.page_requests
        );
        alone_secs.push(a.secs);
        watched_secs.push(w.secs);
        if alone.as_ref().is_none_or(|b| a.secs < b.secs) {
            alone = Some(a);
        }
        if watched.as_ref().is_none_or(|b| w.secs < b.secs) {
            watched = Some(w);
        }
    }
    let (a, w) = (alone.expect("rounds ran"), watched.expect("rounds ran"));
    let (ra, rw) = (
        rate(n, Duration::from_secs_f64(a.secs)),
        rate(n, Duration::from_secs_f64(w.secs)),
    );
    println!(
        "serve, nobody looking:      {ra:>9.0} rec/s   peak RSS {:.1} MiB",
        a.peak_rss / 1048576.0
    );
    println!(
        "serve, Chromium on the page: {rw:>8.0} rec/s   peak RSS {:.1} MiB   ({:.0} status polls in the run)",
        w.peak_rss / 1048576.0,
        w.page_requests
    );
    println!(
        "ratio watched / alone: best {:.1} %, median {:.1} %  (the browser shares the same cores)",
        rw / ra * 100.0,
        median(&mut alone_secs) / median(&mut watched_secs) * 100.0
    );
    Ok(())
}
