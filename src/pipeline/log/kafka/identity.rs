//! Whether a consumer group's committed offsets still belong to the topic:
//! every commit carries, as its metadata, a mark of the last message it
//! covers (its timestamp and a hash of its key and payload). Before the
//! reader joins the group, each partition's commit is checked against the
//! topic as it is now:
//!
//! - the message before the committed offset is still there with the same
//!   mark: trusted;
//! - it is there with another mark, or the offset is past the end: the topic
//!   was deleted and created again, and the group goes where
//!   `[log] offset_reset` says;
//! - retention has passed the committed offset: the messages in between are
//!   lost, counted and reported (librdkafka then starts at the first one
//!   left).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tracing::warn;

use super::{KafkaLogConfig, REQUEST_TIMEOUT, kafka_err};
use crate::pipeline::log::{LogError, MARK_PREFIX, OffsetReset, ResetAt, mark};

/// How long the check waits for the one message it reads per partition.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the check tries to read the group's commits: a broker that has
/// just started answers "coordinator not available" for a while.
const COMMITS_TIMEOUT: Duration = Duration::from_secs(30);

/// What the check found, over all partitions.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GroupCheck {
    /// Messages retention dropped between a commit and the first message
    /// left.
    pub lost: u64,
    /// Partitions whose commit belonged to an earlier topic of this name.
    pub reset: Vec<i32>,
    /// The topic existed (had partitions) when the check ran.
    pub topic_found: bool,
}

/// Checks `group`'s commits on the topic and moves the ones that belong to
/// an earlier topic by `policy`. Runs before the group's reader subscribes;
/// a reset is committed while no member of the group is active (a running
/// member keeps its own position, and the reset is then only a warning).
pub async fn check_group(
    config: &KafkaLogConfig,
    group: &str,
    policy: OffsetReset,
) -> Result<GroupCheck, LogError> {
    let consumer: BaseConsumer = super::reader::lag_client(config, group)?;
    let topic = config.topic.clone();
    let group = group.to_owned();
    tokio::task::spawn_blocking(move || check_blocking(&consumer, &topic, &group, policy))
        .await
        .expect("group check task panicked")
}

fn check_blocking(
    consumer: &BaseConsumer,
    topic: &str,
    group: &str,
    policy: OffsetReset,
) -> Result<GroupCheck, LogError> {
    let partitions = super::reader::partitions(consumer, topic)?;
    if partitions.is_empty() {
        return Ok(GroupCheck::default());
    }
    let mut tpl = TopicPartitionList::new();
    for &p in &partitions {
        tpl.add_partition(topic, p);
    }
    // Any error is asked again: the reader itself waits for the coordinator,
    // so past the deadline only the check is skipped, and said so.
    let committed = match super::reader::committed_waiting(consumer, tpl, COMMITS_TIMEOUT, |_| true)
    {
        Ok(c) => c,
        Err(e) => {
            warn!(
                topic,
                group,
                error = %e,
                "cannot read the group's commits to check them against the topic; reading \
                 from them unchecked"
            );
            return Ok(GroupCheck::default());
        }
    };
    let mut found = GroupCheck {
        topic_found: true,
        ..GroupCheck::default()
    };
    let mut resets: BTreeMap<i32, i64> = BTreeMap::new();
    // Where a new group starts, committed before it joins (see below).
    let mut starts: BTreeMap<i32, i64> = BTreeMap::new();
    for p in partitions {
        let Some(elem) = committed.find_partition(topic, p) else {
            continue;
        };
        let Some(next) = elem.offset().to_raw().filter(|o| *o >= 0) else {
            // Never committed: a new group starts at the beginning. Left to
            // librdkafka, a partition without a commit is fetched only after
            // a fixed 100 ms backoff, so the start is committed here: the
            // same offset, and the first row is stored sooner.
            if policy == OffsetReset::Earliest {
                let (low, _) = consumer
                    .fetch_watermarks(topic, p, REQUEST_TIMEOUT)
                    .map_err(|e| kafka_err("cannot read watermarks", e))?;
                starts.insert(p, low);
            }
            continue;
        };
        let metadata = elem.metadata().to_owned();
        let (low, high) = consumer
            .fetch_watermarks(topic, p, REQUEST_TIMEOUT)
            .map_err(|e| kafka_err("cannot read watermarks", e))?;
        let replaced = if next > high {
            Some(format!(
                "the committed offset {next} is past the partition's end {high}"
            ))
        } else if next > low && metadata.starts_with(MARK_PREFIX) {
            match read_one(consumer, topic, p, next - 1)? {
                Some(seen) if seen == metadata => None,
                Some(seen) => Some(format!(
                    "the message before the committed offset {next} is not the one the group \
                     read (committed after [{metadata}], found [{seen}])"
                )),
                None => Some(format!(
                    "the message before the committed offset {next} cannot be read"
                )),
            }
        } else {
            None
        };
        if let Some(why) = replaced {
            let at = ResetAt {
                topic,
                group,
                partition: p,
                committed: next,
            };
            let why = format!("{why}: the topic was deleted and created again");
            let to = policy.apply(at, &why, low, high)?;
            resets.insert(p, to);
            found.reset.push(p);
        } else if next < low {
            let lost = (low - next) as u64;
            warn!(
                topic,
                group,
                partition = p,
                from = next,
                to = low,
                lost,
                "messages {next}..{low} were dropped by retention before this group read them: \
                 they are lost (keep them longer with the topic's retention.ms)"
            );
            found.lost += lost;
        }
    }
    if let Err(e) = commit_offsets(consumer, topic, &resets)? {
        warn!(
            topic,
            group,
            error = %e,
            "could not move the group's offsets (is another member of the group running?)"
        );
    }
    // Refused when another member has joined meanwhile: it then starts the
    // group, and nothing is lost by not having these.
    if let Err(e) = commit_offsets(consumer, topic, &starts)? {
        tracing::debug!(topic, group, error = %e, "the group's start was not committed");
    }
    Ok(found)
}

/// Commits `offsets` (partition → next offset) for the group, if any; the
/// outer error is a bad offset, the inner one the broker's refusal.
fn commit_offsets(
    consumer: &BaseConsumer,
    topic: &str,
    offsets: &BTreeMap<i32, i64>,
) -> Result<Result<(), rdkafka::error::KafkaError>, LogError> {
    if offsets.is_empty() {
        return Ok(Ok(()));
    }
    let mut tpl = TopicPartitionList::new();
    for (&p, &at) in offsets {
        tpl.add_partition_offset(topic, p, Offset::Offset(at))
            .map_err(|e| kafka_err("bad offset", e))?;
    }
    Ok(consumer.commit(&tpl, CommitMode::Sync))
}

/// The mark of the message at `offset`, or `None` if it cannot be read.
fn read_one(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<Option<String>, LogError> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(offset))
        .map_err(|e| kafka_err("bad offset", e))?;
    consumer
        .assign(&tpl)
        .map_err(|e| kafka_err("cannot assign a partition", e))?;
    let deadline = Instant::now() + READ_TIMEOUT;
    let mut seen = None;
    while Instant::now() < deadline {
        let Some(m) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let Ok(m) = m else {
            continue; // a transient error; the deadline bounds the wait
        };
        if m.partition() == partition && m.offset() == offset {
            seen = Some(mark(
                m.timestamp().to_millis().unwrap_or_default(),
                m.key(),
                m.payload().unwrap_or_default(),
            ));
            break;
        }
    }
    consumer
        .unassign()
        .map_err(|e| kafka_err("cannot unassign", e))?;
    Ok(seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_tell_messages_apart_and_are_stable() {
        let a = mark(1_700_000_000_000, Some(b"k"), b"payload");
        assert_eq!(a, mark(1_700_000_000_000, Some(b"k"), b"payload"));
        assert!(a.starts_with(MARK_PREFIX));
        assert_ne!(a, mark(1_700_000_000_001, Some(b"k"), b"payload"));
        assert_ne!(a, mark(1_700_000_000_000, None, b"payload"));
        assert_ne!(a, mark(1_700_000_000_000, Some(b"k"), b"payloae"));
        // Key and payload do not run into each other.
        assert_ne!(mark(0, Some(b"ab"), b"c"), mark(0, Some(b"a"), b"bc"));
    }
}
