//! Looking at the newest messages of the topic without joining a group or
//! committing anything (the dashboard's topic view).

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::{KafkaLogConfig, REQUEST_TIMEOUT, kafka_err};
use crate::pipeline::log::preview::cut_copy;
use crate::pipeline::log::{LogError, LogMessage, MessagePreview};

/// How long a peek may wait for the messages it asked for.
const PEEK_TIMEOUT: Duration = Duration::from_secs(5);

/// Up to `limit` of the newest messages over all partitions, newest first.
pub async fn latest(config: &KafkaLogConfig, limit: usize) -> Result<Vec<LogMessage>, LogError> {
    Ok(previews(config, limit, usize::MAX)
        .await?
        .into_iter()
        .map(|p| p.message)
        .collect())
}

/// As [`latest`], each key and payload copied only up to `cut` bytes.
pub async fn previews(
    config: &KafkaLogConfig,
    limit: usize,
    cut: usize,
) -> Result<Vec<MessagePreview>, LogError> {
    let mut client = config.client();
    // A group id is required by librdkafka; nothing is ever committed to it.
    client
        .set("group.id", "tributary-peek")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("queued.max.messages.kbytes", "4096")
        .set("max.partition.fetch.bytes", "1048576");
    let consumer: BaseConsumer = client
        .create()
        .map_err(|e| kafka_err("cannot create the Kafka consumer", e))?;
    let topic = config.topic.clone();
    tokio::task::spawn_blocking(move || {
        let mut tpl = TopicPartitionList::new();
        // Per partition, the offset after which nothing needs reading.
        let mut wanted = Vec::new();
        for p in super::reader::partitions(&consumer, &topic)? {
            let (low, high) = consumer
                .fetch_watermarks(&topic, p, REQUEST_TIMEOUT)
                .map_err(|e| kafka_err("cannot read watermarks", e))?;
            if high > low {
                let from = (high - limit as i64).max(low);
                tpl.add_partition_offset(&topic, p, Offset::Offset(from))
                    .map_err(|e| kafka_err("cannot assign a partition", e))?;
                wanted.push((p, high));
            }
        }
        let mut out = Vec::new();
        if wanted.is_empty() {
            return Ok(out);
        }
        consumer
            .assign(&tpl)
            .map_err(|e| kafka_err("cannot assign partitions", e))?;
        let deadline = Instant::now() + PEEK_TIMEOUT;
        while !wanted.is_empty() && Instant::now() < deadline {
            let Some(m) = consumer.poll(Duration::from_millis(200)) else {
                continue;
            };
            let m = m.map_err(|e| kafka_err("cannot read the topic", e))?;
            if let Some(i) = wanted.iter().position(|(p, _)| *p == m.partition())
                && m.offset() + 1 >= wanted[i].1
            {
                wanted.swap_remove(i);
            }
            let payload = m.payload().unwrap_or_default();
            out.push(MessagePreview {
                message: LogMessage {
                    partition: m.partition(),
                    offset: m.offset(),
                    timestamp_ms: m.timestamp().to_millis().unwrap_or(0),
                    key: m.key().map(|k| cut_copy(k, cut)),
                    payload: cut_copy(payload, cut),
                },
                payload_bytes: payload.len() as u64,
            });
        }
        out.sort_by(|a, b| {
            let (a, b) = (&a.message, &b.message);
            (b.timestamp_ms, b.offset, b.partition).cmp(&(a.timestamp_ms, a.offset, a.partition))
        });
        out.truncate(limit);
        Ok(out)
    })
    .await
    .expect("peek task panicked")
}
