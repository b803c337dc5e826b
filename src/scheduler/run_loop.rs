//! The scheduler inside `serve`: decides when each job runs (its schedule,
//! triggers queued by `jobs trigger`, pause state), keeps one active run per
//! job, runs it with retries, and records every run in the history.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::history::{History, HistoryError, RunCounts, RunState};
use super::runner::{RetryPolicy, run_with_retries};
use super::schedule::Schedule;
use crate::pipeline::ingest::{self, IngestPlan};
use crate::pipeline::log::Log;
use crate::pipeline::source::{Source, SourceConfig};
use crate::pipeline::stats::{Counter, Stats};

/// How often the loop looks at the clock, the pause flags and the queue.
const TICK: Duration = Duration::from_millis(250);
/// How often a running run's counts are written to the history.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// A validated job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobConfig {
    pub name: String,
    pub schedule: Schedule,
    pub plan: IngestPlan,
    /// The source; each run asks for the seed `<seed>-<slot ms>`, so a
    /// retried run fetches the same users and a new slot new ones.
    pub source: SourceConfig,
    pub retry: RetryPolicy,
    /// Run every missed slot after downtime (`true`) or only the latest.
    pub catchup: bool,
}

impl JobConfig {
    fn source_for(&self, scheduled_ms: i64) -> SourceConfig {
        match &self.source {
            SourceConfig::Generator { seed, nats, gender } => SourceConfig::Generator {
                seed: format!("{seed}-{scheduled_ms}"),
                nats: nats.clone(),
                gender: gender.clone(),
            },
            SourceConfig::Http(h) => {
                let mut h = h.clone();
                h.seed = format!("{}-{scheduled_ms}", h.seed);
                SourceConfig::Http(h)
            }
        }
    }
}

pub struct Scheduler {
    jobs: Vec<Arc<JobConfig>>,
    history: History,
    log: Log,
    /// Counters of all runs together (the dashboard's).
    stats: Arc<Stats>,
}

impl Scheduler {
    pub fn new(jobs: Vec<JobConfig>, history: History, log: Log, stats: Arc<Stats>) -> Self {
        Scheduler {
            jobs: jobs.into_iter().map(Arc::new).collect(),
            history,
            log,
            stats,
        }
    }

    /// First slot to consider for a job at start-up.
    fn first_due(
        &self,
        job: &JobConfig,
        now: DateTime<Utc>,
    ) -> Result<DateTime<Utc>, HistoryError> {
        let last = self.history.last_scheduled(&job.name)?;
        let last = last.and_then(DateTime::<Utc>::from_timestamp_millis);
        Ok(match last {
            // Never ran: the next slot from now.
            None => job.schedule.next_after(now).unwrap_or(now),
            Some(last) if job.catchup => job.schedule.next_after(last).unwrap_or(now),
            // No catch-up: the latest missed slot once, if one was missed.
            Some(last) => match job.schedule.latest_at_or_before(now) {
                Some(latest) if latest > last => latest,
                _ => job.schedule.next_after(now).unwrap_or(now),
            },
        })
    }

    /// Runs until `shutdown`; running bursts stop at their next tick and are
    /// recorded as interrupted.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), HistoryError> {
        let interrupted = self.history.mark_interrupted()?;
        if interrupted > 0 {
            warn!(
                interrupted,
                "runs left running by a previous process were marked interrupted"
            );
        }
        let now = Utc::now();
        let mut next: HashMap<String, DateTime<Utc>> = HashMap::new();
        for job in &self.jobs {
            let due = self.first_due(job, now)?;
            info!(job = %job.name, schedule = %job.schedule, next_run = %due, "job scheduled");
            next.insert(job.name.clone(), due);
        }
        let mut active: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(TICK) => {}
            }
            active.retain(|_, h| !h.is_finished());
            let now = Utc::now();
            for job in &self.jobs {
                let due = next[&job.name];
                let slot_passed = due <= now;
                if slot_passed {
                    let following = job.schedule.next_after(if job.catchup { due } else { now });
                    next.insert(
                        job.name.clone(),
                        following.unwrap_or(now + chrono::Duration::days(3650)),
                    );
                }
                if self.history.is_paused(&job.name)? {
                    continue;
                }
                if active.contains_key(&job.name) {
                    // max_active_runs = 1: a slot that comes due during a
                    // run is recorded as skipped; triggers wait in the queue.
                    if slot_passed {
                        self.history
                            .add(&job.name, due.timestamp_millis(), RunState::Skipped)?;
                        count_run(&job.name, RunState::Skipped);
                        info!(job = %job.name, slot = %due, "run skipped: the previous run is still active");
                    }
                    continue;
                }
                let run = match self.history.next_queued(&job.name)? {
                    Some(queued) => Some((queued.id, queued.scheduled_ms)),
                    None if slot_passed => {
                        let ms = due.timestamp_millis();
                        Some((self.history.add(&job.name, ms, RunState::Queued)?, ms))
                    }
                    None => None,
                };
                if let Some((id, scheduled_ms)) = run {
                    let handle = tokio::spawn(execute(
                        job.clone(),
                        id,
                        scheduled_ms,
                        self.history.clone(),
                        self.log.clone(),
                        self.stats.clone(),
                        shutdown.clone(),
                    ));
                    active.insert(job.name.clone(), handle);
                }
            }
        }
        for (_, h) in active {
            let _ = h.await;
        }
        Ok(())
    }
}

/// A run's counts for the history (written every second while it runs).
fn counts_of(stats: &Stats) -> RunCounts {
    RunCounts {
        fetched: stats.get(Counter::Fetched),
        logged: stats.get(Counter::Logged),
        failed: stats.get(Counter::DeadLettered),
        ticks_skipped: stats.get(Counter::TicksSkipped),
    }
}

/// Runs by job and final state, for Prometheus (jobs come from the config,
/// so the labels are bounded).
fn count_run(job: &str, state: RunState) {
    metrics::counter!(
        "tributary_scheduler_runs_total",
        "job" => job.to_owned(),
        "state" => state.as_str()
    )
    .increment(1);
}

/// One run: ingestion with retries, recorded start to end.
async fn execute(
    job: Arc<JobConfig>,
    id: i64,
    scheduled_ms: i64,
    history: History,
    log: Log,
    totals: Arc<Stats>,
    shutdown: CancellationToken,
) {
    let stats = Arc::new(Stats::child_of(totals));
    let source = match Source::open(&job.source_for(scheduled_ms)) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            let _ = history.finish(
                id,
                RunState::Failed,
                &RunCounts::default(),
                Some(&e.to_string()),
            );
            return;
        }
    };
    info!(job = %job.name, run = id, "run started");
    let plan = job.plan;
    let running = run_with_retries(
        job.retry,
        |attempt| {
            if let Err(e) = history.start(id, attempt) {
                warn!(error = %e, "cannot record the run's start");
            }
        },
        |_| {
            let (source, log, stats, shutdown) =
                (source.clone(), log.clone(), stats.clone(), shutdown.clone());
            async move {
                ingest::run(source, log, plan, stats, shutdown)
                    .await
                    .map_err(|e| e.to_string())
            }
        },
    );
    tokio::pin!(running);
    let mut every = tokio::time::interval(PROGRESS_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let outcome = loop {
        tokio::select! {
            outcome = &mut running => break outcome,
            _ = every.tick() => {
                if let Err(e) = history.progress(id, &counts_of(&stats)) {
                    warn!(error = %e, "cannot record the run's progress");
                }
            }
        }
    };
    let counts = counts_of(&stats);
    let (state, error) = match &outcome.result {
        _ if shutdown.is_cancelled() => (
            RunState::Interrupted,
            Some("stopped by shutdown".to_owned()),
        ),
        Ok(()) => (RunState::Success, None),
        Err(e) => (RunState::Failed, Some(e.clone())),
    };
    count_run(&job.name, state);
    info!(job = %job.name, run = id, state = state.as_str(), fetched = counts.fetched, logged = counts.logged, "run ended");
    if let Err(e) = history.finish(id, state, &counts, error.as_deref()) {
        warn!(error = %e, "cannot record the run's end");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::log::{LogConfig, SqliteLogConfig};

    async fn setup(dir: &std::path::Path) -> (History, Log) {
        let history = History::open(&dir.join("scheduler.db")).unwrap();
        let log = Log::open(&LogConfig::Sqlite(SqliteLogConfig {
            path: dir.join("log.db"),
            topic: "users_created".into(),
            retention_messages: None,
            retention_age: None,
            durable_fsync: false,
            offset_reset: Default::default(),
        }))
        .await
        .unwrap();
        (history, log)
    }

    fn job(burst: Duration) -> JobConfig {
        JobConfig {
            name: "random_users".into(),
            // Far in the future: only triggers start runs here.
            schedule: Schedule::parse("0 0 1 1 *", None).unwrap(),
            plan: IngestPlan::Burst {
                duration: burst,
                interval: Duration::from_millis(100),
                per_tick: 1,
            },
            source: SourceConfig::Generator {
                seed: "s".into(),
                nats: vec![],
                gender: None,
            },
            retry: RetryPolicy {
                retries: 0,
                retry_delay: Duration::ZERO,
                timeout: None,
            },
            catchup: false,
        }
    }

    #[tokio::test]
    async fn one_active_run_per_job_when_a_trigger_arrives_during_a_run() {
        let dir = tempfile::tempdir().unwrap();
        let (history, log) = setup(dir.path()).await;
        let first = history.add("random_users", 1, RunState::Queued).unwrap();
        let shutdown = CancellationToken::new();
        let scheduler = Scheduler::new(
            vec![job(Duration::from_millis(1500))],
            history.clone(),
            log,
            Arc::new(Stats::default()),
        );
        let running = tokio::spawn(scheduler.run(shutdown.clone()));
        // Wait until the first run is running, then trigger a second.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while history.runs("random_users", 1).unwrap()[0].state != RunState::Running {
            assert!(std::time::Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let second = history.add("random_users", 2, RunState::Queued).unwrap();
        // While the first runs, the second stays queued.
        let mut seen_both_running = false;
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let runs = history.runs("random_users", 10).unwrap();
            let running = runs.iter().filter(|r| r.state == RunState::Running).count();
            seen_both_running |= running > 1;
            if runs.iter().all(|r| r.state == RunState::Success) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{runs:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!seen_both_running);
        let runs = history.runs("random_users", 10).unwrap();
        let (r2, r1) = (&runs[0], &runs[1]);
        assert_eq!((r1.id, r2.id), (first, second));
        assert!(r2.started_ms.unwrap() >= r1.ended_ms.unwrap());
        assert!(r1.counts.logged >= 10, "{r1:?}");
        shutdown.cancel();
        running.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn shutdown_interrupts_a_running_burst_and_keeps_what_it_logged() {
        let dir = tempfile::tempdir().unwrap();
        let (history, log) = setup(dir.path()).await;
        history.add("random_users", 1, RunState::Queued).unwrap();
        let shutdown = CancellationToken::new();
        let scheduler = Scheduler::new(
            vec![job(Duration::from_secs(60))],
            history.clone(),
            log.clone(),
            Arc::new(Stats::default()),
        );
        let running = tokio::spawn(scheduler.run(shutdown.clone()));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while log.lag("x").await.unwrap()[0].end < 5 {
            assert!(std::time::Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // While it runs, its counts so far are in the history.
        loop {
            let run = &history.runs("random_users", 1).unwrap()[0];
            if run.state == RunState::Running && run.counts.logged > 0 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{run:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        shutdown.cancel();
        running.await.unwrap().unwrap();
        let run = &history.runs("random_users", 1).unwrap()[0];
        assert_eq!(run.state, RunState::Interrupted);
        let end = log.lag("x").await.unwrap()[0].end as u64;
        assert_eq!(run.counts.logged, end, "what was logged is recorded");
    }
}
