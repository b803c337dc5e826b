//! Dead letters on Kafka: `<topic>.dlq`, one partition, each letter the raw
//! bytes with headers naming the stage, the reason and the original
//! topic/partition/offset. A letter's id is its offset there. Replays and
//! discards are recorded by marker messages (the topic stays append-only).

use std::collections::{HashMap, HashSet};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use super::{KafkaLogConfig, LastError, REQUEST_TIMEOUT, kafka_err, rebootstrap};
use crate::pipeline::log::discard::{Discard, DiscardOutcome, Discarded, Letters};
use crate::pipeline::log::preview::cut_copy;
use crate::pipeline::log::{DeadLetter, LetterPreview, LogError, Origin, Stage, StoredDeadLetter};

const STAGE: &str = "tributary.stage";
const REASON: &str = "tributary.reason";
const TOPIC: &str = "tributary.topic";
const PARTITION: &str = "tributary.partition";
const OFFSET: &str = "tributary.offset";
/// On a letter that never reached the log: where the source gave it.
const SOURCE_POSITION: &str = "tributary.source-position";
/// On a marker message: the id (DLQ offset) of the letter that was replayed.
const REPLAYED: &str = "tributary.replayed-of";
/// On a marker message: the id of the letter that was discarded, and why.
const DISCARDED: &str = "tributary.discarded-of";
const DISCARD_REASON: &str = "tributary.discard-reason";
/// On a letter whose payload was cut: its original size in bytes.
const TRUNCATED_FROM: &str = "tributary.truncated-from";
/// Payloads are cut to this, so a letter always fits the broker's default
/// `message.max.bytes` (1 MB) with its headers; the full message stays in
/// the original topic at the offset the headers name.
const MAX_PAYLOAD: usize = 900_000;

async fn send(
    producer: &FutureProducer<LastError>,
    config: &KafkaLogConfig,
    key: Option<&[u8]>,
    payload: &[u8],
    headers: OwnedHeaders,
) -> Result<(), LogError> {
    let topic = config.dlq_topic();
    let mut record = FutureRecord::to(&topic).payload(payload).headers(headers);
    if let Some(k) = key {
        record = record.key(k);
    }
    let delivery = producer.send(record, REQUEST_TIMEOUT);
    rebootstrap::watched(delivery, producer.client(), &config.brokers)
        .await
        .map(|_| ())
        .map_err(|(e, _)| kafka_err("cannot write a dead letter", e))
}

pub async fn produce(
    producer: &FutureProducer<LastError>,
    config: &KafkaLogConfig,
    letters: Vec<DeadLetter>,
) -> Result<(), LogError> {
    for l in letters {
        let mut headers = OwnedHeaders::new()
            .insert(Header {
                key: STAGE,
                value: Some(l.stage.as_str()),
            })
            .insert(Header {
                key: REASON,
                value: Some(&l.reason),
            });
        if let Some(o) = &l.origin {
            headers = headers
                .insert(Header {
                    key: TOPIC,
                    value: Some(&o.topic),
                })
                .insert(Header {
                    key: PARTITION,
                    value: Some(&o.partition.to_string()),
                })
                .insert(Header {
                    key: OFFSET,
                    value: Some(&o.offset.to_string()),
                });
        }
        if let Some(p) = &l.source_position {
            headers = headers.insert(Header {
                key: SOURCE_POSITION,
                value: Some(p),
            });
        }
        let payload = if l.payload.len() > MAX_PAYLOAD {
            headers = headers.insert(Header {
                key: TRUNCATED_FROM,
                value: Some(&l.payload.len().to_string()),
            });
            &l.payload[..MAX_PAYLOAD]
        } else {
            &l.payload[..]
        };
        send(producer, config, l.key.as_deref(), payload, headers).await?;
    }
    Ok(())
}

pub async fn settle(
    producer: &FutureProducer<LastError>,
    config: &KafkaLogConfig,
    id: i64,
    outcome: Result<(), String>,
) -> Result<(), LogError> {
    // A failing replay leaves the letter as it is; a successful one is
    // recorded by a marker.
    if outcome.is_err() {
        return Ok(());
    }
    let headers = OwnedHeaders::new().insert(Header {
        key: REPLAYED,
        value: Some(&id.to_string()),
    });
    send(producer, config, None, b"", headers).await
}

/// Discards the letters `what` names: a marker each, after one read of
/// the topic to tell waiting letters from unknown, replayed and discarded
/// ones.
pub async fn discard(
    producer: &FutureProducer<LastError>,
    config: &KafkaLogConfig,
    what: Discard,
    reason: Option<String>,
) -> Result<DiscardOutcome, LogError> {
    let letters = list(config, Letters::All, None, usize::MAX >> 1).await?;
    let mut outcome = DiscardOutcome::default();
    let take: Vec<i64> = match what {
        Discard::AllWaiting => letters
            .iter()
            .filter(|l| l.replayed_ms.is_none() && l.discarded.is_none())
            .map(|l| l.id)
            .collect(),
        Discard::Ids(mut ids) => {
            ids.sort_unstable();
            ids.dedup();
            let by_id: HashMap<i64, &StoredDeadLetter> =
                letters.iter().map(|l| (l.id, l)).collect();
            let mut take = Vec::new();
            for id in ids {
                match by_id.get(&id) {
                    None => outcome.not_found.push(id),
                    Some(l) if l.replayed_ms.is_some() => outcome.already_replayed.push(id),
                    Some(l) if l.discarded.is_some() => outcome.already_discarded.push(id),
                    Some(_) => take.push(id),
                }
            }
            take
        }
    };
    for id in take {
        let id_text = id.to_string();
        let mut headers = OwnedHeaders::new().insert(Header {
            key: DISCARDED,
            value: Some(&id_text),
        });
        if let Some(r) = &reason {
            headers = headers.insert(Header {
                key: DISCARD_REASON,
                value: Some(r),
            });
        }
        send(producer, config, None, b"", headers).await?;
        outcome.discarded += 1;
    }
    Ok(outcome)
}

/// Reads the whole DLQ partition (it is small by nature) without joining a
/// group, and returns the letters `which` selects, oldest first.
pub async fn list(
    config: &KafkaLogConfig,
    which: Letters,
    after: Option<i64>,
    limit: usize,
) -> Result<Vec<StoredDeadLetter>, LogError> {
    Ok(previews(config, which, after, limit, usize::MAX)
        .await?
        .into_iter()
        .map(|p| p.letter)
        .collect())
}

/// As [`list`], each key and payload copied only up to `cut` bytes.
pub async fn previews(
    config: &KafkaLogConfig,
    which: Letters,
    after: Option<i64>,
    limit: usize,
    cut: usize,
) -> Result<Vec<LetterPreview>, LogError> {
    let consumer: BaseConsumer = config
        .client()
        .set("group.id", "tributary-dlq-reader")
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| kafka_err("cannot create the Kafka consumer", e))?;
    let topic = config.dlq_topic();
    tokio::task::spawn_blocking(move || {
        let (low, high) = consumer
            .fetch_watermarks(&topic, 0, REQUEST_TIMEOUT)
            .map_err(|e| kafka_err("cannot read the dead-letter topic", e))?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Offset(low))
            .map_err(|e| kafka_err("bad offset", e))?;
        consumer
            .assign(&tpl)
            .map_err(|e| kafka_err("cannot read the dead-letter topic", e))?;
        let mut letters = Vec::new();
        let mut replayed = HashSet::new();
        let mut discarded: HashMap<i64, Discarded> = HashMap::new();
        let mut next = low;
        let deadline = std::time::Instant::now() + REQUEST_TIMEOUT;
        while next < high && std::time::Instant::now() < deadline {
            let Some(m) = consumer.poll(std::time::Duration::from_millis(500)) else {
                continue;
            };
            let m = m.map_err(|e| kafka_err("cannot read the dead-letter topic", e))?;
            next = m.offset() + 1;
            let header = |name: &str| -> Option<String> {
                m.headers().and_then(|h| {
                    h.iter()
                        .find(|x| x.key == name)
                        .and_then(|x| x.value)
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                })
            };
            if let Some(id) = header(REPLAYED).and_then(|v| v.parse::<i64>().ok()) {
                replayed.insert(id);
                continue;
            }
            if let Some(id) = header(DISCARDED).and_then(|v| v.parse::<i64>().ok()) {
                // The first discard's time and reason stand.
                discarded.entry(id).or_insert(Discarded {
                    at_ms: m.timestamp().to_millis().unwrap_or_default(),
                    reason: header(DISCARD_REASON),
                });
                continue;
            }
            // Markers are read from the start whatever the cursor: a
            // letter's marker comes after it.
            if after.is_some_and(|a| m.offset() <= a) {
                continue;
            }
            let origin = match (header(TOPIC), header(PARTITION), header(OFFSET)) {
                (Some(topic), Some(p), Some(o)) => Some(Origin {
                    topic,
                    partition: p.parse().unwrap_or_default(),
                    offset: o.parse().unwrap_or_default(),
                }),
                _ => None,
            };
            let payload = m.payload().unwrap_or_default();
            let payload_bytes = header(TRUNCATED_FROM)
                .and_then(|v| v.parse().ok())
                .unwrap_or(payload.len() as u64);
            letters.push(LetterPreview {
                payload_bytes,
                letter: StoredDeadLetter {
                    id: m.offset(),
                    created_ms: m.timestamp().to_millis().unwrap_or_default(),
                    replayed_ms: None,
                    discarded: None,
                    letter: DeadLetter {
                        stage: header(STAGE)
                            .as_deref()
                            .and_then(Stage::parse)
                            .unwrap_or(Stage::Decode),
                        reason: header(REASON).unwrap_or_default(),
                        origin,
                        source_position: header(SOURCE_POSITION),
                        key: m.key().map(|k| cut_copy(k, cut)),
                        payload: cut_copy(payload, cut),
                    },
                },
            });
        }
        for LetterPreview { letter: l, .. } in &mut letters {
            if replayed.contains(&l.id) {
                // The marker's own time is not kept; the letter is simply done.
                l.replayed_ms = Some(l.created_ms);
            }
            l.discarded = discarded.remove(&l.id);
        }
        letters.retain(|l| {
            which.selects(l.letter.replayed_ms.is_some(), l.letter.discarded.is_some())
        });
        letters.truncate(limit);
        Ok(letters)
    })
    .await
    .expect("dead-letter task panicked")
}
