//! Dead letters on Kafka: `<topic>.dlq`, one partition, each letter the raw
//! bytes with headers naming the stage, the reason and the original
//! topic/partition/offset. A letter's id is its offset there. Replays,
//! replays that failed again (with the new reason) and discards are
//! recorded by marker messages (the topic stays append-only).
//! `read.rs` reads them back.

mod read;

use std::sync::Arc;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use super::{KafkaLogConfig, LastError, REQUEST_TIMEOUT, kafka_err, rebootstrap};
use crate::pipeline::log::discard::{Discard, DiscardOutcome};
use crate::pipeline::log::{DeadLetter, LogError};
pub use read::{Ledger, Reader, State, Wanted};

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
/// On a marker message: the id of a letter a replay tried and that failed
/// again; its `tributary.reason` is the letter's reason from then on.
const FAILED_AGAIN: &str = "tributary.failed-again-of";

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

/// Messages sent together at most: their payloads within this, well
/// under the producer's 32 MiB queue (a send that waits for room past its
/// timeout fails the batch), and no more than [`TOGETHER`] of them.
const TOGETHER_BYTES: usize = 8 << 20;
const TOGETHER: usize = 1000;

/// A message to send: its key, payload and headers.
type Message<'a> = (Option<&'a [u8]>, &'a [u8], OwnedHeaders);

/// Sends `messages` many at once, a group after
/// the one before: each waits for its own delivery, not for the one
/// before it (one after another, each waited out the producer's linger,
/// and a thousand letters took seconds). Returns how many were sent.
async fn send_together<'a>(
    producer: &FutureProducer<LastError>,
    config: &KafkaLogConfig,
    messages: Vec<Message<'a>>,
) -> Result<u64, LogError> {
    let mut messages = messages.into_iter().peekable();
    let mut sent = 0;
    while messages.peek().is_some() {
        let (mut group, mut bytes) = (Vec::new(), 0);
        while let Some((key, payload, headers)) = messages.next_if(|(_, payload, _)| {
            group.is_empty() || (group.len() < TOGETHER && bytes + payload.len() <= TOGETHER_BYTES)
        }) {
            bytes += payload.len();
            group.push(send(producer, config, key, payload, headers));
        }
        sent += group.len() as u64;
        futures::future::try_join_all(group).await?;
    }
    Ok(sent)
}

/// Writes the letters, many at once (see [`send_together`]).
pub async fn produce(
    producer: &FutureProducer<LastError>,
    config: &KafkaLogConfig,
    letters: Vec<DeadLetter>,
) -> Result<(), LogError> {
    let messages = letters
        .iter()
        .map(|l| {
            let (headers, payload) = message_of(l);
            (l.key.as_deref(), payload, headers)
        })
        .collect();
    send_together(producer, config, messages).await?;
    Ok(())
}

/// A letter's headers and payload, cut to [`MAX_PAYLOAD`].
fn message_of(l: &DeadLetter) -> (OwnedHeaders, &[u8]) {
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
    if l.payload.len() > MAX_PAYLOAD {
        headers = headers.insert(Header {
            key: TRUNCATED_FROM,
            value: Some(&l.payload.len().to_string()),
        });
        (headers, &l.payload[..MAX_PAYLOAD])
    } else {
        (headers, &l.payload[..])
    }
}

pub async fn settle(
    producer: &FutureProducer<LastError>,
    config: &KafkaLogConfig,
    id: i64,
    outcome: Result<(), String>,
) -> Result<(), LogError> {
    // A marker either way: the letter replayed, or failing with a new
    // reason.
    let id = id.to_string();
    let headers = match &outcome {
        Ok(()) => OwnedHeaders::new().insert(Header {
            key: REPLAYED,
            value: Some(&id),
        }),
        Err(reason) => OwnedHeaders::new()
            .insert(Header {
                key: FAILED_AGAIN,
                value: Some(&id),
            })
            .insert(Header {
                key: REASON,
                value: Some(
                    &reason
                        [..reason.floor_char_boundary(crate::pipeline::log::letters::MAX_REASON)],
                ),
            }),
    };
    send(producer, config, None, b"", headers).await
}

/// Discards the letters `what` names: a marker each, after one read of
/// the topic to tell waiting letters from unknown, replayed and discarded
/// ones.
pub async fn discard(
    producer: &FutureProducer<LastError>,
    config: &Arc<KafkaLogConfig>,
    reader: &Arc<Reader>,
    what: Discard,
    reason: Option<String>,
) -> Result<DiscardOutcome, LogError> {
    let (take, mut outcome) = reader
        .look(config, |ledger| {
            let mut outcome = DiscardOutcome::default();
            let take: Vec<i64> = match what {
                Discard::AllWaiting => ledger
                    .ids(crate::pipeline::log::discard::Letters::Waiting, None)
                    .collect(),
                Discard::Ids(mut ids) => {
                    ids.sort_unstable();
                    ids.dedup();
                    let mut take = Vec::new();
                    for id in ids {
                        match ledger.state(id) {
                            None => outcome.not_found.push(id),
                            Some(State::Replayed) => outcome.already_replayed.push(id),
                            Some(State::Discarded) => outcome.already_discarded.push(id),
                            Some(State::Waiting) => take.push(id),
                        }
                    }
                    take
                }
            };
            (take, outcome)
        })
        .await?;
    // A marker each, written together; built a group at a time.
    for ids in take.chunks(TOGETHER) {
        let markers = ids
            .iter()
            .map(|id| {
                let mut headers = OwnedHeaders::new().insert(Header {
                    key: DISCARDED,
                    value: Some(&id.to_string()),
                });
                if let Some(r) = &reason {
                    headers = headers.insert(Header {
                        key: DISCARD_REASON,
                        value: Some(r),
                    });
                }
                (None, &b""[..], headers)
            })
            .collect();
        outcome.discarded += send_together(producer, config, markers).await?;
    }
    Ok(outcome)
}
