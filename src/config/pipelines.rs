//! `[[pipelines]]`: each named pipeline resolved — its source (a JSON API,
//! a file, or the built-in users), its transform compiled (a mistake is a
//! config error naming the line in the file), its table declared or left to
//! the store, its log and store with `[log]`'s and `[sink]`'s settings —
//! and the rules across pipelines (unique names, no two on one topic or one
//! embedded log file).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use url::Url;

use super::raw::{RawConfig, RawPaginate, RawPipeline, RawPipelineSource, RawTable};
use super::{
    ConfigError, HOUR, LogPlace, MINUTE, Overrides, SECOND, Secrets, SinkPlace, duration,
    group_name, invalid, resolve_log, resolve_sink,
};
use crate::pipeline::log::LogConfig;
use crate::pipeline::shape::{Dataset, TableSpec, TransformSpec};
use crate::pipeline::sink::SinkConfig;
use crate::pipeline::source::SourceConfig;
use crate::pipeline::source::file::FileConfig;
use crate::pipeline::source::json_api::{JsonApiConfig, PageSize, Pagination};
use crate::pipeline::table::{TableSchema, UnknownFields};
use crate::pipeline::transform::{Origin, line_column};

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
            if x.topic == y.topic && x.brokers == y.brokers =>
        {
            Some(format!("share the topic {}", x.topic))
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
    let table_name = match (&dataset, p.table.as_ref().and_then(|t| t.name.as_deref())) {
        (_, Some(name)) => name,
        (Dataset::Users, None) => raw.sink.table.as_deref().unwrap_or("created_users"),
        (Dataset::Table(_), None) => &p.name,
    };
    let table_name = table_name.replace('-', "_");
    let sink = resolve_sink(
        &raw.sink,
        &sink_url,
        SinkPlace {
            table: &table_name,
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

fn resolve_source(
    p: &RawPipeline,
    raw: &RawConfig,
    url_over: Option<String>,
    seed_over: Option<String>,
) -> Result<(SourceConfig, bool), ConfigError> {
    let s = &p.source;
    let at = |what: String| format!("pipeline {}: {what}", p.name);
    let url = url_over.or(s.url.clone());
    match (&url, &s.file) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "pipelines.source",
                at("give `url` or `file`, not both".into()),
            ));
        }
        (None, None) => {
            return Err(invalid(
                "pipelines.source",
                at("needs a `url` (an API, or gen:) or a `file`".into()),
            ));
        }
        (None, Some(path)) => {
            let mut c = FileConfig::new(path.clone());
            c.page_size = 1000;
            if let Some(max) = s.max_record_bytes {
                c.max_record_bytes = max;
            }
            c.validate()
                .map_err(|e| invalid("pipelines.source", at(e.to_string())))?;
            return Ok((SourceConfig::File(c), false));
        }
        (Some(_), None) => {}
    }
    let url = url.expect("checked above");
    let kind = s.kind.as_deref().unwrap_or(if url.starts_with("gen:") {
        "randomuser"
    } else {
        "json"
    });
    match kind {
        "randomuser" => {
            let mut raw_source = raw.source.clone();
            raw_source.url = Some(url);
            for (mine, theirs) in [
                (&s.connect_timeout, &mut raw_source.connect_timeout),
                (&s.read_timeout, &mut raw_source.read_timeout),
                (&s.backoff_initial, &mut raw_source.backoff_initial),
                (&s.backoff_max, &mut raw_source.backoff_max),
            ] {
                if mine.is_some() {
                    theirs.clone_from(mine);
                }
            }
            if s.max_attempts.is_some() {
                raw_source.max_attempts = s.max_attempts;
            }
            super::Config::resolve_source(&raw_source, None, seed_over)
        }
        "json" => Ok((SourceConfig::JsonApi(json_api(s, &url, &at)?), false)),
        other => Err(invalid(
            "pipelines.source.kind",
            at(format!("{other:?} must be json or randomuser")),
        )),
    }
}

fn json_api(
    s: &RawPipelineSource,
    url: &str,
    at: &dyn Fn(String) -> String,
) -> Result<JsonApiConfig, ConfigError> {
    let key = "pipelines.source";
    let parsed = Url::parse(url).map_err(|e| invalid(key, at(format!("url {url:?}: {e}"))))?;
    let mut c = JsonApiConfig::new(parsed);
    c.query = s.query.clone().unwrap_or_default().into_iter().collect();
    c.headers = s.headers.clone().unwrap_or_default().into_iter().collect();
    c.records = s.records.clone();
    c.pagination = match &s.paginate {
        None => Pagination::None,
        Some(pg) => pagination(pg).map_err(|e| invalid("pipelines.source.paginate", at(e)))?,
    };
    c.page_size = s.page_size.as_ref().map(|p| PageSize {
        param: p.param.clone(),
        size: p.size,
    });
    c.max_pages = s.max_pages;
    c.error_pointer = s.error.clone();
    let d = |k: &'static str, v: &Option<String>, default, bounds| {
        duration(k, v.as_deref(), default, bounds)
    };
    c.connect_timeout = d(
        "pipelines.source.connect_timeout",
        &s.connect_timeout,
        5 * SECOND,
        (Duration::from_millis(10), 10 * MINUTE),
    )?;
    c.read_timeout = d(
        "pipelines.source.read_timeout",
        &s.read_timeout,
        30 * SECOND,
        (Duration::from_millis(10), HOUR),
    )?;
    c.backoff_initial = d(
        "pipelines.source.backoff_initial",
        &s.backoff_initial,
        Duration::from_millis(200),
        (Duration::from_millis(1), 10 * MINUTE),
    )?;
    c.backoff_max = d(
        "pipelines.source.backoff_max",
        &s.backoff_max,
        10 * SECOND,
        (Duration::from_millis(1), HOUR),
    )?;
    c.max_attempts = s.max_attempts.unwrap_or(8);
    c.validate().map_err(|e| invalid(key, at(e.to_string())))?;
    Ok(c)
}

fn pagination(p: &RawPaginate) -> Result<Pagination, String> {
    let styles = [
        p.page.is_some(),
        p.offset.is_some(),
        p.cursor.is_some(),
        p.link == Some(true),
    ];
    if styles.iter().filter(|s| **s).count() != 1 {
        return Err(
            "give exactly one of page = \"param\", offset = \"param\", cursor = \"/pointer\" \
             (with param), link = true"
                .into(),
        );
    }
    if p.first.is_some() && p.page.is_none() {
        return Err("`first` goes with `page`".into());
    }
    if p.param.is_some() && p.cursor.is_none() {
        return Err("`param` goes with `cursor`".into());
    }
    Ok(if let Some(param) = &p.page {
        Pagination::PageNumber {
            param: param.clone(),
            first: p.first.unwrap_or(1),
        }
    } else if let Some(param) = &p.offset {
        Pagination::Offset {
            param: param.clone(),
        }
    } else if let Some(pointer) = &p.cursor {
        Pagination::Cursor {
            pointer: pointer.clone(),
            param: p
                .param
                .clone()
                .ok_or("a cursor needs `param`, the query parameter it is sent as")?,
        }
    } else {
        Pagination::LinkHeader
    })
}

/// A declared table checked against the fields its transform sets.
fn checked(spec: TableSpec, at: &dyn Fn(&str) -> String) -> Result<TableSpec, ConfigError> {
    if let Some(schema) = &spec.schema {
        crate::pipeline::shape::check_fields(schema, spec.transform.as_ref(), spec.unknown_fields)
            .map_err(|e| invalid("pipelines.table", at(&e)))?;
    }
    Ok(spec)
}

fn table_schema(
    t: &RawTable,
    at: &dyn Fn(&str) -> String,
) -> Result<Option<TableSchema>, ConfigError> {
    let Some(columns) = &t.columns else {
        if t.key.is_some() || t.clustering.is_some() {
            return Err(invalid(
                "pipelines.table",
                at(
                    "a key without `columns`: declare the columns too, or neither (the store's table is read)",
                ),
            ));
        }
        return Ok(None);
    };
    let columns = columns
        .iter()
        .map(|(name, ty)| match ty.as_str() {
            Some(ty) => Ok((name.clone(), ty.to_owned())),
            None => Err(invalid(
                "pipelines.table.columns",
                at(&format!(
                    "column {name}: the type must be a string, like \"text\""
                )),
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let key = t.key.clone().ok_or_else(|| {
        invalid(
            "pipelines.table.key",
            at("the table needs a key, e.g. key = [\"id\"]"),
        )
    })?;
    let clustering = t.clustering.clone().unwrap_or_default();
    TableSchema::new(columns, &key, &clustering)
        .map(Some)
        .map_err(|e| invalid("pipelines.table", at(&e.to_string())))
}

fn transform(
    p: &RawPipeline,
    file: Option<&Path>,
    text: &str,
    at: &dyn Fn(&str) -> String,
) -> Result<Option<TransformSpec>, ConfigError> {
    let spec = match (&p.transform, &p.transform_file) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "pipelines.transform",
                at("give `transform` or `transform_file`, not both"),
            ));
        }
        (None, None) => return Ok(None),
        (Some(program), None) => {
            let (line, column) = program_start(text, program.span());
            TransformSpec {
                text: program.get_ref().clone(),
                origin: Origin {
                    file: file
                        .map(|f| f.display().to_string())
                        .unwrap_or_else(|| "config".into()),
                    line,
                    column,
                },
            }
        }
        (None, Some(path)) => TransformSpec {
            text: super::files::read_capped(path, super::files::TEXT_CAP)
                .map_err(|e| invalid("pipelines.transform_file", at(&e)))?,
            origin: Origin {
                file: path.display().to_string(),
                line: 1,
                column: 1,
            },
        },
    };
    spec.compile()
        .map_err(|e| invalid("pipelines.transform", at(&e.to_string())))?;
    Ok(Some(spec))
}

/// The line and column (from 1) in the file of a program's first
/// character, from the span of its TOML string (quotes included; a
/// newline right after an opening `'''` or `"""` is not part of it).
fn program_start(text: &str, span: std::ops::Range<usize>) -> (usize, usize) {
    let literal = text.get(span.clone()).unwrap_or("");
    let mut start = span.start;
    if literal.starts_with("'''") || literal.starts_with("\"\"\"") {
        start += 3;
        let rest = &text[start.min(text.len())..];
        if rest.starts_with("\r\n") {
            start += 2;
        } else if rest.starts_with('\n') {
            start += 1;
        }
    } else if literal.starts_with('\'') || literal.starts_with('"') {
        start += 1;
    }
    line_column(text, start)
}

/// A pipeline as `[[pipelines]]` TOML that resolves to the same pipeline
/// (secrets redacted): what `config check` prints.
fn to_raw(p: &PipelineConfig) -> RawPipeline {
    let source = match &p.source {
        SourceConfig::JsonApi(c) => {
            let secret = |name: &str, value: &str| {
                if value.contains("${") || crate::pipeline::source::json_api::looks_secret(name) {
                    // `${NAME}` is printed as written (the value is not);
                    // a literal secret is not printed at all.
                    if value.contains("${") {
                        value.to_owned()
                    } else {
                        "***".to_owned()
                    }
                } else {
                    value.to_owned()
                }
            };
            let show = |d: Duration| humantime::format_duration(d).to_string();
            RawPipelineSource {
                url: Some(crate::config::redact(&c.url)),
                records: c.records.clone(),
                paginate: match &c.pagination {
                    Pagination::None => None,
                    Pagination::PageNumber { param, first } => Some(RawPaginate {
                        page: Some(param.clone()),
                        first: Some(*first),
                        ..RawPaginate::default()
                    }),
                    Pagination::Offset { param } => Some(RawPaginate {
                        offset: Some(param.clone()),
                        ..RawPaginate::default()
                    }),
                    Pagination::Cursor { pointer, param } => Some(RawPaginate {
                        cursor: Some(pointer.clone()),
                        param: Some(param.clone()),
                        ..RawPaginate::default()
                    }),
                    Pagination::LinkHeader => Some(RawPaginate {
                        link: Some(true),
                        ..RawPaginate::default()
                    }),
                },
                page_size: c.page_size.as_ref().map(|p| super::raw::RawPageSize {
                    param: p.param.clone(),
                    size: p.size,
                }),
                query: (!c.query.is_empty()).then(|| {
                    c.query
                        .iter()
                        .map(|(k, v)| (k.clone(), secret(k, v)))
                        .collect()
                }),
                headers: (!c.headers.is_empty()).then(|| {
                    c.headers
                        .iter()
                        .map(|(k, v)| (k.clone(), secret(k, v)))
                        .collect()
                }),
                error: c.error_pointer.clone(),
                max_pages: c.max_pages,
                connect_timeout: Some(show(c.connect_timeout)),
                read_timeout: Some(show(c.read_timeout)),
                max_attempts: Some(c.max_attempts),
                backoff_initial: Some(show(c.backoff_initial)),
                backoff_max: Some(show(c.backoff_max)),
                ..RawPipelineSource::default()
            }
        }
        SourceConfig::File(f) => RawPipelineSource {
            file: Some(f.path.clone()),
            max_record_bytes: Some(f.max_record_bytes),
            ..RawPipelineSource::default()
        },
        SourceConfig::Generator { seed, nats, gender } => {
            let mut url = format!("gen:?seed={seed}");
            if !nats.is_empty() {
                url.push_str(&format!("&nat={}", nats.join(",")));
            }
            if let Some(g) = gender {
                url.push_str(&format!("&gender={g}"));
            }
            RawPipelineSource {
                url: Some(url),
                ..RawPipelineSource::default()
            }
        }
        SourceConfig::Http(h) => RawPipelineSource {
            url: Some(crate::config::redact(&h.url)),
            kind: Some("randomuser".into()),
            ..RawPipelineSource::default()
        },
    };
    let (transform, table) = match &p.dataset {
        Dataset::Users => (None, None),
        Dataset::Table(t) => (
            t.transform
                .as_ref()
                .map(|t| toml::Spanned::new(0..0, t.text.clone())),
            Some(RawTable {
                name: match &p.sink {
                    SinkConfig::Sqlite(s) => Some(s.table.clone()),
                    SinkConfig::Cassandra(_) => None,
                },
                key: t.schema.as_ref().map(|s| s.partition_key.clone()),
                clustering: t
                    .schema
                    .as_ref()
                    .filter(|s| !s.clustering_key.is_empty())
                    .map(|s| s.clustering_key.clone()),
                columns: t.schema.as_ref().map(|s| {
                    s.columns
                        .iter()
                        .map(|c| (c.name.clone(), toml::Value::String(c.ty.to_string())))
                        .collect()
                }),
                unknown_fields: Some(
                    match t.unknown_fields {
                        UnknownFields::Reject => "reject",
                        UnknownFields::Ignore => "ignore",
                    }
                    .into(),
                ),
            }),
        ),
    };
    RawPipeline {
        name: p.name.clone(),
        source,
        transform,
        transform_file: None,
        log: Some(super::log_url(&p.log)),
        topic: Some(p.log.topic().to_owned()),
        group: Some(p.group.clone()),
        sink: Some(super::sink_url(&p.sink)),
        table,
    }
}
