//! The embedded log: an SQLite file holding topics (a table each, one
//! partition) and dead letters, and beside it `<file>.offsets` with the
//! consumer-group offsets. Survives crashes of
//! any process that writes or reads it; several processes may share it.
//!
//! A log file has a random identity, drawn when it is created; every commit
//! stores it beside the offset. A committed offset is trusted only for the
//! log it was committed against and only inside `[0, next offset]`: a
//! replaced or restored log file, or a position retention has passed, is
//! noticed, logged, and handled by the group's [`OffsetReset`] policy.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::Notify;
use tracing::{info, warn};

use super::{
    AppendAck, Checkpoint, DeadLetter, Discarded, Letters, LogError, LogMessage, LogRecord,
    OffsetReset, Origin, PartitionLag, ResetAt, Stage, StoredDeadLetter, now_ms,
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
    /// Where a group goes when its committed offset does not fit this log.
    pub offset_reset: OffsetReset,
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
    /// This log file's identity (see the module doc).
    log_id: Arc<str>,
    /// The file opened, to notice it being deleted or replaced under us.
    file: Arc<embedded::FileId>,
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
         );
         CREATE TABLE IF NOT EXISTS group_losses (
            grp TEXT NOT NULL,
            topic TEXT NOT NULL,
            log_id TEXT NOT NULL,
            from_offset INTEGER NOT NULL,
            to_offset INTEGER NOT NULL,
            noticed_ms INTEGER NOT NULL,
            PRIMARY KEY (grp, topic, log_id, from_offset)
         );",
    )?;
    // Files written before offsets carried the log's identity: add the
    // column; their rows (NULL) are trusted once, then rewritten.
    add_column(&conn, "group_offsets", "log_id", "TEXT")?;
    add_column(&conn, "group_offsets", "mark", "TEXT")?;
    Ok(conn)
}

/// Adds a column to a table of an older file, unless it is there already.
fn add_column(conn: &Connection, table: &str, column: &str, ty: &str) -> Result<(), LogError> {
    let present: bool = conn.query_row(
        "SELECT count(*) FROM pragma_table_info(?1) WHERE name = ?2",
        [table, column],
        |r| r.get::<_, i64>(0).map(|n| n > 0),
    )?;
    if !present {
        match conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {ty}")) {
            Ok(()) => {}
            // Another process added it first.
            Err(e) if e.to_string().contains("duplicate column") => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// A group's commit: the next offset, and the log it was committed against
/// (`None` for commits older than log identities).
struct Committed {
    next_offset: i64,
    log_id: Option<String>,
    /// The mark of the message before `next_offset` (see [`super::mark`]).
    mark: Option<String>,
}

fn committed_offset(
    conn: &Connection,
    group: &str,
    topic: &str,
) -> Result<Option<Committed>, LogError> {
    Ok(conn
        .query_row(
            "SELECT next_offset, log_id, mark FROM group_offsets
             WHERE grp = ?1 AND topic = ?2 AND partition = ?3",
            params![group, topic, PARTITION],
            |r| {
                Ok(Committed {
                    next_offset: r.get(0)?,
                    log_id: r.get(1)?,
                    mark: r.get(2)?,
                })
            },
        )
        .optional()?)
}

/// The offset committed for `group` if it belongs to the log `log_id`.
fn committed_here(
    conn: &Connection,
    group: &str,
    topic: &str,
    log_id: &str,
) -> Result<Option<i64>, LogError> {
    Ok(committed_offset(conn, group, topic)?
        .filter(|c| c.log_id.as_deref().is_none_or(|id| id == log_id))
        .map(|c| c.next_offset))
}

/// Messages lost to retention before `group` read them, all ranges merged
/// (a range may be noticed again, wider, after a restart).
fn lost_messages(
    conn: &Connection,
    group: &str,
    topic: &str,
    log_id: &str,
) -> Result<u64, LogError> {
    let mut stmt = conn.prepare_cached(
        "SELECT from_offset, to_offset FROM group_losses
         WHERE grp = ?1 AND topic = ?2 AND log_id = ?3 ORDER BY from_offset",
    )?;
    let ranges = stmt
        .query_map(params![group, topic, log_id], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let (mut total, mut covered_to) = (0i64, i64::MIN);
    for (from, to) in ranges {
        let from = from.max(covered_to);
        if to > from {
            total += to - from;
        }
        covered_to = covered_to.max(to);
    }
    Ok(total.max(0) as u64)
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
        let (conn, topic_id, log_id) = tokio::task::spawn_blocking(move || {
            let conn = open_conn(&cfg)?;
            embedded::claim(&conn, embedded::Role::Log).map_err(|reason| LogError::NotALog {
                path: cfg.path.display().to_string(),
                reason,
            })?;
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
                    ON dead_letters (id) WHERE replayed_ms IS NULL;
                 CREATE TABLE IF NOT EXISTS log_meta (
                    key TEXT PRIMARY KEY,
                    value TEXT NOT NULL
                 );",
            )
            .map_err(|source| LogError::Open {
                path: cfg.path.display().to_string(),
                source,
            })?;
            // Letters from before the source position was kept: add it, and
            // the name that keeps a letter fetched twice from being stored
            // twice (see `fingerprint`).
            add_column(&conn, "dead_letters", "source_position", "TEXT")?;
            add_column(&conn, "dead_letters", "fingerprint", "TEXT")?;
            // Letters from before they could be discarded (`dlq discard`).
            add_column(&conn, "dead_letters", "discarded_ms", "INTEGER")?;
            add_column(&conn, "dead_letters", "discard_reason", "TEXT")?;
            conn.execute_batch(
                "CREATE UNIQUE INDEX IF NOT EXISTS dead_letters_fingerprint
                    ON dead_letters (stage, fingerprint) WHERE fingerprint IS NOT NULL;",
            )?;
            // The first process to open a new file draws its identity; the
            // others read the winner's.
            conn.execute(
                "INSERT INTO log_meta (key, value) VALUES ('log_id', ?1)
                 ON CONFLICT (key) DO NOTHING",
                [uuid::Uuid::new_v4().to_string()],
            )?;
            let log_id: String =
                conn.query_row("SELECT value FROM log_meta WHERE key = 'log_id'", [], |r| {
                    r.get(0)
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
            Ok::<_, LogError>((conn, topic_id, log_id))
        })
        .await
        .expect("log open task panicked")?;
        let file = embedded::FileId::of(&config.path).map_err(|e| LogError::Open {
            path: config.path.display().to_string(),
            source: rusqlite::Error::InvalidPath(format!("{e}").into()),
        })?;
        let log = SqliteLog {
            config,
            conn: Arc::new(std::sync::Mutex::new(conn)),
            table: format!("log_{topic_id}").into(),
            topic_id,
            log_id: log_id.into(),
            file: Arc::new(file),
            appended: Arc::new(Notify::new()),
            last_retention_ms: Arc::new(AtomicI64::new(0)),
        };
        Ok(log)
    }

    pub fn topic(&self) -> &str {
        &self.config.topic
    }

    /// The connection reads share, and the topic's table (for the bounded
    /// looks of `log/preview.rs`).
    pub(super) fn connection(&self) -> &Shared {
        &self.conn
    }

    pub(super) fn table_name(&self) -> &str {
        &self.table
    }

    /// This log file's identity, drawn when the file was created.
    pub fn log_id(&self) -> &str {
        &self.log_id
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
        // Only now, after the commit: a file deleted at any moment before
        // it took these messages with it.
        self.file.check().map_err(LogError::FileGone)?;
        self.appended.notify_waiters();
        self.enforce_retention().await?;
        Ok(AppendAck {
            first_offset,
            count,
        })
    }

    /// Drops messages beyond the count limit (every call) and past the age
    /// limit (at most every [`RETENTION_EVERY`]). Only appends run it:
    /// opening the log to look at it (`status`, `verify`) changes nothing.
    async fn enforce_retention(&self) -> Result<(), LogError> {
        let max_messages = self.config.retention_messages;
        let now = now_ms();
        let age_due = self.config.retention_age.is_some()
            && now.saturating_sub(self.last_retention_ms.load(Ordering::Relaxed))
                >= RETENTION_EVERY.as_millis() as i64;
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
            .map(|age| retention_cutoff(now, age));
        let (table, topic_id) = (self.table.clone(), self.topic_id);
        let dropped = embedded::blocking(&self.conn, move |conn| {
            let mut dropped = 0;
            if let Some(max) = max_messages {
                let next: i64 = conn.query_row(
                    "SELECT next_offset FROM topics WHERE id = ?1",
                    [topic_id],
                    |r| r.get(0),
                )?;
                let keep_from = next.saturating_sub(i64::try_from(max).unwrap_or(i64::MAX));
                dropped += conn
                    .execute(
                        &format!("DELETE FROM {table} WHERE offset < ?1"),
                        [keep_from],
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

    /// A reader for `group`, at its committed offset when that offset was
    /// committed against this log and lies inside it; otherwise where the
    /// group's [`OffsetReset`] says, with a warning. A group that never
    /// committed starts at offset 0, the beginning of the log: what retention
    /// dropped before it read it is counted as lost, never skipped quietly.
    pub async fn reader(&self, group: &str) -> Result<SqliteReader, LogError> {
        let cfg = self.config.clone();
        let grp = group.to_owned();
        let (topic_id, log_id, table) = (self.topic_id, self.log_id.clone(), self.table.clone());
        let (conn, offsets, committed, misfit, end) = tokio::task::spawn_blocking(move || {
            let conn = open_conn(&cfg)?;
            let offsets = open_offsets(&cfg)?;
            let committed = committed_offset(&offsets, &grp, &cfg.topic)?;
            let misfit = match &committed {
                None => None,
                Some(Committed {
                    log_id: Some(theirs),
                    ..
                }) if **theirs != *log_id => Some(format!(
                    "the offset was committed against another log file (id {theirs}, this one \
                     is {log_id}): the log was replaced"
                )),
                Some(c) => misfit(&conn, &table, topic_id, c.next_offset, c.mark.as_deref())?,
            };
            let end = next_offset(&conn, topic_id)?;
            Ok::<_, LogError>((conn, offsets, committed, misfit, end))
        })
        .await
        .expect("log reader task panicked")?;
        let conn = Arc::new(std::sync::Mutex::new(conn));
        let offsets = Arc::new(std::sync::Mutex::new(offsets));
        let offsets_file = Arc::new(embedded::FileId::of(&offsets_path(&self.config)).map_err(
            |e| LogError::Open {
                path: offsets_path(&self.config).display().to_string(),
                source: rusqlite::Error::InvalidPath(format!("{e}").into()),
            },
        )?);
        let was_reset = misfit.is_some();
        let position = match (committed, misfit) {
            (None, _) => 0,
            (Some(c), None) => c.next_offset,
            (Some(c), Some(why)) => {
                let at = ResetAt {
                    topic: &self.config.topic,
                    group,
                    partition: PARTITION,
                    committed: c.next_offset,
                };
                let to = self.config.offset_reset.apply(at, &why, 0, end)?;
                // Committed at once: the old commit must not be trusted
                // again once appends have made it fit the log's length.
                let mark = mark_before(&conn, &self.table, to).await?;
                let checkpoint = Checkpoint {
                    next: [(PARTITION, to)].into(),
                    marks: mark.map(|m| (PARTITION, m)).into_iter().collect(),
                };
                SqliteCommitter {
                    conn: offsets.clone(),
                    group: group.into(),
                    topic: self.config.topic.as_str().into(),
                    log_id: self.log_id.clone(),
                    file: offsets_file.clone(),
                }
                .commit(&checkpoint)
                .await?;
                to
            }
        };
        Ok(SqliteReader {
            conn,
            offsets,
            offsets_file,
            table: self.table.clone(),
            topic: self.config.topic.clone(),
            topic_id: self.topic_id,
            log_id: self.log_id.clone(),
            group: group.to_owned(),
            position,
            lost: 0,
            was_reset,
            appended: self.appended.clone(),
        })
    }

    pub async fn dead_letter(&self, letters: Vec<DeadLetter>) -> Result<(), LogError> {
        embedded::blocking(&self.conn, move |conn| {
            let tx = conn.transaction().map_err(map_write_err)?;
            {
                // A letter already stored, by origin or by fingerprint, is
                // left as it is.
                let mut insert = tx.prepare_cached(
                    "INSERT INTO dead_letters
                        (created_ms, stage, reason, topic, partition, offset, key, payload,
                         source_position, fingerprint)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                     ON CONFLICT DO NOTHING",
                )?;
                let now = now_ms();
                for l in &letters {
                    let (topic, partition, offset) = match &l.origin {
                        Some(o) => (Some(o.topic.as_str()), Some(o.partition), Some(o.offset)),
                        None => (None, None, None),
                    };
                    let fingerprint = l
                        .source_position
                        .as_deref()
                        .map(|p| super::fingerprint(p, &l.payload));
                    insert
                        .execute(params![
                            now,
                            l.stage.as_str(),
                            l.reason,
                            topic,
                            partition,
                            offset,
                            l.key,
                            l.payload,
                            l.source_position,
                            fingerprint
                        ])
                        .map_err(map_write_err)?;
                }
            }
            tx.commit().map_err(map_write_err)
        })
        .await?;
        self.file.check().map_err(LogError::FileGone)
    }

    pub async fn dead_letters_waiting(&self, after: Option<i64>) -> Result<u64, LogError> {
        embedded::blocking(&self.conn, move |conn| {
            let n: i64 = conn.query_row(
                "SELECT count(*) FROM dead_letters
                 WHERE replayed_ms IS NULL AND discarded_ms IS NULL AND id > ?1",
                [after.unwrap_or(i64::MIN)],
                |r| r.get(0),
            )?;
            Ok(n as u64)
        })
        .await
    }

    pub async fn dead_letters(
        &self,
        which: Letters,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Vec<StoredDeadLetter>, LogError> {
        embedded::blocking(&self.conn, move |conn| {
            // One statement each, so the waiting list uses its partial index.
            let filter = which.sql_filter();
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
                     WHERE replayed_ms IS NULL AND discarded_ms IS NULL AND id IN ({marks})"
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
        let (cfg, grp, log_id) = (self.config.clone(), group.to_owned(), self.log_id.clone());
        let committed = tokio::task::spawn_blocking(move || {
            committed_here(&open_offsets(&cfg)?, &grp, &cfg.topic, &log_id)
        })
        .await
        .expect("lag task panicked")?;
        Ok(vec![PartitionLag {
            partition: PARTITION,
            committed: committed.unwrap_or(0),
            end,
        }])
    }

    /// Messages retention dropped before `group` read them, over the life
    /// of this log file.
    pub async fn lost(&self, group: &str) -> Result<u64, LogError> {
        let (cfg, grp, log_id) = (self.config.clone(), group.to_owned(), self.log_id.clone());
        tokio::task::spawn_blocking(move || {
            lost_messages(&open_offsets(&cfg)?, &grp, &cfg.topic, &log_id)
        })
        .await
        .expect("lost task panicked")
    }

    /// Up to `max` messages with offsets in `from..end`, in order, read
    /// without a group: no position is read or committed (`verify`'s scan).
    pub async fn read_range(
        &self,
        from: i64,
        end: i64,
        max: usize,
    ) -> Result<Vec<LogMessage>, LogError> {
        let table = self.table.clone();
        embedded::blocking(&self.conn, move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT offset, ts_ms, key, payload FROM {table}
                 WHERE offset >= ?1 AND offset < ?2 ORDER BY offset LIMIT ?3"
            ))?;
            let messages = stmt
                .query_map(params![from, end, max as i64], message)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(messages)
        })
        .await
    }
}

/// Why a position (the next offset, with the mark of the message before
/// it) does not fit the log, or `None` when it does: past the end, or the
/// message before it is another one than the committer read (the file was
/// restored from an older copy and written again). A position retention
/// has passed cannot be checked, and is taken as it is (the reader counts
/// the gap as lost).
fn misfit(
    conn: &Connection,
    table: &str,
    topic_id: i64,
    next: i64,
    mark: Option<&str>,
) -> Result<Option<String>, LogError> {
    let end = next_offset(conn, topic_id)?;
    if next < 0 || next > end {
        return Ok(Some(format!(
            "the offset {next} is beyond the log's end ({end}): the log was replaced or \
             restored from an older copy"
        )));
    }
    let (Some(mark), true) = (mark, next > 0) else {
        return Ok(None);
    };
    Ok(match mark_of(conn, table, next - 1)? {
        Some(seen) if seen != mark => Some(format!(
            "the message before offset {next} is not the one read before it: the log was \
             restored from an older copy and written again"
        )),
        _ => None,
    })
}

/// The mark of the message at `offset`, if it is there.
fn mark_of(conn: &Connection, table: &str, offset: i64) -> Result<Option<String>, LogError> {
    Ok(conn
        .query_row(
            &format!("SELECT offset, ts_ms, key, payload FROM {table} WHERE offset = ?1"),
            [offset],
            message,
        )
        .optional()?
        .map(|m| m.mark()))
}

/// The mark of the message before `next`, if it is there.
async fn mark_before(conn: &Shared, table: &str, next: i64) -> Result<Option<String>, LogError> {
    if next <= 0 {
        return Ok(None);
    }
    let table = table.to_owned();
    embedded::blocking(conn, move |conn| mark_of(conn, &table, next - 1)).await
}

/// The offset the next appended message of the topic will get.
fn next_offset(conn: &Connection, topic_id: i64) -> Result<i64, LogError> {
    Ok(conn.query_row(
        "SELECT next_offset FROM topics WHERE id = ?1",
        [topic_id],
        |r| r.get(0),
    )?)
}

/// Messages stamped before this are older than `age`. Saturates: an age
/// longer than the clock's history keeps everything.
fn retention_cutoff(now_ms: i64, age: Duration) -> i64 {
    now_ms.saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX))
}

const LETTER_COLUMNS: &str = "id, created_ms, replayed_ms, stage, reason, topic, partition, offset, \
     key, payload, source_position, discarded_ms, discard_reason";

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
        discarded: discarded(r.get(11)?, r.get(12)?),
        letter: DeadLetter {
            stage: Stage::parse(&stage).unwrap_or(Stage::Decode),
            reason: r.get(4)?,
            origin,
            source_position: r.get(10)?,
            key: r.get(8)?,
            payload: r.get(9)?,
        },
    })
}

/// The `discarded_ms` and `discard_reason` of a letter's row.
pub(super) fn discarded(at_ms: Option<i64>, reason: Option<String>) -> Option<Discarded> {
    at_ms.map(|at_ms| Discarded { at_ms, reason })
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
    offsets_file: Arc<embedded::FileId>,
    table: Arc<str>,
    topic: String,
    topic_id: i64,
    log_id: Arc<str>,
    group: String,
    /// The next offset to read; ahead of the commit while a batch is in flight.
    position: i64,
    /// Messages retention dropped before this reader got to them, not yet
    /// taken by [`SqliteReader::take_lost`].
    lost: u64,
    /// Whether the group's commit did not fit and was reset by the policy.
    was_reset: bool,
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
        let (table, position, topic_id) = (self.table.clone(), self.position, self.topic_id);
        let (batch, next) = embedded::blocking(&self.conn, move |conn| {
            // One read transaction: the messages and the end are seen at the
            // same moment, so an append in between is never taken for a gap.
            let tx = conn.transaction()?;
            let batch = {
                let mut stmt = tx.prepare_cached(&format!(
                    "SELECT offset, ts_ms, key, payload FROM {table}
                     WHERE offset >= ?1 ORDER BY offset LIMIT ?2"
                ))?;
                stmt.query_map(params![position, max as i64], message)?
                    .collect::<Result<Vec<_>, _>>()?
            };
            let next = next_offset(&tx, topic_id)?;
            tx.commit()?;
            Ok::<_, LogError>((batch, next))
        })
        .await?;
        // Offsets are dense: a message missing between the position and the
        // first one found (or the end) was dropped by retention.
        let available = batch.first().map(|m| m.offset).unwrap_or(next);
        if available > position {
            self.note_lost(position, available).await?;
        } else if batch.is_empty() && position > next {
            // The file under this reader went back: replaced or restored.
            warn!(
                topic = %self.topic,
                group = %self.group,
                position,
                end = next,
                "the log's end is before this group's position: the log file was replaced \
                 or restored while being read; reading on from its end"
            );
            self.position = next;
        }
        if let Some(last) = batch.last() {
            self.position = last.offset + 1;
        } else {
            self.position = self.position.max(available);
        }
        Ok(batch)
    }

    /// Records that `[from, to)` was dropped before this group read it: a
    /// warning naming the range, the run's count, and a durable note in the
    /// offsets file for `status` (merged if noticed again after a restart).
    async fn note_lost(&mut self, from: i64, to: i64) -> Result<(), LogError> {
        warn!(
            topic = %self.topic,
            group = %self.group,
            from,
            to,
            lost = to - from,
            "messages {from}..{to} were dropped by retention before this group read them: \
             they are lost (keep them longer with [log] retention_age / retention_messages)"
        );
        self.lost += (to - from) as u64;
        let (group, topic, log_id) = (self.group.clone(), self.topic.clone(), self.log_id.clone());
        embedded::blocking(&self.offsets, move |conn| {
            conn.execute(
                "INSERT INTO group_losses (grp, topic, log_id, from_offset, to_offset, noticed_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (grp, topic, log_id, from_offset)
                 DO UPDATE SET to_offset = max(to_offset, excluded.to_offset)",
                params![group, topic, &*log_id, from, to, now_ms()],
            )
            .map_err(map_write_err)?;
            Ok(())
        })
        .await
    }

    /// Messages lost to retention since the last call (see [`Self::note_lost`]).
    pub fn take_lost(&mut self) -> u64 {
        std::mem::take(&mut self.lost)
    }

    /// This log's identity, the group and the topic: what a store that keeps
    /// the reader's position beside its rows files it under.
    pub fn scope(&self) -> String {
        format!("{}/{}/{}", self.log_id, self.topic, self.group)
    }

    /// Moves the position to `checkpoint` (the store's own record of where
    /// its rows end, which wins over the offsets file).
    pub fn seek(&mut self, checkpoint: &Checkpoint) {
        if let Some(&next) = checkpoint.next.get(&PARTITION) {
            self.position = next;
        }
    }

    /// Whether the group's commit did not fit this log and its position
    /// was set by the offset-reset policy when the reader started.
    pub fn was_reset(&self) -> bool {
        self.was_reset
    }

    /// The next offset this reader will read.
    pub fn position(&self) -> i64 {
        self.position
    }

    /// Why a position kept elsewhere (the store's) does not fit this log,
    /// or `None` when it does (see [`misfit`]).
    pub async fn misfit(
        &self,
        next: i64,
        mark: Option<String>,
    ) -> Result<Option<String>, LogError> {
        let (table, topic_id) = (self.table.clone(), self.topic_id);
        embedded::blocking(&self.conn, move |conn| {
            misfit(conn, &table, topic_id, next, mark.as_deref())
        })
        .await
    }

    pub fn committer(&self) -> SqliteCommitter {
        SqliteCommitter {
            conn: self.offsets.clone(),
            group: self.group.clone().into(),
            topic: self.topic.clone().into(),
            log_id: self.log_id.clone(),
            file: self.offsets_file.clone(),
        }
    }

    /// Messages from the position to the end of the log.
    pub async fn backlog(&self) -> Result<u64, LogError> {
        let (topic_id, position) = (self.topic_id, self.position);
        embedded::blocking(&self.conn, move |conn| {
            Ok((next_offset(conn, topic_id)? - position).max(0) as u64)
        })
        .await
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
    /// Stored with every commit: the offset means something in this log only.
    log_id: Arc<str>,
    /// The offsets file opened, to notice it being deleted under us.
    file: Arc<embedded::FileId>,
}

impl SqliteCommitter {
    pub async fn commit(&self, checkpoint: &Checkpoint) -> Result<(), LogError> {
        let Some(&next) = checkpoint.next.get(&PARTITION) else {
            return Ok(());
        };
        let (group, topic, log_id) = (self.group.clone(), self.topic.clone(), self.log_id.clone());
        let mark = checkpoint.marks.get(&PARTITION).cloned();
        embedded::blocking(&self.conn, move |conn| {
            conn.execute(
                "INSERT INTO group_offsets
                    (grp, topic, partition, next_offset, updated_ms, log_id, mark)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (grp, topic, partition)
                 DO UPDATE SET next_offset = excluded.next_offset,
                    updated_ms = excluded.updated_ms, log_id = excluded.log_id,
                    mark = excluded.mark",
                params![&*group, &*topic, PARTITION, next, now_ms(), &*log_id, mark],
            )
            .map_err(map_write_err)?;
            Ok::<_, LogError>(())
        })
        .await?;
        self.file.check().map_err(LogError::FileGone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retention_age_beyond_the_clock_keeps_everything() {
        let now = now_ms();
        // 300 million years: `now - age as i64` used to wrap into the future
        // and drop the whole log.
        let age = Duration::from_secs(300_000_000 * 31_557_600);
        assert!(retention_cutoff(now, age) < 0);
        assert!(retention_cutoff(now, Duration::MAX) < 0);
        assert_eq!(retention_cutoff(now, Duration::from_secs(1)), now - 1000);
    }

    async fn log(dir: &std::path::Path, retention_messages: Option<u64>) -> SqliteLog {
        SqliteLog::open(SqliteLogConfig {
            path: dir.join("log.db"),
            topic: "t".into(),
            retention_messages,
            retention_age: None,
            durable_fsync: false,
            offset_reset: OffsetReset::Earliest,
        })
        .await
        .unwrap()
    }

    fn records(n: usize) -> Vec<LogRecord> {
        (0..n)
            .map(|i| LogRecord {
                key: None,
                payload: i.to_string().into_bytes(),
            })
            .collect()
    }

    #[tokio::test]
    async fn a_commit_made_against_another_log_file_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let first = log(dir.path(), None).await;
        first.append(records(30)).await.unwrap();
        let reader = first.reader("g").await.unwrap();
        reader
            .committer()
            .commit(&Checkpoint::at([(0, 30)].into()))
            .await
            .unwrap();
        drop((reader, first));
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(dir.path().join(format!("log.db{suffix}")));
        }
        let second = log(dir.path(), None).await;
        second.append(records(40)).await.unwrap();
        let mut reader = second.reader("g").await.unwrap();
        assert_eq!(reader.position(), 0, "the old commit was trusted");
        let batch = reader.poll(100, Duration::ZERO).await.unwrap();
        assert_eq!(batch.len(), 40);
        assert_eq!(reader.take_lost(), 0);
    }

    #[tokio::test]
    async fn messages_retention_dropped_before_a_read_are_counted_once() {
        let dir = tempfile::tempdir().unwrap();
        let l = log(dir.path(), Some(10)).await;
        let mut reader = l.reader("g").await.unwrap();
        l.append(records(25)).await.unwrap();
        let batch = reader.poll(100, Duration::ZERO).await.unwrap();
        assert_eq!(batch.first().map(|m| m.offset), Some(15));
        assert_eq!(reader.take_lost(), 15);
        assert_eq!(reader.take_lost(), 0);
        assert_eq!(l.lost("g").await.unwrap(), 15);
        // Noticed again after a restart (nothing was committed): the range
        // is merged, not added twice.
        let mut again = l.reader("g").await.unwrap();
        again.poll(100, Duration::ZERO).await.unwrap();
        assert_eq!(again.take_lost(), 15);
        assert_eq!(l.lost("g").await.unwrap(), 15);
    }
}
