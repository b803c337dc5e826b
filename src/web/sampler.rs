//! Samples the pipeline once a second so the page and Prometheus read cheap
//! cached values: counters into a ring of the last 15 minutes (the rates and
//! the chart), and the log's lag, the store's row count and the waiting
//! dead letters (also set as gauges). Kafka and Cassandra are asked less
//! often than the embedded files, and never by a page directly. The newest
//! messages are cached briefly too: on Kafka each look is a new client.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::Parts;
use crate::pipeline::log::{Log, LogError, LogMessage, PartitionLag};
use crate::pipeline::sink::Sink;
use crate::pipeline::stats::Stats;

/// One counter sample a second; 15 minutes kept (about 40 KiB).
const EVERY: Duration = Duration::from_secs(1);
const KEEP: usize = 15 * 60 + 1;
/// The newest messages one look fetches (the API's limit).
pub const LATEST_MAX: usize = 200;
/// Dead letters counted at most (the count says "10000+" beyond).
const DEAD_LETTERS_COUNTED: usize = 10_000;

/// Counters at one instant.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    t_ms: i64,
    at: Option<Instant>,
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

/// What the log and store said at the last probe.
#[derive(Debug, Clone, Default)]
pub struct Probe {
    pub lag: Vec<PartitionLag>,
    pub rows: Option<u64>,
    pub dead_letters_waiting: Option<u64>,
    /// When the log and store last both answered.
    pub ok_at: Option<Instant>,
    pub error: Option<String>,
}

/// How long a look at the newest messages is shared between pages.
const LATEST_FRESH: Duration = Duration::from_secs(2);

pub struct Sampler {
    samples: Mutex<VecDeque<Sample>>,
    /// The last look at the newest messages: when, and what.
    latest: tokio::sync::Mutex<Option<(Instant, Vec<LogMessage>)>>,
    probe: Mutex<Probe>,
    /// Probe the log and store every this many samples.
    probe_every: u32,
}

impl Sampler {
    pub fn new(parts: &Parts) -> Sampler {
        let remote = matches!(parts.log, Log::Kafka(_)) || matches!(parts.sink, Sink::Cassandra(_));
        Sampler {
            samples: Mutex::new(VecDeque::with_capacity(KEEP)),
            latest: tokio::sync::Mutex::new(None),
            probe: Mutex::new(Probe::default()),
            probe_every: if remote { 5 } else { 1 },
        }
    }

    fn push(&self, stats: &Stats) {
        let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        let sample = Sample {
            t_ms: crate::scheduler::history::now_ms(),
            at: Some(Instant::now()),
            fetched: get(&stats.fetched),
            logged: get(&stats.logged),
            read: get(&stats.read),
            stored: get(&stats.stored) + get(&stats.unchanged),
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

    /// Up to `limit` (at most [`LATEST_MAX`]) newest messages, from a look
    /// at most [`LATEST_FRESH`] old; pages asking at once share one look.
    pub async fn latest(&self, log: &Log, limit: usize) -> Result<Vec<LogMessage>, LogError> {
        let mut cached = self.latest.lock().await;
        let stale = cached
            .as_ref()
            .is_none_or(|(at, _)| at.elapsed() >= LATEST_FRESH);
        if stale {
            *cached = Some((Instant::now(), log.latest(LATEST_MAX).await?));
        }
        let messages = cached.as_ref().map(|(_, m)| m.as_slice()).unwrap_or(&[]);
        Ok(messages.iter().take(limit).cloned().collect())
    }

    pub fn probe(&self) -> Probe {
        self.probe.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

fn between(a: &Sample, b: &Sample) -> Rates {
    let secs = match (a.at, b.at) {
        (Some(x), Some(y)) => y.duration_since(x).as_secs_f64(),
        _ => 0.0,
    };
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

async fn probe(log: &Log, sink: &Sink, group: &str, with_letters: bool, into: &Mutex<Probe>) {
    let lag = log.lag(group).await;
    let rows = sink.count().await;
    let letters = if with_letters {
        Some(log.dead_letters(false, DEAD_LETTERS_COUNTED).await)
    } else {
        None
    };
    let mut p = into.lock().unwrap_or_else(|p| p.into_inner());
    let mut errors = Vec::new();
    match lag {
        Ok(lag) => {
            let total: i64 = lag.iter().map(|p| p.lag()).sum();
            metrics::gauge!("tributary_log_lag_messages").set(total as f64);
            p.lag = lag;
        }
        Err(e) => errors.push(format!("log: {e}")),
    }
    match rows {
        Ok(n) => {
            metrics::gauge!("tributary_sink_stored_rows").set(n as f64);
            p.rows = Some(n);
        }
        Err(e) => errors.push(format!("store: {e}")),
    }
    match letters {
        Some(Ok(l)) => {
            metrics::gauge!("tributary_log_dead_letters_waiting").set(l.len() as f64);
            p.dead_letters_waiting = Some(l.len() as u64);
        }
        Some(Err(e)) => errors.push(format!("dead letters: {e}")),
        None => {}
    }
    if errors.is_empty() {
        p.ok_at = Some(Instant::now());
        p.error = None;
    } else {
        debug!(errors = ?errors, "dashboard probe failed");
        p.error = Some(errors.join("; "));
    }
}

/// Samples until `shutdown`.
pub async fn run(
    sampler: Arc<Sampler>,
    log: Log,
    sink: Sink,
    group: String,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut n: u32 = 0;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        sampler.push(&stats);
        if n % sampler.probe_every == 0 {
            // Dead letters are the costliest to count: every 5th probe.
            let with_letters = n % (sampler.probe_every * 5) == 0;
            probe(&log, &sink, &group, with_letters, &sampler.probe).await;
        }
        n = n.wrapping_add(1);
    }
}
