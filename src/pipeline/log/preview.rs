//! Bounded looks at the log, for the dashboard and `dlq list`: the newest
//! messages and the dead letters with their key and payload cut to a preview
//! in the read itself (SQLite's incremental blob reads, which touch only the
//! first pages of a value; a bounded copy of a Kafka message), and the whole
//! size alongside. A look at a log of huge messages never holds one whole.

use super::kafka::KafkaLog;
use super::sqlite::SqliteLog;
use super::{Letters, Log, LogError, LogMessage, Origin, Stage, StoredDeadLetter};
use crate::embedded;

/// A message with its key and payload cut to at most the preview's size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessagePreview {
    pub message: LogMessage,
    /// The whole payload's size in bytes.
    pub payload_bytes: u64,
}

/// A dead letter with its key and payload cut to at most the preview's size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LetterPreview {
    pub letter: StoredDeadLetter,
    /// The whole payload's size in bytes (on Kafka, before the letter was
    /// cut to fit the broker, when it was).
    pub payload_bytes: u64,
}

impl LetterPreview {
    /// As [`StoredDeadLetter::to_json`], with the whole size.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = self.letter.to_json(usize::MAX);
        v["payload_bytes"] = self.payload_bytes.into();
        v
    }
}

/// `bytes` cut to `cut` bytes, copying only what is kept.
pub fn cut_copy(bytes: &[u8], cut: usize) -> Vec<u8> {
    bytes[..bytes.len().min(cut)].to_vec()
}

impl Log {
    /// Up to `limit` of the newest messages, newest first, each key and
    /// payload cut to `cut` bytes; reads no group's position.
    pub async fn latest_previews(
        &self,
        limit: usize,
        cut: usize,
    ) -> Result<Vec<MessagePreview>, LogError> {
        match self {
            Log::Sqlite(l) => sqlite_latest(l, limit, cut).await,
            Log::Kafka(l) => kafka_latest(l, limit, cut).await,
        }
    }

    /// As [`Log::dead_letters_in`], each key and payload cut to `cut` bytes.
    pub async fn dead_letter_previews(
        &self,
        which: Letters,
        after: Option<i64>,
        limit: usize,
        cut: usize,
    ) -> Result<Vec<LetterPreview>, LogError> {
        match self {
            Log::Sqlite(l) => sqlite_letters(l, which, after, limit, cut).await,
            Log::Kafka(l) => l.dead_letter_previews(which, after, limit, cut).await,
        }
    }
}

async fn kafka_latest(
    log: &KafkaLog,
    limit: usize,
    cut: usize,
) -> Result<Vec<MessagePreview>, LogError> {
    log.latest_previews(limit, cut).await
}

/// The first `cut` bytes of a text or blob value, read without loading the
/// rest, and its whole size; `None` for a null.
pub(super) fn prefix(
    conn: &rusqlite::Connection,
    table: &str,
    column: &str,
    rowid: i64,
    cut: usize,
) -> rusqlite::Result<Option<(Vec<u8>, u64)>> {
    let null: bool = conn.query_row(
        &format!("SELECT {column} IS NULL FROM {table} WHERE rowid = ?1"),
        [rowid],
        |r| r.get(0),
    )?;
    if null {
        return Ok(None);
    }
    let blob = conn.blob_open(rusqlite::MAIN_DB, table, column, rowid, true)?;
    let mut bytes = vec![0; blob.len().min(cut)];
    blob.read_at_exact(&mut bytes, 0)?;
    Ok(Some((bytes, blob.len() as u64)))
}

async fn sqlite_latest(
    log: &SqliteLog,
    limit: usize,
    cut: usize,
) -> Result<Vec<MessagePreview>, LogError> {
    let table = log.table_name().to_owned();
    embedded::blocking(log.connection(), move |conn| {
        // One snapshot: retention deleting between the two reads changes
        // nothing.
        let tx = conn.transaction()?;
        let heads: Vec<(i64, i64)> = tx
            .prepare(&format!(
                "SELECT offset, ts_ms FROM {table} ORDER BY offset DESC LIMIT ?1"
            ))?
            .query_map([limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let mut out = Vec::with_capacity(heads.len());
        for (offset, timestamp_ms) in heads {
            // The offset is the rowid.
            let key = prefix(&tx, &table, "key", offset, cut)?.map(|(k, _)| k);
            let (payload, payload_bytes) =
                prefix(&tx, &table, "payload", offset, cut)?.unwrap_or_default();
            out.push(MessagePreview {
                message: LogMessage {
                    partition: 0,
                    offset,
                    timestamp_ms,
                    key,
                    payload,
                },
                payload_bytes,
            });
        }
        Ok(out)
    })
    .await
}

async fn sqlite_letters(
    log: &SqliteLog,
    which: Letters,
    after: Option<i64>,
    limit: usize,
    cut: usize,
) -> Result<Vec<LetterPreview>, LogError> {
    embedded::blocking(log.connection(), move |conn| {
        let tx = conn.transaction()?;
        // One statement each, so the waiting list uses its partial index.
        let filter = which.sql_filter();
        let heads: Vec<_> = tx
            .prepare_cached(&format!(
                "SELECT id, created_ms, replayed_ms, stage, topic, partition, offset,
                        source_position, discarded_ms, discard_reason
                 FROM dead_letters WHERE {filter} id > ?1 ORDER BY id LIMIT ?2"
            ))?
            .query_map([after.unwrap_or(i64::MIN), limit as i64], |r| {
                let topic: Option<String> = r.get(4)?;
                let origin = match topic {
                    Some(topic) => Some(Origin {
                        topic,
                        partition: r.get(5)?,
                        offset: r.get(6)?,
                    }),
                    None => None,
                };
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                    r.get::<_, String>(3)?,
                    origin,
                    r.get::<_, Option<String>>(7)?,
                    super::sqlite::discarded(r.get(8)?, r.get(9)?),
                ))
            })?
            .collect::<Result<_, _>>()?;
        let mut out = Vec::with_capacity(heads.len());
        for (id, created_ms, replayed_ms, stage, origin, source_position, discarded) in heads {
            // The id is the rowid.
            let reason = prefix(&tx, "dead_letters", "reason", id, cut)?
                .map(|(r, _)| String::from_utf8_lossy(&r).into_owned())
                .unwrap_or_default();
            let key = prefix(&tx, "dead_letters", "key", id, cut)?.map(|(k, _)| k);
            let (payload, payload_bytes) =
                prefix(&tx, "dead_letters", "payload", id, cut)?.unwrap_or_default();
            out.push(LetterPreview {
                letter: StoredDeadLetter {
                    id,
                    created_ms,
                    replayed_ms,
                    discarded,
                    letter: super::DeadLetter {
                        stage: Stage::parse(&stage).unwrap_or(Stage::Decode),
                        reason,
                        origin,
                        source_position,
                        key,
                        payload,
                    },
                },
                payload_bytes,
            });
        }
        Ok(out)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::log::{DeadLetter, LogConfig, LogRecord, SqliteLogConfig};

    #[tokio::test]
    async fn previews_are_cut_in_the_read_and_keep_the_whole_size() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(&LogConfig::Sqlite(SqliteLogConfig {
            path: dir.path().join("log.db"),
            topic: "t".into(),
            retention_messages: None,
            retention_age: None,
            durable_fsync: false,
            offset_reset: Default::default(),
        }))
        .await
        .unwrap();
        let big = vec![b'x'; 100_000];
        log.append(vec![LogRecord {
            key: Some(b"k".repeat(50)),
            payload: big.clone(),
        }])
        .await
        .unwrap();
        let m = log.latest_previews(10, 16).await.unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].message.payload, vec![b'x'; 16]);
        assert_eq!(m[0].message.key.as_deref(), Some(&b"k".repeat(16)[..]));
        assert_eq!(m[0].payload_bytes, 100_000);
        log.dead_letter(vec![DeadLetter {
            stage: Stage::Decode,
            reason: "é".repeat(100),
            origin: Some(Origin {
                topic: "t".into(),
                partition: 0,
                offset: 0,
            }),
            source_position: None,
            key: None,
            payload: big,
        }])
        .await
        .unwrap();
        let l = log
            .dead_letter_previews(Letters::Waiting, None, 10, 16)
            .await
            .unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].letter.letter.payload.len(), 16);
        assert_eq!(l[0].payload_bytes, 100_000);
        assert_eq!(l[0].to_json()["payload_bytes"], 100_000);
        assert_eq!(l[0].letter.letter.reason, "é".repeat(8));
    }
}
