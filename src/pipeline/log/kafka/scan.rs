//! Reading every retained message of the topic, all partitions, from the
//! earliest offset to the end each partition had when the scan began, with
//! assigned partitions: no group is joined and nothing is committed
//! (`tributary verify`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tracing::warn;

use super::{KafkaLogConfig, REQUEST_TIMEOUT, kafka_err};
use crate::pipeline::log::scan::PartitionRange;
use crate::pipeline::log::{LogError, LogMessage};

/// How long a scan may go without reading anything before it fails (the
/// brokers are gone, or a partition cannot be read).
const STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// A cursor over the whole topic; see the module doc.
pub struct KafkaScan {
    consumer: Arc<BaseConsumer>,
    topic: String,
    ranges: Vec<PartitionRange>,
    /// Partitions not read to their end yet, with that end.
    remaining: BTreeMap<i32, i64>,
}

impl std::fmt::Debug for KafkaScan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaScan")
            .field("topic", &self.topic)
            .field("ranges", &self.ranges)
            .finish()
    }
}

impl KafkaScan {
    /// Reads the watermarks of every partition and assigns the non-empty
    /// ones from their earliest offset.
    pub async fn open(config: &KafkaLogConfig) -> Result<KafkaScan, LogError> {
        let mut client = config.client();
        // librdkafka wants a group id even for assigned partitions; this one
        // is never joined and never committed to.
        client
            .set(
                "group.id",
                format!("tributary-verify-{}", uuid::Uuid::new_v4()),
            )
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // Retention may drop the oldest messages while the scan runs:
            // carry on from the new earliest one.
            .set("auto.offset.reset", "earliest")
            // Bounded memory: at most 8 MiB pre-fetched, 1 MiB per
            // partition per fetch (half the processor's: the scan
            // is bound by hashing and indexing, not by fetching).
            .set("queued.max.messages.kbytes", "8192")
            .set("fetch.max.bytes", config.fetch_max_bytes(4 << 20))
            .set("max.partition.fetch.bytes", "1048576");
        for (k, v) in &config.properties {
            client.set(k, v);
        }
        let consumer: BaseConsumer = client
            .create()
            .map_err(|e| kafka_err("cannot create the Kafka consumer", e))?;
        let consumer = Arc::new(consumer);
        let topic = config.topic.clone();
        let (c, t) = (consumer.clone(), topic.clone());
        let ranges = tokio::task::spawn_blocking(move || {
            let mut ranges = Vec::new();
            let mut tpl = TopicPartitionList::new();
            for p in super::reader::partitions(c.as_ref(), &t)? {
                let (low, high) = c
                    .fetch_watermarks(&t, p, REQUEST_TIMEOUT)
                    .map_err(|e| kafka_err("cannot read watermarks", e))?;
                ranges.push(PartitionRange {
                    partition: p,
                    low,
                    end: high,
                });
                if high > low {
                    tpl.add_partition_offset(&t, p, Offset::Offset(low))
                        .map_err(|e| kafka_err("cannot assign a partition", e))?;
                }
            }
            if tpl.count() > 0 {
                c.assign(&tpl)
                    .map_err(|e| kafka_err("cannot assign partitions", e))?;
            }
            ranges.sort_by_key(|r: &PartitionRange| r.partition);
            Ok::<_, LogError>(ranges)
        })
        .await
        .expect("scan task panicked")?;
        let remaining = ranges
            .iter()
            .filter(|r| r.end > r.low)
            .map(|r| (r.partition, r.end))
            .collect();
        Ok(KafkaScan {
            consumer,
            topic,
            ranges,
            remaining,
        })
    }

    pub fn ranges(&self) -> &[PartitionRange] {
        &self.ranges
    }

    /// Up to `max` messages; an empty batch means every partition has been
    /// read to its end.
    pub async fn next(&mut self, max: usize) -> Result<Vec<LogMessage>, LogError> {
        if self.remaining.is_empty() {
            return Ok(Vec::new());
        }
        let consumer = self.consumer.clone();
        let topic = self.topic.clone();
        let mut remaining = std::mem::take(&mut self.remaining);
        let (batch, remaining) = tokio::task::spawn_blocking(move || {
            let read = read_batch(&consumer, &topic, &mut remaining, max);
            (read, remaining)
        })
        .await
        .expect("scan task panicked");
        self.remaining = remaining;
        batch
    }
}

/// Polls until `max` messages, the end of every partition, or a stall.
fn read_batch(
    consumer: &BaseConsumer,
    topic: &str,
    remaining: &mut BTreeMap<i32, i64>,
    max: usize,
) -> Result<Vec<LogMessage>, LogError> {
    let mut batch = Vec::new();
    let mut last_progress = Instant::now();
    let mut errors = 0u64;
    while batch.len() < max && !remaining.is_empty() {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let p = m.partition();
                let Some(&end) = remaining.get(&p) else {
                    continue;
                };
                last_progress = Instant::now();
                if m.offset() < end {
                    batch.push(LogMessage {
                        partition: p,
                        offset: m.offset(),
                        timestamp_ms: m.timestamp().to_millis().unwrap_or_default(),
                        key: m.key().map(<[u8]>::to_vec),
                        payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                    });
                }
                if m.offset() + 1 >= end {
                    finish(consumer, topic, remaining, p);
                }
            }
            Some(Err(e)) => {
                if errors == 0 {
                    warn!(error = %e, "kafka: reading the topic is waiting for the brokers");
                }
                errors += 1;
            }
            None => {
                // Nothing arrived: a partition whose last offsets are not
                // messages (transaction markers) is at its end when the
                // consumer's position is.
                if let Ok(positions) = consumer.position() {
                    for el in positions.elements_for_topic(topic) {
                        let p = el.partition();
                        let at = el.offset().to_raw().unwrap_or(-1);
                        if remaining.get(&p).is_some_and(|&end| at >= end) {
                            finish(consumer, topic, remaining, p);
                        }
                    }
                }
            }
        }
        if !batch.is_empty() && last_progress.elapsed() >= Duration::from_millis(200) {
            break;
        }
        if last_progress.elapsed() >= STALL_TIMEOUT {
            let left: Vec<String> = remaining.keys().map(i32::to_string).collect();
            return Err(LogError::Kafka(format!(
                "reading {topic} made no progress for {}s (partitions {} not read to their end)",
                STALL_TIMEOUT.as_secs(),
                left.join(", ")
            )));
        }
    }
    Ok(batch)
}

/// Marks a partition read to its end and stops fetching it.
fn finish(consumer: &BaseConsumer, topic: &str, remaining: &mut BTreeMap<i32, i64>, p: i32) {
    remaining.remove(&p);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, p);
    let _ = consumer.pause(&tpl);
}
