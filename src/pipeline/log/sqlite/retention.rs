//! Retention of the embedded log: messages beyond the count limit, or
//! older than the age limit, are dropped after appends.

use std::sync::atomic::Ordering;
use std::time::Duration;

use rusqlite::OptionalExtension;
use tracing::info;

use super::{SqliteLog, map_write_err};
use crate::clock::now_ms;
use crate::embedded;
use crate::pipeline::log::LogError;

/// How often age-based retention runs, at most.
const RETENTION_EVERY: Duration = Duration::from_secs(30);

impl SqliteLog {
    /// Drops messages beyond the count limit (every call) and past the age
    /// limit (at most every [`RETENTION_EVERY`]). Only appends run it:
    /// opening the log to look at it (`status`, `verify`) changes nothing.
    pub(super) async fn enforce_retention(&self) -> Result<(), LogError> {
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
}

/// Messages stamped before this are older than `age`. Saturates: an age
/// longer than the clock's history keeps everything.
pub(super) fn retention_cutoff(now_ms: i64, age: Duration) -> i64 {
    now_ms.saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX))
}
