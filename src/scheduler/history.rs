//! Run history and job state, persisted in `<data_dir>/scheduler.db`: every
//! run (queued, running, success, failed, skipped, interrupted, cancelled)
//! with its times, counts and error, and which jobs are paused. The `jobs`
//! commands and `serve` share it, so they work with or without a running
//! `serve`. Each run's story (its lines), pages of runs and cancelling are
//! in `history/events.rs`.

mod events;

pub use events::{Cancelled, MAX_EVENT_CHARS, MAX_EVENTS, RunEvent, RunsPage};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use crate::embedded::{self, Shared, file_id};

/// How long a call waits for another connection's write transaction before
/// it fails as busy, for the `jobs` commands (one call and done).
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("run history: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The file was deleted or replaced after it was opened: whatever the
    /// `jobs` commands write now goes to a file this process never reads.
    #[error(
        "run history: {} was deleted or replaced while it was in use; restart to use the new file",
        .0.display()
    )]
    Replaced(PathBuf),
}

impl HistoryError {
    /// Another connection holds the lock: waiting and trying again helps.
    pub fn is_busy(&self) -> bool {
        match self {
            HistoryError::Sqlite(e) => embedded::is_busy(e),
            HistoryError::Replaced(_) => false,
        }
    }
}

/// The life of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    Queued,
    Running,
    Success,
    Failed,
    Skipped,
    Interrupted,
    /// Cancelled while queued (`jobs cancel`): never started.
    Cancelled,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Queued => "queued",
            RunState::Running => "running",
            RunState::Success => "success",
            RunState::Failed => "failed",
            RunState::Skipped => "skipped",
            RunState::Interrupted => "interrupted",
            RunState::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> RunState {
        match s {
            "queued" => RunState::Queued,
            "running" => RunState::Running,
            "success" => RunState::Success,
            "failed" => RunState::Failed,
            "skipped" => RunState::Skipped,
            "cancelled" => RunState::Cancelled,
            _ => RunState::Interrupted,
        }
    }
}

/// What a finished run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunCounts {
    pub fetched: u64,
    pub logged: u64,
    pub failed: u64,
    pub ticks_skipped: u64,
}

/// One run as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunRecord {
    pub id: i64,
    pub job: String,
    pub scheduled_ms: i64,
    pub started_ms: Option<i64>,
    pub ended_ms: Option<i64>,
    pub state: RunState,
    /// Attempts made so far, those of the runs it retries included (a
    /// queued retry of an interrupted run starts with theirs).
    pub attempts: u32,
    #[serde(flatten)]
    pub counts: RunCounts,
    pub error: Option<String>,
}

/// A run interrupted by the end of the process that ran it, and the run
/// queued to retry its slot, if its job had retries left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interrupted {
    pub run: RunRecord,
    pub retry: Option<i64>,
}

/// The scheduler's database. Cheap to clone.
#[derive(Debug, Clone)]
pub struct History {
    conn: Shared,
    path: PathBuf,
    /// The file's identity when opened (device, inode), to notice it being
    /// deleted or replaced.
    file_id: Option<(u64, u64)>,
}

use crate::clock::now_ms;

impl History {
    pub fn open(path: &Path) -> Result<History, HistoryError> {
        History::open_with(path, BUSY_TIMEOUT)
    }

    /// Opens the history with calls failing as busy after `busy_timeout`
    /// (`serve` waits less than the `jobs` commands and retries itself).
    pub fn open_with(path: &Path, busy_timeout: Duration) -> Result<History, HistoryError> {
        let conn = embedded::open(path, false)?;
        conn.busy_timeout(busy_timeout)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS job_state (
                name TEXT PRIMARY KEY,
                paused INTEGER NOT NULL DEFAULT 0
             );
             CREATE TABLE IF NOT EXISTS runs (
                id INTEGER PRIMARY KEY,
                job TEXT NOT NULL,
                scheduled_ms INTEGER NOT NULL,
                started_ms INTEGER,
                ended_ms INTEGER,
                state TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                fetched INTEGER NOT NULL DEFAULT 0,
                logged INTEGER NOT NULL DEFAULT 0,
                failed INTEGER NOT NULL DEFAULT 0,
                ticks_skipped INTEGER NOT NULL DEFAULT 0,
                error TEXT
             );
             CREATE INDEX IF NOT EXISTS runs_by_job ON runs (job, id);
             CREATE INDEX IF NOT EXISTS runs_by_slot ON runs (job, scheduled_ms);",
        )?;
        events::migrate(&conn)?;
        Ok(History {
            conn: Arc::new(std::sync::Mutex::new(conn)),
            path: path.to_owned(),
            file_id: file_id(path),
        })
    }

    /// Fails if the file this history was opened on is no longer at its
    /// path (deleted, or replaced by another file).
    pub fn check_file(&self) -> Result<(), HistoryError> {
        match self.file_id {
            Some(id) if file_id(&self.path) != Some(id) => {
                Err(HistoryError::Replaced(self.path.clone()))
            }
            _ => Ok(()),
        }
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>,
    ) -> Result<T, HistoryError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        Ok(f(&conn)?)
    }

    /// Runs left `running` by a process that died become `interrupted`, and
    /// each whose job still has attempts left (`attempts_allowed` of the
    /// job's name; `None` for a job no longer configured) gets a queued run
    /// for the same slot that carries its attempts over. One transaction:
    /// a crash in between leaves both or neither.
    pub fn recover(
        &self,
        attempts_allowed: impl Fn(&str) -> Option<u32>,
    ) -> Result<Vec<Interrupted>, HistoryError> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let left = runs_matching(&tx, "state = 'running' ORDER BY id ASC", [])?;
        let mut out = Vec::with_capacity(left.len());
        for mut run in left {
            tx.execute(
                "UPDATE runs SET state = 'interrupted', ended_ms = ?2,
                    error = coalesce(error, 'the process stopped during the run')
                 WHERE id = ?1",
                params![run.id, now_ms()],
            )?;
            let retry = match attempts_allowed(&run.job) {
                Some(allowed) if run.attempts < allowed => Some(queue_retry(
                    &tx,
                    run.id,
                    &run.job,
                    run.scheduled_ms,
                    run.attempts,
                )?),
                _ => None,
            };
            events::add_event(
                &tx,
                run.id,
                "interrupted: the process stopped during the run (found at the next start)",
                true,
            )?;
            run.state = RunState::Interrupted;
            out.push(Interrupted { run, retry });
        }
        tx.commit()?;
        Ok(out)
    }

    /// Records a run in `state` (queued, skipped, or running: a slot the
    /// scheduler starts at once) and returns its id.
    pub fn add(&self, job: &str, scheduled_ms: i64, state: RunState) -> Result<i64, HistoryError> {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            tx.execute(
                "INSERT INTO runs (job, scheduled_ms, state) VALUES (?1, ?2, ?3)",
                params![job, scheduled_ms, state.as_str()],
            )?;
            let id = tx.last_insert_rowid();
            let line = match state {
                RunState::Skipped => "skipped: the previous run was still active",
                RunState::Running => "due: started by the schedule",
                _ => "queued",
            };
            events::add_event(&tx, id, line, false)?;
            tx.commit()?;
            Ok(id)
        })
    }

    /// Takes queued run `id` for the scheduler to start (`running`): false
    /// when it is not queued any more (cancelled meanwhile).
    pub fn take(&self, id: i64) -> Result<bool, HistoryError> {
        self.with(|c| {
            c.execute(
                "UPDATE runs SET state = 'running' WHERE id = ?1 AND state = 'queued'",
                [id],
            )
            .map(|n| n == 1)
        })
    }

    /// Whether `job` has a run (in any state) for the slot `scheduled_ms`.
    pub fn has_run(&self, job: &str, scheduled_ms: i64) -> Result<bool, HistoryError> {
        self.with(|c| {
            c.query_row(
                "SELECT EXISTS (SELECT 1 FROM runs WHERE job = ?1 AND scheduled_ms = ?2)",
                params![job, scheduled_ms],
                |r| r.get(0),
            )
        })
    }

    /// Queues a run asked for by hand, for the slot "now". Two triggers in
    /// the same millisecond (or a clock that went back) still get slots of
    /// their own: a run's seed comes from its slot, and two runs of one slot
    /// would fetch the same records.
    pub fn trigger(&self, job: &str) -> Result<i64, HistoryError> {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            tx.execute(
                "INSERT INTO runs (job, scheduled_ms, state)
                 SELECT ?1, max(?2, coalesce((SELECT max(scheduled_ms) + 1 FROM runs
                                             WHERE job = ?1), 0)), 'queued'",
                params![job, now_ms()],
            )?;
            let id = tx.last_insert_rowid();
            events::add_event(&tx, id, "queued by a trigger", false)?;
            tx.commit()?;
            Ok(id)
        })
    }

    pub fn start(&self, id: i64, attempt: u32) -> Result<(), HistoryError> {
        self.start_attempt(id, attempt).map(|_| ())
    }

    /// Records attempt `attempt` starting. False, and nothing written, when
    /// the run is neither queued nor running (cancelled, or ended).
    pub fn start_attempt(&self, id: i64, attempt: u32) -> Result<bool, HistoryError> {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            let changed = tx.execute(
                "UPDATE runs SET state = 'running', attempts = ?2,
                    started_ms = coalesce(started_ms, ?3)
                 WHERE id = ?1 AND state IN ('queued', 'running')",
                params![id, attempt, now_ms()],
            )?;
            if changed == 0 {
                return Ok(false);
            }
            events::add_event(&tx, id, &format!("attempt {attempt} started"), false)?;
            tx.commit()?;
            Ok(true)
        })
    }

    /// Records attempt `attempt` failing with `error`, when it fails: the
    /// next starts after the retry delay.
    pub fn attempt_failed(
        &self,
        id: i64,
        attempt: u32,
        error: &str,
        retry_in: Duration,
    ) -> Result<(), HistoryError> {
        let line = format!(
            "attempt {attempt} failed: {error}; retrying in {}",
            humantime::format_duration(retry_in)
        );
        self.with(|c| {
            // Not after the run ended (cancelled while its attempt failed).
            let running: Option<bool> = c
                .query_row(
                    "SELECT state = 'running' FROM runs WHERE id = ?1",
                    params![id],
                    |r| r.get(0),
                )
                .optional()?;
            if running == Some(true) {
                events::add_event(c, id, &line, false)?;
            }
            Ok(())
        })
    }

    pub fn finish(
        &self,
        id: i64,
        state: RunState,
        counts: &RunCounts,
        error: Option<&str>,
    ) -> Result<(), HistoryError> {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            finish_on(&tx, id, state, counts, error)?;
            tx.commit()
        })
    }

    /// Ends a run as `interrupted` (stopped by a shutdown) and, when
    /// `retry_after` gives the attempts it used and the job has more, queues
    /// a run for the same slot that carries them over; returns its id.
    pub fn interrupt(
        &self,
        id: i64,
        counts: &RunCounts,
        error: &str,
        retry_after: Option<u32>,
    ) -> Result<Option<i64>, HistoryError> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // Only a run still running: one another process already recovered
        // has its retry queued.
        let running: bool = tx.query_row(
            "SELECT count(*) FROM runs WHERE id = ?1 AND state = 'running'",
            [id],
            |r| r.get(0),
        )?;
        finish_on(&tx, id, RunState::Interrupted, counts, Some(error))?;
        let retry = match retry_after.filter(|_| running) {
            Some(attempts) => {
                let (job, scheduled_ms): (String, i64) = tx.query_row(
                    "SELECT job, scheduled_ms FROM runs WHERE id = ?1",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                Some(queue_retry(&tx, id, &job, scheduled_ms, attempts)?)
            }
            None => None,
        };
        tx.commit()?;
        Ok(retry)
    }

    /// A running run's counts so far (the dashboard and `jobs runs` show
    /// them live; a crash leaves the last ones).
    pub fn progress(&self, id: i64, counts: &RunCounts) -> Result<(), HistoryError> {
        self.with(|c| {
            c.execute(
                "UPDATE runs SET fetched = ?2, logged = ?3, failed = ?4, ticks_skipped = ?5
                 WHERE id = ?1 AND state = 'running'",
                params![
                    id,
                    counts.fetched as i64,
                    counts.logged as i64,
                    counts.failed as i64,
                    counts.ticks_skipped as i64,
                ],
            )
            .map(|_| ())
        })
    }

    /// Whether a run of `job` is running now.
    pub fn running(&self, job: &str) -> Result<bool, HistoryError> {
        Ok(!self
            .runs_where(job, "AND state = 'running' LIMIT 1")?
            .is_empty())
    }

    /// The oldest queued run of `job` (a trigger), if any.
    pub fn next_queued(&self, job: &str) -> Result<Option<RunRecord>, HistoryError> {
        Ok(self
            .runs_where(job, "AND state = 'queued' ORDER BY id ASC LIMIT 1")?
            .pop())
    }

    /// The most recent runs of `job`, newest first (pages:
    /// [`History::runs_page`]).
    pub fn runs(&self, job: &str, limit: usize) -> Result<Vec<RunRecord>, HistoryError> {
        self.runs_where(job, &format!("ORDER BY id DESC LIMIT {limit}"))
    }

    /// The last scheduled time this job ran (or skipped) for, if any.
    pub fn last_scheduled(&self, job: &str) -> Result<Option<i64>, HistoryError> {
        self.with(|c| {
            c.query_row(
                "SELECT max(scheduled_ms) FROM runs WHERE job = ?1 AND state != 'queued'",
                [job],
                |r| r.get(0),
            )
        })
    }

    fn runs_where(&self, job: &str, tail: &str) -> Result<Vec<RunRecord>, HistoryError> {
        self.with(|c| runs_matching(c, &format!("job = ?1 {tail}"), [job]))
    }

    pub fn set_paused(&self, job: &str, paused: bool) -> Result<(), HistoryError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO job_state (name, paused) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET paused = excluded.paused",
                params![job, paused],
            )
            .map(|_| ())
        })
    }

    pub fn is_paused(&self, job: &str) -> Result<bool, HistoryError> {
        self.with(|c| {
            Ok(
                c.query_row("SELECT paused FROM job_state WHERE name = ?1", [job], |r| {
                    r.get::<_, bool>(0)
                })
                .optional()?
                .unwrap_or(false),
            )
        })
    }
}

fn finish_on(
    c: &rusqlite::Connection,
    id: i64,
    state: RunState,
    counts: &RunCounts,
    error: Option<&str>,
) -> rusqlite::Result<()> {
    let counted = format!(
        "fetched {}, appended {}, dead-lettered {}, ticks skipped {}",
        counts.fetched, counts.logged, counts.failed, counts.ticks_skipped
    );
    events::add_event(c, id, &counted, true)?;
    let ended = match error {
        Some(e) => format!("ended: {}: {e}", state.as_str()),
        None => format!("ended: {}", state.as_str()),
    };
    events::add_event(c, id, &ended, true)?;
    c.execute(
        "UPDATE runs SET state = ?2, ended_ms = ?3, fetched = ?4, logged = ?5,
            failed = ?6, ticks_skipped = ?7, error = ?8
         WHERE id = ?1",
        params![
            id,
            state.as_str(),
            now_ms(),
            counts.fetched as i64,
            counts.logged as i64,
            counts.failed as i64,
            counts.ticks_skipped as i64,
            error
        ],
    )
    .map(|_| ())
}

/// A queued run of a slot that already used `attempts`: its attempts go on
/// from there (a queued run's `attempts` are those spent before it).
fn queue_retry(
    c: &rusqlite::Connection,
    of: i64,
    job: &str,
    scheduled_ms: i64,
    attempts: u32,
) -> rusqlite::Result<i64> {
    c.execute(
        "INSERT INTO runs (job, scheduled_ms, state, attempts) VALUES (?1, ?2, 'queued', ?3)",
        params![job, scheduled_ms, attempts],
    )?;
    let id = c.last_insert_rowid();
    let line = format!("queued again: run {of} was interrupted after {attempts} attempt(s)");
    events::add_event(c, id, &line, false)?;
    Ok(id)
}

fn runs_matching(
    c: &rusqlite::Connection,
    filter: &str,
    args: impl rusqlite::Params,
) -> rusqlite::Result<Vec<RunRecord>> {
    let mut stmt = c.prepare(&format!(
        "SELECT id, job, scheduled_ms, started_ms, ended_ms, state, attempts,
                fetched, logged, failed, ticks_skipped, error
         FROM runs WHERE {filter}"
    ))?;
    let rows = stmt.query_map(args, |r| {
        let state: String = r.get(5)?;
        Ok(RunRecord {
            id: r.get(0)?,
            job: r.get(1)?,
            scheduled_ms: r.get(2)?,
            started_ms: r.get(3)?,
            ended_ms: r.get(4)?,
            state: RunState::parse(&state),
            attempts: r.get(6)?,
            counts: RunCounts {
                fetched: r.get::<_, i64>(7)? as u64,
                logged: r.get::<_, i64>(8)? as u64,
                failed: r.get::<_, i64>(9)? as u64,
                ticks_skipped: r.get::<_, i64>(10)? as u64,
            },
            error: r.get(11)?,
        })
    })?;
    rows.collect()
}

#[cfg(test)]
mod tests;
