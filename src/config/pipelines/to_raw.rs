//! A pipeline back as `[[pipelines]]` TOML (secrets redacted): what
//! `config check` prints, resolving to the same pipeline.

use std::time::Duration;

use super::PipelineConfig;
use crate::config::raw::{RawPaginate, RawPipeline, RawPipelineSource, RawTable};
use crate::pipeline::shape::Dataset;
use crate::pipeline::sink::SinkConfig;
use crate::pipeline::source::SourceConfig;
use crate::pipeline::source::json_api::Pagination;
use crate::pipeline::table::UnknownFields;

/// A pipeline as `[[pipelines]]` TOML that resolves to the same pipeline
/// (secrets redacted): what `config check` prints.
pub(super) fn to_raw(p: &PipelineConfig) -> RawPipeline {
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
                page_size: c
                    .page_size
                    .as_ref()
                    .map(|p| crate::config::raw::RawPageSize {
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
        log: Some(crate::config::log_url(&p.log)),
        topic: Some(p.log.topic().to_owned()),
        group: Some(p.group.clone()),
        sink: Some(crate::config::sink_url(&p.sink)),
        table,
    }
}
