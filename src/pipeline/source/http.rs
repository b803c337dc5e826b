//! The HTTP source: any Random User-compatible API (the real one or
//! `tributary mock-api`). Owns timeouts, retries, backoff and `Retry-After`;
//! owns nothing downstream of a decoded page.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tracing::warn;
use url::Url;

use super::retry::{self, Failure, RetryPolicy};
use super::{SourceBatch, SourceError};
use crate::record::{ApiInfo, PageError, decode_page_of};

/// Bytes of answer allowed per user asked for: a user in format 1.4 is about
/// 1.2 KiB, so this is room to spare, and a page of 100 users may not be
/// 32 MiB. A page is parsed and split while the next is fetched, so memory
/// is a few times the page: the cap keeps that well under 256 MiB.
const BYTES_PER_USER: usize = 8 << 10;

/// The least any page may be: room for an API's quirks on small pages.
const MIN_PAGE_BYTES: usize = 1 << 20;

/// The largest answer accepted for a page of `results` users: 8 KiB a user,
/// at least 1 MiB, at most [`retry::MAX_BODY_BYTES`] (32 MiB).
pub(super) fn page_cap(results: u64) -> usize {
    usize::try_from(results)
        .unwrap_or(usize::MAX)
        .saturating_mul(BYTES_PER_USER)
        .clamp(MIN_PAGE_BYTES, retry::MAX_BODY_BYTES)
}

/// The query parameters the source sets itself on every request.
const OWN_PARAMS: [&str; 5] = ["results", "seed", "page", "nat", "gender"];

/// Validated settings of the HTTP source.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpConfig {
    /// The API's base, e.g. `https://randomuser.me/api/` or `.../api/1.4/`.
    /// Query parameters in it other than the ones the source sets
    /// (`results`, `seed`, `page`, `nat`, `gender`), e.g. `apikey=`, are
    /// sent with every request.
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
    /// Whether an answer named another page, or another seed, than asked
    /// (see [`HttpSource::heed`]): each is warned of once.
    ignored_page: AtomicBool,
    ignored_seed: AtomicBool,
}

impl HttpSource {
    pub fn new(config: HttpConfig) -> Result<Self, SourceError> {
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.read_timeout)
            .timeout(retry::request_deadline(
                config.connect_timeout,
                config.read_timeout,
            ))
            .user_agent(concat!("tributary/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SourceError::Setup(e.to_string()))?;
        Ok(HttpSource {
            client,
            config,
            retries: AtomicU64::new(0),
            ignored_page: AtomicBool::new(false),
            ignored_seed: AtomicBool::new(false),
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
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| !OWN_PARAMS.contains(&k.as_ref()))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        url.set_query(None);
        {
            let mut q = url.query_pairs_mut();
            q.extend_pairs(kept);
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

    fn policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.config.max_attempts,
            backoff_initial: self.config.backoff_initial,
            backoff_max: self.config.backoff_max,
        }
    }

    /// Page `page` of `results` users, retried until it decodes or the
    /// attempts run out.
    pub async fn fetch(&self, page: u64, results: u64) -> Result<SourceBatch, SourceError> {
        let url = self.page_url(page, results);
        let url = &url;
        let batch = self
            .policy()
            .run(
                &self.retries,
                &retry::display_url(url),
                || self.attempt(url, page, results),
                |attempt, delay, reason| {
                    warn!(
                        page,
                        attempt,
                        delay_ms = delay.as_millis() as u64,
                        reason = %reason,
                        "source request failed, retrying"
                    )
                },
            )
            .await?;
        Ok(SourceBatch { page, ..batch })
    }

    /// Exponential backoff with full jitter: a random delay in
    /// `0 ..= min(max, initial * 2^(attempt-1))`.
    #[cfg(test)]
    fn backoff(&self, attempt: u32) -> Duration {
        self.policy().backoff(attempt)
    }

    async fn attempt(&self, url: &Url, page: u64, results: u64) -> Result<SourceBatch, Failure> {
        let (read, connect) = (self.config.read_timeout, self.config.connect_timeout);
        self.attempt_unexplained(url, page, results)
            .await
            .map_err(|f| retry::with_limits(f, read, retry::request_deadline(connect, read)))
    }

    async fn attempt_unexplained(
        &self,
        url: &Url,
        page: u64,
        results: u64,
    ) -> Result<SourceBatch, Failure> {
        let response = self
            .client
            .get(url.clone())
            .send()
            .await
            .map_err(|e| Failure::transport(&e))?;
        let answer = retry::answer(response, page_cap(results)).await?;
        let asked = usize::try_from(results).unwrap_or(usize::MAX);
        match decode_page_of(&answer.body, asked) {
            Ok(decoded) => {
                self.heed(url, page, decoded.info.as_ref());
                Ok(SourceBatch {
                    page: 0,
                    first: 0,
                    users: decoded.users,
                    rejected: decoded.rejected,
                })
            }
            Err(e @ PageError::Api(_)) => Err(Failure::retryable(e.to_string())),
            Err(e @ PageError::Malformed(_)) => Err(Failure::retryable(format!(
                "{e}; {}",
                retry::arrived(&answer.headers, &answer.body)
            ))),
        }
    }

    /// Warns, once a source, when an answer's `info` names another page or
    /// seed than was asked: the API ignores that parameter. Ignoring `page`,
    /// it repeats its users page after page: each is stored once, and the
    /// summary counts the repeats as duplicates skipped. Ignoring `seed`, it answers
    /// other users at every run, so a rerun stores new rows. An answer
    /// without `info` says nothing.
    fn heed(&self, url: &Url, page: u64, info: Option<&ApiInfo>) {
        let Some(info) = info else { return };
        for warning in ignored(&self.config.seed, page, info) {
            let once = match warning {
                Ignored::Page { .. } => &self.ignored_page,
                Ignored::Seed(_) => &self.ignored_seed,
            };
            if !once.swap(true, Ordering::Relaxed) {
                warn!(url = %retry::display_url(url), "{warning}");
            }
        }
    }
}

/// A parameter the API's answer says it did not follow.
#[derive(Debug, PartialEq, Eq)]
enum Ignored {
    /// The page asked for, and the one it answered.
    Page { asked: u64, answered: u64 },
    /// The seed it answered.
    Seed(String),
}

impl std::fmt::Display for Ignored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ignored::Page { asked, answered } => write!(
                f,
                "the API answered page {answered} when asked for page {asked}: it ignores \
                 `page`, so its pages repeat the same users (each is stored once; the summary \
                 counts the repeats as duplicates skipped)"
            ),
            Ignored::Seed(answered) => write!(
                f,
                "the API answered seed {answered:?} when asked for another: it ignores `seed`, \
                 so its users differ from run to run and a rerun stores new rows"
            ),
        }
    }
}

fn ignored(seed: &str, page: u64, info: &ApiInfo) -> Vec<Ignored> {
    let mut out = Vec::new();
    if let Some(answered) = info.page
        && answered != page
    {
        out.push(Ignored::Page {
            asked: page,
            answered,
        });
    }
    if let Some(answered) = &info.seed
        && answered != seed
    {
        out.push(Ignored::Seed(answered.clone()));
    }
    out
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
    fn page_url_keeps_other_parameters_and_replaces_its_own() {
        let s = source("https://api.example/api/?apikey=k%26ey&results=9&seed=old&format=pretty");
        assert_eq!(
            s.page_url(2, 50).as_str(),
            "https://api.example/api/?apikey=k%26ey&format=pretty&results=50&seed=abc&page=2&nat=US%2CGB"
        );
    }

    #[test]
    fn the_page_cap_follows_the_page_size() {
        assert_eq!(page_cap(1), 1 << 20);
        assert_eq!(page_cap(1000), 1000 * (8 << 10));
        assert_eq!(page_cap(5000), 32 << 20);
        assert_eq!(page_cap(u64::MAX), 32 << 20);
    }

    #[test]
    fn an_answer_of_another_page_or_seed_tells_of_the_ignored_parameter() {
        let info = |seed: &str, page| ApiInfo {
            seed: Some(seed.into()),
            page: Some(page),
            ..ApiInfo::default()
        };
        assert_eq!(ignored("abc", 3, &info("abc", 3)), []);
        let page = |asked, answered| Ignored::Page { asked, answered };
        assert_eq!(ignored("abc", 3, &info("abc", 1)), [page(3, 1)]);
        assert_eq!(
            ignored("abc", 1, &info("f00d", 2)),
            [page(1, 2), Ignored::Seed("f00d".into())]
        );
        assert_eq!(
            ignored("abc", 4, &ApiInfo::default()),
            [],
            "no info, no word"
        );
        let said = page(2, 1).to_string();
        assert!(
            said.contains("answered page 1 when asked for page 2: it ignores `page`"),
            "{said}"
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
