//! Where records come from: the built-in generator (`gen:`) or a Random
//! User-compatible HTTP API (`http(s)://…/api/`), which hand out pages of
//! decoded users; and, for user pipelines, any JSON API (`json_api.rs`) or
//! an NDJSON/JSON-array file (`file.rs`), which hand out pages of JSON
//! records. A source knows nothing of logs, rows or offsets.

pub mod file;
pub mod generator;
pub mod http;
pub mod json_api;
pub mod json_page;
mod retry;

use crate::record::{ApiUser, Rejected};
pub use generator::Generator;
pub use http::{HttpConfig, HttpSource};
pub use retry::EMPTY_PAGES_IN_A_ROW;

/// The most users one request may ask for, as the real API caps `results`.
pub const MAX_RESULTS_PER_REQUEST: u64 = 5_000;

/// Validated source settings: a closed set, one variant per kind of source.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceConfig {
    Generator {
        seed: String,
        /// Nationality codes, upper case; empty means all.
        nats: Vec<String>,
        gender: Option<String>,
    },
    Http(HttpConfig),
    /// Any JSON API (a user pipeline's records).
    JsonApi(json_api::JsonApiConfig),
    /// An NDJSON or JSON-array file (a user pipeline's backfill).
    File(file::FileConfig),
}

impl SourceConfig {
    /// The seed of a Random User source; `""` for the others.
    pub fn seed(&self) -> &str {
        match self {
            SourceConfig::Generator { seed, .. } => seed,
            SourceConfig::Http(h) => &h.seed,
            SourceConfig::JsonApi(_) | SourceConfig::File(_) => "",
        }
    }

    /// Whether this is a source of Random User users.
    pub fn gives_users(&self) -> bool {
        matches!(self, SourceConfig::Generator { .. } | SourceConfig::Http(_))
    }
}

/// What one page gave: the users that decoded and the ones that did not.
#[derive(Debug, Default)]
pub struct SourceBatch {
    /// The page these users came from (from 1).
    pub page: u64,
    /// The place of the page's first user in the seed's sequence (from 0).
    pub first: u64,
    pub users: Vec<ApiUser>,
    /// Users that could not be decoded; they become dead letters.
    pub rejected: Vec<Rejected>,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Every attempt failed with a retryable error.
    #[error("source {url}: gave up after {attempts} attempts, last error: {last}")]
    GaveUp {
        url: String,
        attempts: u32,
        last: String,
    },
    /// The server answered with an error that a retry cannot fix (e.g. 404).
    #[error("source {url}: {reason}")]
    Refused { url: String, reason: String },
    /// The source could not be built (bad TLS setup and the like).
    #[error("source setup failed: {0}")]
    Setup(String),
}

/// A source of users: a closed set, matched exhaustively.
#[derive(Debug)]
pub enum Source {
    Generator(Generator),
    Http(HttpSource),
}

impl Source {
    pub fn open(config: &SourceConfig) -> Result<Source, SourceError> {
        Ok(match config {
            SourceConfig::Generator { seed, nats, gender } => {
                let nats = nats.iter().filter_map(|n| generator::by_code(n)).collect();
                let gender = gender.as_deref().and_then(generator::Gender::parse);
                Source::Generator(Generator::new(seed, nats, gender))
            }
            SourceConfig::Http(h) => Source::Http(HttpSource::new(h.clone())?),
            SourceConfig::JsonApi(_) | SourceConfig::File(_) => {
                return Err(SourceError::Setup(
                    "a JSON API or file source feeds a pipeline with a table".into(),
                ));
            }
        })
    }

    /// Page `page` (from 1) of `results` users (at most
    /// [`MAX_RESULTS_PER_REQUEST`]) of the configured seed's sequence.
    pub async fn fetch(&self, page: u64, results: u64) -> Result<SourceBatch, SourceError> {
        let started = std::time::Instant::now();
        let fetched = match self {
            Source::Generator(g) => Ok(SourceBatch {
                page,
                first: 0,
                users: g.page(page, results),
                rejected: Vec::new(),
            }),
            Source::Http(h) => h.fetch(page, results).await,
        };
        metrics::histogram!(crate::telemetry::metrics::SOURCE_FETCH_DURATION.name)
            .record(started.elapsed().as_secs_f64());
        let mut fetched = fetched;
        if let Ok(batch) = &mut fetched {
            batch.first = page.saturating_sub(1).saturating_mul(results);
            // Malformed users in an answer that was otherwise fine.
            metrics::counter!(crate::telemetry::metrics::SOURCE_REJECTED_RECORDS.name)
                .increment(batch.rejected.len() as u64);
        }
        fetched
    }

    /// Where a record came from, for people and for recognising the same
    /// record fetched again: the source, its seed, and `item` (e.g. the
    /// record's place in the seed's sequence, which does not depend on the
    /// page size).
    pub fn position(&self, item: &str) -> String {
        match self {
            Source::Generator(g) => format!("gen:?seed={}#{item}", g.seed()),
            Source::Http(h) => {
                // Without the base's own query (it may carry a key, and a
                // position must not change with it).
                let c = h.config();
                let mut url = c.url.clone();
                url.set_query(None);
                format!("{url}?seed={}#{item}", c.seed)
            }
        }
    }

    /// The source for error messages: an HTTP source's URL without its
    /// query (which may carry a key).
    pub fn shown_url(&self) -> String {
        match self {
            Source::Generator(g) => format!("gen:?seed={}", g.seed()),
            Source::Http(h) => retry::display_url(&h.config().url),
        }
    }

    /// Retried requests so far (always 0 for the generator).
    pub fn retries(&self) -> u64 {
        match self {
            Source::Generator(_) => 0,
            Source::Http(h) => h.retries(),
        }
    }
}
