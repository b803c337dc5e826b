//! A pipeline's log and store from their URLs and the `[log]` and `[sink]`
//! settings they share: Kafka and embedded-log settings, Cassandra
//! credentials (from the URL, a file or the environment), consistency and
//! replication, the embedded files' paths, and the names that go into SQL
//! and CQL (plain identifiers only).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use scylla::statement::Consistency;

use super::raw::{RawCassandra, RawConcurrency, RawLog, RawSink};
use super::{ConfigError, DAY, YEARS_10, duration, invalid};
use crate::pipeline::log::{KafkaLogConfig, LogConfig, OffsetReset, SqliteLogConfig};
use crate::pipeline::sink::{CassandraSinkConfig, SinkConfig, SqliteSinkConfig};

/// A name that goes into SQL or CQL: a plain identifier, so it can never
/// inject either.
fn identifier(key: &'static str, value: &str) -> Result<String, ConfigError> {
    let ok = !value.is_empty()
        && value.len() <= 48
        && value.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        return Err(invalid(
            key,
            format!("{value:?} must be letters, digits and _ (at most 48), starting with a letter"),
        ));
    }
    Ok(value.to_owned())
}

/// A Cassandra keyspace or table name: an identifier CQL takes unquoted
/// (not one of its reserved words, such as `order`).
pub(super) fn cql_name(key: &'static str, value: &str) -> Result<String, ConfigError> {
    let name = identifier(key, value)?;
    if CQL_RESERVED.contains(&name.to_ascii_uppercase().as_str()) {
        return Err(invalid(key, reserved(&name, "CQL")));
    }
    Ok(name)
}

/// An embedded store's table name: an identifier SQLite takes unquoted
/// (not a keyword such as `group`, not its own `sqlite_…`), and none that
/// the store's own statements would read as something else.
pub(super) fn sqlite_name(key: &'static str, value: &str) -> Result<String, ConfigError> {
    let name = identifier(key, value)?;
    let lower = name.to_ascii_lowercase();
    let reason = if lower.starts_with("sqlite_") {
        format!("{name:?} starts with sqlite_, which SQLite keeps for its own tables")
    } else if lower == "excluded" {
        // An upsert's `excluded.column` would name the table itself.
        format!("{name:?} is the name SQLite's upserts give the row being written")
    } else if lower == crate::pipeline::sink::sqlite::POSITIONS_TABLE {
        format!("{name:?} is where the embedded store keeps its position in the log")
    } else if !sqlite_takes(&name) {
        reserved(&name, "SQL")
    } else {
        return Ok(name);
    };
    Err(invalid(key, reason))
}

fn reserved(name: &str, language: &str) -> String {
    format!("{name:?} is a reserved word of {language}: choose another, e.g. my_{name}")
}

/// The words Cassandra 5.0 refuses as a keyspace or table name unquoted.
#[rustfmt::skip]
const CQL_RESERVED: &[&str] = &[
    "ADD", "ALLOW", "ALTER", "AND", "APPLY", "ASC", "AUTHORIZE", "BATCH", "BEGIN", "BY",
    "COLUMNFAMILY", "CREATE", "DELETE", "DESC", "DESCRIBE", "DROP", "ENTRIES", "EXECUTE", "FROM",
    "FULL", "GRANT", "IF", "IN", "INDEX", "INFINITY", "INSERT", "INTO", "IS", "KEYSPACE", "LIMIT",
    "MATERIALIZED", "MODIFY", "NAN", "NORECURSIVE", "NOT", "NULL", "OF", "ON", "OR", "ORDER",
    "PRIMARY", "RENAME", "REVOKE", "SCHEMA", "SELECT", "SET", "TABLE", "TO", "TOKEN", "TRUNCATE",
    "UNLOGGED", "UPDATE", "USE", "USING", "VIEW", "WHERE", "WITH",
];

/// Whether SQLite's own parser takes `name` as a table name unquoted.
fn sqlite_takes(name: &str) -> bool {
    rusqlite::Connection::open_in_memory()
        .and_then(|c| c.prepare(&format!("CREATE TABLE {name} (x)")).map(drop))
        .is_ok()
}

/// A Kafka topic name (the embedded log accepts the same): letters, digits,
/// `.`, `_`, `-`, at most 249.
pub(super) fn topic_name(value: &str) -> Result<String, ConfigError> {
    let ok = !value.is_empty()
        && value.len() <= 249
        && value != "."
        && value != ".."
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(value.to_owned())
    } else {
        Err(invalid(
            "log.topic",
            format!("{value:?} must be letters, digits, '.', '_' or '-' (at most 249)"),
        ))
    }
}

/// `cassandra://[user[:password]@]host:9042[,host2:9042]/keyspace.table`
/// plus `[sink.cassandra]`; credentials may also come from
/// `TRIBUTARY_CASSANDRA_USER` / `TRIBUTARY_CASSANDRA_PASSWORD`.
pub(super) fn cassandra_sink(
    rest: &str,
    raw: &RawCassandra,
    env_user: Option<String>,
    env_password: Option<String>,
) -> Result<CassandraSinkConfig, ConfigError> {
    let key = "sink.url";
    let (auth, rest) = match rest.rsplit_once('@') {
        Some((auth, rest)) => (Some(auth), rest),
        None => (None, rest),
    };
    let (hosts, path) = rest.split_once('/').ok_or_else(|| {
        invalid(key, "cassandra:// needs /keyspace.table, e.g. cassandra://127.0.0.1:9042/spark_streams.created_users")
    })?;
    let (keyspace, table) = path
        .split_once('.')
        .ok_or_else(|| invalid(key, format!("{path:?} must be keyspace.table")))?;
    let nodes: Vec<String> = hosts
        .split(',')
        .filter(|h| !h.is_empty())
        .map(|h| {
            if h.contains(':') {
                h.to_owned()
            } else {
                format!("{h}:9042")
            }
        })
        .collect();
    if nodes.is_empty() {
        return Err(invalid(key, "cassandra:// names no host"));
    }
    let (url_user, url_password) = match auth {
        Some(a) => match a.split_once(':') {
            Some((u, p)) => (Some(u.to_owned()), Some(p.to_owned())),
            None => (Some(a.to_owned()), None),
        },
        None => (None, None),
    };
    let password = match (&raw.password_file, env_password, url_password) {
        (Some(file), _, _) => Some(
            super::files::read_capped(file, super::files::SECRET_CAP)
                .map_err(|e| invalid("sink.cassandra.password_file", e))?
                .trim_end()
                .to_owned(),
        ),
        (None, Some(p), _) => Some(p),
        (None, None, p) => p,
    };
    let user = env_user.or(url_user).or(raw.user.clone());
    let consistency = match raw
        .consistency
        .as_deref()
        .unwrap_or("LOCAL_QUORUM")
        .to_ascii_uppercase()
        .as_str()
    {
        "ONE" => Consistency::One,
        "TWO" => Consistency::Two,
        "THREE" => Consistency::Three,
        "QUORUM" => Consistency::Quorum,
        "ALL" => Consistency::All,
        "LOCAL_QUORUM" => Consistency::LocalQuorum,
        "EACH_QUORUM" => Consistency::EachQuorum,
        "LOCAL_ONE" => Consistency::LocalOne,
        "ANY" => Consistency::Any,
        other => {
            return Err(invalid(
                "sink.cassandra.consistency",
                format!(
                    "{other:?} is not a write consistency level (ONE, QUORUM, LOCAL_QUORUM, ALL, ...)"
                ),
            ));
        }
    };
    // `None` is the adaptive limit, the default.
    let concurrency = match &raw.concurrency {
        None => None,
        Some(RawConcurrency::Fixed(n)) if (1..=4096).contains(n) => Some(*n),
        Some(RawConcurrency::Named(word)) if word == "adaptive" => None,
        Some(RawConcurrency::Fixed(n)) => {
            return Err(invalid(
                "sink.cassandra.concurrency",
                format!("{n} must be 1 to 4096, or \"adaptive\""),
            ));
        }
        Some(RawConcurrency::Named(word)) => {
            return Err(invalid(
                "sink.cassandra.concurrency",
                format!("{word:?} is neither a number (1 to 4096) nor \"adaptive\""),
            ));
        }
    };
    let mut replication = BTreeMap::new();
    match &raw.datacenters {
        Some(dcs) if !dcs.is_empty() => {
            replication.insert("class".into(), "NetworkTopologyStrategy".into());
            for (dc, rf) in dcs {
                replication.insert(dc.clone(), rf.to_string());
            }
        }
        _ => {
            replication.insert("class".into(), "SimpleStrategy".into());
            replication.insert(
                "replication_factor".into(),
                raw.replication_factor.unwrap_or(1).to_string(),
            );
        }
    }
    // One datacenter named: it is the local one (the driver sends requests
    // to its nodes, and LOCAL_QUORUM counts its replicas).
    let local_datacenter = match &raw.datacenters {
        Some(dcs) if dcs.len() == 1 => dcs.keys().next().cloned(),
        _ => None,
    };
    Ok(CassandraSinkConfig {
        local_datacenter,
        nodes,
        keyspace: cql_name("sink.url", keyspace)?,
        table: cql_name("sink.url", table)?,
        user,
        password,
        replication,
        consistency,
        concurrency,
        tls_ca_file: match &raw.tls_ca_file {
            Some(ca) => {
                super::files::check_file(ca, super::files::PEM_CAP)
                    .map_err(|e| invalid("sink.cassandra.tls_ca_file", e))?;
                Some(ca.clone())
            }
            None => None,
        },
    })
}

/// An embedded-database URL: `sqlite:` (the default file under the data
/// dir) or `sqlite:PATH` / `sqlite://PATH`.
pub(super) fn sqlite_path(
    key: &'static str,
    url: &str,
    default: PathBuf,
) -> Result<PathBuf, ConfigError> {
    let Some(rest) = url.strip_prefix("sqlite:") else {
        let scheme = url.split(':').next().unwrap_or(url);
        let hint = match scheme.to_ascii_lowercase().as_str() {
            // The scheme is right, its form is not (kafka:/host, kafka:host).
            "kafka" if key.starts_with("log") => {
                "a Kafka log is written kafka://HOST:PORT/TOPIC (two slashes), \
                 e.g. kafka://127.0.0.1:9092/users_created"
                    .to_owned()
            }
            "cassandra" if key.starts_with("sink") => {
                "a Cassandra sink is written cassandra://HOST:PORT/KEYSPACE.TABLE (two \
                 slashes), e.g. cassandra://127.0.0.1:9042/spark_streams.created_users"
                    .to_owned()
            }
            _ if key.starts_with("log") => format!(
                "unknown scheme {scheme:?}; use sqlite:, sqlite:PATH or kafka://HOST:PORT/TOPIC"
            ),
            _ => format!(
                "unknown scheme {scheme:?}; use sqlite:, sqlite:PATH or \
                 cassandra://HOST:PORT/KEYSPACE.TABLE"
            ),
        };
        return Err(invalid(key, format!("{url:?}: {hint}")));
    };
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    if rest.contains('?') {
        return Err(invalid(
            key,
            format!("{url:?}: options go in the config file, not the URL"),
        ));
    }
    Ok(if rest.is_empty() {
        default
    } else {
        PathBuf::from(rest)
    })
}

/// Credentials from the environment, for every pipeline's endpoints.
#[derive(Debug, Clone, Default)]
pub(super) struct Secrets {
    pub(super) kafka_sasl_password: Option<String>,
    pub(super) cassandra_user: Option<String>,
    pub(super) cassandra_password: Option<String>,
}

/// Where a pipeline's log sits when its URL leaves something out.
pub(super) struct LogPlace<'a> {
    /// A topic that beats the URL's (`--topic`).
    pub(super) topic_over: Option<&'a str>,
    pub(super) topic_default: &'a str,
    pub(super) path_default: PathBuf,
    /// The data dir (see [`KafkaLogConfig::lock_dir`]).
    pub(super) data_dir: &'a Path,
    /// Whether a topic in the URL names this pipeline's topic (not when the
    /// URL is `[log]`'s, shared by several pipelines).
    pub(super) use_url_topic: bool,
}

/// The log of a pipeline: `url` with `[log]`'s settings.
pub(super) fn resolve_log(
    raw: &RawLog,
    log_url: &str,
    place: LogPlace<'_>,
    secrets: &Secrets,
) -> Result<LogConfig, ConfigError> {
    let (kafka_brokers, url_topic) = match log_url.strip_prefix("kafka://") {
        Some(rest) => {
            let (brokers, topic) = rest.split_once('/').unwrap_or((rest, ""));
            if brokers.is_empty() {
                return Err(invalid(
                    "log.url",
                    format!("{log_url:?} names no broker; use kafka://host:9092/topic"),
                ));
            }
            (
                Some(brokers.to_owned()),
                (!topic.is_empty()).then(|| topic.to_owned()),
            )
        }
        None => (None, None),
    };
    let url_topic = url_topic.filter(|_| place.use_url_topic);
    let topic = topic_name(
        place
            .topic_over
            .or(url_topic.as_deref())
            .unwrap_or(place.topic_default),
    )?;
    if kafka_brokers.is_some()
        && place.use_url_topic
        && url_topic.is_none()
        && place.topic_over.is_none()
    {
        tracing::info!(
            topic,
            "the log URL {log_url} names no topic: using {topic} (write \
             kafka://HOST:PORT/TOPIC to choose one)"
        );
    }
    let retention_age = duration(
        "log.retention_age",
        raw.retention_age.as_deref(),
        7 * DAY,
        (Duration::ZERO, YEARS_10),
    )?;
    if raw.retention_messages == Some(0) {
        return Err(invalid("log.retention_messages", "must be at least 1"));
    }
    let offset_reset = match raw.offset_reset.as_deref() {
        None => OffsetReset::default(),
        Some(s) => OffsetReset::parse(s).ok_or_else(|| {
            invalid(
                "log.offset_reset",
                format!("{s:?} must be earliest, latest or error"),
            )
        })?,
    };
    Ok(match kafka_brokers {
        Some(brokers) => {
            let k = &raw.kafka;
            let partitions = k.partitions.unwrap_or(3);
            if partitions < 1 {
                return Err(invalid("log.kafka.partitions", "must be at least 1"));
            }
            if k.replication_factor.is_some_and(|rf| rf < 1) {
                return Err(invalid(
                    "log.kafka.replication_factor",
                    "must be at least 1",
                ));
            }
            let compression = k.compression.clone().unwrap_or_else(|| "lz4".into());
            if !matches!(
                compression.as_str(),
                "none" | "gzip" | "snappy" | "lz4" | "zstd"
            ) {
                return Err(invalid(
                    "log.kafka.compression",
                    format!("{compression:?} must be none, gzip, snappy, lz4 or zstd"),
                ));
            }
            let mut properties = k.properties.clone();
            if raw.offset_reset.is_some() {
                properties
                    .entry("auto.offset.reset".into())
                    .or_insert_with(|| offset_reset.as_str().into());
            }
            if let Some(pw) = &secrets.kafka_sasl_password {
                properties.insert("sasl.password".into(), pw.clone());
            }
            // librdkafka reads these files itself, whole: check them first
            // (a CA location may also be a directory, or `probe`).
            for (key, value) in &properties {
                let path = Path::new(value);
                if key.starts_with("ssl.")
                    && key.ends_with(".location")
                    && value != "probe"
                    && !path.is_dir()
                {
                    super::files::check_file(path, super::files::PEM_CAP)
                        .map_err(|e| invalid("log.kafka.properties", format!("{key}: {e}")))?;
                }
            }
            LogConfig::Kafka(KafkaLogConfig {
                brokers,
                topic,
                create_topics: k.create_topics.unwrap_or(true),
                partitions,
                replication_factor: k.replication_factor,
                compression,
                properties,
                lock_dir: Some(place.data_dir.to_owned()),
            })
        }
        None => LogConfig::Sqlite(SqliteLogConfig {
            path: sqlite_path("log.url", log_url, place.path_default)?,
            topic,
            retention_messages: raw.retention_messages,
            retention_age: (!retention_age.is_zero()).then_some(retention_age),
            durable_fsync: raw.fsync.unwrap_or(false),
            offset_reset,
        }),
    })
}

/// Where a pipeline's rows go when its URL leaves something out.
pub(super) struct SinkPlace<'a> {
    /// The embedded store's table.
    pub(super) table: &'a str,
    /// Where the table's name was given (the setting an error names).
    pub(super) table_key: &'static str,
    /// A Cassandra table that beats the URL's (a pipeline that takes the
    /// keyspace of `[sink]`'s URL).
    pub(super) cassandra_table: Option<&'a str>,
    pub(super) path_default: PathBuf,
}

/// The store of a pipeline: `url` with `[sink]`'s settings.
pub(super) fn resolve_sink(
    raw: &RawSink,
    sink_url: &str,
    place: SinkPlace<'_>,
    log: &LogConfig,
    secrets: &Secrets,
) -> Result<SinkConfig, ConfigError> {
    Ok(match sink_url.strip_prefix("cassandra://") {
        Some(rest) => {
            let mut c = cassandra_sink(
                rest,
                &raw.cassandra,
                secrets.cassandra_user.clone(),
                secrets.cassandra_password.clone(),
            )?;
            if let Some(table) = place.cassandra_table {
                c.table = cql_name(place.table_key, table)?;
            }
            SinkConfig::Cassandra(c)
        }
        None => SinkConfig::Sqlite(SqliteSinkConfig {
            path: sqlite_path("sink.url", sink_url, place.path_default)?,
            table: sqlite_name(place.table_key, place.table)?,
            // With a Kafka log, the consumer group's offsets live in Kafka
            // and may outlive the store's last transactions after a power
            // loss; so each write is made durable before it is committed
            // there. (With the embedded log, the store keeps the position
            // in the same transaction as the rows.)
            durable_fsync: raw.fsync.unwrap_or(false) || matches!(log, LogConfig::Kafka(_)),
        }),
    })
}

/// A consumer group name.
pub(super) fn group_name(group: String) -> Result<String, ConfigError> {
    if group.is_empty() || group.len() > 128 {
        return Err(invalid("log.group", "must be 1 to 128 characters"));
    }
    Ok(group)
}
