//! Run history and job state, persisted in `<data_dir>/scheduler.db`: every
//! run (queued, running, success, failed, skipped, interrupted) with its
//! times, counts and error, and which jobs are paused. The `jobs` commands
//! and `serve` share it, so they work with or without a running `serve`.

use std::path::Path;
use std::sync::Arc;

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use crate::pipeline::embedded::{self, Shared};

#[derive(Debug, thiserror::Error)]
#[error("run history: {0}")]
pub struct HistoryError(#[from] rusqlite::Error);

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
    pub attempts: u32,
    #[serde(flatten)]
    pub counts: RunCounts,
    pub error: Option<String>,
}

/// The scheduler's database. Cheap to clone.
#[derive(Debug, Clone)]
pub struct History {
    conn: Shared,
}

pub use crate::pipeline::log::now_ms;

impl History {
    pub fn open(path: &Path) -> Result<History, HistoryError> {
        let conn = embedded::open(path, false)?;
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
             CREATE INDEX IF NOT EXISTS runs_by_job ON runs (job, id);",
        )?;
        Ok(History {
            conn: Arc::new(std::sync::Mutex::new(conn)),
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>,
    ) -> Result<T, HistoryError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        Ok(f(&conn)?)
    }

    /// Runs left `running` by a crash become `interrupted`; returns how many.
    pub fn mark_interrupted(&self) -> Result<usize, HistoryError> {
        self.with(|c| {
            c.execute(
                "UPDATE runs SET state = 'interrupted', ended_ms = ?1,
                    error = coalesce(error, 'the process stopped during the run')
                 WHERE state = 'running'",
                [now_ms()],
            )
        })
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
        self.with(|c| {
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
        })
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
        self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT id, job, scheduled_ms, started_ms, ended_ms, state, attempts,
                        fetched, logged, failed, ticks_skipped, error
                 FROM runs WHERE job = ?1 {tail}"
            ))?;
            let rows = stmt.query_map([job], |r| {
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
        })
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
        assert_eq!(h.mark_interrupted().unwrap(), 1);
        let run = &h.runs("j", 1).unwrap()[0];
        assert_eq!(run.state, RunState::Interrupted);
        assert!(run.error.as_deref().unwrap().contains("stopped"));
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
