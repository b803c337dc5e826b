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

mod append;
mod letters;
mod offsets;
mod reader;
mod retention;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::Duration;

use rusqlite::{Connection, params};
use tokio::sync::Notify;

pub(super) use letters::discarded;
pub use reader::{SqliteCommitter, SqliteReader};

use super::{LogError, LogMessage, OffsetReset};
use crate::embedded::{self, Shared};

/// The embedded log has one partition per topic.
const PARTITION: i32 = 0;

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

/// The offset the next appended message of the topic will get.
fn next_offset(conn: &Connection, topic_id: i64) -> Result<i64, LogError> {
    Ok(conn.query_row(
        "SELECT next_offset FROM topics WHERE id = ?1",
        [topic_id],
        |r| r.get(0),
    )?)
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
