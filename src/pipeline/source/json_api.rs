//! The generic JSON API source: any HTTP(S) endpoint that answers JSON.
//! Owns its validated settings, `${NAME}` expansion of headers and query
//! values (and keeping what they expand to out of logs, errors and `Debug`),
//! finding the records in a body, the four pagination styles and their loop
//! guards. Timeouts, retries, backoff and the body cap come from `retry`.
//! `config.rs` holds the settings and their checks, `secrets.rs` the
//! `${NAME}` templates and what is kept secret, `paging.rs` what an answer
//! says about the next page (cursor, `Link` header), `records.rs` an
//! answer's records (found by pointer, parsed a chunk at a time); this file
//! the walk from page to page.

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use tracing::{info, warn};
use url::Url;

use super::SourceError;
use super::json_page::JsonPage;
use super::retry::{self, Failure};

mod config;
mod paging;
mod records;
mod secrets;

use config::is_secret;
pub use config::{JsonApiConfig, JsonApiConfigError, PageSize, Pagination, looks_secret};
use paging::{cursor_at, next_link};
use records::Records;
use secrets::{Secrets, expand, public_url};

/// What stands in for a secret in messages and `Debug` output.
const REDACTED: &str = "<redacted>";
/// What stands in for a secret query value in a position (it is a URL, where
/// `<` and `>` would be percent-encoded).
const REDACTED_IN_URL: &str = "REDACTED";
/// Redirects followed within one origin before giving up.
const MAX_REDIRECTS: usize = 10;
/// An answer's records are handed out in pages of at most this many, and
/// of no more than [`CHUNK_BYTES`] of their text (past the one that
/// crosses it): an answer of millions of records is never parsed at once.
const CHUNK: usize = 1_000;
const CHUNK_BYTES: usize = 1 << 20;

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
    records: Records,
    cursor: Option<String>,
    link: Option<String>,
}

/// The answer whose records are being handed out.
#[derive(Debug)]
struct Current {
    records: Records,
    /// Its page number, from 1.
    number: u64,
    position: String,
}

/// Pages through a JSON API, one answer in memory at a time (as its text,
/// its records parsed a page at a time).
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
    /// The answer still handing out its records, a chunk at a time.
    current: Option<Current>,
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
            current: None,
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

    /// Answers received so far.
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
    /// An answer of more than [`CHUNK`] records is handed out as several
    /// pages with its number and position, each record at its place in the
    /// answer.
    pub async fn next_page(&mut self) -> Result<Option<JsonPage>, SourceError> {
        if let Some(page) = self.next_chunk()? {
            return Ok(Some(page));
        }
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
        let received = fetched.records.count();
        let repeated = self.last_records_hash == Some(fetched.records.hash());
        self.last_records_hash = Some(fetched.records.hash());
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
        if received == 0 {
            // An answer with no records is still a page.
            let prefix = format!("{position}#");
            return Ok(Some(JsonPage::new(self.pages, position, prefix)));
        }
        self.current = Some(Current {
            records: fetched.records,
            number: self.pages,
            position,
        });
        self.next_chunk()
    }

    /// The current answer's next records as a page, `None` once it has
    /// handed out all of them.
    fn next_chunk(&mut self) -> Result<Option<JsonPage>, SourceError> {
        let Some(current) = &mut self.current else {
            return Ok(None);
        };
        let chunk = match current.records.next_chunk(CHUNK, CHUNK_BYTES) {
            Ok(chunk) => chunk,
            Err(f) => {
                // Not expected (every record was parsed as the answer
                // arrived), but a source that failed is spent.
                let url = current.position.clone();
                self.current = None;
                self.next = Next::Done;
                return Err(SourceError::Refused {
                    url,
                    reason: f.reason,
                });
            }
        };
        if chunk.is_empty() {
            self.current = None;
            return Ok(None);
        }
        let prefix = format!("{}#", current.position);
        let mut page = JsonPage::new(current.number, current.position.clone(), prefix);
        for (place, value) in chunk {
            page.push(value, place, || format!("record {place}"));
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
        let cursor_pointer = match &self.config.pagination {
            Pagination::Cursor { pointer, .. } => Some(pointer.as_str()),
            _ => None,
        };
        let pointers: Vec<&str> = [self.config.error_pointer.as_deref(), cursor_pointer]
            .into_iter()
            .flatten()
            .collect();
        let headers = &answer.headers;
        let read = records::read(
            answer.body,
            self.config.records.as_deref(),
            &pointers,
            |e, body| {
                Failure::retryable(format!(
                    "malformed json: {e}; {}",
                    retry::arrived(headers, body)
                ))
            },
        );
        let records::Answer {
            rest: body,
            records,
        } = read?;
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
        Ok(Fetched {
            records: records?,
            cursor,
            link,
        })
    }
}

#[cfg(test)]
mod tests;
