//! The commands that move data: `run`, `ingest`, `process`, and the
//! `mock-api` server. Each opens its stages, shows progress on a terminal and
//! ends with a summary a user can check.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use indicatif::ProgressBar;
use tokio_util::sync::CancellationToken;

use super::{AppResult, announce_seed, prepare_dirs};
use crate::cli::{MockApiArgs, ProcessArgs, RunArgs};
use crate::config::{Config, Overrides, PipelineConfig};
use crate::devtools::mock_api::{self, Faults, Served};
use crate::pipeline::ingest::{Feed, IngestPlan};
use crate::pipeline::log::Log;
use crate::pipeline::shape::{Dataset, Shape};
use crate::pipeline::sink::Sink;
use crate::pipeline::stats::{Counter, Stats, Summary};
use crate::pipeline::{self, Job};

/// Records fetched by `run` and `ingest` when neither --records nor
/// --duration is given.
pub const DEFAULT_RECORDS: u64 = 100_000;

pub fn overrides(args: &RunArgs, data_dir: Option<PathBuf>) -> Overrides {
    let mut over = args.endpoints.overrides(data_dir);
    over.source = args.source.clone();
    over.seed = args.seed.clone();
    over.batch_size = args.batch_size;
    over
}

fn plan(args: &RunArgs, config: &Config) -> IngestPlan {
    match (args.duration, args.interval) {
        (Some(duration), Some(interval)) => IngestPlan::Burst {
            duration,
            interval,
            per_tick: args.per_tick.unwrap_or(1),
        },
        _ => IngestPlan::Records {
            // A Random User source never ends; a user pipeline's source is
            // read to its end.
            total: args.records.unwrap_or(match config.pipeline.dataset {
                Dataset::Users => DEFAULT_RECORDS,
                Dataset::Table(_) => u64::MAX,
            }),
            page_size: config.processor.batch_size as u64,
        },
    }
}

/// What ingestion reads: the pipeline's source, with its shape when it has
/// a table (as `sink` has it; a table left to the store is read from it,
/// opening it when no `sink` is given).
pub(super) async fn feed(config: &Config, sink: Option<&Sink>) -> AppResult<Feed> {
    let p = &config.pipeline;
    let shape = match (&p.dataset, sink) {
        (Dataset::Users, _) => None,
        (dataset, Some(sink)) => checked(p, Shape::of(dataset, sink.schema()))?,
        (dataset, None) => match Shape::of(dataset, None) {
            Some(declared) => checked(p, Some(declared))?,
            None => {
                let sink = Sink::open(&p.sink, dataset)
                    .await
                    .context("cannot open the store to read its table")?;
                checked(p, Shape::of(dataset, sink.schema()))?
            }
        },
    };
    Ok(Feed::open(
        &p.source,
        shape,
        config.processor.batch_size as u64,
        config.processor.max_message_bytes,
    )
    .context("cannot open the source")?)
}

/// A user pipeline's shape, checked against the fields its transform sets:
/// one the table has no column for is a usage error, before any record is
/// read.
pub(super) fn checked(
    p: &PipelineConfig,
    shape: Option<Arc<Shape>>,
) -> AppResult<Option<Arc<Shape>>> {
    if let Some(shape) = &shape {
        shape
            .check_fields()
            .map_err(|e| super::AppError::Usage(format!("pipeline {}: table {}", p.name, e)))?;
    }
    Ok(shape)
}

/// How many records a plan will fetch, if known in advance (0: unknown).
fn expected(plan: IngestPlan) -> u64 {
    match plan {
        IngestPlan::Records {
            total: u64::MAX, ..
        } => 0,
        IngestPlan::Records { total, .. } => total,
        IngestPlan::Burst {
            duration,
            interval,
            per_tick,
        } => (duration.as_nanos() / interval.as_nanos().max(1)) as u64 * per_tick,
    }
}

/// Opens the log and sink of `config` for processing.
pub(super) async fn open_job(
    config: &Config,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
) -> AppResult<Job> {
    prepare_dirs(config)?;
    // Both sides are round trips to servers (metadata, the group's
    // commits, joining it; connect, schema, prepare): made side by side,
    // the first row lands sooner.
    let (reading, sink) = tokio::join!(
        Log::open_with_reader(&config.pipeline.log, &config.pipeline.group),
        Sink::open(&config.pipeline.sink, &config.pipeline.dataset)
    );
    let (log, reader) = reading.context("cannot open the log")?;
    let sink = sink.context("cannot open the store")?;
    tracing::debug!("start: log, reader and store open");
    Ok(Job {
        log,
        reader,
        sink,
        group: config.pipeline.group.clone(),
        processor: config.processor,
        stats,
        shutdown,
    })
}

pub async fn run(config: Config, args: &RunArgs, shutdown: CancellationToken) -> AppResult {
    announce_seed(&config);
    let stopped = shutdown.clone();
    let stats = Arc::new(Stats::default());
    let plan = plan(args, &config);
    let job = open_job(&config, stats.clone(), shutdown).await?;
    let log = job.log.clone();
    let feed = feed(&config, Some(&job.sink)).await?;
    let progress = Progress::start(expected(plan), stats.clone(), |s| s.get(Counter::Read));
    let result = pipeline::run(feed, plan, job).await;
    progress.finish();
    let summary = stats.summary();
    if result.is_ok() && stopped.is_cancelled() {
        left_in_the_log(&log, &config.pipeline.group).await;
    }
    // The books are checked only for a run that went to the end: one
    // stopped by Ctrl-C leaves the rest in the log, by design.
    let (imbalance, books) = match &result {
        Ok(()) if !stopped.is_cancelled() => {
            let imbalance = summary.imbalance();
            let books = if imbalance.is_none() {
                Books::Balanced
            } else {
                Books::Unbalanced
            };
            (imbalance, books)
        }
        Ok(()) => (None, Books::NotChecked("stopped before the end")),
        Err(_) => (None, Books::NotChecked("the run failed")),
    };
    report(
        "run",
        config.pipeline.source.seed(),
        &summary,
        books,
        args.json,
    );
    result.context("run failed")?;
    fail_on_loss(&summary)?;
    if let Some(wrong) = imbalance {
        return Err(anyhow::anyhow!(
            "the run's counts do not balance: {wrong} (another process writing the same log or \
             reading with the same group?)"
        )
        .into());
    }
    Ok(())
}

/// After a stop: what the log still holds for the processor, and how to
/// store it.
async fn left_in_the_log(log: &Log, group: &str) {
    match log.backlog(group).await {
        Ok(0) => {}
        Ok(n) => eprintln!(
            "stopped: {n} records are still in the log, not yet stored; `tributary process` \
             (with this run's --config, --data-dir, --log and --sink) stores them"
        ),
        Err(e) => tracing::warn!("cannot read what the log still holds: {e}"),
    }
}

/// Records lost to retention fail the command, after the summary said so.
fn fail_on_loss(summary: &Summary) -> AppResult {
    if summary.lost_to_retention > 0 {
        return Err(anyhow::anyhow!(
            "{} messages were dropped by the log's retention before they were stored; they are \
             lost (keep them longer with [log] retention_age / retention_messages)",
            summary.lost_to_retention
        )
        .into());
    }
    Ok(())
}

pub async fn ingest(config: Config, args: &RunArgs, shutdown: CancellationToken) -> AppResult {
    announce_seed(&config);
    let stats = Arc::new(Stats::default());
    let plan = plan(args, &config);
    prepare_dirs(&config)?;
    let feed = feed(&config, None).await?;
    let log = Log::open(&config.pipeline.log)
        .await
        .context("cannot open the log")?;
    let progress = Progress::start(expected(plan), stats.clone(), |s| s.get(Counter::Logged));
    let result = pipeline::ingest::run(feed, log, plan, stats.clone(), shutdown).await;
    progress.finish();
    report(
        "ingest",
        config.pipeline.source.seed(),
        &stats.summary(),
        Books::None,
        args.json,
    );
    result.context("ingest failed")?;
    Ok(())
}

pub async fn process(config: Config, args: &ProcessArgs, shutdown: CancellationToken) -> AppResult {
    let stats = Arc::new(Stats::default());
    let job = open_job(&config, stats.clone(), shutdown).await?;
    // The bar's length is the group's lag; it costs a round trip to the
    // cluster, so it is asked only when a bar will be drawn.
    let total = if args.follow || !std::io::stderr().is_terminal() {
        0
    } else {
        job.log
            .backlog(&job.group)
            .await
            .context("cannot read the log's offsets")?
    };
    let progress = Progress::start(total, stats.clone(), |s| s.get(Counter::Read));
    let result = pipeline::process(job, args.follow).await;
    progress.finish();
    let summary = stats.summary();
    report("process", "", &summary, Books::None, args.json);
    result.context("process failed")?;
    fail_on_loss(&summary)?;
    Ok(())
}

pub async fn mock_api(args: &MockApiArgs, shutdown: CancellationToken) -> AppResult {
    let addr = SocketAddr::new(args.bind, args.port);
    let listener = mock_api::bind(addr).await.map_err(super::AppError::Usage)?;
    let local = listener.local_addr().context("no local address")?;
    println!("mock-api: listening on http://{local}/api/");
    let _ = std::io::stdout().flush();
    let faults = Faults {
        fail_rate: args.fail_rate,
        rate_limit_rate: args.rate_limit_rate,
        error_body_rate: args.error_body_rate,
        malformed_rate: args.malformed_rate,
        ignore_page: args.ignore_page,
        retry_after_secs: args.retry_after,
        latency: args.latency,
        seed: args.fault_seed.unwrap_or_else(|| {
            u64::from_str_radix(&crate::pipeline::source::generator::random_seed(), 16).unwrap_or(1)
        }),
    };
    let served = Arc::new(Served::default());
    mock_api::serve(listener, faults, served.clone(), shutdown)
        .await
        .context("mock-api server failed")?;
    eprintln!(
        "mock-api: served {} pages, {} 500s, {} 429s, {} error bodies",
        served.ok.load(Ordering::Relaxed),
        served.failed.load(Ordering::Relaxed),
        served.rate_limited.load(Ordering::Relaxed),
        served.error_bodies.load(Ordering::Relaxed),
    );
    Ok(())
}

/// A progress bar on stderr, drawn only when stderr is a terminal.
struct Progress {
    bar: Option<ProgressBar>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    fn start(total: u64, stats: Arc<Stats>, done: fn(&Stats) -> u64) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress {
                bar: None,
                ticker: None,
            };
        }
        let bar = if total > 0 {
            ProgressBar::new(total).with_style(super::table::bar_style(
                "{spinner} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} ({rate}, eta {eta})",
            ))
        } else {
            ProgressBar::new_spinner().with_style(super::table::bar_style(
                "{spinner} [{elapsed_precise}] {human_pos} records ({rate})",
            ))
        };
        crate::telemetry::drawing(Some(bar.clone()));
        let b = bar.clone();
        let ticker = tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(100));
            loop {
                every.tick().await;
                b.set_position(done(&stats));
            }
        });
        Progress {
            bar: Some(bar),
            ticker: Some(ticker),
        }
    }

    fn finish(self) {
        if let Some(t) = self.ticker {
            t.abort();
        }
        if let Some(b) = self.bar {
            crate::telemetry::drawing(None);
            b.finish_and_clear();
        }
    }
}

/// The verdict on a run's books (see `Summary::imbalance`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Books {
    /// Not a command that keeps books.
    None,
    Balanced,
    Unbalanced,
    /// A run that did not go to the end: the rest is in the log, by design.
    NotChecked(&'static str),
}

/// Prints the summary: a table for people, or one JSON object with `--json`.
fn report(command: &str, seed: &str, s: &Summary, books: Books, json: bool) {
    let balanced = match books {
        Books::Balanced => Some(true),
        Books::Unbalanced => Some(false),
        Books::None | Books::NotChecked(_) => None,
    };
    if json {
        let mut v = serde_json::to_value(s).expect("summary serialises");
        if !seed.is_empty() {
            v["seed"] = serde_json::Value::String(seed.to_owned());
        }
        if let Some(b) = balanced {
            v["balanced"] = serde_json::Value::Bool(b);
        }
        println!("{v}");
        return;
    }
    let mut out = String::new();
    let seed_note = if seed.is_empty() {
        String::new()
    } else {
        format!(" (seed {seed})")
    };
    out.push_str(&format!(
        "tributary {command}: done in {:.2}s{seed_note}\n",
        s.elapsed_secs
    ));
    let mut line = |name: &str, value: String| out.push_str(&format!("  {name:<20} {value}\n"));
    line("fetched", s.fetched.to_string());
    line("logged", s.logged.to_string());
    if command != "ingest" {
        line("stored", s.stored.to_string());
        line("duplicates skipped", s.duplicates_skipped.to_string());
    }
    line("dead-lettered", s.dead_lettered.to_string());
    if command != "ingest" {
        line("lost to retention", s.lost_to_retention.to_string());
    }
    if s.source_retries > 0 || s.sink_retries > 0 {
        line(
            "retries",
            format!("{} source, {} sink", s.source_retries, s.sink_retries),
        );
    }
    if s.ticks_skipped > 0 {
        line("ticks skipped", s.ticks_skipped.to_string());
    }
    line("records/s", format!("{:.0}", s.records_per_sec));
    if let Some(rss) = s.peak_rss_bytes {
        line(
            "peak RSS",
            format!("{:.1} MiB", rss as f64 / (1 << 20) as f64),
        );
    }
    let verdict = match books {
        Books::None => None,
        Books::Balanced if s.processed_beyond() > 0 => Some(format!(
            "balanced; {} more processed than logged (read again after a restart or a \
             rebalance, or logged by another process meanwhile: the upserts absorb them)",
            s.processed_beyond()
        )),
        Books::Balanced => Some("balanced".to_owned()),
        Books::Unbalanced => Some("DOES NOT BALANCE".to_owned()),
        Books::NotChecked(why) => Some(format!("not checked ({why})")),
    };
    if let Some(verdict) = verdict {
        out.push_str(&format!("  {}: {verdict}\n", s.reconciliation()));
    }
    print!("{out}");
}
