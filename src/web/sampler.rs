//! What the web side knows of each pipeline without asking it on every
//! request: counters sampled once a second into a ring of the last 15
//! minutes (rates, the chart); the log's lag, the store's row count and the
//! waiting dead letters, each probed in its own loop at its own pace (also
//! set as gauges labelled with the pipeline; a row count that scans the
//! table, Cassandra's, runs only while someone looks at the pipeline); and
//! short-lived caches of the
//! newest messages, rows and dead letters, so any number of open pages cost
//! one query per view every few seconds. One [`Sampler`] per pipeline, so
//! the loops are three per configured pipeline plus one ticker for all. Kafka and Cassandra are probed less often than the embedded
//! files, and the row count backs off when counting is slow (a Cassandra
//! `count(*)` scans the table).

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::pipeline::log::{GroupMembers, Letters, Log, PartitionLag};
use crate::pipeline::sink::Sink;
use crate::pipeline::stats::{Counter, Stats};

/// One counter sample a second; 15 minutes kept (about 40 KiB).
const EVERY: Duration = Duration::from_secs(1);
const KEEP: usize = 15 * 60 + 1;
/// The newest messages one look fetches (the API's limit).
pub const LATEST_MAX: usize = 200;
/// How long a look at the newest messages, rows or dead letters is shared.
const FRESH: Duration = Duration::from_secs(2);
/// Readiness: the log answered within this.
const READY_WITHIN: Duration = Duration::from_secs(30);
/// The longest the row count waits beyond its cadence when counting is slow.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How long after a look a scanning row count keeps running.
const WATCHED: Duration = Duration::from_secs(60);

/// Counters at one instant.
#[derive(Debug, Clone, Copy)]
struct Sample {
    t_ms: i64,
    at: Instant,
    fetched: u64,
    logged: u64,
    read: u64,
    stored: u64,
}

/// Records per second of each stage between two samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Rates {
    pub t_ms: i64,
    pub fetched: f64,
    pub logged: f64,
    pub read: f64,
    pub stored: f64,
}

/// What the log and store said when last asked.
#[derive(Debug, Clone, Default)]
pub struct Probe {
    pub lag: Vec<PartitionLag>,
    /// The group's members and their partitions (Kafka), asked with the lag.
    pub members: Option<GroupMembers>,
    pub rows: Option<u64>,
    pub dead_letters_waiting: Option<u64>,
    /// Writes the store takes at once now (Cassandra's limit), sampled
    /// every second.
    pub concurrency_limit: Option<usize>,
    /// When the log last answered.
    log_ok_at: Option<Instant>,
    /// When the store's last count succeeded (counts may be minutes apart
    /// on a large Cassandra table, see the back-off).
    store_ok_at: Option<Instant>,
    /// The latest failure of each kind, for the status view and the logs.
    log_error: Option<String>,
    store_error: Option<String>,
}

impl Probe {
    /// The log answered recently, and the store's last count worked and
    /// is not older than the slowest count cadence allows.
    pub fn ready(&self) -> bool {
        self.log_ok_at.is_some_and(|t| t.elapsed() < READY_WITHIN)
            && self.store_error.is_none()
            && self
                .store_ok_at
                .is_some_and(|t| t.elapsed() < READY_WITHIN + MAX_BACKOFF * 2)
    }

    pub fn error(&self) -> Option<String> {
        match (&self.log_error, &self.store_error) {
            (None, None) => None,
            (a, b) => Some(
                [a.as_deref(), b.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
        }
    }
}

/// A value fetched at most once per [`FRESH`] for a given key; callers that
/// ask while a fetch runs wait for it and share its result.
pub struct Fresh<K, V> {
    slot: tokio::sync::Mutex<Option<(Instant, K, V)>>,
}

impl<K: PartialEq, V: Clone> Fresh<K, V> {
    fn new() -> Self {
        Fresh {
            slot: tokio::sync::Mutex::new(None),
        }
    }

    /// Forgets the value (after a change the next reader must see).
    pub async fn clear(&self) {
        *self.slot.lock().await = None;
    }

    pub async fn get<E, Fut>(&self, key: K, fetch: impl FnOnce() -> Fut) -> Result<V, E>
    where
        Fut: Future<Output = Result<V, E>>,
    {
        let mut slot = self.slot.lock().await;
        if let Some((at, k, v)) = slot.as_ref()
            && *k == key
            && at.elapsed() < FRESH
        {
            return Ok(v.clone());
        }
        let v = fetch().await?;
        *slot = Some((Instant::now(), key, v.clone()));
        Ok(v)
    }
}

pub struct Sampler {
    /// The pipeline's name: the `pipeline` label of its gauges.
    pipeline: String,
    samples: Mutex<VecDeque<Sample>>,
    probe: Mutex<Probe>,
    /// Seconds between probes of the log (and at least between row counts).
    probe_every: Duration,
    /// Counting the store's rows scans its table (Cassandra): done only
    /// while someone looks (see [`Sampler::viewed`]).
    count_scans: bool,
    /// When the status or the rows were last asked for.
    viewed_at: Mutex<Option<Instant>>,
    pub latest: Fresh<(), Vec<crate::pipeline::log::MessagePreview>>,
    /// Stored rows as JSON objects (any table).
    pub rows: Fresh<(), Vec<serde_json::Value>>,
    pub dead_letters: Fresh<(Letters, usize), Vec<crate::pipeline::log::LetterPreview>>,
    pub waiting: Fresh<(), u64>,
    pub discarded: Fresh<(), u64>,
}

impl Sampler {
    pub fn new(pipeline: &str, log: &Log, sink: &Sink) -> Sampler {
        let count_scans = matches!(sink, Sink::Cassandra(_) | Sink::CassandraTable(_));
        Sampler::of(
            pipeline,
            matches!(log, Log::Kafka(_)) || count_scans,
            count_scans,
        )
    }

    /// `remote`: the log or the store is a server, probed less often.
    fn of(pipeline: &str, remote: bool, count_scans: bool) -> Sampler {
        Sampler {
            pipeline: pipeline.to_owned(),
            samples: Mutex::new(VecDeque::with_capacity(KEEP)),
            probe: Mutex::new(Probe::default()),
            probe_every: if remote { 5 * EVERY } else { EVERY },
            count_scans,
            viewed_at: Mutex::new(None),
            latest: Fresh::new(),
            rows: Fresh::new(),
            dead_letters: Fresh::new(),
            waiting: Fresh::new(),
            discarded: Fresh::new(),
        }
    }

    fn push(&self, stats: &Stats) {
        let sample = Sample {
            t_ms: crate::clock::now_ms(),
            at: Instant::now(),
            fetched: stats.get(Counter::Fetched),
            logged: stats.get(Counter::Logged),
            read: stats.get(Counter::Read),
            stored: stats.get(Counter::Stored) + stats.get(Counter::Unchanged),
        };
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        if samples.len() == KEEP {
            samples.pop_front();
        }
        samples.push_back(sample);
    }

    /// Rates over the last `window` samples (fewer right after start).
    pub fn rates(&self, window: usize) -> Rates {
        let samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        let (Some(last), n) = (samples.back().copied(), samples.len()) else {
            return Rates::default();
        };
        let first = samples[n.saturating_sub(window + 1)];
        between(&first, &last)
    }

    /// Per-second rates over the last `seconds`, oldest first.
    pub fn series(&self, seconds: usize) -> Vec<Rates> {
        let samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        let skip = samples.len().saturating_sub(seconds + 1);
        let kept: Vec<Sample> = samples.iter().skip(skip).copied().collect();
        kept.windows(2).map(|w| between(&w[0], &w[1])).collect()
    }

    pub fn probe(&self) -> Probe {
        self.probe.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Someone looks at this pipeline (the dashboard, the status or rows
    /// API): its row count is kept fresh for [`WATCHED`] after.
    pub fn viewed(&self) {
        *self.viewed_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    /// Whether the next row-count probe counts, or only checks that the
    /// store answers: a count that scans the table (Cassandra) runs only
    /// while someone looks, so an unwatched `serve` puts no scans on the
    /// store beside its writes.
    fn counts_now(&self) -> bool {
        !self.count_scans
            || self
                .viewed_at
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_some_and(|t| t.elapsed() < WATCHED)
    }

    /// After a replay, so the status shows the new count at once.
    pub fn set_dead_letters_waiting(&self, n: u64) {
        self.gauge(
            crate::telemetry::metrics::LOG_DEAD_LETTERS_WAITING.name,
            n as f64,
        );
        self.update(|p| p.dead_letters_waiting = Some(n));
    }

    fn gauge(&self, name: &'static str, value: f64) {
        metrics::gauge!(name, "pipeline" => self.pipeline.clone()).set(value);
    }

    /// The store's nodes as its driver sees them, up and down.
    fn nodes(&self, up: usize, down: usize) {
        let name = crate::telemetry::metrics::SINK_CASSANDRA_NODES.name;
        for (state, n) in [("up", up), ("down", down)] {
            metrics::gauge!(name, "pipeline" => self.pipeline.clone(), "state" => state)
                .set(n as f64);
        }
    }

    /// What a probe of the store found: an answer (with the row count, if
    /// it counted) marks the store ready, an error is kept for the status.
    /// Whether it answered.
    fn store_probed(&self, answer: Result<Option<u64>, crate::pipeline::sink::SinkError>) -> bool {
        match answer {
            Ok(rows) => {
                if let Some(n) = rows {
                    self.gauge(crate::telemetry::metrics::SINK_STORED_ROWS.name, n as f64);
                }
                self.update(|p| {
                    p.rows = rows.or(p.rows);
                    p.store_ok_at = Some(Instant::now());
                    p.store_error = None;
                });
                true
            }
            Err(e) => {
                debug!(pipeline = %self.pipeline, error = %e, "dashboard: the store did not answer");
                self.update(|p| p.store_error = Some(format!("store: {e}")));
                false
            }
        }
    }

    fn update(&self, f: impl FnOnce(&mut Probe)) {
        f(&mut self.probe.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

fn between(a: &Sample, b: &Sample) -> Rates {
    let secs = b.at.duration_since(a.at).as_secs_f64();
    let rate = |x: u64, y: u64| {
        if secs > 0.0 {
            y.saturating_sub(x) as f64 / secs
        } else {
            0.0
        }
    };
    Rates {
        t_ms: b.t_ms,
        fetched: rate(a.fetched, b.fetched),
        logged: rate(a.logged, b.logged),
        read: rate(a.read, b.read),
        stored: rate(a.stored, b.stored),
    }
}

/// Calls `step` every `every` until `shutdown`; `step` returns how long to
/// wait beyond `every` before the next call (a slow count backs off).
async fn every<F, Fut>(every: Duration, shutdown: &CancellationToken, mut step: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Duration>,
{
    loop {
        let extra = step().await;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every + extra) => {}
        }
    }
}

/// What one pipeline's sampling loops read from.
pub struct Sources {
    pub log: Log,
    pub sink: Sink,
    pub group: String,
    pub stats: Arc<Stats>,
}

/// Starts the sampling loops of every pipeline; they stop with `shutdown`.
pub fn spawn(
    pipelines: Vec<(Arc<Sampler>, Sources)>,
    metrics: PrometheusHandle,
    shutdown: CancellationToken,
) {
    let pipelines: Vec<(Arc<Sampler>, Arc<Sources>)> = pipelines
        .into_iter()
        .map(|(s, f)| (s, Arc::new(f)))
        .collect();
    let (all, stop) = (pipelines.clone(), shutdown.clone());
    tokio::spawn(async move {
        every(EVERY, &stop, || async {
            for (s, f) in &all {
                s.push(&f.stats);
                if let Some(limit) = f.sink.concurrency_limit() {
                    s.gauge(
                        crate::telemetry::metrics::SINK_CONCURRENCY_LIMIT.name,
                        limit as f64,
                    );
                    s.update(|p| p.concurrency_limit = Some(limit));
                }
                if let Some(nodes) = f.sink.nodes() {
                    let up = nodes.iter().filter(|n| n.up).count();
                    s.nodes(up, nodes.len() - up);
                }
            }
            // Folds histogram samples into their buckets; without it they
            // pile up between scrapes (or forever, with nobody scraping).
            metrics.run_upkeep();
            Duration::ZERO
        })
        .await
    });
    for (sampler, from) in pipelines {
        spawn_probes(sampler, from, shutdown.clone());
    }
}

/// One pipeline's probes: the log's lag, the store's count and the waiting
/// dead letters, each in its own loop.
fn spawn_probes(sampler: Arc<Sampler>, from: Arc<Sources>, shutdown: CancellationToken) {
    let (s, f, stop) = (sampler.clone(), from.clone(), shutdown.clone());
    tokio::spawn(async move {
        every(s.probe_every, &stop, || async {
            match f.log.lag(&f.group).await {
                Ok(lag) => {
                    let total: i64 = lag.iter().map(|p| p.lag()).sum();
                    s.gauge(
                        crate::telemetry::metrics::LOG_LAG_MESSAGES.name,
                        total as f64,
                    );
                    s.update(|p| {
                        p.lag = lag;
                        p.log_ok_at = Some(Instant::now());
                        p.log_error = None;
                    });
                }
                Err(e) => {
                    debug!(pipeline = %s.pipeline, error = %e, "dashboard: the log did not answer");
                    s.update(|p| p.log_error = Some(format!("log: {e}")));
                    return Duration::ZERO;
                }
            }
            // On the kept client of the lag, at the same pace (Kafka: 5 s).
            let members = match f.log.members(&f.group).await {
                Ok(m) => m,
                Err(e) => {
                    debug!(pipeline = %s.pipeline, error = %e, "dashboard: the group was not described");
                    None
                }
            };
            s.update(|p| p.members = members);
            Duration::ZERO
        })
        .await
    });
    let (s, f, stop) = (sampler.clone(), from.clone(), shutdown.clone());
    tokio::spawn(async move {
        every(s.probe_every, &stop, || async {
            let started = Instant::now();
            if !s.counts_now() {
                // Nobody looks: one row read says the store answers
                // (readiness), without a scan.
                s.store_probed(f.sink.records(1).await.map(|_| None));
                return Duration::ZERO;
            }
            if s.store_probed(f.sink.count().await.map(Some)) {
                // Counting may take at most a tenth of the time.
                (started.elapsed() * 9).min(MAX_BACKOFF)
            } else {
                // Try again soon: readiness waits on it.
                Duration::ZERO
            }
        })
        .await
    });
    let (s, f, stop) = (sampler, from, shutdown);
    tokio::spawn(async move {
        every(s.probe_every * 5, &stop, || async {
            match f.log.dead_letters_waiting(None).await {
                Ok(n) => {
                    s.gauge(crate::telemetry::metrics::LOG_DEAD_LETTERS_WAITING.name, n as f64);
                    s.update(|p| p.dead_letters_waiting = Some(n));
                }
                Err(e) => {
                    debug!(pipeline = %s.pipeline, error = %e, "dashboard: cannot count dead letters")
                }
            }
            Duration::ZERO
        })
        .await
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scanning_count_waits_for_someone_to_look_and_a_cheap_one_never_does() {
        let scanning = Sampler::of("p", true, true);
        assert!(!scanning.counts_now(), "counted with nobody looking");
        scanning.viewed();
        assert!(scanning.counts_now());
        // A look long ago no longer counts.
        *scanning.viewed_at.lock().unwrap() = Instant::now().checked_sub(WATCHED * 2);
        assert!(!scanning.counts_now());
        assert!(Sampler::of("p", false, false).counts_now());
    }
}
