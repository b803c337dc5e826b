//! The scheduler's loop: one active run per job, shutdown, a locked or
//! deleted history, runs interrupted by a crash or a shutdown retried.

use super::*;
use crate::clock::now_ms;
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

#[tokio::test]
async fn a_daily_slot_falls_due_when_the_injected_clock_reaches_it() {
    let dir = tempfile::tempdir().unwrap();
    let (history, log) = setup(dir.path()).await;
    let mut daily = job(Duration::from_millis(100));
    daily.schedule = Schedule::parse("0 3 * * *", None).unwrap();
    // 2030-01-01 02:59:59 UTC: years from the real clock, so a run at a
    // 03:00 slot can only come from this clock.
    let three_am = 1_893_466_800_000_i64;
    let (clock, hand) = Clock::manual(three_am - 1_000);
    let shutdown = CancellationToken::new();
    let scheduler = Scheduler::new(
        vec![daily],
        history.clone(),
        log,
        Arc::new(Stats::default()),
    )
    .with_clock(clock);
    let health = scheduler.health();
    let running = tokio::spawn(scheduler.run(shutdown.clone()));
    until(10, "the scheduler plans", || {
        matches!(health.get(), SchedulerState::Running)
    })
    .await;
    assert!(history.runs("random_users", 10).unwrap().is_empty());

    hand.advance(Duration::from_millis(1_500));
    until(10, "the 03:00 run", || {
        let runs = history.runs("random_users", 10).unwrap();
        runs.len() == 1 && runs[0].state == RunState::Success
    })
    .await;
    hand.advance(Duration::from_secs(86_400));
    until(10, "the next day's run", || {
        let runs = history.runs("random_users", 10).unwrap();
        runs.len() == 2 && runs.iter().all(|r| r.state == RunState::Success)
    })
    .await;
    let slots: Vec<i64> = history
        .runs("random_users", 10)
        .unwrap()
        .iter()
        .map(|r| r.scheduled_ms)
        .collect();
    assert_eq!(slots, [three_am + 86_400_000, three_am]);
    shutdown.cancel();
    running.await.unwrap().unwrap();
}
