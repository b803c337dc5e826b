//! The scheduler inside `serve`: decides when each job runs (its schedule,
//! triggers queued by `jobs trigger`, pause state), keeps one active run per
//! job, runs it with retries, and records every run in the history.
//!
//! The history is another process's file too (`jobs` commands, a `sqlite3`
//! shell), so a call may find it locked. Such a call is tried again with
//! back-off for as long as the lock lasts, and the scheduler reports itself
//! not ready meanwhile ([`Health`]); any other history error ends the
//! scheduler with that error, which stops `serve`.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::health::{Health, SchedulerState};
use super::history::{History, HistoryError, RunCounts, RunState, now_ms};
use super::runner::{RetryPolicy, run_with_retries};
use super::schedule::Schedule;
use crate::pipeline::ingest::{self, Feed, IngestPlan};
use crate::pipeline::log::Log;
use crate::pipeline::processor::DEFAULT_MAX_MESSAGE_BYTES;
use crate::pipeline::shape::Shape;
use crate::pipeline::source::{MAX_RESULTS_PER_REQUEST, SourceConfig};
use crate::pipeline::stats::{Counter, Stats};

/// How often the loop looks at the clock, the pause flags and the queue.
const TICK: Duration = Duration::from_millis(250);
/// How often a running run's counts are written to the history.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// How long one history call of `serve` waits for another connection's
/// write lock before it counts as failed and the scheduler says not ready.
/// The short transactions of the `jobs` commands fit well within it.
pub const SERVE_BUSY_TIMEOUT: Duration = Duration::from_secs(2);
/// Back-off between tries of a call that found the history locked:
/// doubling from the first to the last.
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// While the history stays locked, a warning at most this often.
const WARN_EVERY: Duration = Duration::from_secs(30);
/// How long the end of a run is still tried after shutdown when the history
/// is locked. Given up, the run stays `running` and the next start marks it
/// interrupted, which is what happened.
const END_GRACE: Duration = Duration::from_secs(5);

/// A validated job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobConfig {
    pub name: String,
    /// The pipeline the job feeds.
    pub pipeline: String,
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
            // A user pipeline's run reads its source as it is now.
            other @ (SourceConfig::JsonApi(_) | SourceConfig::File(_)) => other.clone(),
        }
    }

    /// Attempts a run of this job may make in all.
    fn attempts_allowed(&self) -> u32 {
        self.retry.retries.saturating_add(1)
    }
}

pub struct Scheduler {
    jobs: Vec<Arc<JobConfig>>,
    history: History,
    /// Where each pipeline's runs go, by pipeline name.
    targets: BTreeMap<String, Target>,
    health: Health,
}

/// What a pipeline's runs need: its log, the shape of its records (a user
/// pipeline's), its records per page, and its counters (runs roll up into
/// them).
#[derive(Debug, Clone)]
pub struct Target {
    pub log: Log,
    pub shape: Option<Arc<Shape>>,
    pub page_size: u64,
    /// The largest message its log takes.
    pub max_message_bytes: usize,
    pub stats: Arc<Stats>,
}

/// What one tick does for one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Paused,
    /// Nothing due, or a trigger waiting for the active run.
    Wait,
    /// A slot came due during the active run and was recorded as skipped.
    Skipped,
    Start {
        id: i64,
        scheduled_ms: i64,
        /// Attempts already spent on this slot (by an interrupted run).
        attempts_before: u32,
    },
}

/// One tick's look at the history for one job. Its one write is its last
/// call, so a call that failed (and is tried again) wrote nothing.
fn decide(
    h: &History,
    job: &str,
    due_ms: i64,
    slot_passed: bool,
    active: bool,
) -> Result<Decision, HistoryError> {
    h.check_file()?;
    if h.is_paused(job)? {
        return Ok(Decision::Paused);
    }
    if active {
        // max_active_runs = 1: a slot that comes due during a run is
        // recorded as skipped; triggers wait in the queue.
        if slot_passed {
            h.add(job, due_ms, RunState::Skipped)?;
            return Ok(Decision::Skipped);
        }
        return Ok(Decision::Wait);
    }
    // A run is taken (made `running`) by the same call that decides to
    // start it: a `jobs cancel` after this finds it running, not queued,
    // and one before it leaves nothing to take.
    Ok(match h.next_queued(job)? {
        Some(queued) if h.take(queued.id)? => Decision::Start {
            id: queued.id,
            scheduled_ms: queued.scheduled_ms,
            attempts_before: queued.attempts,
        },
        // Cancelled between the look and the take: the next tick looks again.
        Some(_) => Decision::Wait,
        None if slot_passed => Decision::Start {
            id: h.add(job, due_ms, RunState::Running)?,
            scheduled_ms: due_ms,
            attempts_before: 0,
        },
        None => Decision::Wait,
    })
}

/// Runs `f` on the history from the blocking pool. A call that finds the
/// history locked by another connection is tried again with back-off (a
/// warning, and `health` not ready) until it goes through, or until
/// `give_up` completes (`Ok(None)`). Any other error is returned.
async fn call<T: Send + 'static>(
    history: &History,
    health: &Health,
    what: &'static str,
    give_up: impl Future<Output = ()>,
    f: impl Fn(&History) -> Result<T, HistoryError> + Send + Sync + 'static,
) -> Result<Option<T>, HistoryError> {
    tokio::pin!(give_up);
    let f = Arc::new(f);
    let mut delay = RETRY_FIRST;
    let mut warned: Option<Instant> = None;
    loop {
        let (h, g) = (history.clone(), f.clone());
        let result = tokio::task::spawn_blocking(move || g(&h))
            .await
            .expect("history task panicked");
        match result {
            Ok(v) => {
                if let Some(since) = health.recovered() {
                    info!(
                        locked_for_ms = now_ms() - since,
                        "run history usable again; scheduling goes on"
                    );
                }
                return Ok(Some(v));
            }
            Err(e) if e.is_busy() => {
                let first = health.retrying(e.to_string());
                if first || warned.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                    warn!(
                        error = %e,
                        what,
                        retry_in_ms = delay.as_millis() as u64,
                        "run history locked by another process; not ready until it can be written, retrying"
                    );
                    warned = Some(Instant::now());
                } else {
                    debug!(error = %e, what, "run history still locked");
                }
                tokio::select! {
                    _ = &mut give_up => return Ok(None),
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(RETRY_MAX);
            }
            Err(e) => return Err(e),
        }
    }
}

impl Scheduler {
    /// A scheduler of one pipeline's jobs (every job's runs go to `log`).
    pub fn new(jobs: Vec<JobConfig>, history: History, log: Log, stats: Arc<Stats>) -> Self {
        let target = Target {
            log,
            shape: None,
            page_size: MAX_RESULTS_PER_REQUEST,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            stats,
        };
        let targets = jobs
            .iter()
            .map(|j| (j.pipeline.clone(), target.clone()))
            .collect();
        Self::with_targets(jobs, history, targets)
    }

    /// A scheduler whose jobs feed the pipelines of `targets`.
    ///
    /// # Panics
    ///
    /// If a job names a pipeline `targets` lacks (the config checked it).
    pub fn with_targets(
        jobs: Vec<JobConfig>,
        history: History,
        targets: BTreeMap<String, Target>,
    ) -> Self {
        for j in &jobs {
            assert!(
                targets.contains_key(&j.pipeline),
                "job {} feeds pipeline {}, which is not running",
                j.name,
                j.pipeline
            );
        }
        Scheduler {
            jobs: jobs.into_iter().map(Arc::new).collect(),
            history,
            targets,
            health: Health::default(),
        }
    }

    /// The scheduler's state, for readiness and the status view.
    pub fn health(&self) -> Health {
        self.health.clone()
    }

    /// First slot to consider for a job at start-up.
    fn first_due(job: &JobConfig, last: Option<i64>, now: DateTime<Utc>) -> DateTime<Utc> {
        let last = last.and_then(DateTime::<Utc>::from_timestamp_millis);
        match last {
            // Never ran: the next slot from now.
            None => job.schedule.next_after(now).unwrap_or(now),
            Some(last) if job.catchup => job.schedule.next_after(last).unwrap_or(now),
            // No catch-up: the latest missed slot once, if one was missed.
            Some(last) => match job.schedule.latest_at_or_before(now) {
                Some(latest) if latest > last => latest,
                _ => job.schedule.next_after(now).unwrap_or(now),
            },
        }
    }

    /// Runs until `shutdown`, or until the history fails in a way waiting
    /// cannot fix (the error). Running bursts stop at their next tick and
    /// are recorded as interrupted, their slots queued again for the next
    /// start when their jobs have retries left.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), HistoryError> {
        // Its own token, so that an error stops the runs before it returns.
        let stop = shutdown.child_token();
        let (fatal_tx, mut fatal_rx) = mpsc::unbounded_channel();
        let mut active = HashMap::new();
        let mut result = self
            .schedule(&stop, &fatal_tx, &mut fatal_rx, &mut active)
            .await;
        stop.cancel();
        for (_, h) in active {
            let _ = h.await;
        }
        if result.is_ok()
            && let Ok(e) = fatal_rx.try_recv()
        {
            result = Err(e);
        }
        self.health.set(SchedulerState::Stopped {
            error: result.as_ref().err().map(|e| e.to_string()),
        });
        result
    }

    async fn schedule(
        &self,
        stop: &CancellationToken,
        fatal_tx: &mpsc::UnboundedSender<HistoryError>,
        fatal_rx: &mut mpsc::UnboundedReceiver<HistoryError>,
        active: &mut HashMap<String, tokio::task::JoinHandle<()>>,
    ) -> Result<(), HistoryError> {
        let (history, health) = (&self.history, &self.health);
        let allowed: HashMap<String, u32> = self
            .jobs
            .iter()
            .map(|j| (j.name.clone(), j.attempts_allowed()))
            .collect();
        let known = allowed.clone();
        let Some(recovered) = call(
            history,
            health,
            "recover runs",
            stop.cancelled(),
            move |h| h.recover(|job| allowed.get(job).copied()),
        )
        .await?
        else {
            return Ok(());
        };
        for i in &recovered {
            let r = &i.run;
            match i.retry {
                Some(retry) => warn!(
                    job = %r.job, run = r.id, attempts = r.attempts, retry,
                    "a run left running by the previous process was interrupted; its slot is queued again"
                ),
                None if known.contains_key(&r.job) => warn!(
                    job = %r.job, run = r.id, attempts = r.attempts,
                    "a run left running by the previous process was interrupted; not retried: its retries are spent"
                ),
                None => warn!(
                    job = %r.job, run = r.id,
                    "a run left running by the previous process was interrupted; not retried: the job is no longer configured"
                ),
            }
        }
        let now = Utc::now();
        let mut next: HashMap<String, DateTime<Utc>> = HashMap::new();
        for job in &self.jobs {
            let name = job.name.clone();
            let Some(last) = call(history, health, "plan", stop.cancelled(), move |h| {
                h.last_scheduled(&name)
            })
            .await?
            else {
                return Ok(());
            };
            let due = Self::first_due(job, last, now);
            info!(job = %job.name, schedule = %job.schedule, next_run = %due, "job scheduled");
            next.insert(job.name.clone(), due);
        }
        health.set(SchedulerState::Running);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                Some(e) = fatal_rx.recv() => return Err(e),
                _ = tokio::time::sleep(TICK) => {}
            }
            active.retain(|_, h| !h.is_finished());
            let now = Utc::now();
            for job in &self.jobs {
                let due = next[&job.name];
                let slot_passed = due <= now;
                let is_active = active.contains_key(&job.name);
                let (name, due_ms) = (job.name.clone(), due.timestamp_millis());
                let Some(decision) =
                    call(history, health, "schedule", stop.cancelled(), move |h| {
                        decide(h, &name, due_ms, slot_passed, is_active)
                    })
                    .await?
                else {
                    return Ok(());
                };
                if slot_passed {
                    let following = job.schedule.next_after(if job.catchup { due } else { now });
                    next.insert(
                        job.name.clone(),
                        following.unwrap_or(now + chrono::Duration::days(3650)),
                    );
                }
                match decision {
                    Decision::Paused | Decision::Wait => {}
                    Decision::Skipped => {
                        count_run(&job.name, RunState::Skipped);
                        info!(job = %job.name, slot = %due, "run skipped: the previous run is still active");
                    }
                    Decision::Start {
                        id,
                        scheduled_ms,
                        attempts_before,
                    } => {
                        let run = Run {
                            job: job.clone(),
                            id,
                            scheduled_ms,
                            attempts_before,
                            history: history.clone(),
                            health: health.clone(),
                            target: self.targets[&job.pipeline].clone(),
                            stop: stop.clone(),
                            fatal: fatal_tx.clone(),
                        };
                        active.insert(job.name.clone(), tokio::spawn(run.execute()));
                    }
                }
            }
        }
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

/// One run and what it needs.
struct Run {
    job: Arc<JobConfig>,
    id: i64,
    scheduled_ms: i64,
    attempts_before: u32,
    history: History,
    health: Health,
    target: Target,
    stop: CancellationToken,
    /// Where a history error that waiting cannot fix goes: the loop ends
    /// the scheduler with it.
    fatal: mpsc::UnboundedSender<HistoryError>,
}

impl Run {
    fn fatal(&self, e: HistoryError) {
        error!(job = %self.job.name, run = self.id, error = %e, "cannot record the run");
        let _ = self.fatal.send(e);
    }

    /// Ingestion with retries, recorded start to end.
    async fn execute(self) {
        let (job, id) = (self.job.clone(), self.id);
        let stats = Arc::new(Stats::child_of(self.target.stats.clone()));
        let feed = Feed::open(
            &job.source_for(self.scheduled_ms),
            self.target.shape.clone(),
            self.target.page_size,
            self.target.max_message_bytes,
        );
        let feed = match feed {
            Ok(f) => f,
            Err(e) => {
                let error = e.to_string();
                self.end(0, RunState::Failed, &RunCounts::default(), Some(&error))
                    .await;
                return;
            }
        };
        let first = self.attempts_before + 1;
        info!(job = %job.name, run = id, attempt = first, "run started");
        let plan = job.plan;
        let running = run_with_retries(
            job.retry,
            first,
            &self.stop,
            |attempt, failed| {
                let this = &self;
                async move {
                    let recorded = call(
                        &this.history,
                        &this.health,
                        "record a run's start",
                        this.stop.cancelled(),
                        move |h| h.start_attempt(id, attempt, failed.as_deref()),
                    )
                    .await;
                    match recorded {
                        Ok(Some(false)) => warn!(
                            job = %this.job.name, run = id,
                            "the run is no longer queued or running in the history"
                        ),
                        Ok(_) => {}
                        Err(e) => this.fatal(e),
                    }
                }
            },
            |_| {
                let (feed, log, stats, stop) = (
                    feed.clone(),
                    self.target.log.clone(),
                    stats.clone(),
                    self.stop.clone(),
                );
                async move {
                    ingest::run(feed, log, plan, stats, stop)
                        .await
                        .map_err(|e| e.to_string())
                }
            },
        );
        tokio::pin!(running);
        let mut every = tokio::time::interval(PROGRESS_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        // Written off the run's task, one at a time: a locked history
        // delays the record, never the burst's ticks.
        let mut progress: Option<tokio::task::JoinHandle<()>> = None;
        let outcome = loop {
            tokio::select! {
                outcome = &mut running => break outcome,
                _ = every.tick() => {
                    if progress.as_ref().is_none_or(|p| p.is_finished()) {
                        let (h, counts) = (self.history.clone(), counts_of(&stats));
                        progress = Some(tokio::task::spawn_blocking(move || {
                            match h.progress(id, &counts) {
                                Ok(()) => {}
                                Err(e) if e.is_busy() => debug!(error = %e, "run progress not recorded"),
                                Err(e) => warn!(error = %e, "cannot record the run's progress"),
                            }
                        }));
                    }
                }
            }
        };
        if let Some(p) = progress {
            let _ = p.await;
        }
        let counts = counts_of(&stats);
        let (state, error) = match &outcome.result {
            _ if self.stop.is_cancelled() => (
                RunState::Interrupted,
                Some("stopped by shutdown".to_owned()),
            ),
            Ok(()) => (RunState::Success, None),
            Err(e) => (RunState::Failed, Some(e.clone())),
        };
        self.end(outcome.attempts, state, &counts, error.as_deref())
            .await;
    }

    /// Records how the run ended; an interrupted run with attempts left
    /// gets its slot queued again. Tried for a while after shutdown when the
    /// history is locked.
    async fn end(&self, attempts: u32, state: RunState, counts: &RunCounts, error: Option<&str>) {
        let (job, id) = (&self.job, self.id);
        count_run(&job.name, state);
        info!(job = %job.name, run = id, state = state.as_str(), fetched = counts.fetched, logged = counts.logged, "run ended");
        let stop = self.stop.clone();
        let give_up = async move {
            stop.cancelled().await;
            tokio::time::sleep(END_GRACE).await;
        };
        let (counts, error) = (counts.clone(), error.map(str::to_owned));
        let recorded = if state == RunState::Interrupted {
            let retry_after = (attempts < job.attempts_allowed()).then_some(attempts);
            let error = error.unwrap_or_default();
            call(&self.history, &self.health, "record a run's end", give_up, move |h| {
                h.interrupt(id, &counts, &error, retry_after)
            })
            .await
            .map(|r| {
                if let Some(Some(retry)) = r {
                    info!(job = %job.name, run = id, retry, "its slot is queued again for the next start");
                }
                r.map(|_| ())
            })
        } else {
            call(
                &self.history,
                &self.health,
                "record a run's end",
                give_up,
                move |h| h.finish(id, state, &counts, error.as_deref()),
            )
            .await
        };
        match recorded {
            Ok(Some(())) => {}
            Ok(None) => warn!(
                job = %job.name, run = id,
                "the run history stayed locked: the run's end is not recorded, the next start marks it interrupted"
            ),
            Err(e) => self.fatal(e),
        }
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
            pipeline: "randomuser".into(),
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

    /// Polls `check` every 20 ms, failing with `what` after `secs`.
    async fn until(secs: u64, what: &str, mut check: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        while !check() {
            assert!(std::time::Instant::now() < deadline, "timed out: {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn every_second() -> JobConfig {
        let mut j = job(Duration::from_millis(200));
        j.schedule = Schedule::parse("@every 1s", None).unwrap();
        j
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_locked_history_is_waited_out_and_reported_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let (_, log) = setup(dir.path()).await;
        let path = dir.path().join("scheduler.db");
        let history = History::open_with(&path, Duration::from_millis(100)).unwrap();
        let shutdown = CancellationToken::new();
        let scheduler = Scheduler::new(
            vec![every_second()],
            history.clone(),
            log,
            Arc::new(Stats::default()),
        );
        let health = scheduler.health();
        let running = tokio::spawn(scheduler.run(shutdown.clone()));
        until(10, "running", || health.get() == SchedulerState::Running).await;

        let other = rusqlite::Connection::open(&path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        until(10, "retrying", || {
            matches!(health.get(), SchedulerState::Retrying { .. })
        })
        .await;
        // Longer than the busy timeout many times over: still waiting.
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(!running.is_finished());
        let SchedulerState::Retrying { error, .. } = health.get() else {
            panic!("{:?}", health.get())
        };
        assert!(error.contains("locked"), "{error}");
        other.execute_batch("COMMIT").unwrap();
        let released = now_ms();

        until(10, "running again", || {
            health.get() == SchedulerState::Running
        })
        .await;
        until(10, "a run after the lock", || {
            history
                .runs("random_users", 50)
                .unwrap()
                .iter()
                .any(|r| r.state == RunState::Success && r.started_ms.unwrap() >= released)
        })
        .await;
        shutdown.cancel();
        running.await.unwrap().unwrap();
        assert_eq!(health.get(), SchedulerState::Stopped { error: None });
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_deleted_history_ends_the_scheduler_with_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let (history, log) = setup(dir.path()).await;
        let scheduler = Scheduler::new(
            vec![job(Duration::from_millis(100))],
            history,
            log,
            Arc::new(Stats::default()),
        );
        let health = scheduler.health();
        let running = tokio::spawn(scheduler.run(CancellationToken::new()));
        until(10, "running", || health.get() == SchedulerState::Running).await;
        std::fs::remove_file(dir.path().join("scheduler.db")).unwrap();
        let e = tokio::time::timeout(Duration::from_secs(10), running)
            .await
            .expect("the scheduler ends")
            .unwrap()
            .unwrap_err();
        assert!(matches!(e, HistoryError::Replaced(_)), "{e}");
        let SchedulerState::Stopped { error: Some(error) } = health.get() else {
            panic!("{:?}", health.get())
        };
        assert!(error.contains("scheduler.db"), "{error}");
    }

    #[tokio::test]
    async fn a_run_left_running_by_a_crash_is_retried_with_its_attempts_counted() {
        let dir = tempfile::tempdir().unwrap();
        let (history, log) = setup(dir.path()).await;
        let crashed = history.add("random_users", 7, RunState::Queued).unwrap();
        history.start(crashed, 1).unwrap(); // and the process dies
        let mut j = job(Duration::from_millis(300));
        j.retry.retries = 1;
        let shutdown = CancellationToken::new();
        let scheduler = Scheduler::new(vec![j], history.clone(), log, Arc::new(Stats::default()));
        let running = tokio::spawn(scheduler.run(shutdown.clone()));
        until(20, "the retry to succeed", || {
            history.runs("random_users", 1).unwrap()[0].state == RunState::Success
        })
        .await;
        shutdown.cancel();
        running.await.unwrap().unwrap();
        let runs = history.runs("random_users", 10).unwrap();
        assert_eq!(runs.len(), 2, "{runs:?}");
        assert_eq!(
            (runs[1].id, runs[1].state),
            (crashed, RunState::Interrupted)
        );
        assert_eq!((runs[0].scheduled_ms, runs[0].attempts), (7, 2), "{runs:?}");
        assert!(runs[0].counts.logged > 0);
    }

    #[tokio::test]
    async fn a_run_stopped_by_shutdown_is_queued_again_when_it_has_retries_left() {
        let dir = tempfile::tempdir().unwrap();
        let (history, log) = setup(dir.path()).await;
        history.add("random_users", 9, RunState::Queued).unwrap();
        let mut j = job(Duration::from_secs(60));
        j.retry.retries = 1;
        let shutdown = CancellationToken::new();
        let scheduler = Scheduler::new(vec![j], history.clone(), log, Arc::new(Stats::default()));
        let running = tokio::spawn(scheduler.run(shutdown.clone()));
        until(10, "the run to start", || {
            history.runs("random_users", 1).unwrap()[0].state == RunState::Running
        })
        .await;
        shutdown.cancel();
        running.await.unwrap().unwrap();
        let runs = history.runs("random_users", 10).unwrap();
        assert_eq!(runs[1].state, RunState::Interrupted, "{runs:?}");
        assert_eq!(
            (runs[0].state, runs[0].scheduled_ms, runs[0].attempts),
            (RunState::Queued, 9, 1),
            "{runs:?}"
        );
    }
}
