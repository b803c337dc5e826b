//! The dashboard's message browser: one partition's messages from an offset
//! or a time, a page of older ones before an offset, and a search by key.
//! Every look is bounded: at most `limit` messages come back, each key and
//! payload cut in the read (as in `preview.rs`), and a key search looks at
//! no more than `scan_max` messages, saying how far it got, so the next
//! request goes on from there.

use super::preview::prefix;
use super::sqlite::SqliteLog;
use super::{Log, LogError, LogMessage, MessagePreview};
use crate::embedded;

/// Where a look starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seek {
    /// The newest messages, newest first.
    Latest,
    /// Messages before this offset, newest first (a page further back).
    Before(i64),
    /// Messages at and after this offset, oldest first.
    Offset(i64),
    /// Messages at and after the first one written at or after this time
    /// (ms since the epoch), oldest first.
    Time(i64),
}

/// A look at the log.
#[derive(Debug, Clone)]
pub struct Browse {
    /// One partition; `None` is every partition (only for [`Seek::Latest`]
    /// and [`Seek::Time`] on a topic of more than one).
    pub partition: Option<i32>,
    pub seek: Seek,
    /// Only messages with exactly this key.
    pub key: Option<Vec<u8>>,
    pub limit: usize,
    /// Bytes of each key and payload read.
    pub cut: usize,
    /// A key search looks at this many messages at most.
    pub scan_max: usize,
}

/// What a look found, and where the next one goes on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Browsed {
    pub messages: Vec<MessagePreview>,
    /// Whether the messages are oldest first (a read forward).
    pub forward: bool,
    /// The seek that continues this look, when there may be more: forward
    /// reads go on at `Offset`, backward ones at `Before`.
    pub next: Option<Seek>,
    /// With a key: how many messages were looked at, and whether the search
    /// reached the end (or the start) of the partition.
    pub scanned: u64,
    pub complete: bool,
}

/// Why a look cannot be made as asked.
#[derive(Debug, thiserror::Error)]
pub enum BrowseError {
    /// The request does not fit the log (no such partition, one needed).
    #[error("{0}")]
    Request(String),
    #[error(transparent)]
    Log(#[from] LogError),
}

impl Log {
    /// The look `b` asks for.
    pub async fn browse(&self, b: Browse) -> Result<Browsed, BrowseError> {
        match self {
            Log::Sqlite(l) => sqlite_browse(l, b).await,
            Log::Kafka(l) => l.browse(b).await,
        }
    }
}

/// The embedded log has one partition, 0; its offsets are its rowids.
async fn sqlite_browse(log: &SqliteLog, b: Browse) -> Result<Browsed, BrowseError> {
    if let Some(p) = b.partition.filter(|p| *p != 0) {
        return Err(BrowseError::Request(format!(
            "no partition {p}: the embedded log has one, partition 0"
        )));
    }
    let table = log.table_name().to_owned();
    let found = embedded::blocking(log.connection(), move |conn| -> Result<Browsed, LogError> {
        let tx = conn.transaction()?;
        let (low, high): (Option<i64>, Option<i64>) = tx.query_row(
            &format!("SELECT min(offset), max(offset) FROM {table}"),
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let (Some(low), Some(high)) = (low, high) else {
            return Ok(Browsed {
                complete: true,
                forward: !matches!(b.seek, Seek::Latest | Seek::Before(_)),
                ..Browsed::default()
            });
        };
        let end = high + 1;
        let limit = b.limit as i64;
        let scan = b.scan_max.max(1) as i64;
        // The offsets wanted, and the window a key search covered.
        let (forward, heads, window): (bool, Vec<Head>, Option<(i64, i64)>) = match b.seek {
            Seek::Latest | Seek::Before(_) => {
                let before = match b.seek {
                    Seek::Before(o) => o.min(end),
                    _ => end,
                };
                match &b.key {
                    None => {
                        let heads = query(
                            &tx,
                            &format!(
                                "SELECT offset, ts_ms FROM {table} WHERE offset < ?1
                                 ORDER BY offset DESC LIMIT ?2"
                            ),
                            rusqlite::params![before, limit],
                        )?;
                        (false, heads, None)
                    }
                    Some(key) => {
                        let from = before.saturating_sub(scan).max(low);
                        let heads = query(
                            &tx,
                            &format!(
                                "SELECT offset, ts_ms FROM {table}
                                 WHERE offset < ?1 AND offset >= ?2 AND key = ?3
                                 ORDER BY offset DESC LIMIT ?4"
                            ),
                            rusqlite::params![before, from, key, limit],
                        )?;
                        (false, heads, Some((from, before)))
                    }
                }
            }
            Seek::Offset(_) | Seek::Time(_) => {
                let from = match b.seek {
                    Seek::Offset(o) => o.max(low),
                    Seek::Time(t) => first_at_or_after(&tx, &table, t, low, end)?,
                    _ => unreachable!(),
                };
                match &b.key {
                    None => {
                        let heads = query(
                            &tx,
                            &format!(
                                "SELECT offset, ts_ms FROM {table} WHERE offset >= ?1
                                 ORDER BY offset LIMIT ?2"
                            ),
                            rusqlite::params![from, limit],
                        )?;
                        (true, heads, None)
                    }
                    Some(key) => {
                        let to = from.saturating_add(scan).min(end);
                        let heads = query(
                            &tx,
                            &format!(
                                "SELECT offset, ts_ms FROM {table}
                                 WHERE offset >= ?1 AND offset < ?2 AND key = ?3
                                 ORDER BY offset LIMIT ?4"
                            ),
                            rusqlite::params![from, to, key, limit],
                        )?;
                        (true, heads, Some((from, to)))
                    }
                }
            }
        };
        let mut messages = Vec::with_capacity(heads.len());
        for &(offset, timestamp_ms) in &heads {
            let key = prefix(&tx, &table, "key", offset, b.cut)?.map(|(k, _)| k);
            let (payload, payload_bytes) =
                prefix(&tx, &table, "payload", offset, b.cut)?.unwrap_or_default();
            messages.push(MessagePreview {
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
        let full = heads.len() as i64 >= limit;
        let last = heads.last().map(|h| h.0);
        let (next, scanned, complete) = match (window, forward) {
            // A key search that filled its page stopped at its last match.
            (Some((from, to)), true) => {
                let stop = if full { last.unwrap() + 1 } else { to };
                let done = stop >= end;
                ((!done).then_some(Seek::Offset(stop)), stop - from, done)
            }
            (Some((from, to)), false) => {
                let stop = if full { last.unwrap() } else { from };
                let done = stop <= low;
                ((!done).then_some(Seek::Before(stop)), to - stop, done)
            }
            (None, true) => {
                let next = last.map_or(end, |o| o + 1);
                ((next < end).then_some(Seek::Offset(next)), 0, next >= end)
            }
            (None, false) => {
                let next = last.unwrap_or(low);
                ((next > low).then_some(Seek::Before(next)), 0, next <= low)
            }
        };
        Ok(Browsed {
            messages,
            forward,
            next,
            scanned: scanned.max(0) as u64,
            complete,
        })
    })
    .await?;
    Ok(found)
}

/// A message's offset and timestamp.
type Head = (i64, i64);

fn query(
    tx: &rusqlite::Transaction<'_>,
    sql: &str,
    params: impl rusqlite::Params,
) -> rusqlite::Result<Vec<Head>> {
    tx.prepare(sql)?
        .query_map(params, |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect()
}

/// The first offset in `[low, end)` written at or after `t_ms` (`end` if
/// none): a binary search over offsets, since messages are appended in time
/// order, so a seek reads about log2(n) rows and never scans the table.
fn first_at_or_after(
    tx: &rusqlite::Transaction<'_>,
    table: &str,
    t_ms: i64,
    low: i64,
    end: i64,
) -> rusqlite::Result<i64> {
    let mut stmt = tx.prepare(&format!(
        "SELECT offset, ts_ms FROM {table} WHERE offset >= ?1 ORDER BY offset LIMIT 1"
    ))?;
    let (mut lo, mut hi) = (low, end);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        // Retention leaves no holes in the middle, but a deleted row would
        // simply move the probe to the next one.
        let at: Option<(i64, i64)> = stmt
            .query_row([mid], |r| Ok((r.get(0)?, r.get(1)?)))
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })?;
        match at {
            Some((offset, ts)) if ts < t_ms => lo = offset + 1,
            _ => hi = mid,
        }
    }
    Ok(lo)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::log::{LogConfig, LogRecord, SqliteLogConfig};

    async fn log_of(n: usize) -> (tempfile::TempDir, Log) {
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
        let records = (0..n)
            .map(|i| LogRecord {
                key: Some(format!("k{}", i % 10).into_bytes()),
                payload: format!("{{\"i\":{i}}}").into_bytes(),
            })
            .collect();
        log.append(records).await.unwrap();
        (dir, log)
    }

    fn look(seek: Seek, key: Option<&str>, limit: usize, scan_max: usize) -> Browse {
        Browse {
            partition: None,
            seek,
            key: key.map(|k| k.as_bytes().to_vec()),
            limit,
            cut: 64,
            scan_max,
        }
    }

    fn offsets(b: &Browsed) -> Vec<i64> {
        b.messages.iter().map(|m| m.message.offset).collect()
    }

    #[tokio::test]
    async fn pages_go_forward_from_an_offset_and_back_from_the_end() {
        let (_dir, log) = log_of(25).await;
        let b = log
            .browse(look(Seek::Offset(20), None, 3, 0))
            .await
            .unwrap();
        assert_eq!(offsets(&b), [20, 21, 22]);
        assert!(b.forward);
        assert_eq!(b.next, Some(Seek::Offset(23)));
        let b = log
            .browse(look(Seek::Offset(23), None, 3, 0))
            .await
            .unwrap();
        assert_eq!(offsets(&b), [23, 24]);
        assert_eq!(b.next, None);
        let b = log.browse(look(Seek::Latest, None, 3, 0)).await.unwrap();
        assert_eq!(offsets(&b), [24, 23, 22]);
        assert_eq!(b.next, Some(Seek::Before(22)));
        let b = log.browse(look(Seek::Before(2), None, 3, 0)).await.unwrap();
        assert_eq!(offsets(&b), [1, 0]);
        assert_eq!(b.next, None);
        let e = log
            .browse(Browse {
                partition: Some(1),
                ..look(Seek::Latest, None, 3, 0)
            })
            .await
            .unwrap_err();
        assert!(matches!(e, BrowseError::Request(_)), "{e}");
    }

    #[tokio::test]
    async fn a_key_search_is_bounded_and_says_where_to_go_on() {
        let (_dir, log) = log_of(100).await;
        // Newest first, 30 messages looked at: offsets 70..100, k3 at 73, 83, 93.
        let b = log
            .browse(look(Seek::Latest, Some("k3"), 10, 30))
            .await
            .unwrap();
        assert_eq!(offsets(&b), [93, 83, 73]);
        assert_eq!(b.scanned, 30);
        assert!(!b.complete);
        assert_eq!(b.next, Some(Seek::Before(70)));
        // A full page stops at its last match.
        let b = log
            .browse(look(Seek::Before(70), Some("k3"), 2, 1000))
            .await
            .unwrap();
        assert_eq!(offsets(&b), [63, 53]);
        assert_eq!(b.next, Some(Seek::Before(53)));
        assert_eq!(b.scanned, 17);
        // Forward from an offset, to the end.
        let b = log
            .browse(look(Seek::Offset(90), Some("k1"), 10, 1000))
            .await
            .unwrap();
        assert_eq!(offsets(&b), [91]);
        assert!(b.complete);
        assert_eq!(b.next, None);
        assert_eq!(b.scanned, 10);
        // The key is compared whole.
        let b = log
            .browse(look(Seek::Latest, Some("k"), 10, 1000))
            .await
            .unwrap();
        assert!(b.messages.is_empty() && b.complete, "{b:?}");
    }

    #[tokio::test]
    async fn a_time_seek_finds_the_first_message_at_or_after_it() {
        let (_dir, log) = log_of(5).await;
        let first = log.browse(look(Seek::Offset(0), None, 5, 0)).await.unwrap();
        let t0 = first.messages[0].message.timestamp_ms;
        let b = log.browse(look(Seek::Time(t0), None, 2, 0)).await.unwrap();
        assert_eq!(offsets(&b), [0, 1]);
        // Later than everything: nothing, and nothing to go on with.
        let b = log
            .browse(look(Seek::Time(t0 + 3_600_000), None, 2, 0))
            .await
            .unwrap();
        assert!(b.messages.is_empty() && b.next.is_none(), "{b:?}");
        // A second batch written later is found by its time.
        std::thread::sleep(std::time::Duration::from_millis(5));
        log.append(vec![LogRecord {
            key: None,
            payload: b"{}".to_vec(),
        }])
        .await
        .unwrap();
        let b = log
            .browse(look(Seek::Time(t0 + 1), None, 2, 0))
            .await
            .unwrap();
        let later = first
            .messages
            .iter()
            .filter(|m| m.message.timestamp_ms > t0)
            .count();
        assert_eq!(b.messages[0].message.offset, 5 - later as i64, "{b:?}");
    }
}
