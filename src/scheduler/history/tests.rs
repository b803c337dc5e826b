//! The run history's own tests: a run's life, recovery, busy and replaced files, pause.
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
