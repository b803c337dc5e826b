//! Bounded looks at the log, for the dashboard and `dlq list`: the newest
//! messages and the dead letters with their key and payload cut to a preview
//! in the read itself (SQLite's `substr`, a bounded copy of a Kafka
//! message), and the whole size alongside. A look at a log of huge messages
//! holds at most one of them whole at a time (SQLite loads a row's value
//! before cutting it), never a page of them.

use super::kafka::KafkaLog;
use super::sqlite::SqliteLog;
use super::{Log, LogError, LogMessage, Origin, Stage, StoredDeadLetter};
use crate::pipeline::embedded;

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

    /// As [`Log::dead_letters`], each key and payload cut to `cut` bytes.
    pub async fn dead_letter_previews(
        &self,
        include_replayed: bool,
        after: Option<i64>,
        limit: usize,
        cut: usize,
    ) -> Result<Vec<LetterPreview>, LogError> {
        match self {
            Log::Sqlite(l) => sqlite_letters(l, include_replayed, after, limit, cut).await,
            Log::Kafka(l) => {
                l.dead_letter_previews(include_replayed, after, limit, cut)
                    .await
            }
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

/// `column` as bytes, cut to `?cut` bytes in SQL (text is cast, so its
/// bytes are counted, not its characters).
fn cut_sql(column: &str, n: usize) -> String {
    format!("substr(CAST({column} AS BLOB), 1, ?{n})")
}

/// `column`'s size in bytes (a blob's from the record header, without
/// reading it).
fn len_sql(column: &str) -> String {
    format!(
        "CASE typeof({column}) WHEN 'blob' THEN length({column}) \
         ELSE length(CAST({column} AS BLOB)) END"
    )
}

async fn sqlite_latest(
    log: &SqliteLog,
    limit: usize,
    cut: usize,
) -> Result<Vec<MessagePreview>, LogError> {
    let table = log.table_name().to_owned();
    let cut = i64::try_from(cut).unwrap_or(i64::MAX);
    embedded::blocking(log.connection(), move |conn| {
        let mut stmt = conn.prepare(&format!(
            "SELECT offset, ts_ms, {key}, {payload}, {bytes} FROM {table}
             ORDER BY offset DESC LIMIT ?1",
            key = cut_sql("key", 2),
            payload = cut_sql("payload", 2),
            bytes = len_sql("payload"),
        ))?;
        let rows = stmt.query_map([limit as i64, cut], |r| {
            Ok(MessagePreview {
                message: LogMessage {
                    partition: 0,
                    offset: r.get(0)?,
                    timestamp_ms: r.get(1)?,
                    key: r.get(2)?,
                    payload: r.get::<_, Option<Vec<u8>>>(3)?.unwrap_or_default(),
                },
                payload_bytes: r.get::<_, i64>(4)?.max(0) as u64,
            })
        })?;
        rows.collect::<Result<Vec<_>, _>>().map_err(LogError::from)
    })
    .await
}

async fn sqlite_letters(
    log: &SqliteLog,
    include_replayed: bool,
    after: Option<i64>,
    limit: usize,
    cut: usize,
) -> Result<Vec<LetterPreview>, LogError> {
    let cut = i64::try_from(cut).unwrap_or(i64::MAX);
    embedded::blocking(log.connection(), move |conn| {
        // Two statements, so the waiting list uses its partial index.
        let filter = if include_replayed {
            ""
        } else {
            "replayed_ms IS NULL AND"
        };
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT id, created_ms, replayed_ms, stage, {reason}, topic, partition, offset,
                    {key}, {payload}, source_position, {bytes}
             FROM dead_letters WHERE {filter} id > ?1 ORDER BY id LIMIT ?2",
            reason = cut_sql("reason", 3),
            key = cut_sql("key", 3),
            payload = cut_sql("payload", 3),
            bytes = len_sql("payload"),
        ))?;
        let rows = stmt.query_map([after.unwrap_or(i64::MIN), limit as i64, cut], |r| {
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
            let reason: Option<Vec<u8>> = r.get(4)?;
            Ok(LetterPreview {
                letter: StoredDeadLetter {
                    id: r.get(0)?,
                    created_ms: r.get(1)?,
                    replayed_ms: r.get(2)?,
                    letter: super::DeadLetter {
                        stage: Stage::parse(&stage).unwrap_or(Stage::Decode),
                        reason: String::from_utf8_lossy(&reason.unwrap_or_default()).into_owned(),
                        origin,
                        source_position: r.get(10)?,
                        key: r.get(8)?,
                        payload: r.get::<_, Option<Vec<u8>>>(9)?.unwrap_or_default(),
                    },
                },
                payload_bytes: r.get::<_, i64>(11)?.max(0) as u64,
            })
        })?;
        rows.collect::<Result<Vec<_>, _>>().map_err(LogError::from)
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
        let l = log.dead_letter_previews(false, None, 10, 16).await.unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].letter.letter.payload.len(), 16);
        assert_eq!(l[0].payload_bytes, 100_000);
        assert_eq!(l[0].to_json()["payload_bytes"], 100_000);
        assert_eq!(l[0].letter.letter.reason, "é".repeat(8));
    }
}
