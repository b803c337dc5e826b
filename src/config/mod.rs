//! Configuration in two phases: [`RawConfig`] (the file, as written) plus
//! [`Overrides`] (env and flags) are resolved once at start-up into a
//! validated [`Config`]; components receive only their validated part.
//! Precedence: flags > `TRIBUTARY_*` env > `tributary.toml` > defaults.

mod pipelines;
mod raw;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use pipelines::PipelineConfig;
pub use raw::{
    RawBurst, RawCassandra, RawConfig, RawJob, RawKafka, RawLog, RawPageSize, RawPaginate,
    RawPipeline, RawPipelineSource, RawProcessor, RawSink, RawSource, RawTable, RawWeb,
};
use url::Url;

use crate::pipeline::ingest::IngestPlan;
use crate::pipeline::log::{KafkaLogConfig, LogConfig, OffsetReset, SqliteLogConfig};
use crate::pipeline::processor::ProcessorConfig;
use crate::pipeline::shape::Dataset;
use crate::pipeline::sink::{CassandraSinkConfig, SinkConfig, SqliteSinkConfig};
use crate::pipeline::source::generator::{self, Gender};
use crate::pipeline::source::{HttpConfig, MAX_RESULTS_PER_REQUEST, SourceConfig};
use crate::scheduler::runner::RetryPolicy;
use crate::scheduler::{JobConfig, Schedule};
use crate::web::{Token, WebConfig};
use scylla::statement::Consistency;
use std::collections::BTreeMap;

/// The config file read when none is named.
pub const DEFAULT_FILE: &str = "tributary.toml";

/// The name of the built-in pipeline of a config without `[[pipelines]]`.
pub const DEFAULT_PIPELINE: &str = "randomuser";

/// A configuration problem: always the user's to fix, never worth a retry.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {reason}")]
    Unreadable { path: String, reason: String },
    /// The toml error text names the line and column.
    #[error("config file {path}: {reason}")]
    Syntax { path: String, reason: String },
    #[error("{key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

/// Settings given on the command line or in `TRIBUTARY_*` variables.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    /// `--pipeline`: the pipeline a command works on (`serve`: the only
    /// one it runs).
    pub pipeline: Option<String>,
    /// The command works on every pipeline (`serve`, `config check`,
    /// `jobs`): without `--pipeline`, several pipelines are no error, and
    /// [`Config::pipeline`] is the first.
    pub every_pipeline: bool,
    pub source: Option<String>,
    pub log: Option<String>,
    pub sink: Option<String>,
    pub seed: Option<String>,
    pub batch_size: Option<usize>,
    pub group: Option<String>,
    pub topic: Option<String>,
    /// `TRIBUTARY_KAFKA_SASL_PASSWORD`: kept out of files and flags.
    pub kafka_sasl_password: Option<String>,
    /// `TRIBUTARY_CASSANDRA_USER`.
    pub cassandra_user: Option<String>,
    /// `TRIBUTARY_CASSANDRA_PASSWORD`: kept out of files and flags.
    pub cassandra_password: Option<String>,
    /// `serve --listen`.
    pub listen: Option<String>,
    /// `TRIBUTARY_WEB_TOKEN`: kept out of files and flags.
    pub web_token: Option<String>,
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub data_dir: PathBuf,
    /// The pipeline this command works on (`--pipeline`, or the only one;
    /// for a command on every pipeline, the first).
    pub pipeline: PipelineConfig,
    /// Every pipeline `serve` runs: all of them, or the one `--pipeline`
    /// names.
    pub pipelines: Vec<PipelineConfig>,
    /// Whether the pipelines are declared as `[[pipelines]]` (otherwise the
    /// one pipeline is the built-in Random User one).
    pub named_pipelines: bool,
    pub processor: ProcessorConfig,
    /// Where the file settings came from, if a file was read.
    pub file: Option<PathBuf>,
    /// Scheduled jobs for `serve`.
    pub jobs: Vec<JobConfig>,
    /// The dashboard of `serve`.
    pub web: WebConfig,
}

/// Reads the file: `explicit` must exist; otherwise `tributary.toml` in the
/// working directory is read if present.
pub fn load_file(explicit: Option<&Path>) -> Result<(RawConfig, Option<PathBuf>), ConfigError> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => {
            let default = PathBuf::from(DEFAULT_FILE);
            if !default.exists() {
                return Ok((RawConfig::default(), None));
            }
            default
        }
    };
    let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::Unreadable {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let raw = parse(&text).map_err(|reason| ConfigError::Syntax {
        path: path.display().to_string(),
        reason,
    })?;
    Ok((raw, Some(path)))
}

/// Parses file text; the error names line and column.
pub fn parse(text: &str) -> Result<RawConfig, String> {
    toml::from_str(text).map_err(|e| {
        let msg = e.message().to_owned();
        match e.span() {
            Some(span) => {
                let line = text[..span.start.min(text.len())].lines().count().max(1);
                let line = if text[..span.start.min(text.len())].ends_with('\n') {
                    line + 1
                } else {
                    line
                };
                format!("line {line}: {msg}")
            }
            None => msg,
        }
    })
}

/// The durations a setting accepts: the smallest and the largest.
type Bounds = (Duration, Duration);

const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);
/// A year as durations are written (`1y` is 365.25 days).
const YEAR: Duration = Duration::from_secs(31_557_600);
/// Retention: up to ten years. Longer is certainly a typo, and clocks that
/// meet it (now minus a retention age) stay far from overflow.
const YEARS_10: Duration = Duration::from_secs(10 * 31_557_600);

/// Parses a duration and checks it against `bounds`; `default` when absent.
/// Zero is accepted only where `bounds` starts at zero (its meaning, "off",
/// is then documented on the field).
fn duration(
    key: &'static str,
    value: Option<&str>,
    default: Duration,
    (min, max): Bounds,
) -> Result<Duration, ConfigError> {
    let Some(s) = value else {
        return Ok(default);
    };
    let d = humantime::parse_duration(s).map_err(|e| {
        invalid(
            key,
            format!("{s:?} is not a duration ({e}); try 5s, 250ms, 2m"),
        )
    })?;
    if d < min || d > max {
        let show = |d: Duration| humantime::format_duration(d).to_string();
        return Err(invalid(
            key,
            format!("{s:?} must be between {} and {}", show(min), show(max)),
        ));
    }
    Ok(d)
}

/// A table or topic name: a plain identifier, so it can never inject SQL.
fn identifier(key: &'static str, value: &str) -> Result<String, ConfigError> {
    let ok = !value.is_empty()
        && value.len() <= 48
        && value.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(value.to_owned())
    } else {
        Err(invalid(
            key,
            format!("{value:?} must be letters, digits and _ (at most 48), starting with a letter"),
        ))
    }
}

/// A Kafka topic name (the embedded log accepts the same): letters, digits,
/// `.`, `_`, `-`, at most 249.
fn topic_name(value: &str) -> Result<String, ConfigError> {
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
fn cassandra_sink(
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
            std::fs::read_to_string(file)
                .map_err(|e| {
                    invalid(
                        "sink.cassandra.password_file",
                        format!("{}: {e}", file.display()),
                    )
                })?
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
    let concurrency = raw.concurrency.unwrap_or(256);
    if !(1..=4096).contains(&concurrency) {
        return Err(invalid(
            "sink.cassandra.concurrency",
            format!("{concurrency} must be 1 to 4096"),
        ));
    }
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
    Ok(CassandraSinkConfig {
        nodes,
        keyspace: identifier("sink.url", keyspace)?,
        table: identifier("sink.url", table)?,
        user,
        password,
        replication,
        consistency,
        concurrency,
        tls_ca_file: raw.tls_ca_file.clone(),
    })
}

/// An embedded-database URL: `sqlite:` (the default file under the data
/// dir) or `sqlite:PATH` / `sqlite://PATH`.
fn sqlite_path(key: &'static str, url: &str, default: PathBuf) -> Result<PathBuf, ConfigError> {
    let Some(rest) = url.strip_prefix("sqlite:") else {
        let scheme = url.split(':').next().unwrap_or(url);
        let hint = format!("unknown scheme {scheme:?}");
        return Err(invalid(
            key,
            format!("{url:?}: {hint}; use sqlite: or sqlite:PATH"),
        ));
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

impl Config {
    /// Validates the raw file settings with the overrides on top. Every
    /// cross-field rule lives here.
    pub fn resolve(
        raw: RawConfig,
        file: Option<PathBuf>,
        over: Overrides,
    ) -> Result<Config, ConfigError> {
        let data_dir = over
            .data_dir
            .clone()
            .or(raw.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from("./tributary-data"));
        if data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", "must not be empty"));
        }

        // Processor and batch size.
        let batch_size = over.batch_size.or(raw.processor.batch_size).unwrap_or(1000);
        if batch_size == 0 || batch_size as u64 > MAX_RESULTS_PER_REQUEST {
            return Err(invalid(
                "processor.batch_size",
                format!("{batch_size} must be between 1 and {MAX_RESULTS_PER_REQUEST}"),
            ));
        }
        let max_outage = duration(
            "processor.max_outage",
            raw.processor.max_outage.as_deref(),
            5 * MINUTE,
            (SECOND, YEAR),
        )?;
        let max_message_bytes = raw.processor.max_message_bytes.unwrap_or(256 << 10);
        if max_message_bytes < 1024 {
            return Err(invalid(
                "processor.max_message_bytes",
                format!("{max_message_bytes} is below 1024 bytes"),
            ));
        }

        // The pipelines: the built-in one from `[source]`, `[log]` and
        // `[sink]`, or the named `[[pipelines]]`.
        let secrets = Secrets {
            kafka_sasl_password: over.kafka_sasl_password.clone(),
            cassandra_user: over.cassandra_user.clone(),
            cassandra_password: over.cassandra_password.clone(),
        };
        let pipelines = if raw.pipelines.is_empty() {
            if let Some(name) = over.pipeline.as_deref().filter(|n| *n != DEFAULT_PIPELINE) {
                return Err(invalid(
                    "--pipeline",
                    format!(
                        "no pipeline {name:?}: the config declares no [[pipelines]], so the \
                         one pipeline is {DEFAULT_PIPELINE:?}"
                    ),
                ));
            }
            vec![Self::default_pipeline(&raw, &data_dir, &over, &secrets)?]
        } else {
            pipelines::resolve(&raw, file.as_deref(), &data_dir, &over, &secrets)?
        };
        let selected = match (over.pipeline.as_deref(), over.every_pipeline) {
            (None, true) => &pipelines[0],
            (name, _) => pipelines::select(&pipelines, name)?,
        };
        let jobs = Self::resolve_jobs(&raw.jobs, &raw.source, &pipelines, batch_size)?;
        let web = resolve_web(&raw.web, over.listen, over.web_token)?;
        let pipeline = selected.clone();
        let pipelines = match over.pipeline {
            Some(_) => vec![pipeline.clone()],
            None => pipelines,
        };
        Ok(Config {
            jobs,
            web,
            data_dir,
            pipeline,
            pipelines,
            named_pipelines: !raw.pipelines.is_empty(),
            processor: ProcessorConfig {
                batch_size,
                max_message_bytes,
                max_outage,
            },
            file,
        })
    }

    /// The built-in Random User pipeline of a config without
    /// `[[pipelines]]`: `[source]`, `[log]` and `[sink]` with the flags on top.
    fn default_pipeline(
        raw: &RawConfig,
        data_dir: &Path,
        over: &Overrides,
        secrets: &Secrets,
    ) -> Result<PipelineConfig, ConfigError> {
        let (source, seed_was_drawn) =
            Self::resolve_source(&raw.source, over.source.clone(), over.seed.clone())?;
        let log_url = over
            .log
            .clone()
            .or(raw.log.url.clone())
            .unwrap_or_else(|| "sqlite:".into());
        let log = resolve_log(
            &raw.log,
            &log_url,
            LogPlace {
                topic_over: over.topic.as_deref(),
                topic_default: raw.log.topic.as_deref().unwrap_or("users_created"),
                path_default: data_dir.join("log.db"),
                use_url_topic: true,
            },
            secrets,
        )?;
        let group = group_name(
            over.group
                .clone()
                .or(raw.log.group.clone())
                .unwrap_or_else(|| "tributary".into()),
        )?;
        let sink_url = over
            .sink
            .clone()
            .or(raw.sink.url.clone())
            .unwrap_or_else(|| "sqlite:".into());
        let sink = resolve_sink(
            &raw.sink,
            &sink_url,
            SinkPlace {
                table: raw.sink.table.as_deref().unwrap_or("created_users"),
                cassandra_table: None,
                path_default: data_dir.join("store.db"),
            },
            &log,
            secrets,
        )?;
        Ok(PipelineConfig {
            name: DEFAULT_PIPELINE.into(),
            source,
            seed_was_drawn,
            dataset: Dataset::Users,
            log,
            group,
            sink,
        })
    }

    fn resolve_jobs(
        raw_jobs: &[RawJob],
        raw_source: &RawSource,
        pipelines: &[PipelineConfig],
        batch_size: usize,
    ) -> Result<Vec<JobConfig>, ConfigError> {
        let mut jobs: Vec<JobConfig> = Vec::new();
        for j in raw_jobs {
            let ok_name = !j.name.is_empty()
                && j.name.len() <= 64
                && j.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !ok_name {
                return Err(invalid(
                    "jobs.name",
                    format!("{:?} must be letters, digits, '_' or '-'", j.name),
                ));
            }
            if jobs.iter().any(|other| other.name == j.name) {
                return Err(invalid("jobs.name", format!("{:?} is used twice", j.name)));
            }
            let pipeline = pipelines::for_job(pipelines, &j.name, j.pipeline.as_deref())?;
            let schedule = Schedule::parse(&j.schedule, j.timezone.as_deref())
                .map_err(|e| invalid("jobs.schedule", format!("job {}: {e}", j.name)))?;
            if j.max_active_runs.unwrap_or(1) != 1 {
                return Err(invalid(
                    "jobs.max_active_runs",
                    format!("job {}: only 1 is supported", j.name),
                ));
            }
            let plan = match &j.burst {
                Some(b) => IngestPlan::Burst {
                    duration: duration(
                        "jobs.burst.duration",
                        Some(&b.duration),
                        Duration::ZERO,
                        (Duration::from_millis(10), YEAR),
                    )?,
                    interval: duration(
                        "jobs.burst.interval",
                        Some(&b.interval),
                        Duration::ZERO,
                        (Duration::from_millis(10), DAY),
                    )?,
                    per_tick: match b.records.unwrap_or(1) {
                        n @ 1..=MAX_RESULTS_PER_REQUEST => n,
                        n => {
                            return Err(invalid(
                                "jobs.burst.records",
                                format!(
                                    "job {}: {n} must be between 1 and {MAX_RESULTS_PER_REQUEST}",
                                    j.name
                                ),
                            ));
                        }
                    },
                },
                None => IngestPlan::Records {
                    total: j.records.unwrap_or(match pipeline.dataset {
                        Dataset::Users => 1000,
                        Dataset::Table(_) => u64::MAX,
                    }),
                    page_size: batch_size as u64,
                },
            };
            let seed = j.seed.clone().unwrap_or_else(|| j.name.clone());
            let source = match (&j.source, &pipeline.source) {
                (Some(url), source) if source.gives_users() => {
                    Self::resolve_source(raw_source, Some(url.clone()), Some(seed))?.0
                }
                (Some(_), _) => {
                    return Err(invalid(
                        "jobs.source",
                        format!(
                            "job {}: pipeline {} takes its source from its own `source`",
                            j.name, pipeline.name
                        ),
                    ));
                }
                (None, SourceConfig::Generator { nats, gender, .. }) => SourceConfig::Generator {
                    seed,
                    nats: nats.clone(),
                    gender: gender.clone(),
                },
                (None, SourceConfig::Http(h)) => {
                    SourceConfig::Http(HttpConfig { seed, ..h.clone() })
                }
                (None, other) => other.clone(),
            };
            jobs.push(JobConfig {
                name: j.name.clone(),
                pipeline: pipeline.name.clone(),
                schedule,
                plan,
                source,
                retry: RetryPolicy {
                    retries: j.retries.unwrap_or(0),
                    retry_delay: duration(
                        "jobs.retry_delay",
                        j.retry_delay.as_deref(),
                        30 * SECOND,
                        (Duration::ZERO, DAY),
                    )?,
                    timeout: j
                        .timeout
                        .as_deref()
                        .map(|t| duration("jobs.timeout", Some(t), Duration::ZERO, (SECOND, YEAR)))
                        .transpose()?,
                },
                catchup: j.catchup.unwrap_or(false),
            });
        }
        Ok(jobs)
    }

    fn resolve_source(
        raw: &RawSource,
        url_override: Option<String>,
        seed_override: Option<String>,
    ) -> Result<(SourceConfig, bool), ConfigError> {
        let url = url_override
            .or_else(|| raw.url.clone())
            .unwrap_or_else(|| "gen:".into());
        let parsed =
            Url::parse(&url).map_err(|e| invalid("source.url", format!("{url:?}: {e}")))?;
        let query = |name: &str| {
            parsed
                .query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        let seed_given = seed_override
            .or_else(|| raw.seed.clone())
            .or_else(|| query("seed"));
        let seed_was_drawn = seed_given.is_none();
        let seed = seed_given.unwrap_or_else(generator::random_seed);
        if seed.is_empty() {
            return Err(invalid("source.seed", "must not be empty"));
        }
        let nats: Vec<String> = match &raw.nat {
            Some(list) => list.clone(),
            None => query("nat")
                .map(|s| s.split(',').map(str::to_owned).collect())
                .unwrap_or_default(),
        };
        let nats: Vec<String> = nats
            .iter()
            .map(|n| n.trim().to_ascii_uppercase())
            .filter(|n| !n.is_empty())
            .collect();
        for n in &nats {
            if generator::by_code(n).is_none() {
                let known: Vec<_> = generator::NATIONALITIES.iter().map(|n| n.code).collect();
                return Err(invalid(
                    "source.nat",
                    format!("unknown nationality {n:?}; known: {}", known.join(" ")),
                ));
            }
        }
        let gender = raw.gender.clone().or_else(|| query("gender"));
        if let Some(g) = &gender
            && Gender::parse(g).is_none()
        {
            return Err(invalid(
                "source.gender",
                format!("{g:?} must be female or male"),
            ));
        }
        let config = match parsed.scheme() {
            "gen" => SourceConfig::Generator { seed, nats, gender },
            "http" | "https" => {
                let max_attempts = raw.max_attempts.unwrap_or(8);
                if max_attempts == 0 {
                    return Err(invalid("source.max_attempts", "must be at least 1"));
                }
                let mut base = parsed.clone();
                base.set_query(None);
                SourceConfig::Http(HttpConfig {
                    url: base,
                    seed,
                    nats,
                    gender,
                    connect_timeout: duration(
                        "source.connect_timeout",
                        raw.connect_timeout.as_deref(),
                        5 * SECOND,
                        (Duration::from_millis(10), 10 * MINUTE),
                    )?,
                    read_timeout: duration(
                        "source.read_timeout",
                        raw.read_timeout.as_deref(),
                        30 * SECOND,
                        (Duration::from_millis(10), HOUR),
                    )?,
                    max_attempts,
                    backoff_initial: duration(
                        "source.backoff_initial",
                        raw.backoff_initial.as_deref(),
                        Duration::from_millis(200),
                        (Duration::from_millis(1), 10 * MINUTE),
                    )?,
                    backoff_max: duration(
                        "source.backoff_max",
                        raw.backoff_max.as_deref(),
                        10 * SECOND,
                        (Duration::from_millis(1), HOUR),
                    )?,
                })
            }
            other => {
                return Err(invalid(
                    "source.url",
                    format!("{url:?}: unknown scheme {other:?}; use gen: or http(s)://host/api/"),
                ));
            }
        };
        Ok((config, seed_was_drawn))
    }

    /// The resolved configuration as TOML, secrets redacted, for `config
    /// check`. It parses back into the same configuration (a redacted
    /// secret aside).
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        let file = self
            .file
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "(none: defaults, env and flags)".into());
        out.push_str(&format!("# resolved from {file}\n"));
        out.push_str(&format!(
            "data_dir = {}\n",
            toml_str(&self.data_dir.display().to_string())
        ));
        let p = &self.pipeline;
        if !self.named_pipelines {
            out.push_str("\n[source]\n");
            source_toml(&mut out, &p.source);
        }
        out.push_str("\n[log]\n");
        if !self.named_pipelines {
            out.push_str(&format!(
                "url = {}\ntopic = {}\ngroup = {}\n",
                toml_str(&log_url(&p.log)),
                toml_str(p.log.topic()),
                toml_str(&p.group)
            ));
        }
        log_settings_toml(&mut out, &p.log);
        out.push_str("\n[sink]\n");
        if !self.named_pipelines {
            out.push_str(&format!("url = {}\n", toml_str(&sink_url(&p.sink))));
            if let SinkConfig::Sqlite(s) = &p.sink {
                out.push_str(&format!("table = {}\n", toml_str(&s.table)));
            }
        }
        sink_settings_toml(&mut out, &p.sink);
        out.push_str(&format!(
            "\n[processor]\nbatch_size = {}\nmax_message_bytes = {}\nmax_outage = {}\n",
            self.processor.batch_size,
            self.processor.max_message_bytes,
            toml_str(&humantime::format_duration(self.processor.max_outage).to_string())
        ));
        let listen = self
            .web
            .listen
            .map(|a| a.to_string())
            .unwrap_or_else(|| "off".into());
        out.push_str(&format!("\n[web]\nlisten = {}\n", toml_str(&listen)));
        if self.web.token.is_some() {
            out.push_str("# a token is set (TRIBUTARY_WEB_TOKEN or token_file); not shown\n");
        }
        if !self.jobs.is_empty() {
            #[derive(serde::Serialize)]
            struct Jobs {
                jobs: Vec<RawJob>,
            }
            let jobs = Jobs {
                jobs: self.jobs.iter().map(job_to_raw).collect(),
            };
            out.push('\n');
            out.push_str(&toml::to_string(&jobs).expect("a resolved job serialises as TOML"));
        }
        if self.named_pipelines {
            #[derive(serde::Serialize)]
            struct Pipelines {
                pipelines: Vec<RawPipeline>,
            }
            let pipelines = Pipelines {
                pipelines: self.pipelines.iter().map(pipelines::to_raw).collect(),
            };
            out.push('\n');
            out.push_str(
                &toml::to_string(&pipelines).expect("a resolved pipeline serialises as TOML"),
            );
        }
        out
    }
}

/// A job as `[[jobs]]` takes it.
fn job_to_raw(j: &JobConfig) -> RawJob {
    let show = |d: Duration| humantime::format_duration(d).to_string();
    let (schedule, timezone) = match &j.schedule {
        Schedule::Cron { text, tz, .. } => (text.clone(), Some(tz.name().to_owned())),
        every @ Schedule::Every(_) => (every.to_string(), None),
    };
    let (burst, records) = match j.plan {
        IngestPlan::Burst {
            duration,
            interval,
            per_tick,
        } => (
            Some(RawBurst {
                duration: show(duration),
                interval: show(interval),
                records: Some(per_tick),
            }),
            None,
        ),
        IngestPlan::Records { total, .. } => (None, (total != u64::MAX).then_some(total)),
    };
    let (source, seed) = match &j.source {
        SourceConfig::Generator { seed, nats, gender } => {
            let mut url = String::from("gen:");
            let mut query = Vec::new();
            if !nats.is_empty() {
                query.push(format!("nat={}", nats.join(",")));
            }
            if let Some(g) = gender {
                query.push(format!("gender={g}"));
            }
            if !query.is_empty() {
                url.push('?');
                url.push_str(&query.join("&"));
            }
            (Some(url), Some(seed.clone()))
        }
        SourceConfig::Http(h) => (Some(redact(&h.url)), Some(h.seed.clone())),
        SourceConfig::JsonApi(_) | SourceConfig::File(_) => (None, None),
    };
    RawJob {
        name: j.name.clone(),
        pipeline: Some(j.pipeline.clone()),
        schedule,
        timezone,
        burst,
        records,
        source,
        seed,
        retries: Some(j.retry.retries),
        retry_delay: Some(show(j.retry.retry_delay)),
        timeout: j.retry.timeout.map(show),
        max_active_runs: None,
        catchup: Some(j.catchup),
    }
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn source_toml(out: &mut String, source: &SourceConfig) {
    match source {
        SourceConfig::Generator { seed, nats, gender } => {
            out.push_str("url = \"gen:\"\n");
            out.push_str(&format!("seed = {}\nnat = {nats:?}\n", toml_str(seed)));
            if let Some(g) = gender {
                out.push_str(&format!("gender = {}\n", toml_str(g)));
            }
        }
        SourceConfig::Http(h) => {
            out.push_str(&format!("url = {}\n", toml_str(&redact(&h.url))));
            out.push_str(&format!(
                "seed = {}\nnat = {:?}\n",
                toml_str(&h.seed),
                h.nats
            ));
            if let Some(g) = &h.gender {
                out.push_str(&format!("gender = {}\n", toml_str(g)));
            }
            let show = |d: Duration| toml_str(&humantime::format_duration(d).to_string());
            out.push_str(&format!(
                "connect_timeout = {}\nread_timeout = {}\nmax_attempts = {}\nbackoff_initial = {}\nbackoff_max = {}\n",
                show(h.connect_timeout),
                show(h.read_timeout),
                h.max_attempts,
                show(h.backoff_initial),
                show(h.backoff_max),
            ));
        }
        SourceConfig::JsonApi(_) | SourceConfig::File(_) => {}
    }
}

/// A log's URL, as `[log] url` takes it.
pub(crate) fn log_url(log: &LogConfig) -> String {
    match log {
        LogConfig::Sqlite(l) => format!("sqlite:{}", l.path.display()),
        LogConfig::Kafka(k) => format!("kafka://{}/{}", k.brokers, k.topic),
    }
}

/// A store's URL, as `[sink] url` takes it, without its password.
pub(crate) fn sink_url(sink: &SinkConfig) -> String {
    match sink {
        SinkConfig::Sqlite(s) => format!("sqlite:{}", s.path.display()),
        SinkConfig::Cassandra(c) => {
            let user = c.user.as_ref().map(|u| format!("{u}@")).unwrap_or_default();
            format!(
                "cassandra://{user}{}/{}.{}",
                c.nodes.join(","),
                c.keyspace,
                c.table
            )
        }
    }
}

/// `[log]`'s settings beside its URL.
fn log_settings_toml(out: &mut String, log: &LogConfig) {
    match log {
        LogConfig::Sqlite(l) => {
            if let Some(n) = l.retention_messages {
                out.push_str(&format!("retention_messages = {n}\n"));
            }
            let age = l
                .retention_age
                .map(|a| humantime::format_duration(a).to_string())
                .unwrap_or_else(|| "0s".into());
            out.push_str(&format!(
                "retention_age = {}\nfsync = {}\noffset_reset = {}\n",
                toml_str(&age),
                l.durable_fsync,
                toml_str(l.offset_reset.as_str())
            ));
        }
        LogConfig::Kafka(k) => {
            out.push_str(&format!("\n[log.kafka]\npartitions = {}\n", k.partitions));
            if let Some(rf) = k.replication_factor {
                out.push_str(&format!("replication_factor = {rf}\n"));
            }
            out.push_str(&format!(
                "compression = {}\ncreate_topics = {}\n",
                toml_str(&k.compression),
                k.create_topics
            ));
            if !k.properties.is_empty() {
                out.push_str("\n[log.kafka.properties]\n");
                for (key, value) in &k.properties {
                    let shown = if is_secret_key(key) {
                        "***"
                    } else {
                        value.as_str()
                    };
                    out.push_str(&format!("{} = {}\n", toml_str(key), toml_str(shown)));
                }
            }
        }
    }
}

/// A write consistency as `[sink.cassandra] consistency` takes it.
fn consistency_name(c: Consistency) -> &'static str {
    match c {
        Consistency::One => "ONE",
        Consistency::Two => "TWO",
        Consistency::Three => "THREE",
        Consistency::Quorum => "QUORUM",
        Consistency::All => "ALL",
        Consistency::LocalQuorum => "LOCAL_QUORUM",
        Consistency::EachQuorum => "EACH_QUORUM",
        Consistency::LocalOne => "LOCAL_ONE",
        Consistency::Any => "ANY",
        // Serial levels are for reads; they are not offered for writes.
        Consistency::Serial | Consistency::LocalSerial => "LOCAL_QUORUM",
    }
}

/// `[sink]`'s settings beside its URL.
fn sink_settings_toml(out: &mut String, sink: &SinkConfig) {
    match sink {
        SinkConfig::Sqlite(s) => out.push_str(&format!("fsync = {}\n", s.durable_fsync)),
        SinkConfig::Cassandra(c) => {
            out.push_str(&format!(
                "\n[sink.cassandra]\nconsistency = {}\nconcurrency = {}\n",
                toml_str(consistency_name(c.consistency)),
                c.concurrency,
            ));
            if c.password.is_some() {
                out.push_str("# a password is set (password_file or TRIBUTARY_CASSANDRA_PASSWORD); not shown\n");
            }
            match c.replication.get("class").map(String::as_str) {
                Some("NetworkTopologyStrategy") => {
                    let dcs = c
                        .replication
                        .iter()
                        .filter(|(k, _)| k.as_str() != "class")
                        .map(|(k, v)| format!("{} = {v}", toml_str(k)))
                        .collect::<Vec<_>>()
                        .join(", ");
                    out.push_str(&format!("datacenters = {{ {dcs} }}\n"));
                }
                _ => out.push_str(&format!(
                    "replication_factor = {}\n",
                    c.replication
                        .get("replication_factor")
                        .map(String::as_str)
                        .unwrap_or("1")
                )),
            }
            if let Some(ca) = &c.tls_ca_file {
                out.push_str(&format!(
                    "tls_ca_file = {}\n",
                    toml_str(&ca.display().to_string())
                ));
            }
        }
    }
}

/// Credentials from the environment, for every pipeline's endpoints.
#[derive(Debug, Clone, Default)]
struct Secrets {
    kafka_sasl_password: Option<String>,
    cassandra_user: Option<String>,
    cassandra_password: Option<String>,
}

/// Where a pipeline's log sits when its URL leaves something out.
struct LogPlace<'a> {
    /// A topic that beats the URL's (`--topic`).
    topic_over: Option<&'a str>,
    topic_default: &'a str,
    path_default: PathBuf,
    /// Whether a topic in the URL names this pipeline's topic (not when the
    /// URL is `[log]`'s, shared by several pipelines).
    use_url_topic: bool,
}

/// The log of a pipeline: `url` with `[log]`'s settings.
fn resolve_log(
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
            LogConfig::Kafka(KafkaLogConfig {
                brokers,
                topic,
                create_topics: k.create_topics.unwrap_or(true),
                partitions,
                replication_factor: k.replication_factor,
                compression,
                properties,
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
struct SinkPlace<'a> {
    /// The embedded store's table.
    table: &'a str,
    /// A Cassandra table that beats the URL's (a pipeline that takes the
    /// keyspace of `[sink]`'s URL).
    cassandra_table: Option<&'a str>,
    path_default: PathBuf,
}

/// The store of a pipeline: `url` with `[sink]`'s settings.
fn resolve_sink(
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
                c.table = identifier("table.name", table)?;
            }
            SinkConfig::Cassandra(c)
        }
        None => SinkConfig::Sqlite(SqliteSinkConfig {
            path: sqlite_path("sink.url", sink_url, place.path_default)?,
            table: identifier("sink.table", place.table)?,
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
fn group_name(group: String) -> Result<String, ConfigError> {
    if group.is_empty() || group.len() > 128 {
        return Err(invalid("log.group", "must be 1 to 128 characters"));
    }
    Ok(group)
}

/// `[web]`: where `serve` listens and the token it asks for. A token is
/// required as soon as the address is not loopback.
fn resolve_web(
    raw: &RawWeb,
    listen: Option<String>,
    env_token: Option<String>,
) -> Result<WebConfig, ConfigError> {
    let key = "web.listen";
    let text = listen
        .or_else(|| raw.listen.clone())
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let listen = if text == "off" {
        None
    } else {
        Some(text.parse::<std::net::SocketAddr>().map_err(|e| {
            invalid(
                key,
                format!("{text:?} is not an address and port like 127.0.0.1:8080 ({e})"),
            )
        })?)
    };
    let token = match (env_token, &raw.token_file) {
        (Some(t), _) => Some(t.trim().to_owned()),
        (None, Some(file)) => Some(
            std::fs::read_to_string(file)
                .map_err(|e| invalid("web.token_file", format!("{}: {e}", file.display())))?
                .trim()
                .to_owned(),
        ),
        (None, None) => None,
    };
    let token = match token {
        Some(t) if t.chars().count() < 16 => {
            return Err(invalid(
                "web.token_file",
                "the web token must be at least 16 characters (TRIBUTARY_WEB_TOKEN or web.token_file)",
            ));
        }
        t => t.map(Token::new),
    };
    if let Some(addr) = listen
        && !addr.ip().is_loopback()
        && token.is_none()
    {
        return Err(invalid(
            key,
            format!(
                "{addr} is reachable from other machines, so the dashboard needs a token: \
                 set TRIBUTARY_WEB_TOKEN or web.token_file, or listen on 127.0.0.1"
            ),
        ));
    }
    Ok(WebConfig { listen, token })
}

/// Whether a client property holds a secret (never printed).
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["password", "secret", "token", "sasl.oauthbearer.config"]
        .iter()
        .any(|s| k.contains(s))
}

/// A URL with its password (and any query, which may carry a key) hidden.
pub fn redact(url: &Url) -> String {
    let mut u = url.clone();
    if u.password().is_some() {
        let _ = u.set_password(Some("***"));
    }
    if u.query().is_some() {
        u.set_query(Some("***"));
    }
    u.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(text: &str, over: Overrides) -> Result<Config, ConfigError> {
        Config::resolve(parse(text).map_err(|r| invalid("file", r))?, None, over)
    }

    #[test]
    fn defaults_are_the_embedded_pipeline() {
        let c = resolve("", Overrides::default()).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("./tributary-data"));
        assert!(matches!(c.pipeline.source, SourceConfig::Generator { .. }));
        assert!(c.pipeline.seed_was_drawn);
        let LogConfig::Sqlite(l) = &c.pipeline.log else {
            panic!("sqlite log expected")
        };
        assert_eq!(l.path, PathBuf::from("./tributary-data/log.db"));
        assert_eq!(l.topic, "users_created");
        assert_eq!(c.pipeline.group, "tributary");
        let SinkConfig::Sqlite(s) = &c.pipeline.sink else {
            panic!("sqlite sink expected")
        };
        assert_eq!(s.table, "created_users");
        assert_eq!(c.processor.batch_size, 1000);
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let err = parse("data_dir = \"x\"\n[source]\nurl = \"gen:\"\nsede = \"42\"\n").unwrap_err();
        assert!(err.contains("line 4"), "{err}");
        assert!(err.contains("unknown field `sede`"), "{err}");
    }

    #[test]
    fn flags_beat_file() {
        let c = resolve(
            "[source]\nseed = \"file\"\n[processor]\nbatch_size = 10\n",
            Overrides {
                seed: Some("flag".into()),
                ..Overrides::default()
            },
        )
        .unwrap();
        assert_eq!(c.pipeline.source.seed(), "flag");
        assert!(!c.pipeline.seed_was_drawn);
        assert_eq!(c.processor.batch_size, 10);
    }

    #[test]
    fn a_command_on_every_pipeline_needs_no_name() {
        let text = r#"
[[pipelines]]
name = "users"
source = { url = "gen:?seed=a" }
[[pipelines]]
name = "more_users"
source = { url = "gen:?seed=b" }
"#;
        let err = resolve(text, Overrides::default()).unwrap_err();
        assert!(
            err.to_string().contains("name one with --pipeline"),
            "{err}"
        );
        let every = Overrides {
            every_pipeline: true,
            ..Overrides::default()
        };
        let c = resolve(text, every.clone()).unwrap();
        assert_eq!(c.pipeline.name, "users");
        assert_eq!(c.pipelines.len(), 2);
        let c = resolve(
            text,
            Overrides {
                pipeline: Some("more_users".into()),
                ..every
            },
        )
        .unwrap();
        assert_eq!(c.pipeline.name, "more_users");
        assert_eq!(c.pipelines.len(), 1);
    }

    #[test]
    fn gen_url_carries_seed_and_nat() {
        let c = resolve(
            "",
            Overrides {
                source: Some("gen:?seed=42&nat=us,GB".into()),
                ..Overrides::default()
            },
        )
        .unwrap();
        assert_eq!(
            c.pipeline.source,
            SourceConfig::Generator {
                seed: "42".into(),
                nats: vec!["US".into(), "GB".into()],
                gender: None
            }
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            ("[processor]\nbatch_size = 0\n", "processor.batch_size"),
            ("[processor]\nbatch_size = 9000\n", "processor.batch_size"),
            ("[source]\nurl = \"ftp://x/\"\n", "source.url"),
            ("[source]\nnat = [\"XX\"]\n", "source.nat"),
            (
                "[source]\nurl = \"http://x/api/\"\nread_timeout = \"soon\"\n",
                "source.read_timeout",
            ),
            ("[sink]\ntable = \"users; DROP TABLE x\"\n", "sink.table"),
            ("[log]\nurl = \"kafka:///t\"\n", "log.url"),
            ("[log]\ntopic = \"a topic\"\n", "log.topic"),
            (
                "[log]\nurl = \"kafka://h:9092/t\"\n[log.kafka]\ncompression = \"brotli\"\n",
                "log.kafka.compression",
            ),
        ];
        for (text, key) in cases {
            let err = resolve(text, Overrides::default()).unwrap_err();
            assert!(err.to_string().starts_with(key), "{text}: {err}");
        }
    }

    #[test]
    fn http_source_keeps_base_and_defaults() {
        let c = resolve(
            "[source]\nurl = \"http://127.0.0.1:5080/api/1.4/\"\nseed = \"s\"\n",
            Overrides::default(),
        )
        .unwrap();
        let SourceConfig::Http(h) = c.pipeline.source else {
            panic!("http expected")
        };
        assert_eq!(h.url.as_str(), "http://127.0.0.1:5080/api/1.4/");
        assert_eq!(h.max_attempts, 8);
        assert_eq!(h.read_timeout, Duration::from_secs(30));
    }

    #[test]
    fn kafka_url_and_properties_resolve_with_secrets_redacted() {
        let c = resolve(
            "[log]\nurl = \"kafka://b1:9092,b2:9092/users_created\"\n[log.kafka.properties]\n\"sasl.username\" = \"u\"\n",
            Overrides {
                kafka_sasl_password: Some("hunter2".into()),
                ..Overrides::default()
            },
        )
        .unwrap();
        let LogConfig::Kafka(k) = &c.pipeline.log else {
            panic!("kafka expected")
        };
        assert_eq!(k.brokers, "b1:9092,b2:9092");
        assert_eq!(k.topic, "users_created");
        assert_eq!(k.partitions, 3);
        assert_eq!(k.compression, "lz4");
        assert_eq!(k.properties["sasl.password"], "hunter2");
        let shown = c.to_toml();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("\"sasl.username\" = \"u\""), "{shown}");
    }

    #[test]
    fn cassandra_url_resolves_and_hides_the_password() {
        let c = resolve(
            "[sink]\nurl = \"cassandra://cassandra:secret@h1,h2:9043/spark_streams.created_users\"\n",
            Overrides::default(),
        )
        .unwrap();
        let SinkConfig::Cassandra(s) = &c.pipeline.sink else {
            panic!("cassandra expected")
        };
        assert_eq!(s.nodes, ["h1:9042", "h2:9043"]);
        assert_eq!(
            (s.keyspace.as_str(), s.table.as_str()),
            ("spark_streams", "created_users")
        );
        assert_eq!(s.user.as_deref(), Some("cassandra"));
        assert_eq!(s.password.as_deref(), Some("secret"));
        assert_eq!(s.consistency, Consistency::LocalQuorum);
        assert_eq!(s.replication["class"], "SimpleStrategy");
        let shown = c.to_toml();
        assert!(!shown.contains("secret"), "{shown}");
        let err = resolve(
            "[sink]\nurl = \"cassandra://h1/nokeyspace\"\n",
            Overrides::default(),
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("sink.url"), "{err}");
    }

    #[test]
    fn jobs_resolve_like_the_seed_dag() {
        let c = resolve(
            "[[jobs]]\nname = \"random_users\"\nschedule = \"0 1 * * *\"\nburst = { duration = \"2m\", interval = \"1s\", records = 1 }\nretries = 3\nretry_delay = \"30s\"\n",
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.jobs.len(), 1);
        let j = &c.jobs[0];
        assert_eq!(
            j.plan,
            IngestPlan::Burst {
                duration: Duration::from_secs(120),
                interval: Duration::from_secs(1),
                per_tick: 1
            }
        );
        assert_eq!(j.retry.retries, 3);
        assert_eq!(j.source.seed(), "random_users");
        for bad in [
            "[[jobs]]\nname = \"a b\"\nschedule = \"@daily\"\n",
            "[[jobs]]\nname = \"a\"\nschedule = \"every day\"\n",
            "[[jobs]]\nname = \"a\"\nschedule = \"@daily\"\nmax_active_runs = 2\n",
            "[[jobs]]\nname = \"a\"\nschedule = \"@daily\"\n[[jobs]]\nname = \"a\"\nschedule = \"@daily\"\n",
        ] {
            let err = resolve(bad, Overrides::default()).unwrap_err();
            assert!(err.to_string().starts_with("jobs."), "{bad}: {err}");
        }
    }

    #[test]
    fn several_pipelines_need_a_choice_only_where_a_command_works_on_one() {
        let text = "[[pipelines]]\nname = \"a\"\nsource = { url = \"gen:?seed=1\" }\n\
                    [[pipelines]]\nname = \"b\"\nsource = { url = \"gen:?seed=2\" }\n";
        let err = resolve(text, Overrides::default()).unwrap_err();
        assert!(
            err.to_string().contains("name one with --pipeline"),
            "{err}"
        );
        let every = Overrides {
            every_pipeline: true,
            ..Overrides::default()
        };
        let c = resolve(text, every.clone()).unwrap();
        assert_eq!(c.pipelines.len(), 2);
        let c = resolve(
            text,
            Overrides {
                pipeline: Some("b".into()),
                ..every
            },
        )
        .unwrap();
        assert_eq!(c.pipeline.name, "b");
        assert_eq!(c.pipelines.len(), 1);
    }

    #[test]
    fn redact_hides_passwords() {
        let u = Url::parse("cassandra://cassandra:secret@127.0.0.1:9042/ks.t").unwrap();
        let shown = redact(&u);
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("***"));
    }

    /// What `config check` prints resolves to the same configuration, for
    /// every example and for no file at all.
    #[test]
    fn config_check_output_parses_back_to_the_same_config() {
        let every = || Overrides {
            every_pipeline: true,
            seed: Some("fixed".into()),
            ..Overrides::default()
        };
        let mut files: Vec<Option<PathBuf>> = vec![None];
        for entry in std::fs::read_dir("examples").unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                files.push(Some(path));
            }
        }
        assert!(files.len() >= 4, "{files:?}");
        let without_origins = |c: &Config| {
            let mut c = c.clone();
            c.file = None;
            for p in c.pipelines.iter_mut().chain([&mut c.pipeline]) {
                if let Dataset::Table(t) = &mut p.dataset {
                    let mut t = (**t).clone();
                    if let Some(tr) = &mut t.transform {
                        tr.origin = crate::pipeline::transform::Origin {
                            file: String::new(),
                            line: 0,
                            column: 0,
                        };
                    }
                    p.dataset = Dataset::Table(std::sync::Arc::new(t));
                }
            }
            c
        };
        for file in files {
            let (raw, path) = load_file(file.as_deref()).unwrap();
            let first = Config::resolve(raw, path, every()).unwrap();
            let printed = first.to_toml();
            let again = Config::resolve(
                parse(&printed).unwrap_or_else(|e| panic!("{file:?}: {e}\n{printed}")),
                None,
                every(),
            )
            .unwrap_or_else(|e| panic!("{file:?}: {e}\n{printed}"));
            assert_eq!(
                without_origins(&again),
                without_origins(&first),
                "{file:?}:\n{printed}"
            );
            let body = |t: &str| t.lines().skip(1).collect::<Vec<_>>().join("\n");
            assert_eq!(body(&again.to_toml()), body(&printed), "{file:?}");
        }
    }
}
