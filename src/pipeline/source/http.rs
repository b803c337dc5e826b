//! The HTTP source: any Random User-compatible API (the real one or
//! `tributary mock-api`). Owns timeouts, retries, backoff and `Retry-After`;
//! owns nothing downstream of a decoded page.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use tracing::warn;
use url::Url;

use super::{SourceBatch, SourceError};
use crate::record::{PageError, decode_page};

/// A response body larger than this is refused: 5,000 users in format 1.4 are
/// about 6 MiB, so this leaves room without letting a broken server fill memory.
const MAX_BODY_BYTES: usize = 64 << 20;

/// Validated settings of the HTTP source.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpConfig {
    /// The API's base, e.g. `https://randomuser.me/api/` or `.../api/1.4/`.
    pub url: Url,
    pub seed: String,
    /// `nat=` values, upper case; empty means all.
    pub nats: Vec<String>,
    /// `gender=` value, if any.
    pub gender: Option<String>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    /// Attempts per page before the run gives up (at least 1).
    pub max_attempts: u32,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

/// Fetches pages over HTTP with bounded, jittered retries.
#[derive(Debug)]
pub struct HttpSource {
    client: reqwest::Client,
    config: HttpConfig,
    /// Retried attempts so far, across all pages (a metric, and the tests' proof).
    retries: AtomicU64,
}

/// One failed attempt, and whether another could help.
struct Failure {
    retryable: bool,
    /// The server's `Retry-After`, when it sent one.
    retry_after: Option<Duration>,
    reason: String,
}

impl HttpSource {
    pub fn new(config: HttpConfig) -> Result<Self, SourceError> {
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.read_timeout)
            .user_agent(concat!("tributary/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SourceError::Setup(e.to_string()))?;
        Ok(HttpSource {
            client,
            config,
            retries: AtomicU64::new(0),
        })
    }

    pub fn config(&self) -> &HttpConfig {
        &self.config
    }

    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    fn page_url(&self, page: u64, results: u64) -> Url {
        let mut url = self.config.url.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("results", &results.to_string());
            q.append_pair("seed", &self.config.seed);
            q.append_pair("page", &page.to_string());
            if !self.config.nats.is_empty() {
                q.append_pair("nat", &self.config.nats.join(","));
            }
            if let Some(g) = &self.config.gender {
                q.append_pair("gender", g);
            }
        }
        url
    }

    /// Page `page` of `results` users, retried until it decodes or the
    /// attempts run out.
    pub async fn fetch(&self, page: u64, results: u64) -> Result<SourceBatch, SourceError> {
        let url = self.page_url(page, results);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let failure = match self.attempt(&url).await {
                Ok(batch) => return Ok(SourceBatch { page, ..batch }),
                Err(f) => f,
            };
            let shown = display_url(&url);
            if !failure.retryable {
                return Err(SourceError::Refused {
                    url: shown,
                    reason: failure.reason,
                });
            }
            if attempt >= self.config.max_attempts {
                return Err(SourceError::GaveUp {
                    url: shown,
                    attempts: attempt,
                    last: failure.reason,
                });
            }
            let delay = failure
                .retry_after
                .unwrap_or_else(|| self.backoff(attempt))
                .min(self.config.backoff_max.max(Duration::from_secs(60)));
            warn!(
                page,
                attempt,
                delay_ms = delay.as_millis() as u64,
                reason = %failure.reason,
                "source request failed, retrying"
            );
            self.retries.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("tributary_source_retries_total").increment(1);
            tokio::time::sleep(delay).await;
        }
    }

    /// Exponential backoff with full jitter: a random delay in
    /// `0 ..= min(max, initial * 2^(attempt-1))`.
    fn backoff(&self, attempt: u32) -> Duration {
        let cap = self
            .config
            .backoff_initial
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
            .min(self.config.backoff_max);
        cap.mul_f64(jitter())
    }

    async fn attempt(&self, url: &Url) -> Result<SourceBatch, Failure> {
        let transport = |e: reqwest::Error| Failure {
            retryable: true,
            retry_after: None,
            reason: describe_transport_error(&e),
        };
        let response = self
            .client
            .get(url.clone())
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        if status == StatusCode::TOO_MANY_REQUESTS
            || status.is_server_error()
            || status == StatusCode::REQUEST_TIMEOUT
        {
            return Err(Failure {
                retryable: true,
                retry_after: retry_after(&response),
                reason: format!("http {status}"),
            });
        }
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(Failure {
                retryable: false,
                retry_after: None,
                reason: format!("http {status}: {}", truncate(&body, 200)),
            });
        }
        if response
            .content_length()
            .is_some_and(|n| n as usize > MAX_BODY_BYTES)
        {
            return Err(Failure {
                retryable: false,
                retry_after: None,
                reason: format!("response over {MAX_BODY_BYTES} bytes"),
            });
        }
        let body = response.bytes().await.map_err(transport)?;
        match decode_page(&body) {
            Ok(decoded) => Ok(SourceBatch {
                page: 0,
                users: decoded.users,
                rejected: decoded.rejected,
            }),
            Err(e @ (PageError::Api(_) | PageError::Malformed(_))) => Err(Failure {
                retryable: true,
                retry_after: None,
                reason: e.to_string(),
            }),
        }
    }
}

/// `Retry-After` in seconds (the HTTP-date form is rare for this API and
/// falls back to backoff).
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

fn describe_transport_error(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_body() || e.is_decode() {
        "broken response body"
    } else {
        "request failed"
    };
    let mut cause = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    if cause.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {cause}")
    }
}

/// The URL without its query, for messages: the query may carry a key.
fn display_url(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    let _ = u.set_password(None);
    u.to_string()
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// A random factor in `[0, 1)` for jitter; it need not be reproducible.
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(url: &str) -> HttpSource {
        HttpSource::new(HttpConfig {
            url: Url::parse(url).unwrap(),
            seed: "abc".into(),
            nats: vec!["US".into(), "GB".into()],
            gender: None,
            connect_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(1),
            max_attempts: 3,
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(2),
        })
        .unwrap()
    }

    #[test]
    fn page_url_carries_the_api_parameters() {
        let s = source("https://randomuser.me/api/1.4/");
        assert_eq!(
            s.page_url(3, 500).as_str(),
            "https://randomuser.me/api/1.4/?results=500&seed=abc&page=3&nat=US%2CGB"
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let s = source("http://127.0.0.1:1/api/");
        for attempt in 1..30 {
            let d = s.backoff(attempt);
            let cap = Duration::from_millis(100)
                .saturating_mul(1 << (attempt - 1).min(20))
                .min(Duration::from_secs(2));
            assert!(d <= cap, "attempt {attempt}: {d:?} > {cap:?}");
        }
    }

    #[tokio::test]
    async fn unreachable_api_gives_up_with_a_clear_error() {
        // Port 1 on loopback: nothing listens, the connection is refused at once.
        let s = source("http://127.0.0.1:1/api/");
        let err = s.fetch(1, 10).await.unwrap_err();
        let text = err.to_string();
        assert!(text.contains("gave up after 3 attempts"), "{text}");
        assert!(text.contains("cannot connect"), "{text}");
        assert_eq!(s.retries(), 2);
    }
}
