//! What one tick of the loop does for a job: paused, waiting, a slot
//! skipped during the active run, or a run to start (a queued one first,
//! else the slot that came due); and where a job's slots resume at
//! start-up (every missed slot with catch-up, else the latest once).

use chrono::{DateTime, Utc};

use super::{JobConfig, Scheduler};
use crate::scheduler::history::{History, HistoryError, RunState};

/// What one tick does for one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Decision {
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
pub(super) fn decide(
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

impl Scheduler {
    /// First slot to consider for a job at start-up.
    pub(super) fn first_due(
        job: &JobConfig,
        last: Option<i64>,
        now: DateTime<Utc>,
    ) -> DateTime<Utc> {
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
}
