//! The durable hand-off between ingestion and processing: topics of keyed
//! messages with offsets, consumer-group offsets, and the dead letters.
//!
//! The log owns offsets. Its contract with the processor: a reader's
//! [`LogReader::commit`] is called only for messages the sink has
//! acknowledged; after a crash a reader starts at the last commit, so at
//! worst the last uncommitted batch is read again (the sink is idempotent).
//! The log knows nothing of tables or rows.
//! `letters.rs` holds the dead letters' types.

pub mod browse;
pub mod discard;
pub mod kafka;
mod letters;
pub mod preview;
pub mod scan;
pub mod sqlite;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::time::Duration;

pub use discard::{DiscardOutcome, Discarded, Letters};
pub use kafka::{GroupMember, GroupMembers, KafkaCommitter, KafkaLog, KafkaLogConfig, KafkaReader};
pub use letters::{DeadLetter, Origin, Stage, StoredDeadLetter, cut_reason, fingerprint};
pub use preview::{LetterPreview, MessagePreview};
pub use sqlite::{SqliteCommitter, SqliteLog, SqliteLogConfig, SqliteReader};

/// A read of whole dead letters stops after the letter whose payload takes
/// it past this many bytes: a page of a thousand letters of up to a
/// megabyte each would otherwise hold a gigabyte.
pub const LETTERS_READ_BYTES: usize = 64 << 20;
/// Validated log settings: a closed set, one variant per kind of log.
#[derive(Debug, Clone, PartialEq)]
pub enum LogConfig {
    Sqlite(SqliteLogConfig),
    Kafka(KafkaLogConfig),
}

impl LogConfig {
    pub fn topic(&self) -> &str {
        match self {
            LogConfig::Sqlite(c) => &c.topic,
            LogConfig::Kafka(c) => &c.topic,
        }
    }
}

/// Where a consumer group starts when its committed offset does not fit the
/// log: committed against another log file (replaced or restored), beyond
/// its end, or (on Kafka) out of range. Kafka's `auto.offset.reset`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OffsetReset {
    /// Read the log again from its beginning (the store's upserts make the
    /// rows already stored harmless).
    #[default]
    Earliest,
    /// Skip to the end: only messages appended from now on.
    Latest,
    /// Stop with an error naming the group and the offsets.
    Error,
}

impl OffsetReset {
    pub fn parse(s: &str) -> Option<OffsetReset> {
        match s {
            "earliest" => Some(OffsetReset::Earliest),
            "latest" => Some(OffsetReset::Latest),
            "error" => Some(OffsetReset::Error),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OffsetReset::Earliest => "earliest",
            OffsetReset::Latest => "latest",
            OffsetReset::Error => "error",
        }
    }

    /// Where a group whose commit does not fit the log goes: `earliest` or
    /// `latest` as given, with a warning saying `why` and the reset counter;
    /// with `Error`, the error naming the group and the offset.
    pub fn apply(
        self,
        at: ResetAt<'_>,
        why: &str,
        earliest: i64,
        latest: i64,
    ) -> Result<i64, LogError> {
        let ResetAt {
            topic,
            group,
            partition,
            committed,
        } = at;
        let to = match self {
            OffsetReset::Earliest => earliest,
            OffsetReset::Latest => latest,
            OffsetReset::Error => {
                return Err(LogError::OffsetOutOfRange(format!(
                    "group {group:?} on topic {topic:?} partition {partition}: committed offset \
                     {committed} does not fit: {why}; with [log] offset_reset = \"error\" the \
                     group stops here (set \"earliest\" to read from the start, \"latest\" to \
                     skip to the end)"
                )));
            }
        };
        tracing::warn!(
            topic,
            group,
            partition,
            committed,
            reset_to = to,
            policy = self.as_str(),
            "{why}; the group's position was reset"
        );
        metrics::counter!(crate::telemetry::metrics::LOG_OFFSET_RESETS.name).increment(1);
        Ok(to)
    }
}

/// Whose commit [`OffsetReset::apply`] moves.
#[derive(Debug, Clone, Copy)]
pub struct ResetAt<'a> {
    pub topic: &'a str,
    pub group: &'a str,
    pub partition: i32,
    pub committed: i64,
}

/// A message to append: the key (the record id) and the payload (flat JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

/// A message read back, with where it sits in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogMessage {
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

/// What a commit stores: per partition, the next offset to read, and where
/// known the mark of the message just before it (see [`mark`]), by which a
/// commit is later recognised as belonging to the log it was made on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checkpoint {
    pub next: BTreeMap<i32, i64>,
    pub marks: BTreeMap<i32, String>,
}

impl Checkpoint {
    /// The checkpoint just past every message of `batch`, with the marks of
    /// the last message of each partition.
    pub fn after(batch: &[LogMessage]) -> Checkpoint {
        let mut last: BTreeMap<i32, &LogMessage> = BTreeMap::new();
        for m in batch {
            let e = last.entry(m.partition).or_insert(m);
            if m.offset > e.offset {
                *e = m;
            }
        }
        Checkpoint {
            next: last.iter().map(|(&p, m)| (p, m.offset + 1)).collect(),
            marks: last.iter().map(|(&p, m)| (p, m.mark())).collect(),
        }
    }

    /// A checkpoint of offsets alone (no marks).
    pub fn at(next: BTreeMap<i32, i64>) -> Checkpoint {
        Checkpoint {
            next,
            marks: BTreeMap::new(),
        }
    }
}

/// The version of the mark's format, first in every mark.
pub const MARK_PREFIX: &str = "tributary/1";

/// The mark of a message: its timestamp and a hash of its key and payload.
/// A commit carries the mark of the message before its offset; if another
/// message sits there later, the log was replaced or rewritten under it.
pub fn mark(timestamp_ms: i64, key: Option<&[u8]>, payload: &[u8]) -> String {
    use std::hash::Hasher;
    let mut h = twox_hash::XxHash3_64::with_seed(0);
    h.write(&(key.map_or(u64::MAX, |k| k.len() as u64)).to_le_bytes());
    h.write(key.unwrap_or_default());
    h.write(payload);
    format!("{MARK_PREFIX} ts={timestamp_ms} h={:016x}", h.finish())
}

impl LogMessage {
    /// This message's mark (see [`mark`]).
    pub fn mark(&self) -> String {
        mark(self.timestamp_ms, self.key.as_deref(), &self.payload)
    }
}

/// What an append wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendAck {
    pub first_offset: i64,
    pub count: u64,
}

/// Lag of one partition for one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionLag {
    pub partition: i32,
    /// The group's next offset to read (its last commit).
    pub committed: i64,
    /// The offset the next appended message will get.
    pub end: i64,
}

impl PartitionLag {
    pub fn lag(&self) -> i64 {
        (self.end - self.committed).max(0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("log storage is full: {0}")]
    DiskFull(String),
    #[error("log {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("log: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("kafka log: {0}")]
    Kafka(String),
    /// The file is not a log this build can use (a store, another
    /// application's database, a newer log schema).
    #[error("log {path}: {reason}")]
    NotALog { path: String, reason: String },
    #[error("log offsets: {0}")]
    OffsetOutOfRange(String),
    #[error("log: {0}")]
    FileGone(String),
}

impl LogError {
    /// Whether trying again later can help (a busy or full disk can clear).
    pub fn is_retryable(&self) -> bool {
        match self {
            LogError::DiskFull(_) => true,
            LogError::Open { .. }
            | LogError::NotALog { .. }
            | LogError::Kafka(_)
            | LogError::OffsetOutOfRange(_)
            | LogError::FileGone(_) => false,
            LogError::Sqlite(e) => crate::embedded::is_busy(e),
        }
    }
}

/// A durable log: a closed set, matched exhaustively. Cheap to clone.
#[derive(Debug, Clone)]
pub enum Log {
    Sqlite(SqliteLog),
    Kafka(KafkaLog),
}

impl Log {
    pub async fn open(config: &LogConfig) -> Result<Log, LogError> {
        Ok(match config {
            LogConfig::Sqlite(c) => Log::Sqlite(SqliteLog::open(c.clone()).await?),
            LogConfig::Kafka(c) => Log::Kafka(KafkaLog::open(c.clone()).await?),
        })
    }

    /// Opens the log as it is, for the commands that only look: a Kafka
    /// topic that does not exist is an error naming it, not made. (An
    /// embedded log's file is checked by the caller: none means nothing
    /// was produced.)
    pub async fn open_existing(config: &LogConfig) -> Result<Log, LogError> {
        Ok(match config {
            LogConfig::Sqlite(c) => Log::Sqlite(SqliteLog::open(c.clone()).await?),
            LogConfig::Kafka(c) => {
                Log::Kafka(KafkaLog::open_as(c.clone(), crate::pipeline::Missing::Refuse).await?)
            }
        })
    }

    pub fn topic(&self) -> &str {
        match self {
            Log::Sqlite(l) => l.topic(),
            Log::Kafka(l) => l.topic(),
        }
    }

    /// Appends messages in order; returns once they are durable.
    pub async fn append(&self, records: Vec<LogRecord>) -> Result<AppendAck, LogError> {
        let started = std::time::Instant::now();
        let appended = match self {
            Log::Sqlite(l) => l.append(records).await,
            Log::Kafka(l) => l.append(records).await,
        };
        metrics::histogram!(crate::telemetry::metrics::LOG_APPEND_DURATION.name)
            .record(started.elapsed().as_secs_f64());
        appended
    }

    /// A reader for `group`, starting at its last commit (or the earliest
    /// message, for a new group).
    /// The log and a reader of `group`, opened as fast as each allows.
    pub async fn open_with_reader(
        config: &LogConfig,
        group: &str,
    ) -> Result<(Log, LogReader), LogError> {
        match config {
            LogConfig::Kafka(c) => {
                let (log, reader) = KafkaLog::open_with_reader(c.clone(), group).await?;
                Ok((Log::Kafka(log), LogReader::Kafka(reader)))
            }
            LogConfig::Sqlite(_) => {
                let log = Log::open(config).await?;
                let reader = log.reader(group).await?;
                Ok((log, reader))
            }
        }
    }

    pub async fn reader(&self, group: &str) -> Result<LogReader, LogError> {
        Ok(match self {
            Log::Sqlite(l) => LogReader::Sqlite(l.reader(group).await?),
            Log::Kafka(l) => LogReader::Kafka(l.reader(group).await?),
        })
    }

    /// Stores dead letters durably. A letter with the same stage and origin
    /// as a stored one is not stored twice (a replayed batch is harmless),
    /// nor one with the same source position and payload (a page fetched
    /// again).
    pub async fn dead_letter(&self, letters: Vec<DeadLetter>) -> Result<(), LogError> {
        if letters.is_empty() {
            return Ok(());
        }
        let mut by_stage = [0u64; 4];
        for l in &letters {
            by_stage[l.stage as usize] += 1;
        }
        match self {
            Log::Sqlite(l) => l.dead_letter(letters).await?,
            Log::Kafka(l) => l.dead_letter(letters).await?,
        }
        for (stage, n) in [Stage::Source, Stage::Transform, Stage::Decode, Stage::Sink]
            .into_iter()
            .zip(by_stage)
        {
            if n > 0 {
                metrics::counter!(crate::telemetry::metrics::LOG_DEAD_LETTERS.name, "stage" => stage.as_str())
                    .increment(n);
            }
        }
        Ok(())
    }

    /// Dead letters, oldest first, at most `limit`: the waiting ones, or
    /// every one (replayed and discarded too) with `include_replayed`; only
    /// ids above `after` when given (a cursor for paging). Fewer when their
    /// payloads pass [`LETTERS_READ_BYTES`]: page on from the last until
    /// none is left.
    pub async fn dead_letters(
        &self,
        include_replayed: bool,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Vec<StoredDeadLetter>, LogError> {
        let which = if include_replayed {
            Letters::All
        } else {
            Letters::Waiting
        };
        match self {
            Log::Sqlite(l) => l.dead_letters(which, after, limit).await,
            Log::Kafka(l) => l.dead_letters(which, after, limit).await,
        }
    }

    /// The waiting letters among `ids`, oldest first; unknown, replayed and
    /// discarded ids are left out.
    pub async fn dead_letters_by_id(
        &self,
        ids: Vec<i64>,
    ) -> Result<Vec<StoredDeadLetter>, LogError> {
        match self {
            Log::Sqlite(l) => l.dead_letters_by_id(ids).await,
            Log::Kafka(l) => l.dead_letters_by_id(ids).await,
        }
    }

    /// How many dead letters wait for a replay, only those with an id above
    /// `after` when given.
    pub async fn dead_letters_waiting(&self, after: Option<i64>) -> Result<u64, LogError> {
        match self {
            Log::Sqlite(l) => l.dead_letters_waiting(after).await,
            Log::Kafka(l) => l.dead_letters_waiting(after).await,
        }
    }

    /// Records the outcome of a replay: `Ok` marks it replayed, `Err` keeps
    /// it with the new reason.
    pub async fn settle_dead_letter(
        &self,
        id: i64,
        outcome: Result<(), String>,
    ) -> Result<(), LogError> {
        match self {
            Log::Sqlite(l) => l.settle_dead_letter(id, outcome).await,
            Log::Kafka(l) => l.settle_dead_letter(id, outcome).await,
        }
    }

    /// Up to `limit` of the newest messages, newest first; reads no group's
    /// position and commits nothing.
    pub async fn latest(&self, limit: usize) -> Result<Vec<LogMessage>, LogError> {
        match self {
            Log::Sqlite(l) => l.latest(limit).await,
            Log::Kafka(l) => l.latest(limit).await,
        }
    }

    /// Committed position and end, per partition, for `group`.
    pub async fn lag(&self, group: &str) -> Result<Vec<PartitionLag>, LogError> {
        match self {
            Log::Sqlite(l) => l.lag(group).await,
            Log::Kafka(l) => l.lag(group).await,
        }
    }

    /// The members of `group` reading now and the partitions each holds;
    /// `None` on the embedded log, whose readers form no group.
    pub async fn members(&self, group: &str) -> Result<Option<GroupMembers>, LogError> {
        match self {
            Log::Sqlite(_) => Ok(None),
            Log::Kafka(l) => l.members(group).await.map(Some),
        }
    }

    /// Messages waiting for `group`, over all partitions.
    pub async fn backlog(&self, group: &str) -> Result<u64, LogError> {
        Ok(self.lag(group).await?.iter().map(|p| p.lag() as u64).sum())
    }

    /// Messages retention dropped before `group` read them (counted by the
    /// embedded log over its file's life; Kafka keeps no such record: a
    /// Kafka reader counts what it finds when it starts, in its run).
    pub async fn lost(&self, group: &str) -> Result<u64, LogError> {
        match self {
            Log::Sqlite(l) => l.lost(group).await,
            Log::Kafka(_) => Ok(0),
        }
    }
}

/// A group's cursor over the log.
#[derive(Debug)]
pub enum LogReader {
    Sqlite(SqliteReader),
    Kafka(KafkaReader),
}

impl LogReader {
    /// Up to `max` messages after the reader's position, waiting up to `wait`
    /// for some to arrive. Advances the position, not the commit.
    pub async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<LogMessage>, LogError> {
        match self {
            LogReader::Sqlite(r) => r.poll(max, wait).await,
            LogReader::Kafka(r) => r.poll(max, wait).await,
        }
    }

    /// A handle that commits this reader's group position, usable while the
    /// reader polls ahead (the processor writes batch k while reading k+1).
    pub fn committer(&self) -> LogCommitter {
        match self {
            LogReader::Sqlite(r) => LogCommitter::Sqlite(r.committer()),
            LogReader::Kafka(r) => LogCommitter::Kafka(r.committer()),
        }
    }

    /// Messages that retention dropped before this reader read them, since
    /// the last call: lost, and to be counted as such.
    pub fn take_lost(&mut self) -> u64 {
        match self {
            LogReader::Sqlite(r) => r.take_lost(),
            // Found when the reader starts (see `kafka::identity`).
            LogReader::Kafka(r) => r.take_lost(),
        }
    }

    /// Under what name a store that keeps this reader's position beside its
    /// rows files it (log identity, topic, group); `None` where the store's
    /// position cannot be used to start from (Kafka: the group coordinator
    /// assigns partitions).
    pub fn scope(&self) -> Option<String> {
        match self {
            LogReader::Sqlite(r) => Some(r.scope()),
            LogReader::Kafka(_) => None,
        }
    }

    /// Where this reader will read next, per partition it knows.
    pub fn checkpoint(&self) -> Checkpoint {
        match self {
            LogReader::Sqlite(r) => Checkpoint::at([(0, r.position())].into()),
            LogReader::Kafka(r) => r.checkpoint(),
        }
    }

    /// Messages between the reader's position and the end of the log, when
    /// the reader knows it (a Kafka reader learns its partitions later: ask
    /// [`Log::lag`]).
    pub async fn backlog(&self) -> Result<Option<u64>, LogError> {
        match self {
            LogReader::Sqlite(r) => r.backlog().await.map(Some),
            LogReader::Kafka(_) => Ok(None),
        }
    }

    /// Why a position kept elsewhere does not fit this log (see
    /// `sqlite::reader::misfit`); never on Kafka, whose readers do not seek.
    pub async fn misfit(
        &self,
        partition: i32,
        next: i64,
        mark: Option<String>,
    ) -> Result<Option<String>, LogError> {
        match self {
            LogReader::Sqlite(r) if partition == 0 => r.misfit(next, mark).await,
            LogReader::Sqlite(_) => Ok(Some(format!("no partition {partition}"))),
            LogReader::Kafka(_) => Ok(None),
        }
    }

    /// Whether the group's commit did not fit the log and the reader's
    /// position was set by the offset-reset policy.
    pub fn was_reset(&self) -> bool {
        match self {
            LogReader::Sqlite(r) => r.was_reset(),
            LogReader::Kafka(_) => false,
        }
    }

    /// Moves the position to `checkpoint` (where the store's rows end).
    pub fn seek(&mut self, checkpoint: &Checkpoint) {
        match self {
            LogReader::Sqlite(r) => r.seek(checkpoint),
            LogReader::Kafka(_) => {}
        }
    }

    /// Whether the reader's position has reached the end of the log.
    pub async fn caught_up(&self) -> Result<bool, LogError> {
        match self {
            LogReader::Sqlite(r) => r.caught_up().await,
            LogReader::Kafka(r) => r.caught_up().await,
        }
    }
}

/// Commits a group's position; cheap to clone.
#[derive(Debug, Clone)]
pub enum LogCommitter {
    Sqlite(SqliteCommitter),
    Kafka(KafkaCommitter),
}

impl LogCommitter {
    /// Stores the group's position durably.
    ///
    /// Architecture invariant: call this only with a checkpoint past messages
    /// that the sink acknowledged or that went to the dead letters, and in
    /// the order the batches were read.
    pub async fn commit(&self, checkpoint: &Checkpoint) -> Result<(), LogError> {
        match self {
            LogCommitter::Sqlite(c) => c.commit(checkpoint).await,
            LogCommitter::Kafka(c) => c.commit(checkpoint).await,
        }
    }

    /// Waits until every commit made so far is durable (called when the
    /// processor stops; SQLite commits are durable when they return).
    pub async fn flush(&self) -> Result<(), LogError> {
        match self {
            LogCommitter::Sqlite(_) => Ok(()),
            LogCommitter::Kafka(c) => c.flush().await,
        }
    }
}
