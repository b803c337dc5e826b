//! Configuration in two phases: [`RawConfig`] (the file, as written) plus
//! [`Overrides`] (env and flags) are resolved once at start-up into a
//! validated [`Config`]; components receive only their validated part.
//! Precedence: flags > `TRIBUTARY_*` env > `tributary.toml` > defaults.

mod endpoints;
mod files;
mod overrides;
mod pipelines;
mod print;
mod raw;
mod web;

use std::path::{Path, PathBuf};
use std::time::Duration;

use endpoints::{LogPlace, Secrets, SinkPlace, group_name, resolve_log, resolve_sink};
pub use overrides::Overrides;
pub use pipelines::PipelineConfig;
pub(crate) use print::{job_to_raw, log_url, sink_url};
pub use raw::{
    RawBurst, RawCassandra, RawConfig, RawJob, RawKafka, RawLog, RawPageSize, RawPaginate,
    RawPipeline, RawPipelineSource, RawProcessor, RawSink, RawSource, RawTable, RawWeb,
};
use url::Url;
use web::resolve_web;
pub use web::{Token, WebConfig};

use crate::pipeline::ingest::IngestPlan;
use crate::pipeline::processor::ProcessorConfig;
use crate::pipeline::shape::Dataset;
use crate::pipeline::source::generator::{self, Gender};
use crate::pipeline::source::{HttpConfig, MAX_RESULTS_PER_REQUEST, SourceConfig};
use crate::scheduler::runner::RetryPolicy;
use crate::scheduler::{JobConfig, Schedule};

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
    let text =
        files::read_capped(&path, files::TEXT_CAP).map_err(|reason| ConfigError::Unreadable {
            path: path.display().to_string(),
            reason,
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
                let (line, _) = crate::pipeline::transform::line_column(text, span.start);
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
        let max_message_bytes = raw
            .processor
            .max_message_bytes
            .unwrap_or(crate::pipeline::processor::DEFAULT_MAX_MESSAGE_BYTES);
        // At most 16 MiB: every message is held a few times over on its way
        // (decoded, written, previewed), so a larger limit is a memory limit
        // given away.
        if !(1024..=16 << 20).contains(&max_message_bytes) {
            return Err(invalid(
                "processor.max_message_bytes",
                format!("{max_message_bytes} must be between 1024 and 16777216 bytes (16 MiB)"),
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
        for p in &pipelines {
            check_kafka_message_size(p, max_message_bytes)?;
        }
        let selected = match (over.pipeline.as_deref(), over.every_pipeline) {
            (None, true) => &pipelines[0],
            (name, _) => pipelines::select(&pipelines, name)?,
        };
        let jobs = Self::resolve_jobs(&raw.jobs, &raw.source, &pipelines, batch_size)?;
        let web = resolve_web(
            &raw.web,
            over.listen,
            over.web_token,
            (over.web_header_timeout, over.web_max_connections),
        )?;
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
                in_flight: crate::pipeline::processor::DEFAULT_IN_FLIGHT,
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
                data_dir,
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
                table_key: "sink.table",
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
                    total: match j.records {
                        Some(0) => {
                            return Err(invalid(
                                "jobs.records",
                                format!(
                                    "job {}: 0 records would fetch nothing: give a count from \
                                     1 up, or leave it out",
                                    j.name
                                ),
                            ));
                        }
                        Some(n) => n,
                        None => match pipeline.dataset {
                            Dataset::Users => 1000,
                            Dataset::Table(_) => u64::MAX,
                        },
                    },
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
        let parsed = Url::parse(&url).map_err(|e| {
            let hint = match e {
                url::ParseError::RelativeUrlWithoutBase => {
                    let host = url.trim_end_matches('/');
                    format!(
                        "it has no scheme; for an API write https://{host}/api/ (an http(s) \
                         URL), for the built-in generator gen:"
                    )
                }
                other => other.to_string(),
            };
            invalid("source.url", format!("{url:?}: {hint}"))
        })?;
        // The settings tributary sets itself on each request; any other
        // query parameter (an `apikey=`) is sent as it is.
        const OWN: [&str; 5] = ["seed", "nat", "gender", "results", "page"];
        if parsed.scheme() == "gen"
            && let Some((k, _)) = parsed
                .query_pairs()
                .find(|(k, _)| !OWN[..3].contains(&&**k))
        {
            return Err(invalid(
                "source.url",
                format!("{url:?}: unknown setting {k:?}; gen: knows seed, nat and gender"),
            ));
        }
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
                let kept: Vec<(String, String)> = parsed
                    .query_pairs()
                    .filter(|(k, _)| !OWN.contains(&&**k))
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
                base.set_query(None);
                if !kept.is_empty() {
                    base.query_pairs_mut().extend_pairs(kept);
                }
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

/// A record up to `processor.max_message_bytes` must fit one Kafka
/// message: librdkafka refuses a larger one (`message.max.bytes`, 1,000,000
/// by default) and so does the broker (`max.message.bytes` of the topic,
/// about 1 MiB by default). Such a record was neither logged nor a dead
/// letter: the run failed at it, and every rerun failed again. A limit above
/// the client's needs `message.max.bytes` raised in `[log.kafka.properties]`
/// (and the topic's limit on the broker).
fn check_kafka_message_size(
    p: &PipelineConfig,
    max_message_bytes: usize,
) -> Result<(), ConfigError> {
    /// Room for the headers and framing of one message.
    const FRAMING: usize = 16 << 10;
    let crate::pipeline::log::LogConfig::Kafka(k) = &p.log else {
        return Ok(());
    };
    let client_max = k
        .properties
        .get("message.max.bytes")
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(1_000_000);
    if max_message_bytes + FRAMING <= client_max {
        return Ok(());
    }
    Err(invalid(
        "processor.max_message_bytes",
        format!(
            "{max_message_bytes} bytes do not fit a Kafka message of pipeline {}: the producer \
             sends at most {client_max} (`message.max.bytes`). Lower max_message_bytes to {} or \
             less, or raise message.max.bytes in [log.kafka.properties] to {} or more (and the \
             topic's max.message.bytes on the broker with it)",
            p.name,
            client_max - FRAMING,
            max_message_bytes + FRAMING
        ),
    ))
}

#[cfg(test)]
mod tests;
