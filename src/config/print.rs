//! What `config check` prints: the resolved configuration as TOML that
//! parses back into the same configuration, secrets redacted (a test
//! round-trips every example).

use std::time::Duration;

use scylla::statement::Consistency;

use super::raw::{RawBurst, RawJob, RawPipeline};
use super::{Config, PipelineConfig, is_secret_key, redact};
use crate::pipeline::ingest::IngestPlan;
use crate::pipeline::log::LogConfig;
use crate::pipeline::sink::SinkConfig;
use crate::pipeline::source::SourceConfig;
use crate::scheduler::{JobConfig, Schedule};

impl Config {
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
        out.push_str(&format!(
            "\n[web]\nlisten = {}\nheader_timeout = {}\nmax_connections = {}\n",
            toml_str(&listen),
            toml_str(&humantime::format_duration(self.web.header_timeout).to_string()),
            self.web.max_connections
        ));
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
                pipelines: self.pipelines.iter().map(PipelineConfig::to_raw).collect(),
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
pub(crate) fn job_to_raw(j: &JobConfig) -> RawJob {
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
pub(super) fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

pub(super) fn source_toml(out: &mut String, source: &SourceConfig) {
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
pub(super) fn log_settings_toml(out: &mut String, log: &LogConfig) {
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
pub(super) fn consistency_name(c: Consistency) -> &'static str {
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
pub(super) fn sink_settings_toml(out: &mut String, sink: &SinkConfig) {
    match sink {
        SinkConfig::Sqlite(s) => out.push_str(&format!("fsync = {}\n", s.durable_fsync)),
        SinkConfig::Cassandra(c) => {
            out.push_str(&format!(
                "\n[sink.cassandra]\nconsistency = {}\n",
                toml_str(consistency_name(c.consistency)),
            ));
            match c.concurrency {
                Some(n) => out.push_str(&format!("concurrency = {n}\n")),
                None => out.push_str("concurrency = \"adaptive\"\n"),
            }
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
