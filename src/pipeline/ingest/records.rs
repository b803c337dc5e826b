//! Ingestion of a user pipeline: pages of JSON records → transform → type
//! check → the log, as the flat JSON of each row keyed by its primary key.
//! A record the transform rejects, or whose row does not fit the table, is a
//! dead letter (stage `transform`) holding the record as the source gave
//! it, so a replay after a fix runs it through the pipeline again.
//!
//! One run walks the source from its first page: an API's pages until it
//! says there are no more (or the run has taken `total` records), a file to
//! its end. A burst's ticks go on with one walk, each taking the next
//! `records` where the last stopped (what a tick cut from a page waits for
//! the next); the tick after the source's end walks it again from its
//! first page. Rows are upserts keyed by the primary key, so fetching a
//! record again changes nothing.

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info_span};

use super::{AbortOnDrop, IngestError, IngestPlan, PAGES_IN_FLIGHT, burst_or_fail};
use crate::pipeline::log::{DeadLetter, Log, LogError, LogRecord, Stage};
use crate::pipeline::shape::{Shape, Shaped, Shaper};
use crate::pipeline::source::file::FileSource;
use crate::pipeline::source::json_api::JsonApiSource;
use crate::pipeline::source::json_page::{JsonPage, RejectedRecord};
use crate::pipeline::source::{Source, SourceConfig, SourceError};
use crate::pipeline::stats::{Counter, Stats};
use crate::record::ApiUser;

/// A user pipeline's source settings and its shape: what a run needs to
/// open the source afresh and make rows of its records.
#[derive(Debug, Clone)]
pub struct RecordFeed {
    pub source: SourceConfig,
    pub shape: Arc<Shape>,
    /// Records per page where the source pages by count (the built-in user
    /// sources; a JSON API has its own `page_size`).
    pub page_size: u64,
    /// The largest message the log takes (see [`super::over_cap`]).
    pub max_message_bytes: usize,
}

/// One walk over a source, page by page.
enum Walk {
    Api(Box<JsonApiSource>),
    File(Option<Box<FileSource>>),
    /// Random User users as their JSON, for a pipeline that reshapes them.
    Users {
        source: Box<Source>,
        page: u64,
        size: u64,
    },
}

/// A page on its way from the source to the transform.
struct Page {
    json: JsonPage,
    /// Random User users, in place of `json.records`: each becomes JSON
    /// only as it is shaped. As JSON a user takes several times its typed
    /// size, and pages wait in the channel.
    users: Vec<ApiUser>,
    /// The place in the source's page of the first of `users` (not 0 for
    /// the rest of a page a burst's tick cut).
    first_user: u64,
}

impl Page {
    /// Keeps the first `n` records received: in the source's order (see
    /// [`JsonPage::split_off`]); of a page of users, the users first, then
    /// the ones that could not be decoded. The others are returned as a
    /// page of their own, `None` when there are none.
    fn split_off(&mut self, n: u64) -> Option<Page> {
        let keep = usize::try_from(n).unwrap_or(usize::MAX);
        let users = self.users.split_off(keep.min(self.users.len()));
        let json = self.json.split_off((keep - self.users.len()) as u64);
        let rest = Page {
            json,
            users,
            first_user: self.first_user + self.users.len() as u64,
        };
        (rest.received() > 0).then_some(rest)
    }

    fn received(&self) -> usize {
        self.users.len() + self.json.received()
    }

    /// The page's records with their index among them, taken out of it.
    fn take_records(&mut self) -> Box<dyn Iterator<Item = (usize, Shapeable)> + Send> {
        let users = std::mem::take(&mut self.users);
        if users.is_empty() {
            let records = std::mem::take(&mut self.json.records);
            return Box::new(records.into_iter().map(Ok).enumerate());
        }
        Box::new(
            users
                .into_iter()
                .map(|u| serde_json::to_value(u).map_err(|e| e.to_string()))
                .enumerate(),
        )
    }

    /// The position of the `k`th record: its place in the source (a user's
    /// is its index in the source's page).
    fn position_of(&self, k: usize) -> String {
        match self.json.places.get(k) {
            Some(&place) => self.json.place(place),
            None => self.json.place(self.first_user + k as u64),
        }
    }
}

/// A record to shape, or why it could not become JSON.
type Shapeable = Result<Value, String>;

impl Walk {
    fn open(feed: &RecordFeed) -> Result<Walk, SourceError> {
        Ok(match &feed.source {
            SourceConfig::JsonApi(c) => Walk::Api(Box::new(JsonApiSource::open(c.clone())?)),
            SourceConfig::File(c) => Walk::File(Some(Box::new(
                FileSource::open(c).map_err(|e| file_error(c.path.display(), e))?,
            ))),
            users => Walk::Users {
                source: Box::new(Source::open(users)?),
                page: 0,
                size: feed.page_size.max(1),
            },
        })
    }

    /// Retried requests so far (none for a file).
    fn retries(&self) -> u64 {
        match self {
            Walk::Api(api) => api.retries(),
            Walk::File(_) => 0,
            Walk::Users { source, .. } => source.retries(),
        }
    }

    async fn next(&mut self) -> Result<Option<Page>, SourceError> {
        let json = |json| Page {
            json,
            users: Vec::new(),
            first_user: 0,
        };
        match self {
            Walk::Api(api) => Ok(api.next_page().await?.map(json)),
            Walk::File(slot) => {
                let Some(mut file) = slot.take() else {
                    return Ok(None);
                };
                // File reads block: they run on the blocking pool, a page
                // at a time.
                let (file, page) = tokio::task::spawn_blocking(move || {
                    let page = file.next_page();
                    (file, page)
                })
                .await
                .expect("file read task panicked");
                let page = page.map_err(|e| SourceError::Refused {
                    url: "file".into(),
                    reason: e.to_string(),
                })?;
                if page.is_some() {
                    *slot = Some(file);
                }
                Ok(page.map(json))
            }
            Walk::Users { source, page, size } => {
                *page += 1;
                let mut batch = source.fetch(*page, *size).await?;
                let position = source.position(&format!("page-{}-of-{}", page, size));
                let prefix = format!("{position}#");
                let mut out = Page {
                    json: JsonPage::new(*page, position, prefix),
                    users: std::mem::take(&mut batch.users),
                    first_user: 0,
                };
                out.json.rejected = super::undecoded(source, &mut batch);
                // The generator never ends; an empty page ends an API.
                Ok((out.received() > 0).then_some(out))
            }
        }
    }
}

fn file_error(path: impl std::fmt::Display, e: impl std::fmt::Display) -> SourceError {
    SourceError::Refused {
        url: format!("file {path}"),
        reason: e.to_string(),
    }
}

/// Runs the plan for a user pipeline until it is done or `shutdown` fires;
/// what was fetched before the shutdown is still appended.
pub async fn run(
    feed: Arc<RecordFeed>,
    log: Log,
    plan: IngestPlan,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
) -> Result<(), IngestError> {
    let mut shaper = feed
        .shape
        .shaper()
        .map_err(|e| SourceError::Setup(e.to_string()))?;
    let (tx, mut rx) = mpsc::channel::<Page>(PAGES_IN_FLIGHT);
    let mut fetcher = {
        let (feed, stats, shutdown) = (feed.clone(), stats.clone(), shutdown.clone());
        AbortOnDrop(tokio::spawn(
            async move { fetch_pages(&feed, plan, &stats, &shutdown, tx).await }
                .instrument(info_span!("fetch")),
        ))
    };
    let mut appended = Ok(());
    while let Some(page) = rx.recv().await {
        if let Err(e) = append_page(&mut shaper, &log, page, feed.max_message_bytes, &stats).await {
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

async fn fetch_pages(
    feed: &RecordFeed,
    plan: IngestPlan,
    stats: &Stats,
    shutdown: &CancellationToken,
    tx: mpsc::Sender<Page>,
) -> Result<(), SourceError> {
    match plan {
        IngestPlan::Records { total, .. } => {
            Walked::default()
                .take(feed, total, stats, shutdown, &tx)
                .await
        }
        IngestPlan::Burst {
            duration,
            interval,
            per_tick,
        } => {
            // Ticks never overlap: the lock is never waited for.
            let walked = tokio::sync::Mutex::new(Walked::default());
            burst_or_fail(duration, interval, shutdown, stats, |_| {
                let (tx, walked) = (&tx, &walked);
                async move {
                    let mut walked = walked.lock().await;
                    walked.take(feed, per_tick, stats, shutdown, tx).await?;
                    Ok(!tx.is_closed())
                }
            })
            .await
        }
    }
}

/// A walk over the source that can stop and go on: where it is, and the
/// records of a page cut short, which come first next time.
#[derive(Default)]
struct Walked {
    walk: Option<Walk>,
    rest: Option<Page>,
}

impl Walked {
    /// Hands on pages of the next `total` records (the last page cut to
    /// fit, what was cut kept for the next call) until the source ends; a
    /// call after the end walks it again from its first page.
    async fn take(
        &mut self,
        feed: &RecordFeed,
        total: u64,
        stats: &Stats,
        shutdown: &CancellationToken,
        tx: &mpsc::Sender<Page>,
    ) -> Result<(), SourceError> {
        let mut remaining = total;
        while remaining > 0 {
            let mut page = match self.rest.take() {
                Some(rest) => rest,
                None => {
                    let walk = match &mut self.walk {
                        Some(walk) => walk,
                        None => self.walk.insert(Walk::open(feed)?),
                    };
                    match next_page(walk, stats, shutdown).await? {
                        Some(page) => page,
                        None => {
                            self.walk = None;
                            return Ok(());
                        }
                    }
                }
            };
            self.rest = page.split_off(remaining);
            let got = page.received() as u64;
            stats.add(Counter::Fetched, got);
            metrics::counter!(crate::telemetry::metrics::SOURCE_REJECTED_RECORDS.name)
                .increment(page.json.rejected.len() as u64);
            remaining = remaining.saturating_sub(got);
            if tx.send(page).await.is_err() {
                return Ok(());
            }
        }
        Ok(())
    }
}

/// The walk's next page, its retries counted; `None` at the source's end
/// or on shutdown.
async fn next_page(
    walk: &mut Walk,
    stats: &Stats,
    shutdown: &CancellationToken,
) -> Result<Option<Page>, SourceError> {
    let retries_before = walk.retries();
    let page = tokio::select! {
        biased;
        _ = shutdown.cancelled() => None,
        page = walk.next() => Some(page),
    };
    stats.add(
        Counter::SourceRetries,
        walk.retries().saturating_sub(retries_before),
    );
    Ok(page.transpose()?.flatten())
}

/// What `preview` shows: the rows the first records become, and the dead
/// letters the others would make.
#[derive(Debug, Default)]
pub struct Previewed {
    pub rows: Vec<crate::pipeline::table::TypedRow>,
    /// With their positions, reasons and bytes as the source gave them.
    pub letters: Vec<RejectedRecord>,
}

/// The first `limit` records of the source, shaped as ingestion would;
/// nothing is logged.
pub async fn preview(feed: &RecordFeed, limit: u64) -> Result<Previewed, SourceError> {
    let mut shaper = feed
        .shape
        .shaper()
        .map_err(|e| SourceError::Setup(e.to_string()))?;
    let mut walk = Walk::open(feed)?;
    let mut out = Previewed::default();
    let mut remaining = limit;
    while remaining > 0 {
        let Some(mut page) = walk.next().await? else {
            break;
        };
        drop(page.split_off(remaining));
        remaining = remaining.saturating_sub(page.received() as u64);
        out.letters.extend(std::mem::take(&mut page.json.rejected));
        let records = page.take_records();
        for shaped in shape_each(&mut shaper, |k| page.position_of(k), records) {
            match shaped {
                Ok(shaped) => out.rows.push(shaped.row),
                Err(refused) => out.letters.push(refused),
            }
        }
    }
    Ok(out)
}

/// Shapes records of a page, each with its index among the page's records;
/// a record the transform or the table refuses comes back with its own
/// position (`position_of` its index), the reason, and its bytes as the
/// source gave them (for its dead letter).
fn shape_each(
    shaper: &mut Shaper,
    position_of: impl Fn(usize) -> String,
    records: impl IntoIterator<Item = (usize, Shapeable)>,
) -> Vec<Result<Shaped, RejectedRecord>> {
    records
        .into_iter()
        .map(|(k, record)| {
            let record = record.map_err(|reason| RejectedRecord {
                position: position_of(k),
                raw: Vec::new(),
                reason,
            })?;
            // The transform consumes its input: a copy is kept meanwhile.
            let kept = record.clone();
            shaper.shape(record).map_err(|e| RejectedRecord {
                position: position_of(k),
                raw: serde_json::to_vec(&kept).unwrap_or_default(),
                reason: e.to_string(),
            })
        })
        .collect()
}

/// Records shaped and appended at a time. The sources' pages are bounded
/// (an API's answer is handed out a thousand records at a time, a file's
/// by `page_size` and bytes), but the built-in users' `page_size` is the
/// user's: cut into chunks, the rows and dead letters made of a page stay
/// bounded whatever its size.
const CHUNK: usize = 1_000;

/// Shapes a page's records and appends the rows, a chunk at a time; what
/// cannot become a row goes to the dead letters with the record's bytes and
/// its position.
async fn append_page(
    shaper: &mut Shaper,
    log: &Log,
    page: Page,
    max_message_bytes: usize,
    stats: &Stats,
) -> Result<(), LogError> {
    let mut page = page;
    let records = page.take_records();
    let rejected = std::mem::take(&mut page.json.rejected);
    let mut rejected = rejected.into_iter().peekable();
    while rejected.peek().is_some() {
        let letters: Vec<DeadLetter> = rejected
            .by_ref()
            .take(CHUNK)
            .map(|r| super::letter(Stage::Source, r))
            .collect();
        let n = letters.len() as u64;
        log.dead_letter(letters).await?;
        stats.add(Counter::DeadLettered, n);
        stats.add(Counter::SourceRejected, n);
    }
    let mut records = records.peekable();
    while records.peek().is_some() {
        let shaped = shape_each(
            shaper,
            |k| page.position_of(k),
            records.by_ref().take(CHUNK),
        );
        append_shaped(shaped, log, &page.json.position, max_message_bytes, stats).await?;
    }
    Ok(())
}

/// Appends one chunk of shaped records: the rows to the log, the refused
/// and the oversized to the dead letters.
async fn append_shaped(
    shaped: Vec<Result<Shaped, RejectedRecord>>,
    log: &Log,
    position: &str,
    max_message_bytes: usize,
    stats: &Stats,
) -> Result<(), LogError> {
    let mut records = Vec::with_capacity(shaped.len());
    let mut letters = Vec::new();
    for shaped in shaped {
        match shaped {
            Ok(shaped) => records.push(LogRecord {
                key: Some(shaped.key),
                payload: shaped.payload,
            }),
            Err(refused) => letters.push(super::letter(Stage::Transform, refused)),
        }
    }
    let n_refused = letters.len() as u64;
    let oversize = super::over_cap(&mut records, max_message_bytes, |key| {
        format!("{position}-key-{}", String::from_utf8_lossy(key))
    });
    letters.extend(oversize);
    let n_letters = letters.len() as u64;
    if n_letters > 0 {
        log.dead_letter(letters).await?;
    }
    stats.add(Counter::DeadLettered, n_letters);
    stats.add(Counter::SourceRejected, n_letters);
    metrics::counter!(crate::telemetry::metrics::TRANSFORM_REJECTED_RECORDS.name)
        .increment(n_refused);
    if !records.is_empty() {
        let ack = log.append(records).await?;
        stats.add(Counter::Logged, ack.count);
    }
    Ok(())
}
