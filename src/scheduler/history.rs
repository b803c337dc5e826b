//! Run history and job state, persisted in `<data_dir>/scheduler.db`: every
//! run (queued, running, success, failed, skipped, interrupted) with its
//! times, counts and error, and which jobs are paused. The `jobs` commands
//! and `serve` share it, so they work with or without a running `serve`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use crate::pipeline::embedded::{self, Shared, file_id};

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
        }
    }

    fn parse(s: &str) -> RunState {
        match s {
            "queued" => RunState::Queued,
            "running" => RunState::Running,
            "success" => RunState::Success,
            "failed" => RunState::Failed,
            "skipped" => RunState::Skipped,
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

pub use crate::pipeline::log::now_ms;

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
                Some(allowed) if run.attempts < allowed => {
                    Some(queue_retry(&tx, &run.job, run.scheduled_ms, run.attempts)?)
                }
                _ => None,
            };
            run.state = RunState::Interrupted;
            out.push(Interrupted { run, retry });
        }
        tx.commit()?;
        Ok(out)
    }

    /// Records a run in `state` (queued or skipped) and returns its id.
    pub fn add(&self, job: &str, scheduled_ms: i64, state: RunState) -> Result<i64, HistoryError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO runs (job, scheduled_ms, state) VALUES (?1, ?2, ?3)",
                params![job, scheduled_ms, state.as_str()],
            )?;
            Ok(c.last_insert_rowid())
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
            c.execute(
                "INSERT INTO runs (job, scheduled_ms, state)
                 SELECT ?1, max(?2, coalesce((SELECT max(scheduled_ms) + 1 FROM runs
                                             WHERE job = ?1), 0)), 'queued'",
                params![job, now_ms()],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    pub fn start(&self, id: i64, attempt: u32) -> Result<(), HistoryError> {
        self.with(|c| {
            c.execute(
                "UPDATE runs SET state = 'running', attempts = ?2,
                    started_ms = coalesce(started_ms, ?3)
                 WHERE id = ?1",
                params![id, attempt, now_ms()],
            )
            .map(|_| ())
        })
    }

    pub fn finish(
        &self,
        id: i64,
        state: RunState,
        counts: &RunCounts,
        error: Option<&str>,
    ) -> Result<(), HistoryError> {
        self.with(|c| finish_on(c, id, state, counts, error))
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
                Some(queue_retry(&tx, &job, scheduled_ms, attempts)?)
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

    /// The most recent runs of `job`, newest first.
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
    job: &str,
    scheduled_ms: i64,
    attempts: u32,
) -> rusqlite::Result<i64> {
    c.execute(
        "INSERT INTO runs (job, scheduled_ms, state, attempts) VALUES (?1, ?2, 'queued', ?3)",
        params![job, scheduled_ms, attempts],
    )?;
    Ok(c.last_insert_rowid())
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
mod tests {
    use super::*;

    fn history() -> (tempfile::TempDir, History) {
        let dir = tempfile::tempdir().unwrap();
        let h = History::open(&dir.path().join("scheduler.db")).unwrap();
        (dir, h)
    }

    #[test]
    fn a_run_goes_from_queued_to_success_with_its_counts() {
        let (_d, h) = history();
        let id = h.add("random_users", 1000, RunState::Queued).unwrap();
        assert_eq!(h.next_queued("random_users").unwrap().unwrap().id, id);
        h.start(id, 1).unwrap();
        let counts = RunCounts {
            fetched: 120,
            logged: 120,
            failed: 0,
            ticks_skipped: 0,
        };
        h.finish(id, RunState::Success, &counts, None).unwrap();
        let runs = h.runs("random_users", 10).unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].state, RunState::Success);
        assert_eq!(runs[0].counts, counts);
        assert!(runs[0].started_ms.is_some() && runs[0].ended_ms.is_some());
        assert!(h.next_queued("random_users").unwrap().is_none());
        assert_eq!(h.last_scheduled("random_users").unwrap(), Some(1000));
    }

    #[test]
    fn a_run_left_running_by_a_crash_is_interrupted_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scheduler.db");
        {
            let h = History::open(&path).unwrap();
            let id = h.add("j", 1, RunState::Queued).unwrap();
            h.start(id, 1).unwrap();
        } // the process "dies" here
        let h = History::open(&path).unwrap();
        let recovered = h.recover(|_| Some(1)).unwrap();
        assert_eq!(recovered.len(), 1);
        assert_eq!(recovered[0].retry, None, "its one attempt is spent");
        let run = &h.runs("j", 1).unwrap()[0];
        assert_eq!(run.state, RunState::Interrupted);
        assert!(run.error.as_deref().unwrap().contains("stopped"));
        // Done once: the next start finds nothing left running.
        assert!(h.recover(|_| Some(1)).unwrap().is_empty());
    }

    #[test]
    fn triggers_in_one_millisecond_get_slots_of_their_own() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::open(&dir.path().join("scheduler.db")).unwrap();
        let ids: Vec<i64> = (0..50).map(|_| h.trigger("j").unwrap()).collect();
        let runs = h.runs("j", 100).unwrap();
        let mut slots: Vec<i64> = runs.iter().map(|r| r.scheduled_ms).collect();
        slots.sort_unstable();
        slots.dedup();
        assert_eq!(slots.len(), ids.len(), "every trigger has its own slot");
    }

    #[test]
    fn an_interrupted_run_with_attempts_left_is_queued_again_with_its_attempts() {
        let (_d, h) = history();
        let a = h.add("a", 10, RunState::Queued).unwrap();
        h.start(a, 1).unwrap();
        let b = h.add("b", 20, RunState::Queued).unwrap();
        h.start(b, 1).unwrap();
        h.start(b, 2).unwrap(); // b's second attempt is under way
        let gone = h.add("gone", 30, RunState::Queued).unwrap();
        h.start(gone, 1).unwrap();
        let allowed = |job: &str| match job {
            "a" => Some(3),
            "b" => Some(2),
            _ => None, // no longer configured
        };
        let recovered = h.recover(allowed).unwrap();
        let retries: Vec<_> = recovered
            .iter()
            .map(|i| (i.run.id, i.retry.is_some()))
            .collect();
        assert_eq!(retries, [(a, true), (b, false), (gone, false)]);
        let queued = h.next_queued("a").unwrap().unwrap();
        assert_eq!(Some(queued.id), recovered[0].retry);
        assert_eq!((queued.scheduled_ms, queued.attempts), (10, 1));
        assert!(h.next_queued("b").unwrap().is_none());
        assert!(h.next_queued("gone").unwrap().is_none());
        // The slot counts as run, so the schedule does not run it again.
        assert_eq!(h.last_scheduled("a").unwrap(), Some(10));
    }

    #[test]
    fn a_run_interrupted_by_a_shutdown_may_be_queued_again() {
        let (_d, h) = history();
        let id = h.add("j", 5, RunState::Queued).unwrap();
        h.start(id, 2).unwrap();
        let counts = RunCounts {
            logged: 3,
            ..RunCounts::default()
        };
        let retry = h
            .interrupt(id, &counts, "stopped by shutdown", Some(2))
            .unwrap();
        let runs = h.runs("j", 10).unwrap();
        assert_eq!(runs[1].state, RunState::Interrupted);
        assert_eq!(runs[1].counts, counts);
        assert_eq!(Some(runs[0].id), retry);
        assert_eq!(
            (runs[0].state, runs[0].scheduled_ms, runs[0].attempts),
            (RunState::Queued, 5, 2)
        );
        let other = h.add("j", 6, RunState::Queued).unwrap();
        h.start(other, 1).unwrap();
        assert_eq!(h.interrupt(other, &counts, "stopped", None).unwrap(), None);
        // A run no longer running (recovered by another process, which
        // queued its retry) is not queued twice.
        assert_eq!(
            h.interrupt(other, &counts, "stopped", Some(1)).unwrap(),
            None
        );
    }

    #[test]
    fn busy_is_reported_as_such_after_the_busy_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scheduler.db");
        let h = History::open_with(&path, Duration::from_millis(100)).unwrap();
        let other = rusqlite::Connection::open(&path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let started = std::time::Instant::now();
        let e = h.add("j", 1, RunState::Queued).unwrap_err();
        assert!(e.is_busy(), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
        // Reads go on: WAL readers do not wait for writers.
        assert!(h.runs("j", 1).unwrap().is_empty());
        other.execute_batch("COMMIT").unwrap();
        h.add("j", 1, RunState::Queued).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_deleted_or_replaced_file_is_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scheduler.db");
        let h = History::open(&path).unwrap();
        h.check_file().unwrap();
        std::fs::remove_file(&path).unwrap();
        let e = h.check_file().unwrap_err();
        assert!(!e.is_busy());
        assert!(e.to_string().contains("scheduler.db"), "{e}");
        History::open(&path).unwrap(); // a new file at the same path
        assert!(h.check_file().is_err());
    }

    #[test]
    fn pause_persists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scheduler.db");
        History::open(&path).unwrap().set_paused("j", true).unwrap();
        let h = History::open(&path).unwrap();
        assert!(h.is_paused("j").unwrap());
        h.set_paused("j", false).unwrap();
        assert!(!h.is_paused("j").unwrap());
        assert!(!h.is_paused("never-seen").unwrap());
    }
}
