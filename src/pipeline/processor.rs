//! Processing: log batch → decode and validate → sink → dead letters →
//! commit. Owns the delivery guarantee (see `WriteStage::handle`) and the
//! retry of sink outages; owns no storage of its own. `replay.rs` runs dead
//! letters through decoding and the sink again; `seam.rs` the two traits
//! (`Batches`, `Target`) the processor reads and writes through, which the
//! unit tests (`tests.rs`) fill with fakes.

mod flight;
mod replay;
mod seam;

#[cfg(test)]
mod tests;

pub use replay::{
    REPLAY_PAGE, ReplayOptions, ReplayReport, ReplayWrites, replay, replay_ids, replay_page,
};

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use self::flight::drive;
use self::seam::{Parts, Target};
use super::log::{Checkpoint, DeadLetter, Log, LogError, LogMessage, LogReader, Origin, Stage};
use super::sink::{Rows, Sink, SinkError, WriteAck};
use super::stats::{Counter, Stats};
use super::table::{self, TableSchema, TypedRow, UnknownFields};
use crate::record::Row;

/// The largest message the processor decodes and ingestion logs, unless
/// `processor.max_message_bytes` says otherwise.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 256 << 10;

/// Validated processor settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessorConfig {
    /// Messages per batch: one sink write and one commit each.
    pub batch_size: usize,
    /// A message larger than this is a dead letter without being parsed.
    pub max_message_bytes: usize,
    /// How long a processor that stops by itself (not `--follow`) waits for
    /// a store that is down or full before it fails.
    pub max_outage: Duration,
    /// Batches handed to the store at once, at most (see `flight.rs`).
    pub in_flight: usize,
}

/// Batches written at once by default. A store that keeps its position
/// beside its rows takes one at a time: its positions must land in order.
pub const DEFAULT_IN_FLIGHT: usize = 4;

/// How long one poll waits for new messages before the stop rule is checked.
const POLL_WAIT: Duration = Duration::from_millis(200);
/// The longest pause between attempts while the sink is down.
const SINK_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How often an outage is reported while it lasts.
const OUTAGE_WARN_EVERY: Duration = Duration::from_secs(5);

/// When the processor stops by itself (it always stops on shutdown).
#[derive(Debug, Clone)]
pub enum Until {
    /// When it has read to the end of the log.
    Drained,
    /// When `ingest_done` has fired and it has read to the end after that.
    DrainedAfter(CancellationToken),
    /// Never: `--follow`.
    Shutdown,
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// The store stayed unavailable past the limit; nothing of the batch
    /// was committed, so the next start writes it again.
    #[error(
        "gave up after the store was unavailable for {secs} s ({why}); nothing was committed, the log keeps the batch: {last}"
    )]
    Outage {
        secs: u64,
        why: &'static str,
        last: SinkError,
    },
    #[error("replay: {0}")]
    Replay(String),
}

pub struct Processor {
    reader: LogReader,
    stage: WriteStage<Parts>,
    config: ProcessorConfig,
    /// Cancelled when waiting out a store outage is no longer worth it (in
    /// `run`, once ingestion has failed for good).
    give_up: CancellationToken,
    /// Whether [`Processor::prepare`] has run.
    prepared: bool,
}

/// A batch read and decoded, waiting for the sink.
struct Decoded {
    messages: Vec<LogMessage>,
    rows: Rows,
    /// For each row, the index of its message in `messages`.
    row_messages: Vec<usize>,
    letters: Vec<DeadLetter>,
    checkpoint: Checkpoint,
}

/// A batch the store has acknowledged, waiting for its commit.
struct Written {
    checkpoint: Checkpoint,
    /// When each message was appended to the log.
    timestamps_ms: Vec<i64>,
}

/// The second half of the processor: sink → dead letters, then commit.
/// Each batch is written by its own task while the first half reads and
/// decodes the next ones; commits follow in read order.
#[derive(Clone)]
struct WriteStage<T> {
    /// The log's dead letters, the store and the group's commit.
    target: T,
    stats: Arc<Stats>,
    /// Set when the store keeps the reader's position with its rows: the
    /// name it files the position under (see [`LogReader::scope`]).
    scope: Option<Arc<str>>,
    /// How long a store outage is waited out; `None` for ever.
    outage_limit: Option<Duration>,
    give_up: CancellationToken,
}

impl Processor {
    pub fn new(
        reader: LogReader,
        log: Log,
        sink: Sink,
        config: ProcessorConfig,
        stats: Arc<Stats>,
    ) -> Self {
        let committer = reader.committer();
        let give_up = CancellationToken::new();
        Processor {
            reader,
            stage: WriteStage {
                target: Parts {
                    log,
                    sink,
                    committer,
                },
                stats,
                scope: None,
                outage_limit: None,
                give_up: give_up.clone(),
            },
            config,
            give_up,
            prepared: false,
        }
    }

    /// Places the reader (see `resume_from_store`) and counts the backlog
    /// it starts with. Done by `run` if not before; `pipeline::run` does it
    /// before ingestion starts, so nothing appended by this run is counted
    /// as backlog.
    pub async fn prepare(&mut self) -> Result<(), ProcessError> {
        if self.prepared {
            return Ok(());
        }
        self.resume_from_store().await?;
        if let Some(backlog) = self.reader.backlog().await? {
            self.stage.stats.add(Counter::Backlog, backlog);
        }
        self.prepared = true;
        Ok(())
    }

    /// A token that, cancelled, makes the processor stop waiting out a store
    /// outage and fail instead.
    pub fn give_up_token(&self) -> CancellationToken {
        self.give_up.clone()
    }

    /// Where to start: a store that keeps its position beside its rows is
    /// the authority on what it holds (after a restore from an older copy it
    /// is behind the log's commit, and the difference is read again). A
    /// store with no position for this log holds none of its rows (it is
    /// new, was deleted, or predates this log file): the log is read from
    /// its start. A store position that does not fit the log (the log was
    /// restored under it) is not used.
    async fn resume_from_store(&mut self) -> Result<(), ProcessError> {
        let Some(scope) = self.reader.scope() else {
            return Ok(());
        };
        if !self.stage.target.sink.keeps_positions() {
            return Ok(());
        }
        let from_log = self.reader.checkpoint();
        self.stage.scope = Some(scope.as_str().into());
        if self.reader.was_reset() {
            // The log changed under the group; the policy has placed the
            // reader, and the store's old position means nothing here. The
            // store takes the new one at once (as the offsets file did), so
            // the next start agrees with it.
            let position = from_log
                .next
                .iter()
                .map(|(&p, &o)| (p, (o, None)))
                .collect();
            let sink = &self.stage.target.sink;
            sink.write_at(Rows::none(sink.schema()), &scope, &position)
                .await?;
            return Ok(());
        }
        let Some(position) = self.stage.target.sink.position(&scope).await? else {
            if from_log.next.values().any(|&o| o > 0) {
                warn!(
                    log = ?from_log.next,
                    "the store holds no position for this log (it is new, was deleted, or is \
                     older than this log file): reading the log from its start"
                );
                let start = from_log.next.keys().map(|&p| (p, 0)).collect();
                self.reader.seek(&Checkpoint::at(start));
            }
            return Ok(());
        };
        let mut store = Checkpoint::default();
        for (&p, (next, mark)) in &position {
            if let Some(why) = self.reader.misfit(p, *next, mark.clone()).await? {
                warn!(
                    store = next,
                    "the store's position does not fit the log ({why}); reading from the log's \
                     own position instead"
                );
                return Ok(());
            }
            store.next.insert(p, *next);
        }
        if from_log.next != store.next {
            warn!(
                log = ?from_log.next,
                store = ?store.next,
                "the store's position differs from the log's commit (another processor of the \
                 group at work on the same store, a store or offsets file restored from another \
                 time, or a stop between the two writes): resuming from the store's, which \
                 holds exactly the rows up to there"
            );
        }
        self.reader.seek(&store);
        Ok(())
    }

    /// Processes batches until the stop rule holds or `shutdown` fires. A
    /// batch handed to the sink is always finished and committed first; a
    /// batch only read is dropped uncommitted (it is read again next time).
    ///
    /// Batches overlap: while batch k is written, the next ones are read,
    /// decoded and written (up to `in_flight` at once). Commits stay in read
    /// order: batch k+1's is made only after batch k's (see `flight.rs`).
    pub async fn run(
        mut self,
        until: Until,
        shutdown: CancellationToken,
    ) -> Result<(), ProcessError> {
        self.prepare().await?;
        self.stage.outage_limit = match until {
            Until::Shutdown => None,
            Until::Drained | Until::DrainedAfter(_) => Some(self.config.max_outage),
        };
        let done = drive(&mut self.reader, self.stage, self.config, until, shutdown).await;
        tracing::debug!("stop: processor done");
        done
    }
}

/// Decodes and validates a batch, by the store's table (the seed table's
/// row when there is no schema); what fails becomes a dead letter.
fn decode(
    messages: Vec<LogMessage>,
    topic: &str,
    max_message_bytes: usize,
    schema: Option<&TableSchema>,
) -> Decoded {
    let checkpoint = Checkpoint::after(&messages);
    let mut row_messages = Vec::with_capacity(messages.len());
    let mut letters = Vec::new();
    let (rm, dl) = (&mut row_messages, &mut letters);
    let rows = match schema {
        None => Rows::Users(
            decode_each(&messages, topic, rm, dl, |p| {
                Row::from_json(p, max_message_bytes).map_err(|e| e.to_string())
            })
            .into(),
        ),
        Some(schema) => Rows::Table(
            decode_each(&messages, topic, rm, dl, |p| {
                decode_typed(schema, p, max_message_bytes)
            })
            .into(),
        ),
    };
    Decoded {
        messages,
        rows,
        row_messages,
        letters,
        checkpoint,
    }
}

/// Each message decoded by `one`: the rows, the index of each row's message
/// added to `row_messages`, a dead letter for each that fails.
fn decode_each<T>(
    messages: &[LogMessage],
    topic: &str,
    row_messages: &mut Vec<usize>,
    letters: &mut Vec<DeadLetter>,
    one: impl Fn(&[u8]) -> Result<T, String>,
) -> Vec<T> {
    let mut rows = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        match one(&m.payload) {
            Ok(row) => {
                rows.push(row);
                row_messages.push(i);
            }
            Err(e) => letters.push(dead_letter(Stage::Decode, e, topic, m)),
        }
    }
    rows
}

/// A log message of a user table. Fields that are not columns are refused
/// (this pipeline's ingestion never writes them; another producer's
/// message with them is a dead letter, not a row missing data).
fn decode_typed(schema: &TableSchema, payload: &[u8], max: usize) -> Result<TypedRow, String> {
    table::decode(schema, payload, max, UnknownFields::Reject).map_err(|e| e.to_string())
}

impl<T: Target> WriteStage<T> {
    /// Writes one decoded batch: the dead letters of what did not decode,
    /// the rows, the dead letters of the rows the store refused. `None` if
    /// shutdown came while the sink was down: the batch was then neither
    /// stored nor committed, and stays in the log for the next start.
    async fn write(
        &self,
        batch: Decoded,
        shutdown: &CancellationToken,
    ) -> Result<Option<Written>, ProcessError> {
        let Decoded {
            messages,
            rows,
            row_messages,
            letters,
            checkpoint,
        } = batch;
        // The letters of messages that did not decode are stored before the
        // rows: a store that keeps its position moves past the whole batch
        // in the same transaction as the rows, so after that nothing of the
        // batch may still be missing. (Stored twice on a replay, they are
        // kept once: letters are keyed by their origin.)
        let n_undecoded = letters.len() as u64;
        self.target.dead_letter(letters).await?;
        self.stats.add(Counter::DeadLettered, n_undecoded);
        self.stats.add(Counter::DecodeFailed, n_undecoded);
        let Some(ack) = self.write_until_acked(rows, &checkpoint, shutdown).await? else {
            return Ok(None);
        };
        // Counted as soon as the store has them, so a failure after this
        // point (a commit refused) does not hide rows that were written.
        self.stats.add(Counter::Stored, ack.written);
        self.stats.add(Counter::Unchanged, ack.unchanged);
        let topic = self.target.topic();
        let rejected: Vec<DeadLetter> = ack
            .rejected
            .iter()
            .map(|(i, reason)| {
                dead_letter(
                    Stage::Sink,
                    reason.clone(),
                    topic,
                    &messages[row_messages[*i]],
                )
            })
            .collect();
        let n_rejected = rejected.len() as u64;
        self.target.dead_letter(rejected).await?;
        self.stats.add(Counter::DeadLettered, n_rejected);
        self.stats.add(Counter::SinkRejected, n_rejected);
        Ok(Some(Written {
            checkpoint,
            timestamps_ms: messages.iter().map(|m| m.timestamp_ms).collect(),
        }))
    }

    /// Commits a written batch; called in read order, once every earlier
    /// batch is committed.
    async fn commit(&self, written: Written) -> Result<(), ProcessError> {
        // Architecture invariant: offsets are committed only here, after the
        // sink acknowledged every row of this batch and of every batch
        // before it, and the dead letters of the rest are stored. A crash
        // before this line replays the batch; the sink's upserts make the
        // replay change nothing.
        self.target.commit(&written.checkpoint).await?;
        // How long each message waited between the log and the store's ack.
        record_age(
            crate::telemetry::metrics::PROCESSOR_END_TO_END_LATENCY.name,
            written.timestamps_ms.iter().copied(),
        );
        Ok(())
    }

    /// Writes the batch (with the position past it, where the store keeps
    /// one), retrying while the sink says a retry can help (bounded backoff,
    /// a warning every few seconds) and the outage is within its limit.
    /// `None` if shutdown came first.
    async fn write_until_acked(
        &self,
        rows: Rows,
        checkpoint: &Checkpoint,
        shutdown: &CancellationToken,
    ) -> Result<Option<WriteAck>, ProcessError> {
        let mut delay = Duration::from_millis(100);
        let outage_start = Instant::now();
        let mut last_warning: Option<Instant> = None;
        loop {
            let written = match &self.scope {
                Some(scope) => {
                    let position = checkpoint
                        .next
                        .iter()
                        .map(|(&p, &o)| (p, (o, checkpoint.marks.get(&p).cloned())))
                        .collect();
                    self.target.write_at(rows.clone(), scope, &position).await
                }
                None => self.target.write(rows.clone()).await,
            };
            match written {
                Ok(ack) => {
                    if last_warning.is_some() {
                        info!(
                            outage_secs = outage_start.elapsed().as_secs(),
                            "sink is back, processing resumed"
                        );
                    }
                    return Ok(Some(ack));
                }
                Err(e) if e.is_retryable() => {
                    let waited = outage_start.elapsed();
                    let why = if self.give_up.is_cancelled() {
                        Some("ingestion has failed, so the run is ending")
                    } else if self.outage_limit.is_some_and(|limit| waited >= limit) {
                        Some("[processor] max_outage reached")
                    } else {
                        None
                    };
                    if let Some(why) = why {
                        return Err(ProcessError::Outage {
                            secs: waited.as_secs(),
                            why,
                            last: e,
                        });
                    }
                    if last_warning.is_none_or(|t| t.elapsed() >= OUTAGE_WARN_EVERY) {
                        warn!(
                            error = %e,
                            outage_secs = outage_start.elapsed().as_secs(),
                            "sink unavailable, pipeline paused (nothing committed)"
                        );
                        last_warning = Some(Instant::now());
                    }
                    self.stats.add(Counter::SinkRetries, 1);
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(None),
                        _ = self.give_up.cancelled() => {}
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(SINK_BACKOFF_MAX);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

fn dead_letter(stage: Stage, reason: String, topic: &str, m: &LogMessage) -> DeadLetter {
    DeadLetter {
        stage,
        reason,
        origin: Some(Origin {
            topic: topic.to_owned(),
            partition: m.partition,
            offset: m.offset,
        }),
        source_position: None,
        key: m.key.clone(),
        payload: m.payload.clone(),
    }
}

/// Records in the histogram `name`, in seconds, how long ago each of the
/// log's timestamps was (a message without one, 0, is left out).
fn record_age(name: &'static str, timestamps_ms: impl IntoIterator<Item = i64>) {
    let now_ms = crate::clock::now_ms();
    let histogram = metrics::histogram!(name);
    for t in timestamps_ms.into_iter().filter(|&t| t > 0) {
        histogram.record((now_ms - t).max(0) as f64 / 1e3);
    }
}
