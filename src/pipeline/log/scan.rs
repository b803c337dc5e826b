//! Reading every message the log retains, all partitions, from the earliest
//! offset to the end each partition had when the scan began: no group is
//! joined, no position read or committed (`tributary verify`).

use super::kafka::KafkaScan;
use super::{Log, LogError, LogMessage, SqliteLog};

/// One partition's range when the scan began: the earliest retained offset
/// and the end (the offset the next message gets). `low == end` when the
/// partition holds nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionRange {
    pub partition: i32,
    pub low: i64,
    pub end: i64,
}

/// A cursor over the whole log; see the module doc.
#[derive(Debug)]
pub enum LogScan {
    Sqlite {
        log: SqliteLog,
        range: PartitionRange,
        /// The next offset to read.
        next: i64,
    },
    Kafka(KafkaScan),
}

impl LogScan {
    /// Takes each partition's range now; messages appended later are not
    /// read.
    pub async fn open(log: &Log) -> Result<LogScan, LogError> {
        Ok(match log {
            Log::Sqlite(l) => {
                // The group is only named to learn the end; nothing of it
                // is read or written.
                let end = l
                    .lag("tributary-verify")
                    .await?
                    .first()
                    .map_or(0, |p| p.end);
                let low = l
                    .read_range(0, end, 1)
                    .await?
                    .first()
                    .map_or(end, |m| m.offset);
                let range = PartitionRange {
                    partition: 0,
                    low,
                    end,
                };
                LogScan::Sqlite {
                    log: l.clone(),
                    range,
                    next: low,
                }
            }
            Log::Kafka(l) => LogScan::Kafka(KafkaScan::open(l.config()).await?),
        })
    }

    /// Every partition's range, in partition order.
    pub fn ranges(&self) -> Vec<PartitionRange> {
        match self {
            LogScan::Sqlite { range, .. } => vec![*range],
            LogScan::Kafka(s) => s.ranges().to_vec(),
        }
    }

    /// Up to `max` messages, in offset order per partition; empty once every
    /// partition has been read to its end.
    pub async fn next(&mut self, max: usize) -> Result<Vec<LogMessage>, LogError> {
        match self {
            LogScan::Sqlite { log, range, next } => {
                if *next >= range.end {
                    return Ok(Vec::new());
                }
                let batch = log.read_range(*next, range.end, max).await?;
                *next = batch.last().map_or(range.end, |m| m.offset + 1);
                Ok(batch)
            }
            LogScan::Kafka(s) => s.next(max).await,
        }
    }
}
