//! The message browser on Kafka (see `log/browse.rs`): a range of one
//! partition read without a group, by assignment; a time found with the
//! broker's time index (`offsetsForTimes`). A key search reads at most
//! `scan_max` messages and copies only the matches, cut.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::{KafkaLog, KafkaLogConfig, REQUEST_TIMEOUT, kafka_err};
use crate::pipeline::log::browse::{Browse, BrowseError, Browsed, Seek};
use crate::pipeline::log::preview::cut_copy;
use crate::pipeline::log::{LogError, LogMessage, MessagePreview};

/// How long one look may take to read its range.
const BROWSE_TIMEOUT: Duration = Duration::from_secs(10);

impl KafkaLog {
    /// The look `b` asks for (see [`crate::pipeline::log::Log::browse`]).
    pub async fn browse(&self, b: Browse) -> Result<Browsed, BrowseError> {
        let config = self.config.clone();
        tokio::task::spawn_blocking(move || browse(&config, b))
            .await
            .expect("browse task panicked")
    }
}

fn consumer(config: &KafkaLogConfig) -> Result<BaseConsumer, LogError> {
    let mut client = config.client();
    // A group id is required by librdkafka; nothing is ever committed to it.
    client
        .set("group.id", "tributary-browse")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("queued.max.messages.kbytes", "4096")
        .set("max.partition.fetch.bytes", "1048576");
    client
        .create()
        .map_err(|e| kafka_err("cannot create the Kafka consumer", e))
}

fn browse(config: &KafkaLogConfig, b: Browse) -> Result<Browsed, BrowseError> {
    let consumer = consumer(config)?;
    let topic = &config.topic;
    let partitions = super::reader::partitions(&consumer, topic)?;
    let chosen: Vec<i32> = match b.partition {
        Some(p) if partitions.contains(&p) => vec![p],
        Some(p) => {
            return Err(BrowseError::Request(format!(
                "no partition {p}: topic {topic} has {}",
                partitions.len()
            )));
        }
        None if partitions.len() == 1 => partitions,
        None if b.key.is_none() && matches!(b.seek, Seek::Latest | Seek::Time(_)) => partitions,
        None => {
            return Err(BrowseError::Request(format!(
                "pick a partition: topic {topic} has {}",
                partitions.len()
            )));
        }
    };
    if chosen.len() == 1 {
        return one_partition(&consumer, topic, chosen[0], &b);
    }
    // Every partition: each one's page, merged by time.
    let mut all = Browsed {
        forward: b.seek != Seek::Latest,
        complete: true,
        ..Browsed::default()
    };
    for p in chosen {
        let part = one_partition(&consumer, topic, p, &b)?;
        all.messages.extend(part.messages);
    }
    all.messages.sort_by_key(|m| {
        let m = &m.message;
        (m.timestamp_ms, m.partition, m.offset)
    });
    if !all.forward {
        all.messages.reverse();
    }
    all.messages.truncate(b.limit);
    Ok(all)
}

fn one_partition(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    b: &Browse,
) -> Result<Browsed, BrowseError> {
    let (low, high) = consumer
        .fetch_watermarks(topic, partition, REQUEST_TIMEOUT)
        .map_err(|e| kafka_err("cannot read watermarks", e))?;
    let limit = b.limit as i64;
    let scan = b.scan_max.max(1) as i64;
    let forward = !matches!(b.seek, Seek::Latest | Seek::Before(_));
    let (from, to) = match b.seek {
        Seek::Latest | Seek::Before(_) => {
            let to = match b.seek {
                Seek::Before(o) => o.clamp(low, high),
                _ => high,
            };
            let width = if b.key.is_some() { scan } else { limit };
            (to.saturating_sub(width).max(low), to)
        }
        Seek::Offset(_) | Seek::Time(_) => {
            let from = match b.seek {
                Seek::Offset(o) => o.clamp(low, high),
                Seek::Time(t) => time_offset(consumer, topic, partition, t, high)?.clamp(low, high),
                _ => unreachable!(),
            };
            let width = if b.key.is_some() { scan } else { limit };
            (from, from.saturating_add(width).min(high))
        }
    };
    // Forward, a key search stops at its page's last match; backward it
    // keeps the newest `limit` matches of the window.
    let mut kept: VecDeque<MessagePreview> = VecDeque::new();
    let mut stopped_at = None;
    read_range(consumer, topic, partition, from, to, |m| {
        if b.key.as_deref().is_some_and(|k| m.key() != Some(k)) {
            return true;
        }
        let payload = m.payload().unwrap_or_default();
        kept.push_back(MessagePreview {
            message: LogMessage {
                partition,
                offset: m.offset(),
                timestamp_ms: m.timestamp().to_millis().unwrap_or(0),
                key: m.key().map(|k| cut_copy(k, b.cut)),
                payload: cut_copy(payload, b.cut),
            },
            payload_bytes: payload.len() as u64,
        });
        if kept.len() as i64 > limit {
            kept.pop_front();
        }
        if forward && kept.len() as i64 >= limit {
            stopped_at = Some(m.offset() + 1);
            return false;
        }
        true
    })?;
    let mut messages: Vec<MessagePreview> = kept.into();
    let searched = b.key.is_some();
    let (next, scanned, complete) = if forward {
        let stop = stopped_at.unwrap_or(to);
        let done = stop >= high;
        ((!done).then_some(Seek::Offset(stop)), stop - from, done)
    } else {
        let full = searched && messages.len() as i64 >= limit;
        let stop = if full {
            messages[0].message.offset
        } else {
            from
        };
        let done = stop <= low;
        ((!done).then_some(Seek::Before(stop)), to - stop, done)
    };
    if !forward {
        messages.reverse();
    }
    Ok(Browsed {
        messages,
        forward,
        next,
        scanned: if searched { scanned.max(0) as u64 } else { 0 },
        complete,
    })
}

/// The first offset written at or after `t_ms` (`high` if none).
fn time_offset(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    t_ms: i64,
    high: i64,
) -> Result<i64, LogError> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(t_ms))
        .map_err(|e| kafka_err("cannot ask for a time", e))?;
    let found = consumer
        .offsets_for_times(tpl, REQUEST_TIMEOUT)
        .map_err(|e| kafka_err("cannot find offsets for a time", e))?;
    Ok(found
        .find_partition(topic, partition)
        .and_then(|e| match e.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        })
        .unwrap_or(high))
}

/// Reads `[from, to)` of one partition, each message to `f` until it says
/// stop; fails when the broker does not deliver the range in time.
fn read_range(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    from: i64,
    to: i64,
    mut f: impl FnMut(&rdkafka::message::BorrowedMessage<'_>) -> bool,
) -> Result<(), LogError> {
    if from >= to {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(from))
        .map_err(|e| kafka_err("cannot assign a partition", e))?;
    consumer
        .assign(&tpl)
        .map_err(|e| kafka_err("cannot assign partitions", e))?;
    let deadline = Instant::now() + BROWSE_TIMEOUT;
    loop {
        if Instant::now() >= deadline {
            return Err(LogError::Kafka(format!(
                "partition {partition} did not deliver offsets {from}..{to} within {}s",
                BROWSE_TIMEOUT.as_secs()
            )));
        }
        let Some(m) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m.map_err(|e| kafka_err("cannot read the topic", e))?;
        if m.partition() != partition || m.offset() < from {
            continue;
        }
        if m.offset() >= to {
            return Ok(());
        }
        let last = m.offset() + 1 >= to;
        if !f(&m) || last {
            return Ok(());
        }
    }
}
