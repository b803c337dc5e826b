//! The embedded log: an SQLite file holding topics (a table each, one
//! partition) and dead letters, and beside it `<file>.offsets` with the
//! consumer-group offsets. Survives crashes of
//! any process that writes or reads it; several processes may share it.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::Notify;
use tracing::{info, warn};

use super::{
    AppendAck, Checkpoint, DeadLetter, LogError, LogMessage, LogRecord, Origin, PartitionLag,
    Stage, StoredDeadLetter, now_ms,
};
use crate::pipeline::embedded::{self, Shared};

/// The embedded log has one partition per topic.
const PARTITION: i32 = 0;

/// How often a reader with nothing to read looks again for messages that
/// another process appended (appends in this process wake it at once).
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// How often age-based retention runs, at most.
const RETENTION_EVERY: Duration = Duration::from_secs(30);

/// Validated settings of the embedded log.
#[derive(Debug, Clone, PartialEq)]
pub struct SqliteLogConfig {
    /// The database file (created with its directory if missing).
    pub path: PathBuf,
    pub topic: String,
    /// Keep at most this many messages per topic (oldest go first).
    pub retention_messages: Option<u64>,
    /// Drop messages older than this.
    pub retention_age: Option<Duration>,
    /// fsync every commit (`synchronous=FULL`) rather than relying on WAL.
    pub durable_fsync: bool,
}

/// The embedded log, opened.
#[derive(Debug, Clone)]
pub struct SqliteLog {
    config: Arc<SqliteLogConfig>,
    /// The appender's connection; readers get their own.
    conn: Shared,
    /// The topic's table: `log_<topic id>`.
    table: Arc<str>,
    topic_id: i64,
    /// Wakes this process's readers when this process appends.
    appended: Arc<Notify>,
    /// Unix ms of the last age-retention pass.
    last_retention_ms: Arc<AtomicI64>,
}

fn open_conn(config: &SqliteLogConfig) -> Result<Connection, LogError> {
    let open_err = |source| LogError::Open {
        path: config.path.display().to_string(),
        source,
    };
    embedded::open(&config.path, config.durable_fsync).map_err(open_err)
}

/// Consumer-group offsets live in a file of their own beside the log, so
/// the processor's commits never wait for the ingester's appends (nor the
/// other way round): one writer per file.
fn offsets_path(config: &SqliteLogConfig) -> PathBuf {
    let mut name = config.path.file_name().unwrap_or_default().to_os_string();
    name.push(".offsets");
    config.path.with_file_name(name)
}

fn open_offsets(config: &SqliteLogConfig) -> Result<Connection, LogError> {
    let path = offsets_path(config);
    let conn = embedded::open(&path, config.durable_fsync).map_err(|source| LogError::Open {
        path: path.display().to_string(),
        source,
    })?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS group_offsets (
            grp TEXT NOT NULL,
            topic TEXT NOT NULL,
            partition INTEGER NOT NULL,
            next_offset INTEGER NOT NULL,
            updated_ms INTEGER NOT NULL,
            PRIMARY KEY (grp, topic, partition)
         );",
    )?;
    Ok(conn)
}

fn committed_offset(conn: &Connection, group: &str, topic: &str) -> Result<Option<i64>, LogError> {
    Ok(conn
        .query_row(
            "SELECT next_offset FROM group_offsets
             WHERE grp = ?1 AND topic = ?2 AND partition = ?3",
            params![group, topic, PARTITION],
            |r| r.get(0),
        )
        .optional()?)
}

fn map_write_err(e: rusqlite::Error) -> LogError {
    if embedded::is_disk_full(&e) {
        LogError::DiskFull(e.to_string())
    } else {
        LogError::Sqlite(e)
    }
}

impl SqliteLog {
    pub async fn open(config: SqliteLogConfig) -> Result<SqliteLog, LogError> {
        let config = Arc::new(config);
        let cfg = config.clone();
        let (conn, topic_id) = tokio::task::spawn_blocking(move || {
            let conn = open_conn(&cfg)?;
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS topics (
                    id INTEGER PRIMARY KEY,
                    name TEXT NOT NULL UNIQUE,
                    next_offset INTEGER NOT NULL DEFAULT 0
                 );
                 CREATE TABLE IF NOT EXISTS dead_letters (
                    id INTEGER PRIMARY KEY,
                    created_ms INTEGER NOT NULL,
                    stage TEXT NOT NULL,
                    reason TEXT NOT NULL,
                    topic TEXT,
                    partition INTEGER,
                    offset INTEGER,
                    key BLOB,
                    payload BLOB NOT NULL,
                    replayed_ms INTEGER,
                    UNIQUE (stage, topic, partition, offset)
                 );
                 CREATE INDEX IF NOT EXISTS dead_letters_waiting
                    ON dead_letters (id) WHERE replayed_ms IS NULL;",
            )
            .map_err(|source| LogError::Open {
                path: cfg.path.display().to_string(),
                source,
            })?;
            conn.execute(
                "INSERT INTO topics (name) VALUES (?1) ON CONFLICT (name) DO NOTHING",
                [&cfg.topic],
            )?;
            let topic_id: i64 =
                conn.query_row("SELECT id FROM topics WHERE name = ?1", [&cfg.topic], |r| {
                    r.get(0)
                })?;
            conn.execute_batch(&format!(
                "CREATE TABLE IF NOT EXISTS log_{topic_id} (
                    offset INTEGER PRIMARY KEY,
                    ts_ms INTEGER NOT NULL,
                    key BLOB,
                    payload BLOB NOT NULL
                 );"
            ))?;
            Ok::<_, LogError>((conn, topic_id))
        })
        .await
        .expect("log open task panicked")?;
        let log = SqliteLog {
            config,
            conn: Arc::new(std::sync::Mutex::new(conn)),
            table: format!("log_{topic_id}").into(),
            topic_id,
            appended: Arc::new(Notify::new()),
            last_retention_ms: Arc::new(AtomicI64::new(0)),
        };
        log.enforce_retention(true).await?;
        Ok(log)
    }

    pub fn topic(&self) -> &str {
        &self.config.topic
    }

    pub async fn append(&self, records: Vec<LogRecord>) -> Result<AppendAck, LogError> {
        let table = self.table.clone();
        let topic_id = self.topic_id;
        let count = records.len() as u64;
        let first_offset = embedded::blocking(&self.conn, move |conn| {
            // IMMEDIATE: take the write lock before reading next_offset, so two
            // processes appending to one file never hand out the same offset.
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(map_write_err)?;
            let first: i64 = tx.query_row(
                "SELECT next_offset FROM topics WHERE id = ?1",
                [topic_id],
                |r| r.get(0),
            )?;
            let ts = now_ms();
            {
                let mut insert = tx.prepare_cached(&format!(
                    "INSERT INTO {table} (offset, ts_ms, key, payload) VALUES (?1, ?2, ?3, ?4)"
                ))?;
                for (i, rec) in records.iter().enumerate() {
                    insert
                        .execute(params![first + i as i64, ts, rec.key, rec.payload])
                        .map_err(map_write_err)?;
                }
            }
            tx.execute(
                "UPDATE topics SET next_offset = ?1 WHERE id = ?2",
                params![first + count as i64, topic_id],
            )?;
            tx.commit().map_err(map_write_err)?;
            Ok::<_, LogError>(first)
        })
        .await?;
        self.appended.notify_waiters();
        self.enforce_retention(false).await?;
        Ok(AppendAck {
            first_offset,
            count,
        })
    }

    /// Drops messages beyond the count limit (every call) and past the age
    /// limit (at most every [`RETENTION_EVERY`], or when `force`d).
    async fn enforce_retention(&self, force: bool) -> Result<(), LogError> {
        let max_messages = self.config.retention_messages;
        let now = now_ms();
        let age_due = self.config.retention_age.is_some()
            && (force
                || now - self.last_retention_ms.load(Ordering::Relaxed)
                    >= RETENTION_EVERY.as_millis() as i64);
        if max_messages.is_none() && !age_due {
            return Ok(());
        }
        if age_due {
            self.last_retention_ms.store(now, Ordering::Relaxed);
        }
        let cutoff = self
            .config
            .retention_age
            .filter(|_| age_due)
            .map(|age| now - age.as_millis() as i64);
        let (table, topic_id) = (self.table.clone(), self.topic_id);
        let dropped = embedded::blocking(&self.conn, move |conn| {
            let mut dropped = 0;
            if let Some(max) = max_messages {
                let next: i64 = conn.query_row(
                    "SELECT next_offset FROM topics WHERE id = ?1",
                    [topic_id],
                    |r| r.get(0),
                )?;
                dropped += conn
                    .execute(
                        &format!("DELETE FROM {table} WHERE offset < ?1"),
                        [next - max as i64],
                    )
                    .map_err(map_write_err)?;
            }
            if let Some(cutoff) = cutoff {
                // The first message young enough to keep; offsets grow with
                // time, so everything before it goes.
                let keep_from: Option<i64> = conn
                    .query_row(
                        &format!(
                            "SELECT offset FROM {table} WHERE ts_ms >= ?1 ORDER BY offset LIMIT 1"
                        ),
                        [cutoff],
                        |r| r.get(0),
                    )
                    .optional()?;
                let keep_from = match keep_from {
                    Some(o) => o,
                    None => conn.query_row(
                        "SELECT next_offset FROM topics WHERE id = ?1",
                        [topic_id],
                        |r| r.get(0),
                    )?,
                };
                dropped += conn
                    .execute(
                        &format!("DELETE FROM {table} WHERE offset < ?1"),
                        [keep_from],
                    )
                    .map_err(map_write_err)?;
            }
            Ok::<_, LogError>(dropped)
        })
        .await?;
        if dropped > 0 {
            info!(topic = %self.config.topic, dropped, "log retention dropped old messages");
        }
        Ok(())
    }

    pub async fn reader(&self, group: &str) -> Result<SqliteReader, LogError> {
        let cfg = self.config.clone();
        let grp = group.to_owned();
        let (conn, offsets, position) = tokio::task::spawn_blocking(move || {
            let conn = open_conn(&cfg)?;
            let offsets = open_offsets(&cfg)?;
            let committed = committed_offset(&offsets, &grp, &cfg.topic)?;
            Ok::<_, LogError>((conn, offsets, committed.unwrap_or(0)))
        })
        .await
        .expect("log reader task panicked")?;
        Ok(SqliteReader {
            conn: Arc::new(std::sync::Mutex::new(conn)),
            offsets: Arc::new(std::sync::Mutex::new(offsets)),
            table: self.table.clone(),
            topic: self.config.topic.clone(),
            topic_id: self.topic_id,
            group: group.to_owned(),
            position,
            appended: self.appended.clone(),
        })
    }

    pub async fn dead_letter(&self, letters: Vec<DeadLetter>) -> Result<(), LogError> {
        embedded::blocking(&self.conn, move |conn| {
            let tx = conn.transaction().map_err(map_write_err)?;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO dead_letters
                        (created_ms, stage, reason, topic, partition, offset, key, payload)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT (stage, topic, partition, offset) DO NOTHING",
                )?;
                let now = now_ms();
                for l in &letters {
                    let (topic, partition, offset) = match &l.origin {
                        Some(o) => (Some(o.topic.as_str()), Some(o.partition), Some(o.offset)),
                        None => (None, None, None),
                    };
                    insert
                        .execute(params![
                            now,
                            l.stage.as_str(),
                            l.reason,
                            topic,
                            partition,
                            offset,
                            l.key,
                            l.payload
                        ])
                        .map_err(map_write_err)?;
                }
            }
            tx.commit().map_err(map_write_err)
        })
        .await
    }

    pub async fn dead_letters_waiting(&self, after: Option<i64>) -> Result<u64, LogError> {
        embedded::blocking(&self.conn, move |conn| {
            let n: i64 = conn.query_row(
                "SELECT count(*) FROM dead_letters WHERE replayed_ms IS NULL AND id > ?1",
                [after.unwrap_or(i64::MIN)],
                |r| r.get(0),
            )?;
            Ok(n as u64)
        })
        .await
    }

    pub async fn dead_letters(
        &self,
        include_replayed: bool,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Vec<StoredDeadLetter>, LogError> {
        embedded::blocking(&self.conn, move |conn| {
            // Two statements, so the waiting list uses its partial index.
            let filter = if include_replayed {
                ""
            } else {
                "replayed_ms IS NULL AND"
            };
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {LETTER_COLUMNS} FROM dead_letters WHERE {filter} id > ?1
                 ORDER BY id LIMIT ?2"
            ))?;
            let rows = stmt.query_map([after.unwrap_or(i64::MIN), limit as i64], stored_letter)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(LogError::from)
        })
        .await
    }

    /// The waiting letters among `ids`, oldest first; the others are left
    /// out (unknown or already replayed).
    pub async fn dead_letters_by_id(
        &self,
        ids: Vec<i64>,
    ) -> Result<Vec<StoredDeadLetter>, LogError> {
        embedded::blocking(&self.conn, move |conn| {
            let mut out = Vec::new();
            for chunk in ids.chunks(500) {
                let marks = vec!["?"; chunk.len()].join(", ");
                let mut stmt = conn.prepare(&format!(
                    "SELECT {LETTER_COLUMNS} FROM dead_letters
                     WHERE replayed_ms IS NULL AND id IN ({marks})"
                ))?;
                let rows = stmt.query_map(rusqlite::params_from_iter(chunk), stored_letter)?;
                for r in rows {
                    out.push(r?);
                }
            }
            out.sort_by_key(|l: &StoredDeadLetter| l.id);
            Ok(out)
        })
        .await
    }

    pub async fn settle_dead_letter(
        &self,
        id: i64,
        outcome: Result<(), String>,
    ) -> Result<(), LogError> {
        embedded::blocking(&self.conn, move |conn| {
            match outcome {
                Ok(()) => conn.execute(
                    "UPDATE dead_letters SET replayed_ms = ?1 WHERE id = ?2",
                    params![now_ms(), id],
                ),
                Err(reason) => conn.execute(
                    "UPDATE dead_letters SET reason = ?1 WHERE id = ?2",
                    params![reason, id],
                ),
            }
            .map_err(map_write_err)?;
            Ok(())
        })
        .await
    }

    pub async fn latest(&self, limit: usize) -> Result<Vec<LogMessage>, LogError> {
        let table = self.table.clone();
        embedded::blocking(&self.conn, move |conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT offset, ts_ms, key, payload FROM {table} ORDER BY offset DESC LIMIT ?1"
            ))?;
            let messages = stmt
                .query_map([limit as i64], message)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(messages)
        })
        .await
    }

    pub async fn lag(&self, group: &str) -> Result<Vec<PartitionLag>, LogError> {
        let topic_id = self.topic_id;
        let end: i64 = embedded::blocking(&self.conn, move |conn| {
            conn.query_row(
                "SELECT next_offset FROM topics WHERE id = ?1",
                [topic_id],
                |r| r.get(0),
            )
            .map_err(LogError::from)
        })
        .await?;
        let (cfg, grp) = (self.config.clone(), group.to_owned());
        let committed = tokio::task::spawn_blocking(move || {
            committed_offset(&open_offsets(&cfg)?, &grp, &cfg.topic)
        })
        .await
        .expect("lag task panicked")?;
        Ok(vec![PartitionLag {
            partition: PARTITION,
            committed: committed.unwrap_or(0),
            end,
        }])
    }
}

const LETTER_COLUMNS: &str =
    "id, created_ms, replayed_ms, stage, reason, topic, partition, offset, key, payload";

/// A row of `SELECT LETTER_COLUMNS` as a dead letter.
fn stored_letter(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredDeadLetter> {
    let stage: String = r.get(3)?;
    let topic: Option<String> = r.get(5)?;
    let origin = match topic {
        Some(topic) => Some(Origin {
            topic,
            partition: r.get(6)?,
            offset: r.get(7)?,
        }),
        None => None,
    };
    Ok(StoredDeadLetter {
        id: r.get(0)?,
        created_ms: r.get(1)?,
        replayed_ms: r.get(2)?,
        letter: DeadLetter {
            stage: Stage::parse(&stage).unwrap_or(Stage::Decode),
            reason: r.get(4)?,
            origin,
            key: r.get(8)?,
            payload: r.get(9)?,
        },
    })
}

/// A row of `SELECT offset, ts_ms, key, payload` as a message.
fn message(r: &rusqlite::Row<'_>) -> rusqlite::Result<LogMessage> {
    Ok(LogMessage {
        partition: PARTITION,
        offset: r.get(0)?,
        timestamp_ms: r.get(1)?,
        key: r.get(2)?,
        payload: r.get(3)?,
    })
}

/// A group's cursor over one topic of the embedded log.
#[derive(Debug)]
pub struct SqliteReader {
    conn: Shared,
    /// The offsets file (see [`offsets_path`]).
    offsets: Shared,
    table: Arc<str>,
    topic: String,
    topic_id: i64,
    group: String,
    /// The next offset to read; ahead of the commit while a batch is in flight.
    position: i64,
    appended: Arc<Notify>,
}

impl SqliteReader {
    pub async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<LogMessage>, LogError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Register for a wake-up before looking, so an append between the
            // look and the wait is not missed.
            let appended = self.appended.clone();
            let notified = appended.notified();
            let batch = self.read(max).await?;
            if !batch.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(batch);
            }
            let nap = POLL_INTERVAL.min(deadline - tokio::time::Instant::now());
            let _ = tokio::time::timeout(nap, notified).await;
        }
    }

    async fn read(&mut self, max: usize) -> Result<Vec<LogMessage>, LogError> {
        let (table, position) = (self.table.clone(), self.position);
        let (batch, first_available) = embedded::blocking(&self.conn, move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT offset, ts_ms, key, payload FROM {table}
                 WHERE offset >= ?1 ORDER BY offset LIMIT ?2"
            ))?;
            let batch = stmt
                .query_map(params![position, max as i64], message)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok::<_, LogError>((batch, position))
        })
        .await?;
        if let Some(first) = batch.first() {
            if first.offset > first_available {
                // Retention removed messages this group had not read yet.
                warn!(
                    topic = %self.topic,
                    group = %self.group,
                    from = first_available,
                    to = first.offset,
                    "messages were dropped by retention before this group read them"
                );
            }
            self.position = batch.last().map(|m| m.offset + 1).unwrap_or(position);
        }
        Ok(batch)
    }

    pub fn committer(&self) -> SqliteCommitter {
        SqliteCommitter {
            conn: self.offsets.clone(),
            group: self.group.clone().into(),
            topic: self.topic.clone().into(),
        }
    }

    pub async fn caught_up(&self) -> Result<bool, LogError> {
        let (topic_id, position) = (self.topic_id, self.position);
        embedded::blocking(&self.conn, move |conn| {
            let end: i64 = conn.query_row(
                "SELECT next_offset FROM topics WHERE id = ?1",
                [topic_id],
                |r| r.get(0),
            )?;
            Ok(position >= end)
        })
        .await
    }
}

/// Commits one group's position in the embedded log.
#[derive(Debug, Clone)]
pub struct SqliteCommitter {
    /// The offsets file's connection.
    conn: Shared,
    group: Arc<str>,
    topic: Arc<str>,
}

impl SqliteCommitter {
    pub async fn commit(&self, checkpoint: &Checkpoint) -> Result<(), LogError> {
        let Some(&next) = checkpoint.0.get(&PARTITION) else {
            return Ok(());
        };
        let (group, topic) = (self.group.clone(), self.topic.clone());
        embedded::blocking(&self.conn, move |conn| {
            conn.execute(
                "INSERT INTO group_offsets (grp, topic, partition, next_offset, updated_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (grp, topic, partition)
                 DO UPDATE SET next_offset = excluded.next_offset, updated_ms = excluded.updated_ms",
                params![&*group, &*topic, PARTITION, next, now_ms()],
            )
            .map_err(map_write_err)?;
            Ok(())
        })
        .await
    }
}
