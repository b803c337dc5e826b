//! A JSON API source's validated settings: URL, headers, records and
//! error pointers, pagination and page size, checked once at start-up;
//! `Debug` shows no secret.

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use reqwest::header::HeaderName;
use url::Url;

use super::REDACTED;
use super::secrets::{parse_template, public_url};
use crate::pipeline::source::retry::RetryPolicy;

/// How the source walks from one page to the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pagination {
    /// One request; its answer is everything.
    None,
    /// `param=first`, `first+1`, …; stops at the first page with no records.
    PageNumber { param: String, first: u64 },
    /// `param=0`, then advanced by the records each page held; stops at the
    /// first page with no records.
    Offset { param: String },
    /// The next cursor is read from the body at `pointer` and sent as
    /// `param`; stops when it is missing, null or `""`.
    Cursor { pointer: String, param: String },
    /// RFC 8288 `Link: <url>; rel="next"`; stops when there is none.
    LinkHeader,
}

/// A page-size parameter sent with every request (except the URLs a `Link`
/// header gives, which the server builds itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageSize {
    pub param: String,
    pub size: u64,
}

/// Settings of one JSON API source. Plain data; [`JsonApiConfig::validate`]
/// checks every rule, and [`JsonApiSource::open`] refuses what it refuses.
/// Header and query values may hold `${NAME}`, expanded from the environment
/// at open (`$$` is a literal `$`). `Debug` shows such values, and those
/// whose name looks secret, as `<redacted>`.
#[derive(Clone, PartialEq)]
pub struct JsonApiConfig {
    pub url: Url,
    /// Query parameters added to every request (replacing any of the same
    /// name in `url`).
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    /// RFC 6901 pointer to the records array; `None` or `""` means the whole
    /// body is the array. A `null` there is an empty page.
    pub records: Option<String>,
    pub pagination: Pagination,
    pub page_size: Option<PageSize>,
    /// Stop after this many pages even if the API has more.
    pub max_pages: Option<u64>,
    /// RFC 6901 pointer that, when present and not null in a 200 answer,
    /// marks it as an error (retried), with the value in the message.
    pub error_pointer: Option<String>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    /// Attempts per page before the run gives up (at least 1).
    pub max_attempts: u32,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

/// A setting [`JsonApiConfig::validate`] refuses: which one and why. It
/// never quotes a header or query value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct JsonApiConfigError {
    pub field: String,
    pub reason: String,
}

pub(super) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> JsonApiConfigError {
    JsonApiConfigError {
        field: field.into(),
        reason: reason.into(),
    }
}

impl JsonApiConfig {
    /// `url` with one request, the whole body as the records, and the same
    /// timeouts and retry defaults as the Random User source.
    pub fn new(url: Url) -> Self {
        JsonApiConfig {
            url,
            query: Vec::new(),
            headers: Vec::new(),
            records: None,
            pagination: Pagination::None,
            page_size: None,
            max_pages: None,
            error_pointer: None,
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(30),
            max_attempts: 8,
            backoff_initial: Duration::from_millis(200),
            backoff_max: Duration::from_secs(10),
        }
    }

    pub fn validate(&self) -> Result<(), JsonApiConfigError> {
        if !matches!(self.url.scheme(), "http" | "https") || self.url.host().is_none() {
            return Err(invalid(
                "url",
                "must be an http:// or https:// URL with a host",
            ));
        }
        for (name, value) in &self.query {
            if name.is_empty() {
                return Err(invalid("query", "a parameter name is empty"));
            }
            parse_template(value).map_err(|e| invalid(format!("query.{name}"), e))?;
        }
        for (name, value) in &self.headers {
            HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| invalid(format!("headers.{name}"), "not a valid header name"))?;
            parse_template(value).map_err(|e| invalid(format!("headers.{name}"), e))?;
        }
        if let Some(p) = &self.records {
            check_pointer("records", p, true)?;
        }
        if let Some(p) = &self.error_pointer {
            check_pointer("error_pointer", p, false)?;
        }
        let mut ours = Vec::new();
        match &self.pagination {
            Pagination::None | Pagination::LinkHeader => {}
            Pagination::PageNumber { param, .. } | Pagination::Offset { param } => {
                ours.push(("paginate.param", param));
            }
            Pagination::Cursor { pointer, param } => {
                check_pointer("paginate.cursor", pointer, false)?;
                ours.push(("paginate.param", param));
            }
        }
        if let Some(size) = &self.page_size {
            if size.size == 0 {
                return Err(invalid("page_size.size", "must be at least 1"));
            }
            ours.push(("page_size.param", &size.param));
        }
        for (field, param) in &ours {
            if param.is_empty() {
                return Err(invalid(*field, "must not be empty"));
            }
            if self.query.iter().any(|(n, _)| n == *param) {
                return Err(invalid(
                    *field,
                    format!("{param:?} is also in query; the source sets it on every request"),
                ));
            }
        }
        if let [(_, a), (_, b)] = ours.as_slice()
            && a == b
        {
            return Err(invalid(
                "page_size.param",
                format!("{a:?} is also the pagination parameter"),
            ));
        }
        if self.max_pages == Some(0) {
            return Err(invalid("max_pages", "must be at least 1"));
        }
        if self.max_attempts == 0 {
            return Err(invalid("max_attempts", "must be at least 1"));
        }
        if self.connect_timeout.is_zero() || self.read_timeout.is_zero() {
            return Err(invalid("timeouts", "must be longer than zero"));
        }
        if self.backoff_initial > self.backoff_max {
            return Err(invalid("backoff_initial", "must not exceed backoff_max"));
        }
        Ok(())
    }

    pub(super) fn policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.max_attempts,
            backoff_initial: self.backoff_initial,
            backoff_max: self.backoff_max,
        }
    }
}

impl fmt::Debug for JsonApiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonApiConfig")
            .field("url", &public_url(&self.url, &HashSet::new()))
            .field("query", &RedactedPairs(&self.query))
            .field("headers", &RedactedPairs(&self.headers))
            .field("records", &self.records)
            .field("pagination", &self.pagination)
            .field("page_size", &self.page_size)
            .field("max_pages", &self.max_pages)
            .field("error_pointer", &self.error_pointer)
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("max_attempts", &self.max_attempts)
            .field("backoff_initial", &self.backoff_initial)
            .field("backoff_max", &self.backoff_max)
            .finish()
    }
}

/// Name/value pairs with every secret-looking or `${…}` value redacted.
pub(super) struct RedactedPairs<'a>(&'a [(String, String)]);

impl fmt::Debug for RedactedPairs<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(name, value)| {
                let shown = if is_secret(name, value) {
                    REDACTED
                } else {
                    value.as_str()
                };
                (name, shown)
            }))
            .finish()
    }
}

/// Whether a header or query parameter of this name carries a credential.
/// Generous on purpose: hiding a harmless value costs nothing.
pub fn looks_secret(name: &str) -> bool {
    const WORDS: [&str; 10] = [
        "auth",
        "token",
        "key",
        "secret",
        "password",
        "passwd",
        "cookie",
        "session",
        "signature",
        "credential",
    ];
    let name = name.to_ascii_lowercase();
    WORDS.iter().any(|w| name.contains(w)) || name == "sig" || name == "pwd"
}

/// A value is treated as secret when its name looks secret or it comes from
/// the environment: variables are where people keep credentials.
pub(super) fn is_secret(name: &str, template: &str) -> bool {
    looks_secret(name) || template.contains("${")
}

pub(super) fn check_pointer(
    field: &str,
    p: &str,
    allow_empty: bool,
) -> Result<(), JsonApiConfigError> {
    if p.is_empty() {
        return if allow_empty {
            Ok(())
        } else {
            Err(invalid(field, "must not be empty"))
        };
    }
    if !p.starts_with('/') {
        return Err(invalid(
            field,
            format!("{p:?} is not a JSON pointer (RFC 6901): it must start with '/'"),
        ));
    }
    let mut chars = p.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err(invalid(
                field,
                format!("{p:?}: '~' must be followed by 0 or 1 (RFC 6901)"),
            ));
        }
    }
    Ok(())
}
