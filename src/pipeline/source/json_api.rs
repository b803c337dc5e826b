//! The generic JSON API source: any HTTP(S) endpoint that answers JSON.
//! Owns its validated settings, `${NAME}` expansion of headers and query
//! values (and keeping what they expand to out of logs, errors and `Debug`),
//! finding the records in a body, the four pagination styles and their loop
//! guards. Timeouts, retries, backoff and the body cap come from `retry`.

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use tracing::{info, warn};
use url::Url;

use super::SourceError;
use super::json_page::{JsonPage, kind};
use super::retry::{self, Failure, RetryPolicy};

/// What stands in for a secret in messages and `Debug` output.
const REDACTED: &str = "<redacted>";
/// What stands in for a secret query value in a position (it is a URL, where
/// `<` and `>` would be percent-encoded).
const REDACTED_IN_URL: &str = "REDACTED";
/// Redirects followed within one origin before giving up.
const MAX_REDIRECTS: usize = 10;

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

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> JsonApiConfigError {
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

    fn policy(&self) -> RetryPolicy {
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
struct RedactedPairs<'a>(&'a [(String, String)]);

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
fn is_secret(name: &str, template: &str) -> bool {
    looks_secret(name) || template.contains("${")
}

fn check_pointer(field: &str, p: &str, allow_empty: bool) -> Result<(), JsonApiConfigError> {
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

/// A piece of a `${NAME}` template.
#[derive(Debug, PartialEq)]
enum Piece<'a> {
    Text(&'a str),
    Var(&'a str),
}

fn parse_template(s: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut pieces = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        if i > 0 {
            pieces.push(Piece::Text(&rest[..i]));
        }
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            pieces.push(Piece::Text("$"));
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('{') {
            let end = tail
                .find('}')
                .ok_or("an unclosed ${ (write $$ for a literal $)")?;
            let name = &tail[..end];
            let valid = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(format!(
                    "${{{name}}} is not a variable name (letters, digits and _, not first a digit)"
                ));
            }
            pieces.push(Piece::Var(name));
            rest = &tail[end + 1..];
        } else {
            pieces.push(Piece::Text("$"));
            rest = after;
        }
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest));
    }
    Ok(pieces)
}

/// The values that must never be shown, longest first so a value that
/// contains another is replaced whole.
#[derive(Default)]
struct Secrets(Vec<String>);

impl Secrets {
    /// Values this short are not worth hiding and would mangle every message.
    const MIN_LEN: usize = 4;

    fn add(&mut self, value: &str) {
        if value.len() >= Self::MIN_LEN && !self.0.iter().any(|s| s == value) {
            self.0.push(value.to_owned());
            self.0.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    /// `text` with every secret replaced: a server may echo a credential in
    /// an error body, and that body ends up in an error message.
    fn scrub(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for s in &self.0 {
            if text.contains(s.as_str()) {
                text = text.replace(s.as_str(), REDACTED);
            }
        }
        text
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{} redacted]", self.0.len())
    }
}

/// Expands `template`; `what` names it in errors, which name a missing
/// variable but never a value. Every substituted value, and the result when
/// `secret`, go into `secrets`.
fn expand(
    what: &str,
    template: &str,
    secret: bool,
    env: &dyn Fn(&str) -> Option<String>,
    secrets: &mut Secrets,
) -> Result<String, SourceError> {
    let pieces =
        parse_template(template).map_err(|e| SourceError::Setup(format!("{what}: {e}")))?;
    let mut out = String::new();
    for piece in pieces {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Var(name) => match env(name) {
                Some(v) if !v.is_empty() => {
                    secrets.add(&v);
                    out.push_str(&v);
                }
                Some(_) => {
                    return Err(SourceError::Setup(format!(
                        "{what}: environment variable {name} is empty"
                    )));
                }
                None => {
                    return Err(SourceError::Setup(format!(
                        "{what}: environment variable {name} is not set"
                    )));
                }
            },
        }
    }
    if secret {
        secrets.add(&out);
        // The credential after an auth scheme ("Bearer abc…") on its own,
        // in case a server echoes just that.
        if let Some((_, credential)) = out.trim().rsplit_once(' ') {
            secrets.add(credential);
        }
    }
    Ok(out)
}

/// `url` for people: no user info or fragment, and the values of secret query
/// parameters replaced.
fn public_url(url: &Url, secret_params: &HashSet<String>) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_fragment(None);
    if u.query().is_some() {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let v = if looks_secret(&k) || secret_params.contains(k.as_ref()) {
                    REDACTED_IN_URL.to_owned()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    u.to_string()
}

/// `base` with each of `set` replacing any parameter of the same name.
fn with_params(base: &Url, set: &[(String, String)]) -> Url {
    if set.is_empty() {
        return base.clone();
    }
    let kept: Vec<(String, String)> = base
        .query_pairs()
        .filter(|(k, _)| !set.iter().any(|(n, _)| n == k))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut u = base.clone();
    u.query_pairs_mut()
        .clear()
        .extend_pairs(kept)
        .extend_pairs(set.iter().map(|(k, v)| (k, v)));
    u
}

/// What comes after the page just handed out.
#[derive(Debug)]
enum Next {
    Fetch(Url),
    /// The page was fine but what it says about the next one is not (a
    /// cursor loop): its records are handed out first, then this error.
    Fail(SourceError),
    Done,
}

/// One answer, picked apart.
struct Fetched {
    items: Vec<Value>,
    cursor: Option<String>,
    link: Option<String>,
    /// A hash of the records, to notice the same page twice.
    records_hash: u64,
}

/// Feeds what is written to a hasher.
struct HashWriter(twox_hash::XxHash3_64);

impl std::io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::hash::Hasher::write(&mut self.0, buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Pages through a JSON API, one page in memory at a time.
pub struct JsonApiSource {
    client: reqwest::Client,
    config: JsonApiConfig,
    /// Expanded headers; credentials are marked sensitive.
    headers: HeaderMap,
    /// `url` with the expanded query and page size: every request but those
    /// a `Link` header names starts from it.
    base: Url,
    secret_params: HashSet<String>,
    secrets: Secrets,
    retries: AtomicU64,
    pages: u64,
    next: Next,
    /// The page number or offset the next request asks for.
    counter: u64,
    /// Cursors, or next links, already followed.
    seen: HashSet<String>,
    last_records_hash: Option<u64>,
    hit_max_pages: bool,
    /// Pages in a row with no records that still named a next page.
    empty_in_a_row: u32,
    /// The position and reason of every retry warning, as logged: the tests'
    /// proof that no secret reaches the log (capturing `tracing` output is
    /// unreliable while other tests run in parallel).
    #[cfg(test)]
    warned: std::sync::Mutex<Vec<String>>,
}

impl fmt::Debug for JsonApiSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonApiSource")
            .field("config", &self.config)
            .field("secrets", &self.secrets)
            .field("pages", &self.pages)
            .field("retries", &self.retries())
            .finish_non_exhaustive()
    }
}

impl JsonApiSource {
    /// Validates `config`, expands `${NAME}` from the process environment and
    /// builds the client. Nothing is fetched yet.
    pub fn open(config: JsonApiConfig) -> Result<Self, SourceError> {
        Self::open_with_env(config, &|name| std::env::var(name).ok())
    }

    /// [`JsonApiSource::open`] with `env` standing in for the environment.
    pub fn open_with_env(
        config: JsonApiConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, SourceError> {
        config
            .validate()
            .map_err(|e| SourceError::Setup(e.to_string()))?;
        let mut secrets = Secrets::default();
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        );
        for (name, template) in &config.headers {
            let secret = is_secret(name, template);
            let what = format!("header {name}");
            let value = expand(&what, template, secret, env, &mut secrets)?;
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| SourceError::Setup(format!("{what}: not a valid header name")))?;
            let mut value = HeaderValue::from_str(&value).map_err(|_| {
                SourceError::Setup(format!(
                    "{what}: the value is not a valid header value (a control character?)"
                ))
            })?;
            value.set_sensitive(secret);
            headers.append(name, value);
        }
        let mut secret_params = HashSet::new();
        let mut set = Vec::new();
        for (name, template) in &config.query {
            let secret = is_secret(name, template);
            if secret {
                secret_params.insert(name.clone());
            }
            let value = expand(
                &format!("query {name}"),
                template,
                secret,
                env,
                &mut secrets,
            )?;
            set.push((name.clone(), value));
        }
        if let Some(size) = &config.page_size {
            set.push((size.param.clone(), size.size.to_string()));
        }
        let mut base = with_params(&config.url, &set);
        base.set_fragment(None);

        let origin = config.url.origin();
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.read_timeout)
            .timeout(retry::request_deadline(
                config.connect_timeout,
                config.read_timeout,
            ))
            .user_agent(concat!("tributary/", env!("CARGO_PKG_VERSION")))
            // Headers may carry credentials that reqwest does not know are
            // credentials (`X-Api-Key`): never carry them to another origin.
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() > MAX_REDIRECTS {
                    attempt.error("too many redirects")
                } else if attempt.url().origin() != origin {
                    attempt.stop()
                } else {
                    attempt.follow()
                }
            }))
            .build()
            .map_err(|e| SourceError::Setup(e.to_string()))?;

        let counter = match &config.pagination {
            Pagination::PageNumber { first, .. } => *first,
            _ => 0,
        };
        let mut source = JsonApiSource {
            client,
            headers,
            base,
            secret_params,
            secrets,
            retries: AtomicU64::new(0),
            pages: 0,
            next: Next::Done,
            counter,
            seen: HashSet::new(),
            last_records_hash: None,
            hit_max_pages: false,
            empty_in_a_row: 0,
            #[cfg(test)]
            warned: Default::default(),
            config,
        };
        let first = source.counted_url(None);
        if source.config.pagination == Pagination::LinkHeader {
            source.seen.insert(first.to_string());
        }
        source.next = Next::Fetch(first);
        Ok(source)
    }

    pub fn config(&self) -> &JsonApiConfig {
        &self.config
    }

    /// Retried requests so far, across all pages.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// Pages handed out so far.
    pub fn pages(&self) -> u64 {
        self.pages
    }

    /// Whether the source stopped at `max_pages` rather than at the API's end.
    pub fn hit_max_pages(&self) -> bool {
        self.hit_max_pages
    }

    /// `url` for people and dead-letter keys: no credentials, user info or
    /// fragment. The same page always has the same position.
    pub fn position(&self, url: &Url) -> String {
        self.secrets.scrub(&public_url(url, &self.secret_params))
    }

    /// The next request for page-number and offset pagination (or the first
    /// request of any style): `base` with the counter, or with `cursor`.
    fn counted_url(&self, cursor: Option<&str>) -> Url {
        match (&self.config.pagination, cursor) {
            (Pagination::PageNumber { param, .. } | Pagination::Offset { param }, _) => {
                with_params(&self.base, &[(param.clone(), self.counter.to_string())])
            }
            (Pagination::Cursor { param, .. }, Some(c)) => {
                with_params(&self.base, &[(param.clone(), c.to_owned())])
            }
            _ => self.base.clone(),
        }
    }

    /// The next page, `None` when the API (or `max_pages`) says there is no
    /// more. After an error the source is spent: every later call is `None`.
    pub async fn next_page(&mut self) -> Result<Option<JsonPage>, SourceError> {
        let url = match std::mem::replace(&mut self.next, Next::Done) {
            Next::Done => return Ok(None),
            Next::Fail(e) => return Err(e),
            Next::Fetch(url) => url,
        };
        if let Some(max) = self.config.max_pages
            && self.pages >= max
        {
            self.hit_max_pages = true;
            info!(
                url = %self.position(&self.config.url),
                max_pages = max,
                "json source stopped at max_pages; the API may have more"
            );
            return Ok(None);
        }
        let position = self.position(&url);
        let fetched = {
            let this = &*self;
            let url = &url;
            let position = &position;
            this.config
                .policy()
                .run(
                    &this.retries,
                    position,
                    || this.attempt(url),
                    |attempt, delay, reason| {
                        #[cfg(test)]
                        this.warned
                            .lock()
                            .unwrap()
                            .push(format!("{position} {reason}"));
                        warn!(
                            position = %position,
                            attempt,
                            delay_ms = delay.as_millis() as u64,
                            reason = %reason,
                            "json source request failed, retrying"
                        )
                    },
                )
                .await?
        };
        let received = fetched.items.len() as u64;
        let repeated = self.last_records_hash == Some(fetched.records_hash);
        self.last_records_hash = Some(fetched.records_hash);
        self.next = match &self.config.pagination {
            Pagination::None => Next::Done,
            Pagination::PageNumber { param, .. } | Pagination::Offset { param } => {
                if received == 0 {
                    // The empty page is the end, not a page.
                    return Ok(None);
                }
                if repeated {
                    return Err(SourceError::Refused {
                        url: position,
                        reason: format!(
                            "the answer is the same as the page before: the API seems to ignore {param:?}"
                        ),
                    });
                }
                self.counter += match self.config.pagination {
                    Pagination::Offset { .. } => received,
                    _ => 1,
                };
                Next::Fetch(self.counted_url(None))
            }
            Pagination::Cursor { .. } => match &fetched.cursor {
                None => Next::Done,
                Some(c) if !self.seen.insert(c.clone()) => Next::Fail(SourceError::Refused {
                    url: position.clone(),
                    reason: format!(
                        "the next cursor {:?} was already followed: the API would loop",
                        retry::truncate(&self.secrets.scrub(c), 100)
                    ),
                }),
                Some(c) => Next::Fetch(self.counted_url(Some(c))),
            },
            Pagination::LinkHeader => match &fetched.link {
                None => Next::Done,
                Some(target) => self.follow_link(&url, target, &position),
            },
        };
        // A cursor or link walk ends when the API names no next page; empty
        // pages that keep naming one are no progress.
        if received == 0 && matches!(self.next, Next::Fetch(_)) {
            self.empty_in_a_row += 1;
            if self.empty_in_a_row >= super::EMPTY_PAGES_IN_A_ROW {
                self.next = Next::Done;
                return Err(SourceError::Refused {
                    url: position,
                    reason: format!(
                        "{} pages in a row held no records but named a next page: the API would never end",
                        self.empty_in_a_row
                    ),
                });
            }
        } else {
            self.empty_in_a_row = 0;
        }
        self.pages += 1;
        let mut page = JsonPage::new(self.pages, position);
        for (i, item) in fetched.items.into_iter().enumerate() {
            let at = format!("{}#{i}", page.position);
            page.push(item, &format!("record {i}"), at);
        }
        Ok(Some(page))
    }

    fn follow_link(&mut self, current: &Url, target: &str, position: &str) -> Next {
        let refuse = |reason: String| {
            Next::Fail(SourceError::Refused {
                url: position.to_owned(),
                reason,
            })
        };
        let next = match current.join(target) {
            Ok(u) => u,
            Err(e) => return refuse(format!("the next link is not a URL: {e}")),
        };
        if next.origin() != self.config.url.origin() {
            return refuse(format!(
                "the next link leads to another origin ({}); its headers are not sent there",
                self.position(&next)
            ));
        }
        if !self.seen.insert(next.to_string()) {
            return refuse(format!(
                "the next link {} was already followed: the API would loop",
                self.position(&next)
            ));
        }
        Next::Fetch(next)
    }

    /// One request and everything that can be checked about its answer; any
    /// text in a failure is scrubbed of secrets.
    async fn attempt(&self, url: &Url) -> Result<Fetched, Failure> {
        let (read, connect) = (self.config.read_timeout, self.config.connect_timeout);
        self.attempt_unscrubbed(url).await.map_err(|f| {
            let mut f = retry::with_limits(f, read, retry::request_deadline(connect, read));
            f.reason = self.secrets.scrub(&f.reason);
            f
        })
    }

    async fn attempt_unscrubbed(&self, url: &Url) -> Result<Fetched, Failure> {
        let response = self
            .client
            .get(url.clone())
            .headers(self.headers.clone())
            .send()
            .await
            .map_err(|e| Failure::transport(&e))?;
        let answer = retry::answer(response, retry::MAX_BODY_BYTES).await?;
        let mut body: Value = serde_json::from_slice(&answer.body).map_err(|e| {
            Failure::retryable(format!(
                "malformed json: {e}; {}",
                retry::arrived(&answer.headers, &answer.body)
            ))
        })?;
        drop(answer.body);
        if let Some(p) = &self.config.error_pointer
            && let Some(v) = body.pointer(p).filter(|v| !v.is_null())
        {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            return Err(Failure::retryable(format!(
                "the answer reports an error at {p}: {}",
                retry::truncate(&text, 200)
            )));
        }
        let cursor = match &self.config.pagination {
            Pagination::Cursor { pointer, .. } => cursor_at(&body, pointer)?,
            _ => None,
        };
        let link = match self.config.pagination {
            Pagination::LinkHeader => next_link(&answer.headers).map_err(Failure::fatal)?,
            _ => None,
        };
        let items = take_records(&mut body, self.config.records.as_deref())?;
        // The records, not the body: an API that ignores the page parameter
        // may still stamp each answer with the time it was made.
        let mut hasher = HashWriter(twox_hash::XxHash3_64::default());
        serde_json::to_writer(&mut hasher, &items).expect("JSON values serialise");
        Ok(Fetched {
            records_hash: std::hash::Hasher::finish(&hasher.0),
            items,
            cursor,
            link,
        })
    }
}

/// The next cursor at `pointer`: a string or a number; missing, null or `""`
/// is the end.
fn cursor_at(body: &Value, pointer: &str) -> Result<Option<String>, Failure> {
    match body.pointer(pointer) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(Failure::fatal(format!(
            "the cursor at {pointer} is {}, not a string or a number",
            kind(other)
        ))),
    }
}

/// Takes the records array out of `body` (no copy).
fn take_records(body: &mut Value, pointer: Option<&str>) -> Result<Vec<Value>, Failure> {
    let (target, at) = match pointer.filter(|p| !p.is_empty()) {
        None => (body, "the top level"),
        Some(p) => (
            body.pointer_mut(p)
                .ok_or_else(|| Failure::retryable(format!("the answer has nothing at {p}")))?,
            p,
        ),
    };
    match target.take() {
        Value::Array(items) => Ok(items),
        Value::Null => Ok(Vec::new()),
        other => Err(Failure::retryable(format!(
            "the records at {at} are {}, not an array",
            kind(&other)
        ))),
    }
}

/// The target of the first `rel="next"` link in the answer's `Link` header
/// fields (RFC 8288), as written (it may be relative).
fn next_link(headers: &HeaderMap) -> Result<Option<String>, String> {
    for field in headers.get_all(reqwest::header::LINK) {
        let text = String::from_utf8_lossy(field.as_bytes());
        for link in parse_link_header(&text)? {
            let rel = link
                .params
                .iter()
                .find(|(name, _)| name == "rel")
                .map(|(_, v)| v.as_str());
            if rel.is_some_and(|r| {
                r.split_ascii_whitespace()
                    .any(|t| t.eq_ignore_ascii_case("next"))
            }) {
                return Ok(Some(link.target));
            }
        }
    }
    Ok(None)
}

/// One link-value of a `Link` header.
#[derive(Debug, PartialEq)]
struct Link {
    target: String,
    /// Parameters in order, names in lower case, quoted values unquoted.
    params: Vec<(String, String)>,
}

/// `link-value *( "," link-value )` with
/// `link-value = "<" URI-Reference ">" *( OWS ";" OWS link-param )` and
/// `link-param = token BWS [ "=" BWS ( token / quoted-string ) ]`.
fn parse_link_header(text: &str) -> Result<Vec<Link>, String> {
    let bad = |what: &str| {
        format!(
            "malformed Link header ({what}): {}",
            retry::truncate(text, 200)
        )
    };
    let s = text.as_bytes();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < s.len() && matches!(s[*i], b' ' | b'\t') {
            *i += 1;
        }
    };
    let is_token_end = |c: u8| matches!(c, b';' | b',' | b'=' | b' ' | b'\t' | b'"');
    let mut links = Vec::new();
    loop {
        while i < s.len() && matches!(s[i], b' ' | b'\t' | b',') {
            i += 1;
        }
        if i == s.len() {
            return Ok(links);
        }
        if s[i] != b'<' {
            return Err(bad("a link must start with '<'"));
        }
        let end = text[i + 1..]
            .find('>')
            .ok_or_else(|| bad("no '>' after '<'"))?;
        let target = text[i + 1..i + 1 + end].trim().to_owned();
        i += end + 2;
        let mut params = Vec::new();
        loop {
            skip_ws(&mut i);
            if i == s.len() || s[i] == b',' {
                break;
            }
            if s[i] != b';' {
                return Err(bad("expected ';' or ','"));
            }
            i += 1;
            skip_ws(&mut i);
            let start = i;
            while i < s.len() && !is_token_end(s[i]) {
                i += 1;
            }
            if i == start {
                return Err(bad("a parameter has no name"));
            }
            let name = text[start..i].to_ascii_lowercase();
            skip_ws(&mut i);
            let mut value = String::new();
            if i < s.len() && s[i] == b'=' {
                i += 1;
                skip_ws(&mut i);
                if i < s.len() && s[i] == b'"' {
                    i += 1;
                    let mut closed = false;
                    while i < s.len() {
                        match s[i] {
                            b'\\' if i + 1 < s.len() => {
                                let c = text[i + 1..].chars().next().unwrap_or('\u{fffd}');
                                value.push(c);
                                i += 1 + c.len_utf8();
                            }
                            b'"' => {
                                i += 1;
                                closed = true;
                                break;
                            }
                            _ => {
                                // Copy whole UTF-8 characters, not bytes.
                                let c = text[i..].chars().next().unwrap_or('\u{fffd}');
                                value.push(c);
                                i += c.len_utf8();
                            }
                        }
                    }
                    if !closed {
                        return Err(bad("an unclosed quoted string"));
                    }
                } else {
                    let start = i;
                    while i < s.len() && !is_token_end(s[i]) {
                        i += 1;
                    }
                    value = text[start..i].to_owned();
                }
            }
            // A parameter given twice counts once, the first time
            // (RFC 8288 §3.3 for rel).
            if !params.iter().any(|(n, _)| *n == name) {
                params.push((name, value));
            }
        }
        links.push(Link { target, params });
    }
}

#[cfg(test)]
mod tests;
