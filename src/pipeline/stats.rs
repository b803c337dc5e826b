//! Counters of one pipeline run, shared by its stages and read by the
//! progress bar, the summary and the dashboard. Plain atomics: every stage
//! adds, nobody waits. Each addition also feeds the Prometheus counter of the
//! same name (a no-op unless `serve` installed the exporter), and a run's
//! counters can roll up into a parent (a scheduled run into `serve`'s totals).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde::Serialize;

use crate::telemetry::metrics::{
    INGEST_SKIPPED_TICKS, LOG_APPENDED_RECORDS, LOG_LOST_MESSAGES, PROCESSOR_READ_RECORDS,
    SINK_RETRIES, SINK_UNCHANGED_ROWS, SINK_WRITTEN_ROWS, SOURCE_RECORDS,
};

/// One of the counters, for [`Stats::add`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    Fetched,
    Logged,
    Read,
    Stored,
    Unchanged,
    DeadLettered,
    DecodeFailed,
    SinkRejected,
    SourceRetries,
    SinkRetries,
    TicksSkipped,
    SourceRejected,
    LostToRetention,
    Backlog,
}

impl Counter {
    /// The Prometheus counter fed by this one; `None` where a stage keeps a
    /// labelled metric of its own (dead letters by stage, HTTP retries).
    fn metric(self) -> Option<&'static str> {
        Some(match self {
            Counter::Fetched => SOURCE_RECORDS.name,
            Counter::Logged => LOG_APPENDED_RECORDS.name,
            Counter::Read => PROCESSOR_READ_RECORDS.name,
            Counter::Stored => SINK_WRITTEN_ROWS.name,
            Counter::Unchanged => SINK_UNCHANGED_ROWS.name,
            Counter::SinkRetries => SINK_RETRIES.name,
            Counter::TicksSkipped => INGEST_SKIPPED_TICKS.name,
            Counter::LostToRetention => LOG_LOST_MESSAGES.name,
            Counter::Backlog | Counter::SourceRejected => return None,
            Counter::DeadLettered
            | Counter::DecodeFailed
            | Counter::SinkRejected
            | Counter::SourceRetries => return None,
        })
    }
}

#[derive(Debug)]
pub struct Stats {
    started: Instant,
    /// The `pipeline` label of the Prometheus counters fed.
    pipeline: Option<Arc<str>>,
    /// Totals this run's counts also go to.
    parent: Option<Arc<Stats>>,
    /// Users received from the source (decoded or not).
    fetched: AtomicU64,
    /// Messages durably appended to the log.
    logged: AtomicU64,
    /// Messages the processor took from the log.
    read: AtomicU64,
    /// Rows the sink inserted or changed.
    stored: AtomicU64,
    /// Rows the sink already had with the same values.
    unchanged: AtomicU64,
    /// Records that went to the dead letters, at any stage.
    dead_lettered: AtomicU64,
    /// Of those, messages that did not decode into a row.
    decode_failed: AtomicU64,
    /// Of those, rows the store refused for good.
    sink_rejected: AtomicU64,
    /// Source requests that were retried.
    source_retries: AtomicU64,
    /// Sink writes that were retried.
    sink_retries: AtomicU64,
    /// Burst ticks skipped because the previous one was still busy.
    ticks_skipped: AtomicU64,
    /// Users the source gave that could not become a row (dead letters of
    /// the source stage).
    source_rejected: AtomicU64,
    /// Messages retention dropped before the processor read them.
    lost_to_retention: AtomicU64,
    /// Messages already waiting in the log for the group when it started.
    backlog: AtomicU64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            started: Instant::now(),
            pipeline: None,
            parent: None,
            fetched: AtomicU64::new(0),
            logged: AtomicU64::new(0),
            read: AtomicU64::new(0),
            stored: AtomicU64::new(0),
            unchanged: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            decode_failed: AtomicU64::new(0),
            sink_rejected: AtomicU64::new(0),
            source_retries: AtomicU64::new(0),
            sink_retries: AtomicU64::new(0),
            ticks_skipped: AtomicU64::new(0),
            source_rejected: AtomicU64::new(0),
            lost_to_retention: AtomicU64::new(0),
            backlog: AtomicU64::new(0),
        }
    }
}

/// A snapshot for people and for `--json`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    pub fetched: u64,
    pub logged: u64,
    pub read: u64,
    pub stored: u64,
    pub duplicates_skipped: u64,
    pub dead_lettered: u64,
    pub source_retries: u64,
    pub sink_retries: u64,
    pub ticks_skipped: u64,
    /// Of the dead letters, users the source gave that could not become a row.
    pub source_rejected: u64,
    /// Messages retention dropped before they were read: lost.
    pub lost_to_retention: u64,
    /// Messages already waiting in the log when processing began.
    pub backlog: u64,
    pub elapsed_secs: f64,
    /// Records through the slowest finished stage per second of the run.
    pub records_per_sec: f64,
    pub peak_rss_bytes: Option<u64>,
}

impl Stats {
    /// Counters of one run whose additions also count in `parent`.
    pub fn child_of(parent: Arc<Stats>) -> Stats {
        Stats {
            pipeline: parent.pipeline.clone(),
            parent: Some(parent),
            ..Stats::default()
        }
    }

    /// Counters of one pipeline: its Prometheus counters carry the label
    /// `pipeline="<name>"` (names come from the config, so the label's
    /// values are bounded).
    pub fn for_pipeline(name: &str) -> Stats {
        Stats {
            pipeline: Some(name.into()),
            ..Stats::default()
        }
    }

    fn cell(&self, counter: Counter) -> &AtomicU64 {
        match counter {
            Counter::Fetched => &self.fetched,
            Counter::Logged => &self.logged,
            Counter::Read => &self.read,
            Counter::Stored => &self.stored,
            Counter::Unchanged => &self.unchanged,
            Counter::DeadLettered => &self.dead_lettered,
            Counter::DecodeFailed => &self.decode_failed,
            Counter::SinkRejected => &self.sink_rejected,
            Counter::SourceRetries => &self.source_retries,
            Counter::SinkRetries => &self.sink_retries,
            Counter::TicksSkipped => &self.ticks_skipped,
            Counter::SourceRejected => &self.source_rejected,
            Counter::LostToRetention => &self.lost_to_retention,
            Counter::Backlog => &self.backlog,
        }
    }

    /// Adds `n` here, in the parent, and in the Prometheus counter.
    pub fn add(&self, counter: Counter, n: u64) {
        if n == 0 {
            return;
        }
        self.cell(counter).fetch_add(n, Ordering::Relaxed);
        if let Some(parent) = &self.parent {
            parent.cell(counter).fetch_add(n, Ordering::Relaxed);
        }
        if let Some(name) = counter.metric() {
            match &self.pipeline {
                Some(p) => metrics::counter!(name, "pipeline" => p.to_string()).increment(n),
                None => metrics::counter!(name).increment(n),
            }
        }
    }

    /// The counter's value now.
    pub fn get(&self, counter: Counter) -> u64 {
        self.cell(counter).load(Ordering::Relaxed)
    }

    pub fn summary(&self) -> Summary {
        let get = |c| self.get(c);
        let elapsed = self.started.elapsed().as_secs_f64();
        let (read, logged) = (get(Counter::Read), get(Counter::Logged));
        // A run counts what reached the end of the path; an ingest-only run
        // counts what reached the log.
        let through = if read > 0 { read } else { logged };
        Summary {
            fetched: get(Counter::Fetched),
            logged,
            read,
            stored: get(Counter::Stored),
            duplicates_skipped: get(Counter::Unchanged),
            dead_lettered: get(Counter::DeadLettered),
            source_retries: get(Counter::SourceRetries),
            sink_retries: get(Counter::SinkRetries),
            ticks_skipped: get(Counter::TicksSkipped),
            source_rejected: get(Counter::SourceRejected),
            lost_to_retention: get(Counter::LostToRetention),
            backlog: get(Counter::Backlog),
            elapsed_secs: elapsed,
            records_per_sec: if elapsed > 0.0 {
                through as f64 / elapsed
            } else {
                0.0
            },
            peak_rss_bytes: peak_rss_bytes(),
        }
    }
}

impl Summary {
    /// Dead letters of messages the processor read (the rest came from the
    /// source, before the log).
    fn processed_dead_letters(&self) -> u64 {
        self.dead_lettered - self.source_rejected.min(self.dead_lettered)
    }

    /// The run's books, checked: every user fetched was logged or rejected,
    /// and every message the processor had to read (the backlog plus what
    /// was logged) was stored, found unchanged, dead-lettered or lost to
    /// retention (at least once: a message read twice is not a fault).
    /// `None` when they balance, else what does not add up.
    /// Meaningful for a run that went to the end (`run`).
    pub fn imbalance(&self) -> Option<String> {
        let mut wrong = Vec::new();
        if self.fetched != self.logged + self.source_rejected {
            wrong.push(format!(
                "fetched {} != logged {} + rejected by the source {}",
                self.fetched, self.logged, self.source_rejected
            ));
        }
        let processed_dead = self.processed_dead_letters();
        let accounted = self.accounted();
        // More than expected is a message read twice (a Kafka rebalance hands
        // a partition back at its last commit); the upserts absorb it. Less
        // is a message that went nowhere.
        if self.backlog + self.logged > accounted {
            wrong.push(format!(
                "backlog {} + logged {} > stored {} + unchanged {} + dead-lettered {} + lost {}",
                self.backlog,
                self.logged,
                self.stored,
                self.duplicates_skipped,
                processed_dead,
                self.lost_to_retention
            ));
        }
        (!wrong.is_empty()).then(|| wrong.join("; "))
    }

    /// Messages the processor accounted for: stored, unchanged,
    /// dead-lettered or lost to retention.
    fn accounted(&self) -> u64 {
        self.stored
            + self.duplicates_skipped
            + self.processed_dead_letters()
            + self.lost_to_retention
    }

    /// Messages processed beyond the backlog and what this run logged:
    /// read twice, or logged by another process while this one ran.
    pub fn processed_beyond(&self) -> u64 {
        self.accounted().saturating_sub(self.backlog + self.logged)
    }

    /// One line a person can check: where every record went. More
    /// processed than logged (`<`) is a message read twice or written by
    /// another process; the upserts absorb it.
    pub fn reconciliation(&self) -> String {
        let processed_dead = self.processed_dead_letters();
        let relation = match (self.backlog + self.logged).cmp(&self.accounted()) {
            std::cmp::Ordering::Equal => "=",
            std::cmp::Ordering::Less => "<",
            std::cmp::Ordering::Greater => ">",
        };
        let fetched = if self.fetched == self.logged + self.source_rejected {
            "="
        } else {
            "!="
        };
        format!(
            "fetched {} {fetched} logged {} + rejected {}; backlog {} + logged {} {relation} stored {} + unchanged {} + dead-lettered {} + lost to retention {}",
            self.fetched,
            self.logged,
            self.source_rejected,
            self.backlog,
            self.logged,
            self.stored,
            self.duplicates_skipped,
            processed_dead,
            self.lost_to_retention
        )
    }
}

/// The process's peak resident set size (VmHWM), where /proc tells it.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn books(fetched: u64, logged: u64, rejected: u64, backlog: u64) -> Stats {
        let s = Stats::default();
        s.add(Counter::Fetched, fetched);
        s.add(Counter::Logged, logged);
        s.add(Counter::SourceRejected, rejected);
        s.add(Counter::DeadLettered, rejected);
        s.add(Counter::Backlog, backlog);
        s
    }

    #[test]
    fn books_balance_when_every_message_is_accounted_for() {
        let s = books(1000, 990, 10, 100);
        s.add(Counter::Stored, 1000);
        s.add(Counter::Unchanged, 40);
        s.add(Counter::DeadLettered, 30);
        s.add(Counter::LostToRetention, 20);
        assert_eq!(s.summary().imbalance(), None);
    }

    #[test]
    fn a_message_that_went_nowhere_unbalances_the_books() {
        let s = books(1000, 1000, 0, 0);
        s.add(Counter::Stored, 999);
        let wrong = s.summary().imbalance().expect("one message is missing");
        assert!(wrong.contains("logged 1000 > stored 999"), "{wrong}");
    }

    #[test]
    fn a_fetched_user_neither_logged_nor_rejected_unbalances_the_books() {
        let s = books(1000, 998, 1, 0);
        s.add(Counter::Stored, 998);
        let wrong = s.summary().imbalance().expect("one user is missing");
        assert!(wrong.contains("fetched 1000"), "{wrong}");
    }

    #[test]
    fn a_message_read_twice_is_absorbed_not_a_fault() {
        let s = books(1000, 1000, 0, 0);
        s.add(Counter::Stored, 1000);
        s.add(Counter::Unchanged, 25);
        let summary = s.summary();
        assert_eq!(summary.imbalance(), None);
        assert_eq!(summary.processed_beyond(), 25);
        // The line says what holds: not "=" where the sides differ.
        let line = summary.reconciliation();
        assert!(
            line.contains("backlog 0 + logged 1000 < stored 1000 + unchanged 25"),
            "{line}"
        );
        let even = books(10, 10, 0, 0);
        even.add(Counter::Stored, 10);
        assert!(
            even.summary()
                .reconciliation()
                .contains("logged 10 = stored 10")
        );
    }
}
