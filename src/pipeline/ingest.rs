//! Ingestion: source → flat rows → log. Owns the plan (how many records, or
//! a timed burst) and the page arithmetic; the source owns retries, the log
//! owns durability. A record counts as logged only once the append returned.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span};

use super::log::{DeadLetter, Log, LogError, LogRecord, Stage};
use super::source::{MAX_RESULTS_PER_REQUEST, Source, SourceBatch, SourceError};
use super::stats::{Stats, add};

/// Fetched pages waiting to be appended: two, so the next request runs while
/// the last page is written, and memory stays at a few pages.
const PAGES_IN_FLIGHT: usize = 2;

/// What to ingest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestPlan {
    /// A fixed number of records, fetched in pages of `page_size`.
    Records { total: u64, page_size: u64 },
    /// The seed DAG's loop: every `interval` for `duration`, `per_tick`
    /// records a tick. Ticks keep to the clock; a tick still busy when the
    /// next is due makes that one skip.
    Burst {
        duration: Duration,
        interval: Duration,
        per_tick: u64,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Log(#[from] LogError),
}

/// Runs the plan until it is done or `shutdown` fires; what was fetched
/// before the shutdown is still appended.
pub async fn run(
    source: Arc<Source>,
    log: Log,
    plan: IngestPlan,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
) -> Result<(), IngestError> {
    let (tx, mut rx) = mpsc::channel::<SourceBatch>(PAGES_IN_FLIGHT);
    let fetcher = {
        let (source, stats, shutdown) = (source.clone(), stats.clone(), shutdown.clone());
        tokio::spawn(
            async move { fetch_pages(&source, plan, &stats, &shutdown, tx).await }
                .instrument(info_span!("fetch")),
        )
    };
    let mut appended = Ok(());
    while let Some(batch) = rx.recv().await {
        if let Err(e) = append_batch(&log, batch, &stats).await {
            appended = Err(e);
            break;
        }
    }
    drop(rx);
    let fetched = fetcher.await.expect("fetch task panicked");
    stats
        .source_retries
        .store(source.retries(), std::sync::atomic::Ordering::Relaxed);
    appended?;
    fetched?;
    Ok(())
}

async fn fetch_pages(
    source: &Source,
    plan: IngestPlan,
    stats: &Stats,
    shutdown: &CancellationToken,
    tx: mpsc::Sender<SourceBatch>,
) -> Result<(), SourceError> {
    match plan {
        IngestPlan::Records { total, page_size } => {
            let page_size = page_size.clamp(1, MAX_RESULTS_PER_REQUEST);
            let mut remaining = total;
            let mut page = 1;
            while remaining > 0 {
                // Always ask for whole pages so page numbers keep their
                // meaning; the last one is cut to what is still wanted.
                let Some(mut batch) = fetch_or_stop(source, page, page_size, shutdown).await?
                else {
                    break;
                };
                batch.users.truncate(remaining as usize);
                let got = (batch.users.len() + batch.rejected.len()) as u64;
                add(&stats.fetched, got);
                remaining = remaining.saturating_sub(got.max(1));
                page += 1;
                if tx.send(batch).await.is_err() {
                    break;
                }
            }
        }
        IngestPlan::Burst {
            duration,
            interval,
            per_tick,
        } => {
            let per_tick = per_tick.clamp(1, MAX_RESULTS_PER_REQUEST);
            let start = Instant::now();
            let end = start + duration;
            let mut ticker = tokio::time::interval_at(start, interval);
            ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
            let mut page = 1;
            loop {
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => break,
                    at = ticker.tick() => if at >= end { break },
                }
                let Some(batch) = fetch_or_stop(source, page, per_tick, shutdown).await? else {
                    break;
                };
                add(
                    &stats.fetched,
                    (batch.users.len() + batch.rejected.len()) as u64,
                );
                page += 1;
                if tx.send(batch).await.is_err() {
                    break;
                }
            }
            let due = (duration.as_nanos() / interval.as_nanos().max(1)) as u64;
            let done = page - 1;
            if !shutdown.is_cancelled() && due > done {
                add(&stats.ticks_skipped, due - done);
                info!(
                    skipped = due - done,
                    "burst ticks skipped while a request was busy"
                );
            }
        }
    }
    Ok(())
}

async fn fetch_or_stop(
    source: &Source,
    page: u64,
    results: u64,
    shutdown: &CancellationToken,
) -> Result<Option<SourceBatch>, SourceError> {
    tokio::select! {
        biased;
        _ = shutdown.cancelled() => Ok(None),
        batch = source.fetch(page, results) => batch.map(Some),
    }
}

/// Flattens a page into rows and appends them; users that cannot become a
/// row go to the dead letters with their bytes.
async fn append_batch(log: &Log, batch: SourceBatch, stats: &Stats) -> Result<(), LogError> {
    let mut records = Vec::with_capacity(batch.users.len());
    let mut letters: Vec<DeadLetter> = batch
        .rejected
        .into_iter()
        .map(|r| DeadLetter {
            stage: Stage::Source,
            reason: r.error.to_string(),
            origin: None,
            key: None,
            payload: r.raw,
        })
        .collect();
    for user in &batch.users {
        match user.to_row() {
            Ok(row) => records.push(LogRecord {
                key: Some(row.key()),
                payload: row.to_json(),
            }),
            Err(e) => letters.push(DeadLetter {
                stage: Stage::Source,
                reason: e.to_string(),
                origin: None,
                key: None,
                payload: serde_json::to_vec(user).unwrap_or_default(),
            }),
        }
    }
    let n_letters = letters.len() as u64;
    log.dead_letter(letters).await?;
    add(&stats.dead_lettered, n_letters);
    if !records.is_empty() {
        let ack = log.append(records).await?;
        add(&stats.logged, ack.count);
    }
    Ok(())
}
