//! Ingestion: source → flat rows → log. Owns the plan (how many records, or
//! a timed burst) and the page arithmetic; the source owns retries, the log
//! owns durability. A record counts as logged only once the append returned.
//! This file is the Random User path (users flattened into the seed row);
//! `records.rs` is a user pipeline's (records shaped by its transform and
//! table).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use super::log::{DeadLetter, Log, LogError, LogRecord, Stage};
use super::shape::Shape;
use super::source::json_page::RejectedRecord;
use super::source::{
    EMPTY_PAGES_IN_A_ROW, MAX_RESULTS_PER_REQUEST, Source, SourceBatch, SourceConfig, SourceError,
};
use super::stats::{Counter, Stats};
use crate::record::Row;

pub mod records;

pub use records::RecordFeed;

/// What a run ingests from: Random User users into the seed table's rows,
/// or a user pipeline's records shaped by its transform and table.
#[derive(Debug, Clone)]
pub enum Feed {
    Users {
        source: Arc<Source>,
        /// The largest message the log takes (see [`over_cap`]).
        max_message_bytes: usize,
    },
    Records(Arc<RecordFeed>),
}

impl Feed {
    /// The feed of a source: shaped records when the pipeline has a table
    /// (`shape`), users otherwise.
    pub fn open(
        source: &SourceConfig,
        shape: Option<Arc<Shape>>,
        page_size: u64,
        max_message_bytes: usize,
    ) -> Result<Feed, SourceError> {
        Ok(match shape {
            None => Feed::Users {
                source: Arc::new(Source::open(source)?),
                max_message_bytes,
            },
            Some(shape) => Feed::Records(Arc::new(RecordFeed {
                source: source.clone(),
                shape,
                page_size,
                max_message_bytes,
            })),
        })
    }
}

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
    feed: Feed,
    log: Log,
    plan: IngestPlan,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
) -> Result<(), IngestError> {
    match feed {
        Feed::Users {
            source,
            max_message_bytes,
        } => run_users(source, max_message_bytes, log, plan, stats, shutdown).await,
        Feed::Records(feed) => records::run(feed, log, plan, stats, shutdown).await,
    }
}

async fn run_users(
    source: Arc<Source>,
    max_message_bytes: usize,
    log: Log,
    plan: IngestPlan,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
) -> Result<(), IngestError> {
    let (tx, mut rx) = mpsc::channel::<SourceBatch>(PAGES_IN_FLIGHT);
    let mut fetcher = {
        let (source, stats, shutdown) = (source.clone(), stats.clone(), shutdown.clone());
        AbortOnDrop(tokio::spawn(
            async move { fetch_pages(&source, plan, &stats, &shutdown, tx).await }
                .instrument(info_span!("fetch")),
        ))
    };
    let mut appended = Ok(());
    while let Some(batch) = rx.recv().await {
        if let Err(e) = append_batch(&source, &log, batch, max_message_bytes, &stats).await {
            appended = Err(e);
            break;
        }
    }
    drop(rx);
    let fetched = (&mut fetcher.0).await.expect("fetch task panicked");
    appended?;
    fetched?;
    Ok(())
}

/// The fetch task of a run, stopped if the run is dropped (a per-attempt
/// timeout): a retried attempt never runs beside the fetches of the last.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
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
            // The API never ends: a page with no users is no progress, and
            // a few in a row mean it has stopped giving any.
            let mut empty_in_a_row = 0;
            while remaining > 0 {
                // Always ask for whole pages so page numbers keep their
                // meaning; the last one is cut to what is still wanted.
                let Some(mut batch) =
                    fetch_or_stop(source, page, page_size, stats, shutdown).await?
                else {
                    break;
                };
                batch.users.truncate(remaining as usize);
                let got = (batch.users.len() + batch.rejected.len()) as u64;
                stats.add(Counter::Fetched, got);
                if got == 0 {
                    empty_in_a_row += 1;
                    if empty_in_a_row >= EMPTY_PAGES_IN_A_ROW {
                        return Err(SourceError::Refused {
                            url: source.shown_url(),
                            reason: format!(
                                "{empty_in_a_row} pages in a row held no users (pages {} to {page}), \
                                 with {remaining} of {total} records still wanted",
                                page + 1 - u64::from(empty_in_a_row)
                            ),
                        });
                    }
                    warn!(page, "the source answered a page with no users");
                    page += 1;
                    continue;
                }
                empty_in_a_row = 0;
                remaining = remaining.saturating_sub(got);
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
            burst_or_fail(duration, interval, shutdown, stats, |tick| {
                let tx = tx.clone();
                async move {
                    match fetch_or_stop(source, tick + 1, per_tick, stats, shutdown).await? {
                        Some(batch) => {
                            stats.add(
                                Counter::Fetched,
                                (batch.users.len() + batch.rejected.len()) as u64,
                            );
                            Ok(tx.send(batch).await.is_ok())
                        }
                        None => Ok(false),
                    }
                }
            })
            .await?;
        }
    }
    Ok(())
}

/// A [`burst`] whose ticks can fail: the first failure ends it and is
/// returned after the burst; ticks skipped while one was busy are counted
/// and logged.
async fn burst_or_fail<F, Fut, E>(
    duration: Duration,
    interval: Duration,
    shutdown: &CancellationToken,
    stats: &Stats,
    mut tick: F,
) -> Result<(), E>
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = Result<bool, E>>,
{
    let failure = std::sync::Mutex::new(None);
    let report = burst(duration, interval, shutdown, |n| {
        let (ticked, failure) = (tick(n), &failure);
        async move {
            ticked.await.unwrap_or_else(|e| {
                *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                false
            })
        }
    })
    .await;
    if let Some(e) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    if report.skipped > 0 {
        stats.add(Counter::TicksSkipped, report.skipped);
        info!(
            skipped = report.skipped,
            "burst ticks skipped while the previous one was busy"
        );
    }
    Ok(())
}

/// What a burst did: ticks run, and ticks skipped because the previous one
/// was still busy when they were due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BurstReport {
    pub ticks: u64,
    pub skipped: u64,
}

/// Calls `tick(n)` every `interval` for `duration`, on the clock (no drift
/// from slow ticks): a tick still busy when the next is due makes that one
/// skip, and it is counted, rather than piling up. Stops early when `tick`
/// returns `false` or on shutdown (then nothing counts as skipped).
pub async fn burst<F, Fut>(
    duration: Duration,
    interval: Duration,
    shutdown: &CancellationToken,
    mut tick: F,
) -> BurstReport
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    let period = interval.as_nanos().max(1);
    let slot = |k: u128| start + Duration::from_nanos((period * k) as u64);
    let mut k: u128 = 0;
    let mut ticks = 0;
    let mut stopped = false;
    loop {
        let due = slot(k);
        if due >= start + duration {
            break;
        }
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => { stopped = true; break }
            _ = tokio::time::sleep_until(due) => {}
        }
        let go_on = tick(ticks).await;
        ticks += 1;
        if !go_on {
            stopped = true;
            break;
        }
        // The next slot on the clock that is not already past: slots that
        // came due while this tick was busy are skipped.
        let busy_until = (Instant::now() - start).as_nanos();
        k = (k + 1).max(busy_until.div_ceil(period));
    }
    let due = (duration.as_nanos().div_ceil(interval.as_nanos().max(1))) as u64;
    BurstReport {
        ticks,
        skipped: if stopped {
            0
        } else {
            due.saturating_sub(ticks)
        },
    }
}

async fn fetch_or_stop(
    source: &Source,
    page: u64,
    results: u64,
    stats: &Stats,
    shutdown: &CancellationToken,
) -> Result<Option<SourceBatch>, SourceError> {
    // A run's fetches never overlap (a dropped attempt aborts its fetcher),
    // so the source's count grows only by this fetch's retries, counted as
    // they happen rather than when the run ends.
    let retries_before = source.retries();
    let fetched = tokio::select! {
        biased;
        _ = shutdown.cancelled() => Ok(None),
        batch = source.fetch(page, results) => batch.map(Some),
    };
    stats.add(
        Counter::SourceRetries,
        source.retries().saturating_sub(retries_before),
    );
    fetched
}

/// The users of a page that did not decode, as refused records. Where an
/// undecodable user sat among the page's users is not known: the page and
/// the number of users it held name it.
pub(crate) fn undecoded(source: &Source, batch: &mut SourceBatch) -> Vec<RejectedRecord> {
    let (page, results) = (batch.page, batch.users.len() + batch.rejected.len());
    std::mem::take(&mut batch.rejected)
        .into_iter()
        .enumerate()
        .map(|(i, r)| RejectedRecord {
            position: source.position(&format!("page-{page}-of-{results}-undecoded-{i}")),
            raw: r.raw,
            reason: r.error.to_string(),
        })
        .collect()
}

/// The dead letter of a record refused at ingest (`stage`: by the source,
/// or by the transform or the table): its bytes and its place in the source.
fn letter(stage: Stage, r: RejectedRecord) -> DeadLetter {
    DeadLetter {
        stage,
        reason: r.reason,
        origin: None,
        source_position: Some(r.position),
        key: None,
        payload: r.raw,
    }
}

/// How much of an oversize record its dead letter keeps.
const OVERSIZE_KEPT: usize = 4096;

/// In the reason of a letter that holds only the first bytes of its
/// record: a replay leaves it as it is (the record is not all there).
pub(crate) const CUT_LETTER: &str = "the letter keeps only its first";

/// Keeps what enters the log within `max` bytes a message (the size the
/// processor decodes, `processor.max_message_bytes`): a larger record is
/// taken out of `records` and becomes a dead letter with its size, its key
/// and its first bytes, named by `position(key)` so that fetching it again
/// adds no second letter. The log, its readers and the dashboard never hold
/// a message larger than that.
pub(crate) fn over_cap(
    records: &mut Vec<LogRecord>,
    max: usize,
    position: impl Fn(&[u8]) -> String,
) -> Vec<DeadLetter> {
    let mut letters = Vec::new();
    records.retain_mut(|r| {
        if r.payload.len() <= max {
            return true;
        }
        let key = r.key.take().unwrap_or_default();
        let mut payload = std::mem::take(&mut r.payload);
        let size = payload.len();
        payload.truncate(OVERSIZE_KEPT);
        payload.shrink_to_fit();
        letters.push(DeadLetter {
            stage: Stage::Source,
            reason: format!(
                "a record of {size} bytes is over the log's limit of {max} bytes a message \
                 (processor.max_message_bytes); {CUT_LETTER} {} bytes, so it cannot be \
                 replayed: with a higher limit the source's next fetch of it stores it, and \
                 `dlq discard` drops this letter",
                payload.len()
            ),
            origin: None,
            source_position: Some(position(&key)),
            key: Some(key),
            payload,
        });
        false
    });
    letters
}

/// A page of users made into rows. A user that cannot become one is
/// refused, with its bytes and its source position (see
/// [`Source::position`]: its place in the seed's sequence), so a page
/// fetched again, of any size, names it the same way.
pub fn flatten(source: &Source, mut batch: SourceBatch) -> (Vec<Row>, Vec<RejectedRecord>) {
    let mut refused = undecoded(source, &mut batch);
    let mut rows = Vec::with_capacity(batch.users.len());
    for (i, user) in batch.users.iter().enumerate() {
        match user.to_row() {
            Ok(row) => rows.push(row),
            Err(e) => refused.push(RejectedRecord {
                position: source.position(&format!("user-{}", batch.first + i as u64)),
                raw: serde_json::to_vec(user).unwrap_or_default(),
                reason: e.to_string(),
            }),
        }
    }
    (rows, refused)
}

/// Flattens a page into rows and appends them; users that cannot become a
/// row go to the dead letters with their bytes. Each letter carries its
/// source position, so a page fetched again does not store its letters
/// twice.
async fn append_batch(
    source: &Source,
    log: &Log,
    batch: SourceBatch,
    max_message_bytes: usize,
    stats: &Stats,
) -> Result<(), LogError> {
    let (rows, refused) = flatten(source, batch);
    let mut records: Vec<LogRecord> = rows
        .iter()
        .map(|row| LogRecord {
            key: Some(row.key()),
            payload: row.to_json(),
        })
        .collect();
    let oversize = over_cap(&mut records, max_message_bytes, |key| {
        source.position(&format!("id-{}", String::from_utf8_lossy(key)))
    });
    let letters: Vec<DeadLetter> = refused
        .into_iter()
        .map(|r| letter(Stage::Source, r))
        .chain(oversize)
        .collect();
    let n_letters = letters.len() as u64;
    log.dead_letter(letters).await?;
    stats.add(Counter::DeadLettered, n_letters);
    stats.add(Counter::SourceRejected, n_letters);
    if !records.is_empty() {
        let ack = log.append(records).await?;
        stats.add(Counter::Logged, ack.count);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_two_minute_burst_at_one_second_is_120_ticks_on_the_clock() {
        let started = Instant::now();
        let mut at = Vec::new();
        let report = burst(
            Duration::from_secs(120),
            Duration::from_secs(1),
            &CancellationToken::new(),
            |_| {
                at.push(started.elapsed());
                async { true }
            },
        )
        .await;
        assert_eq!(
            report,
            BurstReport {
                ticks: 120,
                skipped: 0
            }
        );
        assert_eq!(at[0], Duration::ZERO);
        assert_eq!(at[119], Duration::from_secs(119));
    }

    #[tokio::test(start_paused = true)]
    async fn slow_ticks_skip_instead_of_piling_up() {
        // Every tick takes 2.5 s: ticks at 0, 3, 6, ... run; the ones due
        // while busy are skipped and counted.
        let report = burst(
            Duration::from_secs(120),
            Duration::from_secs(1),
            &CancellationToken::new(),
            |_| async {
                tokio::time::sleep(Duration::from_millis(2500)).await;
                true
            },
        )
        .await;
        assert_eq!(report.ticks, 40);
        assert_eq!(report.skipped, 80);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_stops_at_the_next_tick() {
        let shutdown = CancellationToken::new();
        let s = shutdown.clone();
        let report = burst(
            Duration::from_secs(120),
            Duration::from_secs(1),
            &shutdown,
            |n| {
                if n == 9 {
                    s.cancel();
                }
                async { true }
            },
        )
        .await;
        assert_eq!(
            report,
            BurstReport {
                ticks: 10,
                skipped: 0
            }
        );
    }
}
