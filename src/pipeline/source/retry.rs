//! What every HTTP source shares: one attempt's failure and whether it can be
//! retried, the retry loop with exponential backoff, full jitter and
//! `Retry-After`, the status classes that are worth retrying, and reading a
//! body under a size cap.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use url::Url;

use super::SourceError;

/// A response body larger than this is refused: 5,000 users in format 1.4 are
/// about 6 MiB, so this leaves room without letting a broken server fill
/// memory (a page is held a few times over while it is parsed and split).
/// The cap counts the bytes as they arrive, whatever the framing
/// (`Content-Length`, chunked, or until the connection closes); the client
/// asks for no compression and decompresses nothing, so these are the bytes
/// that are parsed.
pub(super) const MAX_BODY_BYTES: usize = 32 << 20;

/// How much of a refused answer's body is read for the error message: enough
/// to see the server's words, not enough for a broken server to fill memory.
const ERROR_BODY_BYTES: usize = 4 << 10;

/// A request, body included, may take this many read timeouts (plus the
/// connect timeout) before it is an attempt that timed out. The read
/// timeout alone bounds only the wait for each next chunk: a server that
/// trickles a byte now and then would keep one page open for good.
const READS_PER_REQUEST: u32 = 10;

/// How long one request may take in all (see [`READS_PER_REQUEST`]): with the
/// default timeouts (5 s, 30 s), 305 s.
pub(super) fn request_deadline(connect_timeout: Duration, read_timeout: Duration) -> Duration {
    connect_timeout.saturating_add(read_timeout.saturating_mul(READS_PER_REQUEST))
}

/// Pages in a row that held no records before a walk that expects more
/// stops with an error, rather than asking again for ever.
pub const EMPTY_PAGES_IN_A_ROW: u32 = 3;

/// A `Retry-After` is obeyed up to this long, or up to `backoff_max` when that
/// is longer: a server asking for an hour must not stall a run for an hour.
const RETRY_AFTER_CAP: Duration = Duration::from_secs(60);

/// One failed attempt, and whether another could help.
#[derive(Debug)]
pub(super) struct Failure {
    pub retryable: bool,
    /// The server's `Retry-After`, when it sent one.
    pub retry_after: Option<Duration>,
    pub reason: String,
}

impl Failure {
    pub fn retryable(reason: impl Into<String>) -> Self {
        Failure {
            retryable: true,
            retry_after: None,
            reason: reason.into(),
        }
    }

    pub fn fatal(reason: impl Into<String>) -> Self {
        Failure {
            retryable: false,
            retry_after: None,
            reason: reason.into(),
        }
    }

    pub fn transport(e: &reqwest::Error) -> Self {
        Failure::retryable(describe_transport_error(e))
    }
}

/// Attempts and backoff of one source.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct RetryPolicy {
    /// Attempts per request before giving up (at least 1).
    pub max_attempts: u32,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

impl RetryPolicy {
    /// Exponential backoff with full jitter: a random delay in
    /// `0 ..= min(max, initial * 2^(attempt-1))`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let cap = self
            .backoff_initial
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
            .min(self.backoff_max);
        cap.mul_f64(jitter())
    }

    /// Runs `attempt` until it succeeds, fails for good, or the attempts run
    /// out. `retries` counts every retry (a metric, and the tests' proof);
    /// `on_retry(attempt, delay, reason)` is told before each wait, so each
    /// source logs in its own terms. `shown_url` is the URL for error
    /// messages, already stripped of anything secret.
    pub async fn run<T, Fut>(
        &self,
        retries: &AtomicU64,
        shown_url: &str,
        mut attempt: impl FnMut() -> Fut,
        mut on_retry: impl FnMut(u32, Duration, &str),
    ) -> Result<T, SourceError>
    where
        Fut: Future<Output = Result<T, Failure>>,
    {
        let mut made = 0;
        loop {
            made += 1;
            let failure = match attempt().await {
                Ok(value) => return Ok(value),
                Err(f) => f,
            };
            if !failure.retryable {
                return Err(SourceError::Refused {
                    url: shown_url.to_owned(),
                    reason: failure.reason,
                });
            }
            if made >= self.max_attempts {
                return Err(SourceError::GaveUp {
                    url: shown_url.to_owned(),
                    attempts: made,
                    last: failure.reason,
                });
            }
            let delay = failure
                .retry_after
                .unwrap_or_else(|| self.backoff(made))
                .min(self.backoff_max.max(RETRY_AFTER_CAP));
            on_retry(made, delay, &failure.reason);
            retries.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(crate::telemetry::metrics::SOURCE_RETRIES.name).increment(1);
            tokio::time::sleep(delay).await;
        }
    }
}

/// A successful answer: its headers and its whole body.
pub(super) struct Answer {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// Sorts an answer into success, retryable (429, 408, 5xx, a broken body,
/// a body over `cap` bytes) and refused (any other status), and reads the
/// body of a success. The cap holds whether or not the server declared a
/// length, so a chunked answer, or one that never ends, cannot fill memory
/// either: reading stops at the cap.
pub(super) async fn answer(mut response: reqwest::Response, cap: usize) -> Result<Answer, Failure> {
    let status = response.status();
    if status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
    {
        return Err(Failure {
            retryable: true,
            retry_after: retry_after(response.headers()),
            reason: format!("http {status}"),
        });
    }
    if !status.is_success() {
        let body = read_capped(&mut response, ERROR_BODY_BYTES)
            .await
            .map(|(b, _)| b)
            .unwrap_or_default();
        let body = String::from_utf8_lossy(&body);
        return Err(Failure::fatal(format!(
            "http {status}: {}",
            truncate(&body, 200)
        )));
    }
    let too_large = || {
        Failure::retryable(format!(
            "the answer is larger than the {} cap; reading stopped there",
            size_text(cap)
        ))
    };
    if response.content_length().is_some_and(|n| n > cap as u64) {
        return Err(too_large());
    }
    let headers = std::mem::take(response.headers_mut());
    let body = read_whole(&mut response, cap)
        .await
        .map_err(|e| Failure::transport(&e))?
        .ok_or_else(too_large)?;
    Ok(Answer { headers, body })
}

/// A body is gathered in blocks of at most this size, each filled in place
/// and never reallocated: memory is the bytes kept plus less than a block,
/// whatever the size of the chunks the server sends.
const BLOCK_BYTES: usize = 1 << 20;

/// Up to `cap` bytes of the body, and whether that was all of it.
async fn read_capped(
    response: &mut reqwest::Response,
    cap: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let (blocks, len, complete) = gather(response, cap).await?;
    Ok((join(blocks, len), complete))
}

/// The whole body if it is at most `cap` bytes; `None` (and nothing kept)
/// if it is longer.
async fn read_whole(
    response: &mut reqwest::Response,
    cap: usize,
) -> Result<Option<Vec<u8>>, reqwest::Error> {
    let (blocks, len, complete) = gather(response, cap).await?;
    Ok(complete.then(|| join(blocks, len)))
}

/// The body's first `cap` bytes in blocks, their length, and whether that
/// was all of it. Reading stops at the cap.
async fn gather(
    response: &mut reqwest::Response,
    cap: usize,
) -> Result<(Vec<Vec<u8>>, usize, bool), reqwest::Error> {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    let mut len = 0;
    while let Some(chunk) = response.chunk().await? {
        let take = chunk.len().min(cap - len);
        let mut rest = &chunk[..take];
        while !rest.is_empty() {
            if blocks.last().is_none_or(|b| b.len() == b.capacity()) {
                blocks.push(Vec::with_capacity(BLOCK_BYTES.min(cap - len)));
            }
            let block = blocks.last_mut().expect("a block was just pushed");
            let n = rest.len().min(block.capacity() - block.len());
            block.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            len += n;
        }
        if take < chunk.len() {
            return Ok((blocks, len, false));
        }
    }
    Ok((blocks, len, true))
}

fn join(mut blocks: Vec<Vec<u8>>, len: usize) -> Vec<u8> {
    if blocks.len() == 1 {
        return blocks.pop().expect("one block");
    }
    let mut body = Vec::with_capacity(len);
    for block in blocks {
        body.extend_from_slice(&block);
    }
    body
}

/// `n` bytes for people: `64 MiB`, `16 KiB`, `100 bytes`.
pub(super) fn size_text(n: usize) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n}-byte")
    }
}

/// What arrived instead of JSON, for an error message: the content type
/// (and encoding, if any) and the first bytes, escaped, e.g.
/// `got text/html: "<!DOCTYPE html>..."`.
pub(super) fn arrived(headers: &HeaderMap, body: &[u8]) -> String {
    const SHOWN: usize = 60;
    let header = |name: reqwest::header::HeaderName| {
        headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let mut what =
        header(reqwest::header::CONTENT_TYPE).unwrap_or_else(|| "no content type".into());
    if let Some(encoding) = header(reqwest::header::CONTENT_ENCODING) {
        what.push_str(&format!(" (content-encoding {encoding})"));
    }
    let start: String = body
        .iter()
        .take(SHOWN)
        .flat_map(|b| std::ascii::escape_default(*b))
        .map(char::from)
        .collect();
    let more = if body.len() > SHOWN { "..." } else { "" };
    if body.is_empty() {
        format!("got {what}: an empty body")
    } else {
        format!("got {what}: \"{start}{more}\"")
    }
}

/// `Retry-After` in seconds (the HTTP-date form is rare for these APIs and
/// falls back to backoff).
pub(super) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// A timed-out attempt's reason, with the limits that applied: reqwest does
/// not say which one ran out.
pub(super) fn with_limits(mut f: Failure, read_timeout: Duration, deadline: Duration) -> Failure {
    if let Some(rest) = f.reason.strip_prefix("timed out") {
        f.reason = format!(
            "timed out (no data for {}, or the whole answer not within {}){rest}",
            humantime::format_duration(read_timeout),
            humantime::format_duration(deadline)
        );
    }
    f
}

pub(super) fn describe_transport_error(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_body() || e.is_decode() {
        "broken response body"
    } else {
        "request failed"
    };
    // Only the innermost cause: reqwest's own text names the whole URL,
    // query included, and the query may carry a key.
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
pub(super) fn display_url(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    let _ = u.set_password(None);
    u.to_string()
}

pub(super) fn truncate(s: &str, max: usize) -> &str {
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

    fn policy(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            backoff_initial: Duration::from_millis(1),
            backoff_max: Duration::from_millis(2),
        }
    }

    #[tokio::test]
    async fn retryable_failures_are_retried_until_success() {
        let retries = AtomicU64::new(0);
        let mut left = 2;
        let mut told = Vec::new();
        let got = policy(3)
            .run(
                &retries,
                "http://x/",
                || {
                    let fail = left > 0;
                    left -= 1;
                    async move {
                        if fail {
                            Err(Failure::retryable("busy"))
                        } else {
                            Ok(7)
                        }
                    }
                },
                |attempt, _, reason| told.push((attempt, reason.to_owned())),
            )
            .await
            .unwrap();
        assert_eq!(got, 7);
        assert_eq!(retries.load(Ordering::Relaxed), 2);
        assert_eq!(told, [(1, "busy".to_owned()), (2, "busy".to_owned())]);
    }

    #[tokio::test]
    async fn a_fatal_failure_is_not_retried_and_attempts_are_bounded() {
        let retries = AtomicU64::new(0);
        let err = policy(5)
            .run(
                &retries,
                "http://x/",
                || async { Err::<(), _>(Failure::fatal("http 404")) },
                |_, _, _| {},
            )
            .await
            .unwrap_err();
        assert!(matches!(err, SourceError::Refused { .. }), "{err}");
        assert_eq!(retries.load(Ordering::Relaxed), 0);

        let err = policy(3)
            .run(
                &retries,
                "http://x/",
                || async { Err::<(), _>(Failure::retryable("busy")) },
                |_, _, _| {},
            )
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("gave up after 3 attempts"),
            "{err}"
        );
        assert_eq!(retries.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn what_arrived_is_named_and_escaped() {
        let mut headers = HeaderMap::new();
        headers.insert(reqwest::header::CONTENT_TYPE, "text/html".parse().unwrap());
        assert_eq!(
            arrived(&headers, b"<!DOCTYPE html>\n"),
            r#"got text/html: "<!DOCTYPE html>\n""#
        );
        headers.insert(reqwest::header::CONTENT_ENCODING, "gzip".parse().unwrap());
        let long = [0x1f, 0x8b].repeat(100);
        let text = arrived(&headers, &long);
        assert!(
            text.starts_with(r#"got text/html (content-encoding gzip): "\x1f\x8b"#),
            "{text}"
        );
        assert!(text.ends_with(r#"...""#), "{text}");
        assert_eq!(
            arrived(&HeaderMap::new(), b""),
            "got no content type: an empty body"
        );
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(size_text(64 << 20), "64 MiB");
        assert_eq!(size_text(1600 << 10), "1600 KiB");
        assert_eq!(size_text(1000), "1000-byte");
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_obeyed_but_capped() {
        let retries = AtomicU64::new(0);
        let mut delays = Vec::new();
        let _ = policy(3)
            .run(
                &retries,
                "http://x/",
                || async {
                    Err::<(), _>(Failure {
                        retryable: true,
                        retry_after: Some(Duration::from_secs(3600)),
                        reason: "http 429".into(),
                    })
                },
                |_, delay, _| delays.push(delay),
            )
            .await;
        assert_eq!(delays, [RETRY_AFTER_CAP, RETRY_AFTER_CAP]);
    }
}
