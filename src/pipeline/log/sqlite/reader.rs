//! A group's reader of the embedded log and its committer: where a reader
//! starts (a commit trusted only when it fits this log), polling, losses
//! to retention noticed and noted, commits into the offsets file.

use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::Notify;
use tracing::warn;

use super::offsets::{Committed, committed_offset, offsets_path, open_offsets};
use super::{PARTITION, SqliteLog, map_write_err, message, next_offset, open_conn};
use crate::clock::now_ms;
use crate::embedded::{self, Shared};
use crate::pipeline::log::{Checkpoint, LogError, LogMessage, ResetAt};

/// How often a reader with nothing to read looks again for messages that
/// another process appended (appends in this process wake it at once).
const POLL_INTERVAL: Duration = Duration::from_millis(50);

impl SqliteLog {
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

/// A group's cursor over one topic of the embedded log.
#[derive(Debug)]
pub struct SqliteReader {
    conn: Shared,
    /// The offsets file (see [`super::offsets::offsets_path`]).
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
        let written = embedded::blocking(&self.conn, move |conn| {
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
        .await;
        self.file.vouch(written, LogError::FileGone)
    }
}
