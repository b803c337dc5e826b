//! `tributary.toml` as written by a person: every field optional, unknown
//! keys rejected (with file and line), each field documented here. Nothing is
//! checked beyond types; [`super::Config::resolve`] validates.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The whole file.
///
/// ```toml
/// data_dir = "./tributary-data"
///
/// [source]
/// url = "gen:?nat=US,GB,FR"      # or "https://randomuser.me/api/"
/// seed = "42"
///
/// [log]
/// url = "sqlite:"                # the embedded log under data_dir
/// topic = "users_created"
///
/// [sink]
/// url = "sqlite:"                # the embedded store under data_dir
/// table = "created_users"
///
/// [processor]
/// batch_size = 1000
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Directory of the embedded log and store. Default `./tributary-data`.
    pub data_dir: Option<PathBuf>,
    #[serde(default)]
    pub source: RawSource,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub sink: RawSink,
    #[serde(default)]
    pub processor: RawProcessor,
    /// Named pipelines. Without any, the one pipeline is the built-in
    /// Random User one, set by `[source]`, `[log]` and `[sink]`.
    #[serde(default)]
    pub pipelines: Vec<RawPipeline>,
    /// Scheduled ingestion jobs, run by `tributary serve`.
    #[serde(default)]
    pub jobs: Vec<RawJob>,
    #[serde(default)]
    pub web: RawWeb,
}

/// `[web]`: the dashboard, JSON API and `/metrics` of `tributary serve`.
///
/// ```toml
/// [web]
/// listen = "127.0.0.1:8080"       # "off" to serve no web page at all
/// token_file = "/run/secrets/tributary-web"   # or TRIBUTARY_WEB_TOKEN
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWeb {
    /// Address and port. Default `127.0.0.1:8080`. Any address that is not
    /// loopback requires a token.
    pub listen: Option<String>,
    /// File holding the access token (at least 16 characters). The token
    /// itself is never written in this file.
    pub token_file: Option<PathBuf>,
    /// How long a client may take to send a request head (and, on a
    /// kept-alive connection, the next one), then its body. Default `10s`.
    pub header_timeout: Option<String>,
    /// Connections served at once; the next wait until one closes.
    /// Default 256.
    pub max_connections: Option<usize>,
}

/// `[[jobs]]`: one scheduled ingestion, as an Airflow DAG of the seed stack.
///
/// ```toml
/// [[jobs]]
/// name = "random_users"
/// schedule = "0 1 * * *"          # cron (5 fields), @hourly, @daily, @every 30s
/// burst = { duration = "2m", interval = "1s", records = 1 }
/// source = "https://randomuser.me/api/"
/// retries = 3
/// retry_delay = "30s"
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawJob {
    /// Letters, digits, `_` and `-`; unique.
    pub name: String,
    /// The pipeline the job feeds. Default: the only one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<String>,
    /// 5-field cron, a preset (`@hourly`, `@daily`, `@weekly`, `@monthly`,
    /// `@yearly`) or `@every <duration>`.
    pub schedule: String,
    /// IANA time zone of a cron schedule. Default UTC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// The seed DAG's loop: `records` users every `interval` for `duration`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub burst: Option<RawBurst>,
    /// Without `burst`: records fetched per run. Default 1000 for the Random
    /// User pipeline; every record the source has for the others.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub records: Option<u64>,
    /// Source URL; default the `[source]` one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Base seed for `gen:`; each run uses `<seed>-<slot>`. Default the job name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<String>,
    /// Attempts after a failed one. Default 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// Wait before a retry. Default `30s`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_delay: Option<String>,
    /// An attempt still running after this fails. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Runs of this job at once; only 1 is supported. Default 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_active_runs: Option<u32>,
    /// After downtime, run every missed slot (`true`) or only the latest
    /// (`false`, default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catchup: Option<bool>,
}

/// `burst = { duration = "2m", interval = "1s", records = 1 }`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawBurst {
    pub duration: String,
    pub interval: String,
    /// Users per tick (the API's `results`). Default 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub records: Option<u64>,
}

/// `[source]`: where users come from.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    /// `gen:` (default; `gen:?seed=42&nat=US,GB&gender=female`) or an
    /// `http(s)://…/api/` base of a Random User-compatible API.
    pub url: Option<String>,
    /// Seed of the user sequence; same seed, same users. Default: a random
    /// seed, printed so the run can be repeated.
    pub seed: Option<String>,
    /// Nationalities, e.g. `["US", "GB"]`; default all. Overrides `nat=` in the URL.
    pub nat: Option<Vec<String>>,
    /// `female` or `male`; default both.
    pub gender: Option<String>,
    /// HTTP: time to establish a connection. Default `5s`.
    pub connect_timeout: Option<String>,
    /// HTTP: longest wait for the next bytes of an answer. Default `30s`.
    pub read_timeout: Option<String>,
    /// HTTP: attempts per page before the run fails. Default `8`.
    pub max_attempts: Option<u32>,
    /// HTTP: first backoff delay; doubles each retry, with jitter. Default `200ms`.
    pub backoff_initial: Option<String>,
    /// HTTP: largest backoff delay. Default `10s`.
    pub backoff_max: Option<String>,
}

/// `[log]`: the durable hand-off between ingestion and processing.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// `sqlite:` (default: `<data_dir>/log.db`), `sqlite:PATH`, or
    /// `kafka://host:9092[,host2:9092]/topic`.
    pub url: Option<String>,
    /// Topic name. Default `users_created`, as in the seed stack.
    pub topic: Option<String>,
    /// Consumer group of the processor. Default `tributary`.
    pub group: Option<String>,
    /// Keep at most this many messages per topic. Default: no count limit.
    pub retention_messages: Option<u64>,
    /// Drop messages older than this, e.g. `7d`. Default `7d`; `0s` keeps all.
    pub retention_age: Option<String>,
    /// fsync every commit instead of relying on the WAL. Default `false`.
    pub fsync: Option<bool>,
    /// Where the group starts when its committed offset does not fit the
    /// log (the log file was replaced or restored, or the offset is past its
    /// end): `earliest` (default: read the log again; stored rows are
    /// upserted unchanged), `latest` (skip to the end) or `error` (stop).
    /// Kafka's `auto.offset.reset`, which it sets for a Kafka log. Messages
    /// retention dropped before the group read them are always counted as
    /// lost and make `run` and `process` fail.
    pub offset_reset: Option<String>,
    /// Settings used when `url` is `kafka://...`.
    #[serde(default)]
    pub kafka: RawKafka,
}

/// `[log.kafka]`: the Kafka log's topic settings and client properties.
///
/// ```toml
/// [log]
/// url = "kafka://b1:9092,b2:9092/users_created"
/// [log.kafka]
/// partitions = 3
/// compression = "lz4"
/// [log.kafka.properties]
/// "security.protocol" = "SASL_SSL"
/// "sasl.mechanism" = "SCRAM-SHA-512"
/// "sasl.username" = "tributary"
/// # sasl.password: from TRIBUTARY_KAFKA_SASL_PASSWORD, never in the file
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKafka {
    /// Create the topic and `<topic>.dlq` if missing. Default `true`; with
    /// `false` a missing topic is an error.
    pub create_topics: Option<bool>,
    /// Partitions of a topic tributary creates. Default 3.
    pub partitions: Option<i32>,
    /// Replication factor of a topic tributary creates. Default min(3, brokers).
    pub replication_factor: Option<i32>,
    /// Producer compression: none, gzip, snappy, lz4, zstd. Default `lz4`.
    pub compression: Option<String>,
    /// Any librdkafka property, passed as it is (they override tributary's
    /// defaults). Values with "password" or "secret" in their key are
    /// redacted by `config check` and never logged.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// `[sink]`: where rows are stored.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSink {
    /// `sqlite:` (default: `<data_dir>/store.db`), `sqlite:PATH`, or
    /// `cassandra://[user:password@]host:9042[,host2]/keyspace.table`.
    pub url: Option<String>,
    /// Table name. Default `created_users`, as in the seed stack.
    pub table: Option<String>,
    /// fsync every commit instead of relying on the WAL. Default `false`,
    /// except with a Kafka log: its offsets are committed in Kafka, so each
    /// write to the embedded store is made durable first.
    pub fsync: Option<bool>,
    /// Settings used when `url` is `cassandra://...`.
    #[serde(default)]
    pub cassandra: RawCassandra,
}

/// `[sink.cassandra]`: the Cassandra store.
///
/// ```toml
/// [sink]
/// url = "cassandra://10.0.0.5:9042,10.0.0.6:9042/spark_streams.created_users"
/// [sink.cassandra]
/// user = "tributary"
/// password_file = "/run/secrets/cassandra"   # or TRIBUTARY_CASSANDRA_PASSWORD
/// consistency = "LOCAL_QUORUM"
/// datacenters = { dc1 = 3 }                   # NetworkTopologyStrategy
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCassandra {
    /// User name (also from the URL or `TRIBUTARY_CASSANDRA_USER`).
    pub user: Option<String>,
    /// A file holding the password (also from `TRIBUTARY_CASSANDRA_PASSWORD`
    /// or the URL). Never printed.
    pub password_file: Option<PathBuf>,
    /// Write consistency, also used for every read (a lookup by key sees
    /// every acknowledged row). Default `LOCAL_QUORUM`.
    pub consistency: Option<String>,
    /// Rows written at once, at most: `"adaptive"` (the default) or a fixed
    /// number (1 to 4096). The adaptive limit (1 to 512, starting at 16,
    /// shared by the batches in flight; `tributary_sink_concurrency_limit`)
    /// grows while the writes use it, and shrinks by a tenth when answers
    /// slow down well past the usual without carrying more rows per
    /// second, or say the node is overloaded, timed out or unavailable.
    pub concurrency: Option<RawConcurrency>,
    /// SimpleStrategy replication factor of a keyspace tributary creates.
    /// Default 1, as in the seed stack.
    pub replication_factor: Option<u32>,
    /// NetworkTopologyStrategy instead: replicas per datacenter.
    pub datacenters: Option<BTreeMap<String, u32>>,
    /// Connect with TLS, trusting the CA certificate(s) in this PEM file.
    pub tls_ca_file: Option<PathBuf>,
}

/// `[sink.cassandra] concurrency`: a number, or a word (`"adaptive"`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum RawConcurrency {
    Fixed(usize),
    Named(String),
}

/// `[processor]`: how the log is turned into rows.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProcessor {
    /// Records per source request (at most 5000), per log append and per
    /// sink write. Default `1000`.
    pub batch_size: Option<usize>,
    /// The largest message, in bytes: a larger record becomes a dead letter
    /// at ingestion (with its first 4 KiB) instead of entering the log, and
    /// a larger message already in a log is a dead letter unparsed. Default
    /// 262144 (256 KiB; a seed record is about 500 bytes); 1 KiB to 16 MiB.
    pub max_message_bytes: Option<usize>,
    /// How long `run` and `process` (without `--follow`) wait for a store
    /// that is down or full before they give up and fail, e.g. `10m`; nothing
    /// is committed meanwhile. `process --follow` and `serve` wait as long
    /// as it takes, warning every few seconds. Default `5m`.
    pub max_outage: Option<String>,
}

/// `[[pipelines]]`: one named pipeline, source → transform → log → table.
///
/// ```toml
/// [[pipelines]]
/// name = "orders"
/// source = { url = "https://shop.example/api/v2/orders", records = "/data",
///            paginate = { cursor = "/meta/next_cursor", param = "cursor" },
///            headers = { Authorization = "Bearer ${SHOP_TOKEN}" } }
/// transform = '''
/// .id = to_string!(.order_id)
/// '''
/// log = "kafka://127.0.0.1:9092/orders"
/// sink = "cassandra://127.0.0.1:9042/shop.orders"
/// table = { key = ["id"], columns = { id = "text", total = "double" } }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawPipeline {
    /// Letters, digits, `_` and `-`; unique. Names the pipeline in
    /// `--pipeline`, jobs, metrics and the dashboard.
    pub name: String,
    pub source: RawPipelineSource,
    /// A VRL program that reshapes each record into the row (`.` in, `.`
    /// out). Default: the record is the row.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transform: Option<toml::Spanned<String>>,
    /// The program in a file instead (relative to the working directory).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transform_file: Option<PathBuf>,
    /// Log URL as in `[log] url`. Default: `[log] url`, or the embedded log
    /// `<data_dir>/pipelines/<name>/log.db`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    /// Topic. Default: the one in `log`, or the pipeline's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// Consumer group. Default `tributary-<name>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Store URL as in `[sink] url`. Default: `[sink] url` (its keyspace),
    /// or the embedded store `<data_dir>/pipelines/<name>/store.db`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sink: Option<String>,
    /// The table rows go to. Without it the records are Random User users
    /// (a `gen:` or Random User source) written to the seed table.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<RawTable>,
}

/// A pipeline's `source`: a JSON API (`url`), a file (`file`), or the
/// built-in users (`url = "gen:..."`, or `kind = "randomuser"` for a Random
/// User API).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawPipelineSource {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// An NDJSON file or a file holding one JSON array.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// `json` (default for http(s) URLs) or `randomuser`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// JSON pointer to the records array, e.g. `/data`. Default: the whole
    /// body is the array.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub records: Option<String>,
    /// How to ask for the next page. Default: one request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paginate: Option<RawPaginate>,
    /// A page-size parameter sent with every request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_size: Option<RawPageSize>,
    /// Query parameters; values may hold `${ENV_VAR}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<BTreeMap<String, String>>,
    /// Request headers; values may hold `${ENV_VAR}` (never printed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    /// JSON pointer that, when present and not null in an answer, marks it
    /// as an error (retried).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Stop after this many pages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_pages: Option<u64>,
    /// A file's longest record (line or array element), in bytes; a longer
    /// one is a dead letter with its first bytes. Default 32 MiB. An NDJSON
    /// page ends at `page_size` records or 8 MiB of lines.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_record_bytes: Option<usize>,
    /// Time to establish a connection. Default `5s`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<String>,
    /// Longest wait for the next bytes of an answer. Default `30s`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_timeout: Option<String>,
    /// Attempts per page before the run fails. Default 8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// First backoff delay. Default `200ms`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff_initial: Option<String>,
    /// Largest backoff delay. Default `10s`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff_max: Option<String>,
}

/// `paginate = { page = "page", first = 1 }`, `{ offset = "offset" }`,
/// `{ cursor = "/meta/next", param = "cursor" }` or `{ link = true }`
/// (RFC 8288 `Link: <…>; rel="next"`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawPaginate {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<bool>,
}

/// `page_size = { param = "limit", size = 100 }`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawPageSize {
    pub param: String,
    pub size: u64,
}

/// A pipeline's `table`: its columns and primary key. Without `columns`
/// the existing table is read from the store.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTable {
    /// The embedded store's table name. Default: the pipeline's name (a
    /// Cassandra table is named in the `sink` URL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The partition key's columns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<Vec<String>>,
    /// The clustering columns (Cassandra), after the partition key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clustering: Option<Vec<String>>,
    /// Column name → type: text, int, bigint, double, boolean, uuid,
    /// timestamp, date, decimal, list<text>, map<text,text>.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub columns: Option<toml::Table>,
    /// A field that is not a column: `reject` (default: a dead letter
    /// naming it) or `ignore`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unknown_fields: Option<String>,
}
