//! Processing: log batch → decode and validate → sink → dead letters →
//! commit. Owns the delivery guarantee (see [`Processor::handle`]) and the
//! retry of sink outages; owns no storage of its own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::log::{
    Checkpoint, DeadLetter, Log, LogError, LogMessage, LogReader, Origin, Stage, StoredDeadLetter,
};
use super::sink::{Sink, SinkError, WriteAck};
use super::stats::{Stats, add};
use crate::record::{ApiUser, RecordError, Row};

/// Validated processor settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessorConfig {
    /// Messages per batch: one sink write and one commit each.
    pub batch_size: usize,
    /// A message larger than this is a dead letter without being parsed.
    pub max_message_bytes: usize,
}

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
}

pub struct Processor {
    reader: LogReader,
    log: Log,
    sink: Sink,
    config: ProcessorConfig,
    stats: Arc<Stats>,
}

impl Processor {
    pub fn new(
        reader: LogReader,
        log: Log,
        sink: Sink,
        config: ProcessorConfig,
        stats: Arc<Stats>,
    ) -> Self {
        Processor {
            reader,
            log,
            sink,
            config,
            stats,
        }
    }

    /// Processes batches until the stop rule holds or `shutdown` fires. A
    /// batch that has been read is always finished and committed first.
    pub async fn run(
        mut self,
        until: Until,
        shutdown: CancellationToken,
    ) -> Result<(), ProcessError> {
        loop {
            // Read before checking the ingest flag, so the last append before
            // the flag was raised is never missed.
            let ingest_finished = match &until {
                Until::DrainedAfter(done) => done.is_cancelled(),
                _ => false,
            };
            let batch = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                batch = self.reader.poll(self.config.batch_size, POLL_WAIT) => batch?,
            };
            if batch.is_empty() {
                let stop = match &until {
                    Until::Drained => self.reader.caught_up().await?,
                    Until::DrainedAfter(_) => ingest_finished && self.reader.caught_up().await?,
                    Until::Shutdown => false,
                };
                if stop {
                    break;
                }
                continue;
            }
            if !self.handle(batch, &shutdown).await? {
                break;
            }
        }
        Ok(())
    }

    /// Handles one batch. Returns `false` if shutdown came while the sink was
    /// down: the batch was then neither stored nor committed, and stays in the
    /// log for the next start.
    async fn handle(
        &mut self,
        batch: Vec<LogMessage>,
        shutdown: &CancellationToken,
    ) -> Result<bool, ProcessError> {
        add(&self.stats.read, batch.len() as u64);
        let checkpoint = Checkpoint::after(&batch);
        let topic = self.log.topic().to_owned();
        let mut rows = Vec::with_capacity(batch.len());
        let mut row_messages = Vec::with_capacity(batch.len());
        let mut letters = Vec::new();
        for (i, m) in batch.iter().enumerate() {
            match Row::from_json(&m.payload, self.config.max_message_bytes) {
                Ok(row) => {
                    rows.push(row);
                    row_messages.push(i);
                }
                Err(e) => letters.push(dead_letter(Stage::Decode, e.to_string(), &topic, m)),
            }
        }
        let rows: Arc<[Row]> = rows.into();
        let Some(ack) = self.write_until_acked(rows, shutdown).await? else {
            return Ok(false);
        };
        for (i, reason) in &ack.rejected {
            let m = &batch[row_messages[*i]];
            letters.push(dead_letter(Stage::Sink, reason.clone(), &topic, m));
        }
        let n_letters = letters.len() as u64;
        self.log.dead_letter(letters).await?;
        // Architecture invariant: offsets are committed only here, after the
        // sink acknowledged every row of this batch and the dead letters of
        // the rest are stored. A crash before this line replays the batch;
        // the sink's upserts make the replay change nothing.
        self.reader.commit(&checkpoint).await?;
        add(&self.stats.stored, ack.written);
        add(&self.stats.unchanged, ack.unchanged);
        add(&self.stats.dead_lettered, n_letters);
        Ok(true)
    }

    /// Writes the batch, retrying while the sink says a retry can help
    /// (bounded backoff, a warning every few seconds). `None` if shutdown
    /// came first.
    async fn write_until_acked(
        &self,
        rows: Arc<[Row]>,
        shutdown: &CancellationToken,
    ) -> Result<Option<WriteAck>, SinkError> {
        let mut delay = Duration::from_millis(100);
        let outage_start = Instant::now();
        let mut last_warning: Option<Instant> = None;
        loop {
            match self.sink.write(rows.clone()).await {
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
                    if last_warning.is_none_or(|t| t.elapsed() >= OUTAGE_WARN_EVERY) {
                        warn!(
                            error = %e,
                            outage_secs = outage_start.elapsed().as_secs(),
                            "sink unavailable, pipeline paused (nothing committed)"
                        );
                        last_warning = Some(Instant::now());
                    }
                    add(&self.stats.sink_retries, 1);
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(None),
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(SINK_BACKOFF_MAX);
                }
                Err(e) => return Err(e),
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
        key: m.key.clone(),
        payload: m.payload.clone(),
    }
}

/// The outcome of replaying dead letters.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReplayReport {
    /// Letters now stored in the sink (and marked replayed).
    pub replayed: u64,
    /// Letters that still fail, kept with their new reason.
    pub still_failing: u64,
}

/// Runs dead letters through decoding and the sink again, after a fix.
/// A letter from the source stage holds an API user; the others hold a log
/// message. Each is settled one by one: stored → marked replayed; failing →
/// kept with the new reason.
pub async fn replay(
    log: &Log,
    sink: &Sink,
    letters: Vec<StoredDeadLetter>,
    max_message_bytes: usize,
) -> Result<ReplayReport, ProcessError> {
    let mut report = ReplayReport::default();
    for stored in letters {
        let row = decode_letter(&stored.letter, max_message_bytes);
        let outcome = match row {
            Ok(row) => {
                let ack = sink.write(Arc::from(vec![row])).await?;
                match ack.rejected.into_iter().next() {
                    Some((_, reason)) => Err(reason),
                    None => Ok(()),
                }
            }
            Err(e) => Err(e.to_string()),
        };
        match &outcome {
            Ok(()) => report.replayed += 1,
            Err(_) => report.still_failing += 1,
        }
        log.settle_dead_letter(stored.id, outcome).await?;
    }
    Ok(report)
}

fn decode_letter(letter: &DeadLetter, max_message_bytes: usize) -> Result<Row, RecordError> {
    match letter.stage {
        Stage::Source => {
            let user: ApiUser = serde_json::from_slice(&letter.payload)
                .map_err(|e| RecordError::Shape(e.to_string()))?;
            user.to_row()
        }
        Stage::Decode | Stage::Sink => Row::from_json(&letter.payload, max_message_bytes),
    }
}
