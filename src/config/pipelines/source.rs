//! Where a pipeline's records come from: a JSON API (with its pagination),
//! a file, or the built-in users.

use std::time::Duration;

use url::Url;

use crate::config::raw::{RawConfig, RawPaginate, RawPipeline, RawPipelineSource};
use crate::config::{ConfigError, HOUR, MINUTE, SECOND, duration, invalid};
use crate::pipeline::source::SourceConfig;
use crate::pipeline::source::file::FileConfig;
use crate::pipeline::source::json_api::{JsonApiConfig, PageSize, Pagination};

pub(super) fn resolve_source(
    p: &RawPipeline,
    raw: &RawConfig,
    url_over: Option<String>,
    seed_over: Option<String>,
) -> Result<(SourceConfig, bool), ConfigError> {
    let s = &p.source;
    let at = |what: String| format!("pipeline {}: {what}", p.name);
    // `--source` replaces the pipeline's source, whichever it was.
    let file = if url_over.is_some() {
        None
    } else {
        s.file.clone()
    };
    let url = url_over.or(s.url.clone());
    let no_seed = |reads: &str| match &seed_over {
        Some(_) => Err(invalid(
            "--seed (or TRIBUTARY_SEED)",
            at(format!(
                "reads {reads}; a seed is for the Random User source (gen: or its API)"
            )),
        )),
        None => Ok(()),
    };
    match (&url, &file) {
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
            no_seed("a file")?;
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
            crate::config::Config::resolve_source(&raw_source, None, seed_over)
        }
        "json" => {
            no_seed("a JSON API")?;
            Ok((SourceConfig::JsonApi(json_api(s, &url, &at)?), false))
        }
        other => Err(invalid(
            "pipelines.source.kind",
            at(format!("{other:?} must be json or randomuser")),
        )),
    }
}

pub(super) fn json_api(
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

pub(super) fn pagination(p: &RawPaginate) -> Result<Pagination, String> {
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
