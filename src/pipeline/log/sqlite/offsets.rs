//! The offsets file beside the embedded log, `<file>.offsets`: each group's
//! commit (with the log's identity and the mark of the message before it)
//! and the ranges retention dropped before the group read them.

use std::path::PathBuf;

use rusqlite::{Connection, OptionalExtension, params};

use super::{PARTITION, SqliteLog, SqliteLogConfig, add_column};
use crate::embedded;
use crate::pipeline::log::{LogError, PartitionLag};

/// Consumer-group offsets live in a file of their own beside the log, so
/// the processor's commits never wait for the ingester's appends (nor the
/// other way round): one writer per file.
pub(super) fn offsets_path(config: &SqliteLogConfig) -> PathBuf {
    let mut name = config.path.file_name().unwrap_or_default().to_os_string();
    name.push(".offsets");
    config.path.with_file_name(name)
}

pub(super) fn open_offsets(config: &SqliteLogConfig) -> Result<Connection, LogError> {
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

/// A group's commit: the next offset, and the log it was committed against
/// (`None` for commits older than log identities).
pub(super) struct Committed {
    pub(super) next_offset: i64,
    pub(super) log_id: Option<String>,
    /// The mark of the message before `next_offset` (see [`crate::pipeline::log::mark`]).
    pub(super) mark: Option<String>,
}

pub(super) fn committed_offset(
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

impl SqliteLog {
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
}
