//! `[[pipelines]]`: each named pipeline resolved — its source (a JSON API,
//! a file, or the built-in users), its transform compiled (a mistake is a
//! config error naming the line in the file), its table declared or left to
//! the store, its log and store with `[log]`'s and `[sink]`'s settings —
//! and the rules across pipelines (unique names, no two on one topic or one
//! embedded log file). `source.rs` resolves a pipeline's source, `shape.rs`
//! its transform and table, `to_raw.rs` writes it back as TOML.

use std::path::Path;
use std::sync::Arc;

use super::raw::{RawConfig, RawPipeline};
use super::{
    ConfigError, LogPlace, Overrides, Secrets, SinkPlace, group_name, invalid, resolve_log,
    resolve_sink,
};
use crate::pipeline::log::LogConfig;
use crate::pipeline::shape::{Dataset, TableSpec};
use crate::pipeline::sink::SinkConfig;
use crate::pipeline::source::SourceConfig;
use crate::pipeline::table::UnknownFields;

mod shape;
mod source;
mod to_raw;

use shape::{checked, table_schema, transform};
use source::resolve_source;
use to_raw::to_raw;

/// One pipeline, validated: where records come from, what they become,
/// where they are logged and stored.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineConfig {
    pub name: String,
    pub source: SourceConfig,
    /// No seed was given to a Random User source: one was drawn and should
    /// be shown to the user.
    pub seed_was_drawn: bool,
    pub dataset: Dataset,
    pub log: LogConfig,
    pub group: String,
    pub sink: SinkConfig,
}

impl PipelineConfig {
    /// The pipeline as `[[pipelines]]` TOML, secrets redacted: see
    /// [`to_raw`].
    pub fn to_raw(&self) -> RawPipeline {
        to_raw(self)
    }
}

/// The pipeline a command works on: the one `name` names, or the only one.
pub(super) fn select<'a>(
    pipelines: &'a [PipelineConfig],
    name: Option<&str>,
) -> Result<&'a PipelineConfig, ConfigError> {
    choose(pipelines, name, "--pipeline", "", |names| {
        format!("the config has several pipelines ({names}): name one with --pipeline")
    })
}

/// The pipeline a job feeds: the one it names, or the only one.
pub(super) fn for_job<'a>(
    pipelines: &'a [PipelineConfig],
    job: &str,
    name: Option<&str>,
) -> Result<&'a PipelineConfig, ConfigError> {
    choose(
        pipelines,
        name,
        "jobs.pipeline",
        &format!("job {job}: "),
        |names| format!("job {job}: name the pipeline it feeds (one of {names})"),
    )
}

/// The pipeline `name` names, or the only one; otherwise an error under
/// `key`, prefixed by `who`, or made by `unnamed` from the pipelines' names.
fn choose<'a>(
    pipelines: &'a [PipelineConfig],
    name: Option<&str>,
    key: &'static str,
    who: &str,
    unnamed: impl FnOnce(String) -> String,
) -> Result<&'a PipelineConfig, ConfigError> {
    match name {
        Some(name) => pipelines.iter().find(|p| p.name == name).ok_or_else(|| {
            invalid(
                key,
                format!(
                    "{who}no pipeline {name:?}; the config has {}",
                    names(pipelines)
                ),
            )
        }),
        None => match pipelines {
            [only] => Ok(only),
            _ => Err(invalid(key, unnamed(names(pipelines)))),
        },
    }
}

fn names(pipelines: &[PipelineConfig]) -> String {
    pipelines
        .iter()
        .map(|p| p.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every `[[pipelines]]` entry, with the flags applied to the one
/// `--pipeline` names (or the only one).
pub(super) fn resolve(
    raw: &RawConfig,
    file: Option<&Path>,
    data_dir: &Path,
    over: &Overrides,
    secrets: &Secrets,
) -> Result<Vec<PipelineConfig>, ConfigError> {
    let text = match file {
        Some(f) => super::files::read_capped(f, super::files::TEXT_CAP).unwrap_or_default(),
        None => String::new(),
    };
    let single = raw.pipelines.len() == 1;
    let mut out: Vec<PipelineConfig> = Vec::new();
    for p in &raw.pipelines {
        check_name(&p.name)?;
        if out.iter().any(|o| o.name == p.name) {
            return Err(invalid(
                "pipelines.name",
                format!("{:?} is used twice", p.name),
            ));
        }
        let flags = match over.pipeline.as_deref() {
            Some(n) => n == p.name,
            None => single,
        };
        out.push(resolve_one(
            p, raw, file, &text, data_dir, over, flags, secrets,
        )?);
    }
    for (i, a) in out.iter().enumerate() {
        for b in &out[..i] {
            if let Some(why) = shared(a, b) {
                return Err(invalid(
                    "pipelines",
                    format!(
                        "pipelines {} and {} {why}; give each its own",
                        b.name, a.name
                    ),
                ));
            }
        }
    }
    Ok(out)
}

/// What two pipelines may not share: a topic, or an embedded log file
/// (its dead letters and offsets would mix), or a table (each would
/// overwrite the other's rows of the same key, and a replay of one would
/// undo the other's newer writes). Table names are compared without case:
/// SQLite ignores it, and Cassandra folds the unquoted names to lower case.
fn shared(a: &PipelineConfig, b: &PipelineConfig) -> Option<String> {
    let table = match (&a.sink, &b.sink) {
        (SinkConfig::Sqlite(x), SinkConfig::Sqlite(y))
            if x.path == y.path && x.table.eq_ignore_ascii_case(&y.table) =>
        {
            Some(format!(
                "write the same table {} in {}",
                x.table,
                x.path.display()
            ))
        }
        (SinkConfig::Cassandra(x), SinkConfig::Cassandra(y))
            if x.keyspace.eq_ignore_ascii_case(&y.keyspace)
                && x.table.eq_ignore_ascii_case(&y.table)
                && x.nodes.iter().any(|n| y.nodes.contains(n)) =>
        {
            Some(format!("write the same table {}.{}", x.keyspace, x.table))
        }
        _ => None,
    };
    if table.is_some() {
        return table;
    }
    match (&a.log, &b.log) {
        (LogConfig::Sqlite(x), LogConfig::Sqlite(y)) if x.path == y.path => {
            Some(format!("share the log file {}", x.path.display()))
        }
        (LogConfig::Kafka(x), LogConfig::Kafka(y))
            if x.broker_list().iter().any(|b| y.broker_list().contains(b)) =>
        {
            // A topic and its dead letters (`<topic>.dlq`): one pipeline
            // on another's dead-letter topic would read its letters as
            // records, and the other would take its records for letters.
            let (xs, ys) = (
                [x.topic.clone(), x.dlq_topic()],
                [y.topic.clone(), y.dlq_topic()],
            );
            xs.iter()
                .find(|t| ys.contains(t))
                .map(|t| format!("share the topic {t}"))
        }
        _ => None,
    }
}

fn check_name(name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "pipelines.name",
            format!("{name:?} must be 1 to 64 letters, digits, '_' or '-'"),
        ))
    }
}

#[allow(clippy::too_many_arguments)]
fn resolve_one(
    p: &RawPipeline,
    raw: &RawConfig,
    file: Option<&Path>,
    text: &str,
    data_dir: &Path,
    over: &Overrides,
    flags: bool,
    secrets: &Secrets,
) -> Result<PipelineConfig, ConfigError> {
    let flag = |v: &Option<String>| if flags { v.clone() } else { None };
    let at = |what: &str| format!("pipeline {}: {what}", p.name);
    let (source, seed_was_drawn) = resolve_source(p, raw, flag(&over.source), flag(&over.seed))?;
    let dataset = match &p.table {
        None => {
            if !source.gives_users() {
                return Err(invalid(
                    "pipelines.table",
                    at("a JSON API or file source needs a `table` for its rows"),
                ));
            }
            if p.transform.is_some() || p.transform_file.is_some() {
                return Err(invalid(
                    "pipelines.table",
                    at("a transform needs a `table` for the rows it makes"),
                ));
            }
            Dataset::Users
        }
        Some(t) => Dataset::Table(Arc::new(checked(
            TableSpec {
                schema: table_schema(t, &at)?,
                transform: transform(p, file, text, &at)?,
                unknown_fields: match t.unknown_fields.as_deref() {
                    None | Some("reject") => UnknownFields::Reject,
                    Some("ignore") => UnknownFields::Ignore,
                    Some(other) => {
                        return Err(invalid(
                            "pipelines.table.unknown_fields",
                            at(&format!("{other:?} must be reject or ignore")),
                        ));
                    }
                },
            },
            &at,
        )?)),
    };
    let own_dir = data_dir.join("pipelines").join(&p.name);
    let log_url = flag(&over.log)
        .or(p.log.clone())
        .or(raw.log.url.clone())
        .unwrap_or_else(|| "sqlite:".into());
    let default_topic = match &dataset {
        Dataset::Users => raw.log.topic.as_deref().unwrap_or("users_created"),
        Dataset::Table(_) => &p.name,
    };
    let topic_over = flag(&over.topic).or(p.topic.clone());
    let log = resolve_log(
        &raw.log,
        &log_url,
        LogPlace {
            topic_over: topic_over.as_deref(),
            topic_default: default_topic,
            path_default: own_dir.join("log.db"),
            data_dir,
            use_url_topic: flag(&over.log).is_some() || p.log.is_some(),
        },
        secrets,
    )?;
    let group = group_name(
        flag(&over.group)
            .or(p.group.clone())
            .unwrap_or_else(|| format!("tributary-{}", p.name)),
    )?;
    let own_sink = flag(&over.sink).or(p.sink.clone());
    let sink_url = own_sink
        .clone()
        .or(raw.sink.url.clone())
        .unwrap_or_else(|| "sqlite:".into());
    let (table_name, table_key) = match (&dataset, p.table.as_ref().and_then(|t| t.name.as_deref()))
    {
        (_, Some(name)) => (name, "pipelines.table.name"),
        (Dataset::Users, None) => (
            raw.sink.table.as_deref().unwrap_or("created_users"),
            "sink.table",
        ),
        // The table is named after the pipeline.
        (Dataset::Table(_), None) => (p.name.as_str(), "pipelines.name"),
    };
    let table_name = table_name.replace('-', "_");
    let sink = resolve_sink(
        &raw.sink,
        &sink_url,
        SinkPlace {
            table: &table_name,
            table_key,
            // A Cassandra URL of `[sink]` is shared: its keyspace, this
            // pipeline's table.
            cassandra_table: own_sink.is_none().then_some(table_name.as_str()),
            path_default: own_dir.join("store.db"),
        },
        &log,
        secrets,
    )?;
    // A Cassandra URL of the pipeline's own names its table: a `table.name`
    // beside it that names another would be ignored without a word.
    if let (SinkConfig::Cassandra(c), true, Some(name)) = (
        &sink,
        own_sink.is_some(),
        p.table.as_ref().and_then(|t| t.name.as_deref()),
    ) && !c.table.eq_ignore_ascii_case(&name.replace('-', "_"))
    {
        return Err(invalid(
            "pipelines.table.name",
            at(&format!(
                "the sink URL names table {}.{}, the table {name}: name it in one place",
                c.keyspace, c.table
            )),
        ));
    }
    Ok(PipelineConfig {
        name: p.name.clone(),
        source,
        seed_was_drawn,
        dataset,
        log,
        group,
        sink,
    })
}
