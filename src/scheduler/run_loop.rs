//! The scheduler inside `serve`: decides when each job runs (its schedule,
//! triggers queued by `jobs trigger`, pause state), keeps one active run per
//! job, runs it with retries, and records every run in the history.
//!
//! The history is another process's file too (`jobs` commands, a `sqlite3`
//! shell), so a call may find it locked. Such a call is tried again with
//! back-off for as long as the lock lasts, and the scheduler reports itself
//! not ready meanwhile ([`Health`]); any other history error ends the
//! scheduler with that error, which stops `serve`.

mod locked;
mod queue;
mod run;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use self::locked::call;
use self::queue::{Decision, decide};
use self::run::{Run, count_run};
use super::health::{Health, SchedulerState};
use super::history::{History, HistoryError, RunState};
use super::runner::RetryPolicy;
use super::schedule::Schedule;
use crate::clock::Clock;
use crate::pipeline::ingest::IngestPlan;
use crate::pipeline::log::Log;
use crate::pipeline::processor::DEFAULT_MAX_MESSAGE_BYTES;
use crate::pipeline::shape::Shape;
use crate::pipeline::source::{MAX_RESULTS_PER_REQUEST, SourceConfig};
use crate::pipeline::stats::Stats;

/// How often the loop looks at the clock, the pause flags and the queue.
const TICK: Duration = Duration::from_millis(250);
/// How long one history call of `serve` waits for another connection's
/// write lock before it counts as failed and the scheduler says not ready.
/// The short transactions of the `jobs` commands fit well within it.
pub const SERVE_BUSY_TIMEOUT: Duration = Duration::from_secs(2);

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
    /// What "now" is when slots fall due.
    clock: Clock,
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
            clock: Clock::System,
        }
    }

    /// The same scheduler, deciding which slots are due by `clock`.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The scheduler's state, for readiness and the status view.
    pub fn health(&self) -> Health {
        self.health.clone()
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
        let now = self.clock.now();
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
            let now = self.clock.now();
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
