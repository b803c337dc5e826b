//! Dead letters in the embedded log: stored once (by origin or by
//! fingerprint), counted, listed, looked up by id, and settled.

use rusqlite::params;

use super::{SqliteLog, map_write_err};
use crate::clock::now_ms;
use crate::embedded;
use crate::pipeline::log::{
    DeadLetter, Discarded, Letters, LogError, Origin, Stage, StoredDeadLetter,
};

impl SqliteLog {
    pub async fn dead_letter(&self, letters: Vec<DeadLetter>) -> Result<(), LogError> {
        let written = embedded::blocking(&self.conn, move |conn| {
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
                        .map(|p| crate::pipeline::log::fingerprint(p, &l.payload));
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
        .await;
        self.file.vouch(written, LogError::FileGone)
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
            let (mut out, mut bytes) = (Vec::new(), 0);
            for letter in rows {
                let letter = letter?;
                bytes += letter.letter.payload.len();
                out.push(letter);
                if bytes >= crate::pipeline::log::LETTERS_READ_BYTES {
                    break;
                }
            }
            Ok(out)
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
pub(in crate::pipeline::log) fn discarded(
    at_ms: Option<i64>,
    reason: Option<String>,
) -> Option<Discarded> {
    at_ms.map(|at_ms| Discarded { at_ms, reason })
}
