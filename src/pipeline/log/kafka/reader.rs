//! Reading Kafka as a consumer group: polling batches, committing only what
//! the processor hands back, lag per partition. Owns the consumer settings
//! that keep memory bounded and offsets manual.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tracing::{debug, warn};

use super::identity::{self, GroupCheck};
use super::{KafkaLogConfig, REQUEST_TIMEOUT, kafka_err, rebootstrap};
use crate::pipeline::log::{Checkpoint, LogError, LogMessage, OffsetReset, PartitionLag};

/// How long a poll that has its first message waits for more to fill the
/// batch: not at all, it takes what has arrived. The processor asks for a
/// batch only when it has a free slot for one (several batches are written
/// at once); under full load the slots are busy and messages gather in the
/// consumer's queue, so the next poll finds a full batch there, and under
/// light load a partial batch goes at once instead of waiting.
const BATCH_LINGER: Duration = Duration::ZERO;

/// Transient read errors are logged at most this often.
const ERROR_LOG_EVERY: Duration = Duration::from_secs(10);

/// How long after joining an unknown topic is waited out, not fatal: the
/// log has just found or created it, and on a cluster of several brokers a
/// new topic reaches each broker's metadata a moment after it is created.
const NEW_TOPIC_GRACE: Duration = Duration::from_secs(15);

/// An idle reader checks this often that its last commit arrived.
const RECOMMIT_EVERY: Duration = Duration::from_secs(5);

/// Whether a read error is one librdkafka recovers from by itself. Its
/// consumer errors are informational except the fatal ones; a missing topic,
/// refused credentials and a failed TLS handshake are treated as fatal here
/// too, because waiting would not end them.
fn transient(e: &KafkaError) -> bool {
    match e {
        KafkaError::MessageConsumption(code) => !matches!(
            code,
            RDKafkaErrorCode::UnknownTopicOrPartition
                | RDKafkaErrorCode::UnknownTopic
                | RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::GroupAuthorizationFailed
                | RDKafkaErrorCode::ClusterAuthorizationFailed
                | RDKafkaErrorCode::SaslAuthenticationFailed
                | RDKafkaErrorCode::Authentication
                | RDKafkaErrorCode::SSL
                | RDKafkaErrorCode::Fatal
                // `offset_reset = "error"`: the group's offset is out of
                // range and the user asked to stop rather than move it.
                | RDKafkaErrorCode::AutoOffsetReset
        ),
        _ => false,
    }
}

/// How long a read of the group's commits waits out a coordinator that is
/// moving or still loading (a cluster just started, a broker restarted).
const COORDINATOR_WAIT: Duration = Duration::from_secs(30);

/// Whether an error says the group's coordinator is moving or loading: the
/// same request a moment later will do.
fn coordinator_moving(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::NotCoordinator
                | RDKafkaErrorCode::CoordinatorLoadInProgress
                | RDKafkaErrorCode::CoordinatorNotAvailable
        )
    )
}

/// The group's commits for `tpl`, asked again every 250 ms while `retry`
/// says the error will pass, for up to `wait` (blocking: call it off the
/// async threads).
pub(super) fn committed_waiting(
    consumer: &BaseConsumer,
    tpl: TopicPartitionList,
    wait: Duration,
    retry: impl Fn(&KafkaError) -> bool,
) -> Result<TopicPartitionList, KafkaError> {
    let deadline = Instant::now() + wait;
    loop {
        match consumer.committed_offsets(tpl.clone(), REQUEST_TIMEOUT) {
            Err(e) if retry(&e) && Instant::now() < deadline => {
                debug!(error = %e, "kafka: the group's commits are not readable yet; asking again");
                std::thread::sleep(Duration::from_millis(250));
            }
            done => return done,
        }
    }
}

fn consumer_config(config: &KafkaLogConfig, group: &str) -> rdkafka::ClientConfig {
    let mut c = config.client();
    c.set("group.id", group)
        // Offsets are committed by hand, and only for acknowledged batches.
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // A new group starts at the beginning, as the seed Spark job does;
        // `[log] offset_reset` arrives as a property and overrides this.
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "cooperative-sticky")
        // A crashed processor's partitions move on after 10 s, not 45 s.
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "2000")
        // Bounded memory: at most 1 MiB pre-fetched (about 2,000 messages
        // of the seed's size, enough to fill the next batches while the
        // earlier ones are written), 512 KiB per partition per fetch
        // (librdkafka needs fetch.max.bytes >= message.max.bytes, 1 MB).
        // The prefetch queue is the largest part of the memory a drain
        // takes: 16 MiB of it raised the peak RSS of a drain into Cassandra
        // from about 58 to about 100 MiB, 2 MiB to about 65 MiB, for no gain
        // in speed.
        .set("queued.max.messages.kbytes", "1024")
        .set("fetch.max.bytes", config.fetch_max_bytes(1 << 20))
        .set("max.partition.fetch.bytes", "524288")
        // A full prefetch queue postpones the partition's next fetch by
        // this long (librdkafka's default is 1 s: with a small queue, the
        // reader would wait a second each time it catches up).
        .set("fetch.queue.backoff.ms", "5");
    // User properties win over these defaults.
    for (k, v) in &config.properties {
        c.set(k, v);
    }
    c
}

/// A consumer-group member reading the topic.
pub struct KafkaReader {
    consumer: Arc<StreamConsumer>,
    topic: String,
    /// `bootstrap.servers`, for [`rebootstrap`].
    bootstrap: String,
    /// Next offset to read per partition, as far as this reader has read.
    position: BTreeMap<i32, i64>,
    /// When a message last arrived, or the last broker check began.
    active: Instant,
    /// Transient errors since the last one was logged, and when that was.
    quiet_errors: u64,
    last_error_logged: Option<Instant>,
    /// Messages retention dropped past the group's commit, found at start
    /// and not yet taken by [`KafkaReader::take_lost`].
    lost: u64,
    /// What the committers sent, shared with them (see [`Sent`]).
    sent: Arc<std::sync::Mutex<Sent>>,
    /// When an idle reader last checked its commits.
    checked_commits: Instant,
    /// When it subscribed (see [`NEW_TOPIC_GRACE`]).
    subscribed_at: Instant,
}

/// The commits sent, merged per partition. Commits are asynchronous, and
/// the group refuses them while it rebalances; a member that keeps its
/// partitions (cooperative-sticky) and then reads nothing more would never
/// send another, leaving the group's offsets behind what is stored. So an
/// idle reader compares the group's commits with these and sends again
/// what is missing.
#[derive(Debug, Default)]
struct Sent {
    last: Option<Checkpoint>,
    /// Sent since the group's offsets last matched.
    unconfirmed: bool,
}

/// The group's policy for offsets that do not fit the topic, from the
/// consumer's `auto.offset.reset` (set by `[log] offset_reset`).
fn offset_reset(config: &KafkaLogConfig) -> OffsetReset {
    match config
        .properties
        .get("auto.offset.reset")
        .map(String::as_str)
    {
        Some("latest" | "largest" | "end") => OffsetReset::Latest,
        Some("error") => OffsetReset::Error,
        _ => OffsetReset::Earliest,
    }
}

impl std::fmt::Debug for KafkaReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaReader")
            .field("topic", &self.topic)
            .field("position", &self.position)
            .finish()
    }
}

impl KafkaReader {
    pub async fn new(config: &KafkaLogConfig, group: &str) -> Result<KafkaReader, LogError> {
        let check = KafkaReader::check(config, group).await?;
        KafkaReader::subscribe(config, group, check)
    }

    /// Before joining: are the group's commits still this topic's? (See
    /// `identity.rs`.)
    pub async fn check(config: &KafkaLogConfig, group: &str) -> Result<GroupCheck, LogError> {
        let started = std::time::Instant::now();
        let check = identity::check_group(config, group, offset_reset(config)).await?;
        tracing::debug!(
            ms = started.elapsed().as_millis() as u64,
            "start: kafka group's commits checked"
        );
        Ok(check)
    }

    /// Joins the group, once its commits are checked.
    pub fn subscribe(
        config: &KafkaLogConfig,
        group: &str,
        check: GroupCheck,
    ) -> Result<KafkaReader, LogError> {
        let consumer: StreamConsumer = consumer_config(config, group)
            .create()
            .map_err(|e| kafka_err("cannot create the Kafka consumer", e))?;
        consumer
            .subscribe(&[&config.topic])
            .map_err(|e| kafka_err("cannot subscribe", e))?;
        Ok(KafkaReader {
            consumer: Arc::new(consumer),
            topic: config.topic.clone(),
            bootstrap: config.brokers.clone(),
            position: BTreeMap::new(),
            active: Instant::now(),
            quiet_errors: 0,
            last_error_logged: None,
            lost: check.lost,
            sent: Arc::default(),
            checked_commits: Instant::now(),
            subscribed_at: Instant::now(),
        })
    }

    /// Messages lost to retention found at start, once.
    pub fn take_lost(&mut self) -> u64 {
        std::mem::take(&mut self.lost)
    }

    /// Up to `max` messages; waits up to `wait` for the first, then takes
    /// what has already arrived (see [`BATCH_LINGER`]).
    ///
    /// Errors librdkafka recovers from by itself (a broker restarting, a
    /// dropped connection) are logged and waited out; the others fail the
    /// poll. A reader idle for [`rebootstrap::IDLE_PROBE`] checks in the
    /// background that it still reaches a broker.
    pub async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<LogMessage>, LogError> {
        let mut batch = Vec::new();
        let mut deadline = tokio::time::Instant::now() + wait;
        while batch.len() < max {
            let m = match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                Err(_elapsed) => break,
                Ok(Err(e)) if transient(&e) || self.topic_still_spreading(&e) => {
                    self.transient_error(&e);
                    continue;
                }
                Ok(Err(e)) => return Err(kafka_err("cannot read from Kafka", e)),
                Ok(Ok(m)) => m,
            };
            if batch.is_empty() {
                deadline = tokio::time::Instant::now() + BATCH_LINGER;
            }
            self.position.insert(m.partition(), m.offset() + 1);
            batch.push(LogMessage {
                partition: m.partition(),
                offset: m.offset(),
                timestamp_ms: m.timestamp().to_millis().unwrap_or_default(),
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
            });
        }
        if !batch.is_empty() {
            self.active = Instant::now();
        } else if self.active.elapsed() >= rebootstrap::IDLE_PROBE {
            self.active = Instant::now();
            rebootstrap::probe(self.consumer.clone(), &self.topic, &self.bootstrap);
        }
        if batch.is_empty() && self.checked_commits.elapsed() >= RECOMMIT_EVERY {
            self.checked_commits = Instant::now();
            self.recommit().await;
        }
        Ok(batch)
    }

    /// Sends again the sent commits of this member's partitions that the
    /// group does not have (see [`Sent`]); quiet when they match.
    async fn recommit(&self) {
        if !self
            .sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .unconfirmed
        {
            return;
        }
        let (consumer, sent, topic) =
            (self.consumer.clone(), self.sent.clone(), self.topic.clone());
        let result = tokio::task::spawn_blocking(move || -> Result<usize, KafkaError> {
            let assignment = consumer.assignment()?;
            let committed = consumer.committed_offsets(assignment.clone(), REQUEST_TIMEOUT)?;
            // Under the lock, so no newer commit is sent in between.
            let mut sent = sent.lock().unwrap_or_else(|p| p.into_inner());
            let Some(last) = &sent.last else {
                return Ok(0);
            };
            let mut tpl = TopicPartitionList::new();
            for el in assignment.elements_for_topic(&topic) {
                let p = el.partition();
                let Some(&next) = last.next.get(&p) else {
                    continue;
                };
                let done = committed
                    .find_partition(&topic, p)
                    .and_then(|e| e.offset().to_raw())
                    .unwrap_or(-1);
                if done < next {
                    let mut elem = tpl.add_partition(&topic, p);
                    elem.set_offset(Offset::Offset(next))?;
                    if let Some(mark) = last.marks.get(&p) {
                        elem.set_metadata(mark.as_str());
                    }
                }
            }
            if tpl.count() == 0 {
                sent.unconfirmed = false;
                return Ok(0);
            }
            consumer.commit(&tpl, CommitMode::Async)?;
            Ok(tpl.count())
        })
        .await
        .expect("commit check panicked");
        match result {
            Ok(0) => {}
            Ok(n) => warn!(
                partitions = n,
                "kafka: the group lacked this member's last commits (refused during a rebalance); sent again"
            ),
            Err(e) => debug!(error = %e, "kafka: could not check the group's commits; will retry"),
        }
    }

    /// An unknown topic just after joining: the topic exists (the log
    /// checked), the broker asked has not learnt of it yet.
    fn topic_still_spreading(&self, e: &KafkaError) -> bool {
        matches!(
            e,
            KafkaError::MessageConsumption(
                RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic
            )
        ) && self.subscribed_at.elapsed() < NEW_TOPIC_GRACE
    }

    /// Logs a transient error, at most once per [`ERROR_LOG_EVERY`] with
    /// the number held back since.
    fn transient_error(&mut self, e: &KafkaError) {
        self.quiet_errors += 1;
        if self
            .last_error_logged
            .is_some_and(|t| t.elapsed() < ERROR_LOG_EVERY)
        {
            return;
        }
        warn!(
            error = %e,
            errors = self.quiet_errors,
            "kafka: reading is waiting for the brokers (librdkafka reconnects by itself)"
        );
        self.quiet_errors = 0;
        self.last_error_logged = Some(Instant::now());
    }

    /// The next offset per partition, as far as this reader has read.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint::at(self.position.clone())
    }

    pub fn committer(&self) -> KafkaCommitter {
        KafkaCommitter {
            consumer: self.consumer.clone(),
            topic: self.topic.clone(),
            sent: self.sent.clone(),
        }
    }

    /// Caught up when this member has partitions and, for each, what it has
    /// read (or the group committed) reaches the high watermark.
    pub async fn caught_up(&self) -> Result<bool, LogError> {
        let consumer = self.consumer.clone();
        let topic = self.topic.clone();
        let position = self.position.clone();
        tokio::task::spawn_blocking(move || {
            let assignment = consumer
                .assignment()
                .map_err(|e| kafka_err("cannot read the assignment", e))?;
            if assignment.count() == 0 {
                return Ok(false);
            }
            // Each partition's end as the last fetch answer gave it: a
            // query would wait behind the fetch the broker holds open (up
            // to fetch.wait.max.ms, 500 ms) on the same connection, once per
            // partition. The group's commits are asked only for partitions
            // this reader has not read to their end.
            let mut behind = Vec::new();
            for el in assignment.elements_for_topic(&topic) {
                let p = el.partition();
                let high = match cached_end(&consumer, &topic, p) {
                    Some(high) => high,
                    None => {
                        consumer
                            .fetch_watermarks(&topic, p, REQUEST_TIMEOUT)
                            .map_err(|e| kafka_err("cannot read watermarks", e))?
                            .1
                    }
                };
                if position.get(&p).copied().unwrap_or(0) < high {
                    behind.push((p, high));
                }
            }
            if behind.is_empty() {
                return Ok(true);
            }
            let committed = match consumer.committed(REQUEST_TIMEOUT) {
                Ok(committed) => committed,
                // Not known yet, so not caught up: asked again at the next
                // check.
                Err(e) if coordinator_moving(&e) => return Ok(false),
                Err(e) => return Err(kafka_err("cannot read committed offsets", e)),
            };
            for (p, high) in behind {
                if committed_offset(&committed, &topic, p) < high {
                    return Ok(false);
                }
            }
            Ok(true)
        })
        .await
        .expect("watermark task panicked")
    }
}

/// Commits the group's offsets for acknowledged batches.
#[derive(Clone)]
pub struct KafkaCommitter {
    consumer: Arc<StreamConsumer>,
    topic: String,
    /// The commits sent asynchronously, for `flush` and the reader's
    /// check that they arrived.
    sent: Arc<std::sync::Mutex<Sent>>,
}

impl std::fmt::Debug for KafkaCommitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaCommitter")
            .field("topic", &self.topic)
            .finish()
    }
}

impl KafkaCommitter {
    /// The commit of `checkpoint`, each partition's offset with the mark of
    /// the message before it as metadata (see [`identity`]).
    fn list(&self, checkpoint: &Checkpoint) -> Result<TopicPartitionList, LogError> {
        let mut tpl = TopicPartitionList::new();
        for (&p, &next) in &checkpoint.next {
            let mut elem = tpl.add_partition(&self.topic, p);
            elem.set_offset(Offset::Offset(next))
                .map_err(|e| kafka_err("bad offset", e))?;
            if let Some(mark) = checkpoint.marks.get(&p) {
                elem.set_metadata(mark.as_str());
            }
        }
        Ok(tpl)
    }

    /// Commits `checkpoint`. The checkpoint already holds the *next* offset
    /// to read per partition, so it is committed as given (`commit` with a
    /// list does not add one, unlike `store_offset`).
    ///
    /// The commit is sent asynchronously, in order: a synchronous round trip
    /// per batch made the processor 2x slower, and it buys nothing here —
    /// the commit is only ever requested after the sink acknowledged, and a
    /// commit lost to a crash replays batches the idempotent sink absorbs.
    /// [`KafkaCommitter::flush`] makes the last one durable at shutdown.
    pub async fn commit(&self, checkpoint: &Checkpoint) -> Result<(), LogError> {
        let tpl = self.list(checkpoint)?;
        if tpl.count() == 0 {
            return Ok(());
        }
        // Sent and recorded under one lock: the reader's check never sends
        // an older commit after this one.
        let mut sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        self.consumer
            .commit(&tpl, CommitMode::Async)
            .map_err(|e| kafka_err("cannot commit offsets", e))?;
        let merged = sent.last.get_or_insert_with(Checkpoint::default);
        merged
            .next
            .extend(checkpoint.next.iter().map(|(&p, &o)| (p, o)));
        merged.marks.extend(checkpoint.marks.clone());
        sent.unconfirmed = true;
        Ok(())
    }

    /// Commits the latest checkpoint synchronously.
    ///
    /// A commit refused because the group is rebalancing is a warning, not
    /// a failure: the rows are stored, and the partition's new owner will
    /// read them again from the last commit, which the idempotent sink
    /// absorbs.
    pub async fn flush(&self) -> Result<(), LogError> {
        let Some(last) = self
            .sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last
            .clone()
        else {
            return Ok(());
        };
        let tpl = self.list(&last)?;
        let consumer = self.consumer.clone();
        let result = tokio::task::spawn_blocking(move || consumer.commit(&tpl, CommitMode::Sync))
            .await
            .expect("commit task panicked");
        match result {
            Ok(()) => Ok(()),
            Err(KafkaError::ConsumerCommit(
                code @ (RDKafkaErrorCode::RebalanceInProgress
                | RDKafkaErrorCode::IllegalGeneration
                | RDKafkaErrorCode::UnknownMemberId
                | RDKafkaErrorCode::AssignmentLost),
            )) => {
                warn!(%code, "final offset commit refused during a rebalance; the partition's new owner reads the last batch again");
                Ok(())
            }
            Err(e) => Err(kafka_err("cannot commit offsets", e)),
        }
    }
}

/// A partition's committed offset (0 when the group has none) and its high
/// watermark (the offset the next message will get).
fn committed_and_end<C: Consumer>(
    consumer: &C,
    committed: &TopicPartitionList,
    topic: &str,
    partition: i32,
) -> Result<(i64, i64), LogError> {
    let (_low, high) = consumer
        .fetch_watermarks(topic, partition, REQUEST_TIMEOUT)
        .map_err(|e| kafka_err("cannot read watermarks", e))?;
    Ok((committed_offset(committed, topic, partition), high))
}

/// The group's committed next offset of a partition (0: none).
fn committed_offset(committed: &TopicPartitionList, topic: &str, partition: i32) -> i64 {
    committed
        .find_partition(topic, partition)
        .and_then(|e| e.offset().to_raw())
        .filter(|o| *o >= 0)
        .unwrap_or(0)
}

/// A partition's end (high watermark) as the consumer's last fetch answer
/// for it gave it, without a request; `None` before any answer.
fn cached_end(consumer: &StreamConsumer, topic: &str, partition: i32) -> Option<i64> {
    let topic = std::ffi::CString::new(topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: `native_ptr` is valid while `consumer` is borrowed; the topic
    // is NUL-terminated and outlives the call; the out-pointers are locals.
    // rd_kafka_get_watermark_offsets only reads the client's cached state.
    let err = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
        .then_some(high)
}

/// The topic's partition ids, from the cluster's metadata (blocking).
pub(super) fn partitions<C: Consumer>(consumer: &C, topic: &str) -> Result<Vec<i32>, LogError> {
    let metadata = consumer
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .map_err(|e| kafka_err("cannot read metadata", e))?;
    Ok(metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect())
}

/// A client that reads `group`'s committed offsets; it never joins the
/// group (no subscribe), so it does not take part in rebalances.
pub fn lag_client(config: &KafkaLogConfig, group: &str) -> Result<BaseConsumer, LogError> {
    consumer_config(config, group)
        .create()
        .map_err(|e| kafka_err("cannot create the Kafka consumer", e))
}

/// Committed offset and end per partition of `topic`, for the group of
/// `consumer` (see [`lag_client`]).
pub async fn lag(consumer: Arc<BaseConsumer>, topic: &str) -> Result<Vec<PartitionLag>, LogError> {
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let partitions = partitions(consumer.as_ref(), &topic)?;
        let mut tpl = TopicPartitionList::new();
        for &p in &partitions {
            tpl.add_partition(&topic, p);
        }
        let committed =
            committed_waiting(consumer.as_ref(), tpl, COORDINATOR_WAIT, coordinator_moving)
                .map_err(|e| kafka_err("cannot read committed offsets", e))?;
        let mut out = Vec::new();
        for p in partitions {
            let (done, high) = committed_and_end(consumer.as_ref(), &committed, &topic, p)?;
            out.push(PartitionLag {
                partition: p,
                committed: done,
                end: high,
            });
        }
        Ok(out)
    })
    .await
    .expect("lag task panicked")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `message.max.bytes` raised for records past 1 MB (as `config check`
    /// asks): the consumers are still made (librdkafka refuses a consumer
    /// whose `fetch.max.bytes` is below `message.max.bytes`).
    #[test]
    fn consumers_are_made_with_message_max_bytes_raised() {
        let config = KafkaLogConfig {
            brokers: "127.0.0.1:1".into(),
            topic: "t".into(),
            create_topics: false,
            partitions: 1,
            replication_factor: None,
            compression: "lz4".into(),
            properties: [("message.max.bytes".to_owned(), "2113536".to_owned())].into(),
            lock_dir: None,
        };
        consumer_config(&config, "g")
            .create::<rdkafka::consumer::BaseConsumer>()
            .expect("the group's consumer is made");
        assert_eq!(config.fetch_max_bytes(1 << 20), "2113536");
        assert_eq!(config.fetch_max_bytes(4 << 20), (4 << 20).to_string());
    }

    #[test]
    fn a_moving_coordinator_is_waited_out_and_other_errors_are_not() {
        for code in [
            RDKafkaErrorCode::NotCoordinator,
            RDKafkaErrorCode::CoordinatorLoadInProgress,
            RDKafkaErrorCode::CoordinatorNotAvailable,
        ] {
            assert!(
                coordinator_moving(&KafkaError::MetadataFetch(code)),
                "{code:?}"
            );
        }
        for code in [
            RDKafkaErrorCode::GroupAuthorizationFailed,
            RDKafkaErrorCode::UnknownTopicOrPartition,
        ] {
            assert!(
                !coordinator_moving(&KafkaError::MetadataFetch(code)),
                "{code:?}"
            );
        }
    }
}
