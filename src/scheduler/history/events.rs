//! What each run did, step by step (queued, attempts started and failed,
//! counts, the outcome), as lines kept beside the run in `run_events`; a
//! run's page of the history (`jobs runs`, the API); and cancelling queued
//! runs. The lines are bounded: at most [`MAX_EVENTS`] per run (the end's
//! lines are always kept) and [`MAX_EVENT_CHARS`] characters each.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{History, HistoryError, RunRecord, RunState, runs_matching};
use crate::clock::now_ms;

/// Lines kept per run, beyond which only the end's lines are written.
pub const MAX_EVENTS: i64 = 100;
/// A line's length at most, in characters (a longer one ends in `…`).
pub const MAX_EVENT_CHARS: usize = 1000;

/// One line of a run's story.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunEvent {
    pub at_ms: i64,
    pub text: String,
}

/// Creates the events table in a history of any age (a history from
/// before it simply has no lines for its older runs).
pub(super) fn migrate(c: &rusqlite::Connection) -> rusqlite::Result<()> {
    c.execute_batch(
        "CREATE TABLE IF NOT EXISTS run_events (
            run INTEGER NOT NULL,
            seq INTEGER NOT NULL,
            at_ms INTEGER NOT NULL,
            text TEXT NOT NULL,
            PRIMARY KEY (run, seq)
         ) WITHOUT ROWID;",
    )
}

/// Adds a line to run `run`'s story; past [`MAX_EVENTS`] only a `last`
/// line (how the run ended) is written.
pub(super) fn add_event(
    c: &rusqlite::Connection,
    run: i64,
    text: &str,
    last: bool,
) -> rusqlite::Result<()> {
    let (n, next): (i64, i64) = c.query_row(
        "SELECT count(*), coalesce(max(seq) + 1, 0) FROM run_events WHERE run = ?1",
        [run],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if n >= MAX_EVENTS && !last {
        return Ok(());
    }
    c.execute(
        "INSERT INTO run_events (run, seq, at_ms, text) VALUES (?1, ?2, ?3, ?4)",
        params![run, next, now_ms(), cut(text)],
    )?;
    Ok(())
}

fn cut(text: &str) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(MAX_EVENT_CHARS) {
        None => text.into(),
        Some((at, _)) => {
            let keep = text[..at].char_indices().last().map_or(0, |(i, _)| i);
            format!("{}…", &text[..keep]).into()
        }
    }
}

/// One page of a job's runs, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunsPage {
    pub runs: Vec<RunRecord>,
    /// The `before` of the next page; `None` on the last page.
    pub next_before: Option<i64>,
}

/// What cancelling did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cancelled {
    /// This many queued runs are cancelled.
    Runs(u64),
    /// No run of the job has this id.
    NotFound,
    /// The run is not queued (running, or ended): nothing to cancel.
    NotQueued(RunState),
}

impl History {
    /// Up to `limit` runs of `job` with ids below `before`, newest first.
    pub fn runs_page(
        &self,
        job: &str,
        limit: usize,
        before: Option<i64>,
    ) -> Result<RunsPage, HistoryError> {
        let before = before.unwrap_or(i64::MAX);
        let mut runs = self.with(|c| {
            runs_matching(
                c,
                "job = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3",
                params![job, before, limit as i64 + 1],
            )
        })?;
        let more = runs.len() > limit;
        runs.truncate(limit);
        let next_before = if more {
            runs.last().map(|r| r.id)
        } else {
            None
        };
        Ok(RunsPage { runs, next_before })
    }

    /// Run `id` of `job`, with its story, if there is one.
    pub fn run_with_events(
        &self,
        job: &str,
        id: i64,
    ) -> Result<Option<(RunRecord, Vec<RunEvent>)>, HistoryError> {
        self.with(|c| {
            let Some(run) = runs_matching(c, "job = ?1 AND id = ?2", params![job, id])?.pop()
            else {
                return Ok(None);
            };
            let mut stmt =
                c.prepare_cached("SELECT at_ms, text FROM run_events WHERE run = ?1 ORDER BY seq")?;
            let events = stmt
                .query_map([id], |r| {
                    Ok(RunEvent {
                        at_ms: r.get(0)?,
                        text: r.get(1)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Some((run, events)))
        })
    }

    /// Adds a line to a run's story.
    pub fn event(&self, run: i64, text: &str) -> Result<(), HistoryError> {
        self.with(|c| add_event(c, run, text, false))
    }

    /// Cancels run `id` of `job` if it is queued: it becomes `cancelled`
    /// and no scheduler starts it, now or after a restart. A running run is
    /// not stopped (see `jobs cancel --help`).
    pub fn cancel_run(&self, job: &str, id: i64, why: &str) -> Result<Cancelled, HistoryError> {
        self.with(|c| {
            // Immediate: the write lock first, so a concurrent writer waits
            // (busy timeout) instead of failing on a read lock's upgrade.
            let tx =
                rusqlite::Transaction::new_unchecked(c, rusqlite::TransactionBehavior::Immediate)?;
            let state: Option<String> = tx
                .query_row(
                    "SELECT state FROM runs WHERE job = ?1 AND id = ?2",
                    params![job, id],
                    |r| r.get(0),
                )
                .optional()?;
            let out = match state.as_deref().map(RunState::parse) {
                None => Cancelled::NotFound,
                Some(RunState::Queued) => {
                    cancel_on(&tx, id, why)?;
                    Cancelled::Runs(1)
                }
                Some(other) => Cancelled::NotQueued(other),
            };
            tx.commit()?;
            Ok(out)
        })
    }

    /// Cancels every queued run of `job`; how many.
    pub fn cancel_queued(&self, job: &str, why: &str) -> Result<u64, HistoryError> {
        self.with(|c| {
            // Immediate: the write lock first, so a concurrent writer waits
            // (busy timeout) instead of failing on a read lock's upgrade.
            let tx =
                rusqlite::Transaction::new_unchecked(c, rusqlite::TransactionBehavior::Immediate)?;
            let ids: Vec<i64> = tx
                .prepare("SELECT id FROM runs WHERE job = ?1 AND state = 'queued'")?
                .query_map([job], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            for id in &ids {
                cancel_on(&tx, *id, why)?;
            }
            tx.commit()?;
            Ok(ids.len() as u64)
        })
    }
}

fn cancel_on(c: &rusqlite::Connection, id: i64, why: &str) -> rusqlite::Result<()> {
    c.execute(
        "UPDATE runs SET state = 'cancelled', ended_ms = ?2, error = ?3
         WHERE id = ?1 AND state = 'queued'",
        params![id, now_ms(), why],
    )?;
    add_event(c, id, why, true)
}

#[cfg(test)]
mod tests {
    use super::super::RunCounts;
    use super::*;
    use std::time::Duration;

    fn history() -> (tempfile::TempDir, History) {
        let dir = tempfile::tempdir().unwrap();
        let h = History::open(&dir.path().join("scheduler.db")).unwrap();
        (dir, h)
    }

    #[test]
    fn pages_of_runs_go_back_in_time_to_the_first() {
        let (_d, h) = history();
        let ids: Vec<i64> = (0..7)
            .map(|i| h.add("j", i, RunState::Queued).unwrap())
            .collect();
        h.add("other", 1, RunState::Queued).unwrap();
        let first = h.runs_page("j", 3, None).unwrap();
        let shown: Vec<i64> = first.runs.iter().map(|r| r.id).collect();
        assert_eq!(shown, [ids[6], ids[5], ids[4]]);
        assert_eq!(first.next_before, Some(ids[4]));
        let second = h.runs_page("j", 3, first.next_before).unwrap();
        assert_eq!(second.next_before, Some(ids[1]));
        let last = h.runs_page("j", 3, second.next_before).unwrap();
        assert_eq!(last.runs.iter().map(|r| r.id).collect::<Vec<_>>(), [ids[0]]);
        assert_eq!(last.next_before, None);
        // A page that ends exactly at the first run says there is no more.
        assert_eq!(h.runs_page("j", 7, None).unwrap().next_before, None);
    }

    #[test]
    fn a_run_tells_its_story_within_bounds() {
        let (_d, h) = history();
        let id = h.add("j", 1, RunState::Queued).unwrap();
        h.start_attempt(id, 1).unwrap();
        h.attempt_failed(id, 1, "HTTP 503 from the source", Duration::from_secs(30))
            .unwrap();
        h.start_attempt(id, 2).unwrap();
        let counts = RunCounts {
            fetched: 20,
            logged: 19,
            failed: 1,
            ticks_skipped: 0,
        };
        h.finish(id, RunState::Success, &counts, None).unwrap();
        let (run, events) = h.run_with_events("j", id).unwrap().unwrap();
        assert_eq!(run.state, RunState::Success);
        let texts: Vec<&str> = events.iter().map(|e| e.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "queued",
                "attempt 1 started",
                "attempt 1 failed: HTTP 503 from the source; retrying in 30s",
                "attempt 2 started",
                "fetched 20, appended 19, dead-lettered 1, ticks skipped 0",
                "ended: success",
            ]
        );
        assert!(h.run_with_events("other", id).unwrap().is_none());

        // A run that fails on and on keeps its first lines and its end.
        let id = h.add("j", 2, RunState::Queued).unwrap();
        for n in 1..=300 {
            h.start_attempt(id, n).unwrap();
            h.attempt_failed(id, n, &"e".repeat(5000), Duration::from_secs(1))
                .unwrap();
        }
        h.finish(id, RunState::Failed, &RunCounts::default(), Some("gave up"))
            .unwrap();
        let (_, events) = h.run_with_events("j", id).unwrap().unwrap();
        assert_eq!(events.len() as i64, MAX_EVENTS + 2);
        assert!(
            events
                .iter()
                .all(|e| e.text.chars().count() <= MAX_EVENT_CHARS)
        );
        assert_eq!(events.last().unwrap().text, "ended: failed: gave up");
    }

    #[test]
    fn only_queued_runs_are_cancelled_and_never_start() {
        let (_d, h) = history();
        let a = h.add("j", 1, RunState::Queued).unwrap();
        let b = h.add("j", 2, RunState::Queued).unwrap();
        let c = h.add("j", 3, RunState::Queued).unwrap();
        h.start_attempt(c, 1).unwrap();
        assert_eq!(
            h.cancel_run("j", a, "cancelled").unwrap(),
            Cancelled::Runs(1)
        );
        assert_eq!(
            h.cancel_run("j", c, "cancelled").unwrap(),
            Cancelled::NotQueued(RunState::Running)
        );
        assert_eq!(
            h.cancel_run("other", b, "cancelled").unwrap(),
            Cancelled::NotFound
        );
        assert_eq!(
            h.cancel_run("j", 999, "cancelled").unwrap(),
            Cancelled::NotFound
        );
        assert_eq!(h.next_queued("j").unwrap().unwrap().id, b);
        assert_eq!(h.cancel_queued("j", "cancelled").unwrap(), 1);
        assert!(h.next_queued("j").unwrap().is_none());
        let runs = h.runs("j", 10).unwrap();
        assert_eq!(runs[2].state, RunState::Cancelled);
        assert_eq!(runs[1].state, RunState::Cancelled);
        assert!(runs[1].started_ms.is_none() && runs[1].ended_ms.is_some());
        // A start that comes after a cancel (a scheduler that looked just
        // before) does not bring the run back.
        assert!(!h.start_attempt(a, 1).unwrap());
        assert_eq!(
            h.run_with_events("j", a).unwrap().unwrap().0.state,
            RunState::Cancelled
        );
    }

    /// A history written before run events and cancelling: its runs read
    /// as they were, with no lines, and it takes new ones.
    #[test]
    fn a_history_from_before_events_keeps_working() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scheduler.db");
        {
            let old = rusqlite::Connection::open(&path).unwrap();
            old.execute_batch(
                "CREATE TABLE job_state (name TEXT PRIMARY KEY, paused INTEGER NOT NULL DEFAULT 0);
                 CREATE TABLE runs (
                    id INTEGER PRIMARY KEY, job TEXT NOT NULL, scheduled_ms INTEGER NOT NULL,
                    started_ms INTEGER, ended_ms INTEGER, state TEXT NOT NULL,
                    attempts INTEGER NOT NULL DEFAULT 0, fetched INTEGER NOT NULL DEFAULT 0,
                    logged INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0,
                    ticks_skipped INTEGER NOT NULL DEFAULT 0, error TEXT);
                 INSERT INTO runs (job, scheduled_ms, started_ms, ended_ms, state, attempts, fetched, logged)
                    VALUES ('j', 1, 2, 3, 'success', 1, 5, 5);
                 INSERT INTO runs (job, scheduled_ms, state) VALUES ('j', 4, 'queued');",
            )
            .unwrap();
        }
        let h = History::open(&path).unwrap();
        let (run, events) = h.run_with_events("j", 1).unwrap().unwrap();
        assert_eq!((run.state, run.counts.fetched), (RunState::Success, 5));
        assert!(events.is_empty());
        assert_eq!(h.cancel_queued("j", "cancelled").unwrap(), 1);
        let (run, events) = h.run_with_events("j", 2).unwrap().unwrap();
        assert_eq!(run.state, RunState::Cancelled);
        assert_eq!(events.len(), 1);
    }
}
