//! Appending to a topic of the embedded log: offsets handed out under the
//! write lock, so several processes appending to one file never collide.

use rusqlite::params;

use super::{SqliteLog, map_write_err};
use crate::clock::now_ms;
use crate::embedded;
use crate::pipeline::log::{AppendAck, LogError, LogRecord};

impl SqliteLog {
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
        .await;
        // Only now, after the commit: a file deleted at any moment before
        // it took these messages with it.
        let first_offset = self.file.vouch(first_offset, LogError::FileGone)?;
        self.appended.notify_waiters();
        self.enforce_retention().await?;
        Ok(AppendAck {
            first_offset,
            count,
        })
    }
}
