//! Apache Kafka as the log, over rdkafka (librdkafka, statically built).
//! Owns the producer (idempotent, acks=all, keyed by record id, the seed
//! stack's flat JSON as value), topic creation, and the client settings
//! shared by producer and consumers. Reading lives in `reader.rs`, dead
//! letters on `<topic>.dlq` in `dead_letter.rs`, a look at the newest
//! messages in `peek.rs`, a read of the whole topic in `scan.rs`, the
//! group's members and their partitions in `group.rs`.

mod browse;
mod dead_letter;
pub mod group;
mod identity;
mod peek;
mod reader;
mod rebootstrap;
mod scan;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tracing::info;

use crate::pipeline::Missing;

pub use group::{GroupMember, GroupMembers};
pub use reader::{KafkaCommitter, KafkaReader};
pub use scan::KafkaScan;

use super::{AppendAck, DeadLetter, LogError, LogRecord, PartitionLag, StoredDeadLetter};

/// How long metadata and admin requests may take before they count as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the first contact with the cluster may take: an unreachable
/// bootstrap address fails within this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Validated settings of the Kafka log.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaLogConfig {
    /// `bootstrap.servers`, e.g. `127.0.0.1:9092,127.0.0.1:9094`.
    pub brokers: String,
    pub topic: String,
    /// Create the topic and `<topic>.dlq` when missing; otherwise a missing
    /// topic fails `open`.
    pub create_topics: bool,
    /// Partitions of a topic tributary creates. Default 3.
    pub partitions: i32,
    /// Replication factor of a topic tributary creates; default
    /// min(3, brokers in the cluster).
    pub replication_factor: Option<i32>,
    /// `compression.type` of the producer. Default `lz4`.
    pub compression: String,
    /// librdkafka properties passed as they are (security.protocol, sasl.*,
    /// ssl.*, ...); they override tributary's defaults.
    pub properties: BTreeMap<String, String>,
    /// Where the lock file that keeps a dead-letter replay and a discard
    /// apart lives: the data dir, so the commands and `serve` that share it
    /// exclude each other; `None`, the system's temporary directory.
    pub lock_dir: Option<std::path::PathBuf>,
}

impl KafkaLogConfig {
    /// The client settings every tributary Kafka client shares.
    fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", "tributary")
            // librdkafka logs through the `log` crate into our tracing output.
            .set("log.connection.close", "false");
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }

    /// A consumer's `fetch.max.bytes`: `ours`, or the `message.max.bytes`
    /// the properties raise past it (librdkafka refuses to make a consumer
    /// whose fetch is smaller than a message may be).
    pub(super) fn fetch_max_bytes(&self, ours: usize) -> String {
        let message_max = self
            .properties
            .get("message.max.bytes")
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        ours.max(message_max).to_string()
    }

    /// The brokers named, each once as written in any case and spacing:
    /// trimmed, lower case, sorted.
    pub fn broker_list(&self) -> Vec<String> {
        let mut brokers: Vec<String> = self
            .brokers
            .split(',')
            .map(|b| b.trim().to_ascii_lowercase())
            .filter(|b| !b.is_empty())
            .collect();
        brokers.sort();
        brokers.dedup();
        brokers
    }

    /// The topic of this topic's dead letters.
    pub fn dlq_topic(&self) -> String {
        format!("{}.dlq", self.topic)
    }
}

fn kafka_err(context: &str, e: KafkaError) -> LogError {
    LogError::Kafka(format!("{context}: {e}"))
}

/// The producer's context: logs librdkafka's errors as the default one does
/// and keeps the last, so that a first contact that times out can say why
/// (a refused password, a certificate that does not verify, a listener
/// that hangs up on the wrong protocol) instead of only that it failed.
#[derive(Clone, Default)]
pub(super) struct LastError(Arc<std::sync::Mutex<Option<String>>>);

impl LastError {
    fn take(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

impl ClientContext for LastError {
    fn error(&self, error: KafkaError, reason: &str) {
        // where the default context logs it
        tracing::error!(target: "rdkafka::client", "librdkafka: {error}: {reason}");
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason.to_owned());
    }
}

/// The Kafka log, opened: a producer plus what readers need to connect.
#[derive(Clone)]
pub struct KafkaLog {
    config: Arc<KafkaLogConfig>,
    producer: FutureProducer<LastError>,
    /// The producer's last error (a clone of its context).
    last_error: LastError,
    /// Clients that read committed offsets, one per group asked about.
    lag_clients: Arc<std::sync::Mutex<BTreeMap<String, Arc<BaseConsumer>>>>,
    /// The dead-letter topic's reader and what it read so far.
    dead_letters: Arc<dead_letter::Reader>,
}

/// Groups whose lag clients are kept at most.
const MAX_LAG_CLIENTS: usize = 8;

impl std::fmt::Debug for KafkaLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaLog")
            .field("brokers", &self.config.brokers)
            .field("topic", &self.config.topic)
            .finish()
    }
}

impl KafkaLog {
    /// Connects, and creates the topic and its dead-letter topic if missing.
    pub async fn open(config: KafkaLogConfig) -> Result<KafkaLog, LogError> {
        Self::open_as(config, Missing::Make).await
    }

    /// Opens the topic; `Missing::Refuse` fails, naming it, when it does
    /// not exist (its `<topic>.dlq` is still made beside it, as every
    /// command that writes would).
    pub async fn open_as(config: KafkaLogConfig, missing: Missing) -> Result<KafkaLog, LogError> {
        let config = Arc::new(config);
        let last_error = LastError::default();
        let mut client = config.client();
        if !config.properties.contains_key("partitioner") {
            // CRC32 of the key, as librdkafka's default, but an empty key
            // too goes to one partition always (the default spreads empty
            // keys at random, and their records' order with them).
            client.set("partitioner", "consistent");
        }
        let producer: FutureProducer<LastError> = client
            // Exactly-once per partition from the producer side: no
            // duplicates from internal retries, nothing acknowledged before
            // all in-sync replicas have it.
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", &config.compression)
            .set("linger.ms", "5")
            .set("batch.num.messages", "10000")
            // Bounded producer memory: at most 32 MiB or 100k messages queued.
            .set("queue.buffering.max.kbytes", "32768")
            .set("queue.buffering.max.messages", "100000")
            // librdkafka retries a delivery for up to this long before it
            // reports a failure (which then fails the append, loudly).
            .set("message.timeout.ms", "120000")
            .create_with_context(last_error.clone())
            .map_err(|e| kafka_err("cannot create the Kafka producer", e))?;
        let log = KafkaLog {
            config,
            producer,
            last_error,
            lag_clients: Arc::default(),
            dead_letters: Arc::default(),
        };
        let started = std::time::Instant::now();
        log.ensure_topics(missing).await?;
        tracing::debug!(
            ms = started.elapsed().as_millis() as u64,
            "start: kafka topics checked"
        );
        Ok(log)
    }

    pub fn topic(&self) -> &str {
        &self.config.topic
    }

    pub fn config(&self) -> &KafkaLogConfig {
        &self.config
    }

    /// Creates the topic and `<topic>.dlq` where they do not exist (the
    /// topic itself only when `missing` says to make it).
    async fn ensure_topics(&self, missing: Missing) -> Result<(), LogError> {
        let admin: AdminClient<DefaultClientContext> = self
            .config
            .client()
            .create()
            .map_err(|e| kafka_err("cannot create the Kafka admin client", e))?;
        let (brokers, exists) = {
            let producer = self.producer.clone();
            let names = [self.config.topic.clone(), self.config.dlq_topic()];
            tokio::task::spawn_blocking(move || {
                producer
                    .client()
                    .fetch_metadata(None, CONNECT_TIMEOUT)
                    .map(|m| {
                        let present = |name: &str| {
                            m.topics()
                                .iter()
                                .any(|t| t.name() == name && t.error().is_none())
                        };
                        (
                            m.brokers().len() as i32,
                            [present(&names[0]), present(&names[1])],
                        )
                    })
            })
            .await
            .expect("metadata task panicked")
            .map_err(|e| {
                let plaintext = self
                    .config
                    .properties
                    .get("security.protocol")
                    .is_none_or(|p| p.eq_ignore_ascii_case("plaintext"));
                let why = match self.last_error.take() {
                    Some(last) => format!("; last client error: {last}"),
                    // librdkafka reports a refused or failed connection, but
                    // not one the broker closes during the first request,
                    // which is what a TLS or SASL listener does to plaintext.
                    None if plaintext => "; connections were accepted but got no answer: \
                        if this listener expects TLS or SASL, set security.protocol (and \
                        ssl.*, sasl.*) in [log.kafka.properties]"
                        .to_owned(),
                    None => String::new(),
                };
                LogError::Kafka(format!(
                    "cannot reach Kafka at {}: {e}{why}",
                    self.config.brokers
                ))
            })?
        };
        if exists.iter().all(|&e| e) {
            return Ok(());
        }
        if missing == Missing::Refuse && !exists[0] {
            return Err(LogError::Kafka(format!(
                "topic {} does not exist on {}: nothing was logged to it yet (`run`, `ingest` \
                 and `serve` make it), or its name is mistyped",
                self.config.topic, self.config.brokers
            )));
        }
        if !self.config.create_topics {
            let missing = if exists[0] {
                self.config.dlq_topic()
            } else {
                self.config.topic.clone()
            };
            return Err(LogError::Kafka(format!(
                "topic {missing} does not exist and log.kafka.create_topics is false"
            )));
        }
        let rf = self
            .config
            .replication_factor
            .unwrap_or_else(|| brokers.clamp(1, 3));
        let dlq = self.config.dlq_topic();
        // Only the missing ones: a topic that exists keeps its partitions
        // (the seed stack's own topic has one).
        let topics: Vec<NewTopic<'_>> = [
            NewTopic::new(
                &self.config.topic,
                self.config.partitions,
                TopicReplication::Fixed(rf),
            ),
            NewTopic::new(&dlq, 1, TopicReplication::Fixed(rf)),
        ]
        .into_iter()
        .zip(exists)
        .filter(|(_, exists)| !exists)
        .map(|(topic, _)| topic)
        .collect();
        let results = admin
            .create_topics(
                &topics,
                &AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT)),
            )
            .await
            .map_err(|e| kafka_err("cannot create topics", e))?;
        // Made now, here (with the partitions asked for) or by another
        // process at the same moment (with the partitions it asked for).
        let mut created = Vec::new();
        for r in results {
            match r {
                Ok(name) => {
                    info!(topic = %name, replication_factor = rf, "created Kafka topic");
                    let partitions = if name == dlq {
                        1
                    } else {
                        self.config.partitions
                    };
                    created.push((name, Some(partitions)));
                }
                Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => created.push((name, None)),
                Err((name, code)) => {
                    return Err(LogError::Kafka(format!(
                        "cannot create topic {name}: {code}"
                    )));
                }
            }
        }
        for (name, partitions) in created {
            self.until_ready(name, partitions).await?;
        }
        Ok(())
    }

    /// Waits until every partition of a topic just created answers for its
    /// offsets: the cluster acknowledges a creation before each leader
    /// holds its partitions, and a read of the offsets in between (a
    /// group's first start) is refused with "unknown topic or partition".
    async fn until_ready(&self, topic: String, partitions: Option<i32>) -> Result<(), LogError> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || {
            let client = producer.client();
            let deadline = std::time::Instant::now() + REQUEST_TIMEOUT;
            let ready = || -> Result<(), String> {
                // Asked afresh: the client's own view of a topic it does
                // not write to yet is not refreshed for minutes.
                let m = client
                    .fetch_metadata(Some(&topic), Duration::from_secs(2))
                    .map_err(|e| e.to_string())?;
                let t = m
                    .topics()
                    .iter()
                    .find(|t| t.name() == topic)
                    .ok_or("not in the metadata")?;
                if let Some(e) = t.error() {
                    return Err(format!("{e:?}"));
                }
                // As many as asked for, or, for a topic another process
                // made, as many as the cluster lists (at least one).
                let partitions = partitions.unwrap_or(t.partitions().len().max(1) as i32);
                let led = t
                    .partitions()
                    .iter()
                    .filter(|p| p.error().is_none() && p.leader() >= 0)
                    .count();
                if led < partitions as usize {
                    return Err(format!("{led} of {partitions} partitions have a leader"));
                }
                for p in 0..partitions {
                    client
                        .fetch_watermarks(&topic, p, Duration::from_secs(2))
                        .map_err(|e| e.to_string())?;
                }
                Ok(())
            };
            loop {
                match ready() {
                    Ok(()) => return Ok(()),
                    Err(e) if std::time::Instant::now() >= deadline => {
                        return Err(LogError::Kafka(format!(
                            "topic {topic} was created but is not ready: {e}"
                        )));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        })
        .await
        .expect("topic readiness task panicked")
    }

    /// Produces the records in order and returns once every delivery report
    /// says the broker has them (acks=all). Any failed delivery fails the
    /// append: nothing is counted as logged that Kafka did not confirm.
    pub async fn append(&self, records: Vec<LogRecord>) -> Result<AppendAck, LogError> {
        let mut deliveries = Vec::with_capacity(records.len());
        for rec in &records {
            let mut record = FutureRecord::to(&self.config.topic).payload(&rec.payload);
            if let Some(key) = &rec.key {
                record = record.key(key);
            }
            loop {
                match self.producer.send_result(record) {
                    Ok(delivery) => {
                        deliveries.push(delivery);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        // The bounded queue is full: let deliveries drain.
                        record = back;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((e, _)) => return Err(kafka_err("cannot enqueue a message", e)),
                }
            }
        }
        let mut first_offset = None;
        let client = self.producer.client();
        for delivery in deliveries {
            match rebootstrap::watched(delivery, client, &self.config.brokers).await {
                Ok(Ok(d)) => {
                    first_offset.get_or_insert(d.offset);
                }
                Ok(Err((e, _))) => return Err(kafka_err("message not delivered", e)),
                Err(_) => return Err(LogError::Kafka("producer dropped a delivery".into())),
            }
        }
        Ok(AppendAck {
            first_offset: first_offset.unwrap_or(0),
            count: records.len() as u64,
        })
    }

    pub async fn reader(&self, group: &str) -> Result<KafkaReader, LogError> {
        KafkaReader::new(&self.config, group).await
    }

    /// The log and a reader of `group`, the group's check made beside the
    /// log's own start (both are round trips to the cluster). A check that
    /// found no topic, or failed, is made again once the log has created
    /// the topic.
    pub async fn open_with_reader(
        config: KafkaLogConfig,
        group: &str,
    ) -> Result<(KafkaLog, KafkaReader), LogError> {
        let (log, early) = tokio::join!(
            KafkaLog::open(config.clone()),
            KafkaReader::check(&config, group)
        );
        let log = log?;
        let check = match early {
            Ok(check) if check.topic_found => check,
            _ => KafkaReader::check(&config, group).await?,
        };
        let reader = KafkaReader::subscribe(&config, group, check)?;
        Ok((log, reader))
    }

    pub async fn dead_letter(&self, letters: Vec<DeadLetter>) -> Result<(), LogError> {
        dead_letter::produce(&self.producer, &self.config, letters).await
    }

    pub async fn dead_letters(
        &self,
        which: super::Letters,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Vec<StoredDeadLetter>, LogError> {
        let wanted = dead_letter::Wanted {
            which,
            after,
            ids: None,
            limit,
            cut: usize::MAX,
            max_bytes: super::LETTERS_READ_BYTES,
        };
        let letters = self.dead_letters.letters(&self.config, wanted).await?;
        Ok(letters.into_iter().map(|p| p.letter).collect())
    }

    /// Discards letters by marker messages (see `dead_letter.rs`).
    pub async fn discard_dead_letters(
        &self,
        what: super::discard::Discard,
        reason: Option<String>,
    ) -> Result<super::DiscardOutcome, LogError> {
        dead_letter::discard(
            &self.producer,
            &self.config,
            &self.dead_letters,
            what,
            reason,
        )
        .await
    }

    pub async fn settle_dead_letter(
        &self,
        id: i64,
        outcome: Result<(), String>,
    ) -> Result<(), LogError> {
        dead_letter::settle(&self.producer, &self.config, id, outcome).await
    }

    /// Letters not yet replayed, counted by reading the DLQ topic's ids and
    /// markers.
    pub async fn dead_letters_waiting(&self, after: Option<i64>) -> Result<u64, LogError> {
        self.dead_letter_states(move |l| l.count(super::Letters::Waiting, after))
            .await
    }

    /// What `f` says of the ids and states of every letter: what was
    /// replayed or discarded.
    pub async fn dead_letter_states<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dead_letter::Ledger) -> T + Send + 'static,
    ) -> Result<T, LogError> {
        self.dead_letters.look(&self.config, f).await
    }

    /// Of `ids`, the letters replayed or discarded.
    pub async fn settled_among(&self, ids: Vec<i64>) -> Result<Vec<i64>, LogError> {
        self.dead_letter_states(move |ledger| {
            ids.into_iter()
                .filter(|&id| {
                    ledger
                        .state(id)
                        .is_some_and(|s| s != dead_letter::State::Waiting)
                })
                .collect()
        })
        .await
    }

    /// The waiting letters among `ids`.
    pub async fn dead_letters_by_id(
        &self,
        ids: Vec<i64>,
    ) -> Result<Vec<StoredDeadLetter>, LogError> {
        let wanted = dead_letter::Wanted {
            which: super::Letters::Waiting,
            after: None,
            limit: ids.len(),
            ids: Some(ids.into_iter().collect()),
            cut: usize::MAX,
            max_bytes: usize::MAX,
        };
        let letters = self.dead_letters.letters(&self.config, wanted).await?;
        Ok(letters.into_iter().map(|p| p.letter).collect())
    }

    pub async fn latest(&self, limit: usize) -> Result<Vec<super::LogMessage>, LogError> {
        peek::latest(&self.config, limit).await
    }

    /// As [`KafkaLog::latest`], keys and payloads cut to `cut` bytes.
    pub async fn latest_previews(
        &self,
        limit: usize,
        cut: usize,
    ) -> Result<Vec<super::MessagePreview>, LogError> {
        peek::previews(&self.config, limit, cut).await
    }

    /// As [`KafkaLog::dead_letters`], keys and payloads cut to `cut` bytes.
    pub async fn dead_letter_previews(
        &self,
        which: super::Letters,
        after: Option<i64>,
        limit: usize,
        cut: usize,
    ) -> Result<Vec<super::LetterPreview>, LogError> {
        let wanted = dead_letter::Wanted {
            which,
            after,
            ids: None,
            limit,
            cut,
            max_bytes: usize::MAX,
        };
        self.dead_letters.letters(&self.config, wanted).await
    }

    /// Asked once a second by `serve`'s dashboard: one client per group is
    /// kept for it rather than a new connection each time.
    pub async fn lag(&self, group: &str) -> Result<Vec<PartitionLag>, LogError> {
        let client = self.lag_client(group)?;
        let lag = reader::lag(client.clone(), &self.config.topic).await;
        if lag.is_err() {
            rebootstrap::rebootstrap(client.client(), &self.config.brokers);
        }
        lag
    }

    /// The group's members and the partitions of the topic each holds
    /// (DescribeGroups), on the same kept client as [`KafkaLog::lag`].
    pub async fn members(&self, group: &str) -> Result<GroupMembers, LogError> {
        let client = self.lag_client(group)?;
        let (group, topic) = (group.to_owned(), self.config.topic.clone());
        tokio::task::spawn_blocking(move || group::describe(&client, &group, &topic))
            .await
            .expect("group task panicked")
    }

    /// The kept client of `group` (one per group, a few groups at most).
    fn lag_client(&self, group: &str) -> Result<Arc<BaseConsumer>, LogError> {
        let mut clients = self.lag_clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(group) {
            return Ok(c.clone());
        }
        let c = Arc::new(reader::lag_client(&self.config, group)?);
        // Bounded: a process asks for its own group or a few.
        if clients.len() >= MAX_LAG_CLIENTS {
            clients.clear();
        }
        clients.insert(group.to_owned(), c.clone());
        Ok(c)
    }
}
