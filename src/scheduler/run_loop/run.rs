//! One run of a job: ingestion with retries, its progress written while it
//! runs, and how it ended recorded (an interrupted run with attempts left
//! queued again).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::locked::call;
use super::{JobConfig, Target};
use crate::pipeline::ingest::{self, Feed};
use crate::pipeline::stats::{Counter, Stats};
use crate::scheduler::health::Health;
use crate::scheduler::history::{History, HistoryError, RunCounts, RunState};
use crate::scheduler::runner::{Step, run_with_retries};

/// How often a running run's counts are written to the history.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// How long the end of a run is still tried after shutdown when the history
/// is locked. Given up, the run stays `running` and the next start marks it
/// interrupted, which is what happened.
const END_GRACE: Duration = Duration::from_secs(5);

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
pub(super) fn count_run(job: &str, state: RunState) {
    metrics::counter!(
        crate::telemetry::metrics::SCHEDULER_RUNS.name,
        "job" => job.to_owned(),
        "state" => state.as_str()
    )
    .increment(1);
}

/// One run and what it needs.
pub(super) struct Run {
    pub(super) job: Arc<JobConfig>,
    pub(super) id: i64,
    pub(super) scheduled_ms: i64,
    pub(super) attempts_before: u32,
    pub(super) history: History,
    pub(super) health: Health,
    pub(super) target: Target,
    pub(super) stop: CancellationToken,
    /// Where a history error that waiting cannot fix goes: the loop ends
    /// the scheduler with it.
    pub(super) fatal: mpsc::UnboundedSender<HistoryError>,
}

impl Run {
    fn fatal(&self, e: HistoryError) {
        error!(job = %self.job.name, run = self.id, error = %e, "cannot record the run");
        let _ = self.fatal.send(e);
    }

    /// Ingestion with retries, recorded start to end.
    pub(super) async fn execute(self) {
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
            |step| {
                let this = &self;
                async move {
                    let recorded = match step {
                        Step::Starts(n) => {
                            call(
                                &this.history,
                                &this.health,
                                "record a run's start",
                                this.stop.cancelled(),
                                move |h| h.start_attempt(id, n),
                            )
                            .await
                        }
                        Step::Failed(n, e, delay) => {
                            call(
                                &this.history,
                                &this.health,
                                "record a failed attempt",
                                this.stop.cancelled(),
                                move |h| h.attempt_failed(id, n, &e, delay).map(|()| true),
                            )
                            .await
                        }
                    };
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
