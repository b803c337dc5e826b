//! `serve` when things go wrong around it: another process holding the run
//! history's lock (readiness drops, the scheduler waits and recovers), a
//! `kill -9` in the middle of a run (the slot is run again at the next
//! start, within the job's retries), a second `serve` on the same data dir
//! (refused, naming the first one's pid), the history file deleted under a
//! running `serve`, and a processor that fails (serve stops with exit 1).

use std::time::{Duration, Instant};

use crate::dashboard::{Serve, http, serve};
use crate::support::{Sandbox, stderr, terminate};

/// The runs of `job`, newest first, as `jobs runs --json` prints them.
fn runs(s: &Sandbox, job: &str) -> Vec<serde_json::Value> {
    let out = s.run(&["jobs", "runs", job, "--json", "--limit", "500"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn successes(runs: &[serde_json::Value]) -> usize {
    runs.iter().filter(|r| r["state"] == "success").count()
}

/// Polls until `check` holds, failing with `what` after `within`.
fn wait_for(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn readyz(port: u16) -> (u16, String) {
    http(port, "GET", "/readyz", &[], "")
}

/// Waits for `serve` to exit by itself; kills it and fails after `within`.
fn exit_code(serve: &mut Serve, within: Duration) -> Option<i32> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = serve.child.0.try_wait().unwrap() {
            return status.code();
        }
        if Instant::now() > deadline {
            let _ = serve.child.0.kill();
            let _ = serve.child.0.wait();
            panic!("serve did not exit: {}", serve.all_output());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Another process holds a write transaction on `scheduler.db` for 14 s
/// (longer than any busy timeout): `/readyz` says not ready and why while it
/// lasts, `serve` keeps running, and once the lock is gone the scheduler
/// goes on by itself: ready again, runs succeed again.
#[test]
fn a_locked_run_history_makes_serve_unready_until_it_is_released() {
    let s = Sandbox::new();
    std::fs::write(
        s.dir.path().join("tributary.toml"),
        r#"
[[jobs]]
name = "often"
schedule = "@every 1s"
burst = { duration = "300ms", interval = "100ms", records = 1 }
"#,
    )
    .unwrap();
    let mut serve = serve(&s, &[], &[]);
    let port = serve.port;
    wait_for(Duration::from_secs(30), "ready", || readyz(port).0 == 200);
    wait_for(Duration::from_secs(30), "a first run", || {
        successes(&runs(&s, "often")) >= 1
    });

    let holder = rusqlite::Connection::open(s.data_dir().join("scheduler.db")).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let locked_at = Instant::now();
    let mut unready = Vec::new();
    while locked_at.elapsed() < Duration::from_secs(14) {
        let (status, body) = readyz(port);
        if status == 503 {
            if unready.is_empty() {
                // The status view has the error itself.
                let s = crate::dashboard::get_json(port, "/api/v1/status", &[]);
                assert_eq!(s["scheduler"]["state"], "retrying", "{s}");
                let error = s["scheduler"]["error"].as_str().unwrap();
                assert!(error.contains("locked"), "{s}");
            }
            unready.push(body);
        }
        assert!(
            serve.child.0.try_wait().unwrap().is_none(),
            "serve exited while the history was locked: {}",
            serve.all_output()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (status, body) = readyz(port);
    assert_eq!(status, 503, "still locked after 14 s, yet ready: {body}");
    holder.execute_batch("COMMIT").unwrap();
    drop(holder);
    assert!(
        !unready.is_empty(),
        "never unready while the history was locked"
    );
    assert!(
        unready.iter().any(|b| b.contains("scheduler")),
        "readyz does not say why: {unready:?}"
    );

    let before = successes(&runs(&s, "often"));
    wait_for(Duration::from_secs(20), "ready after the lock", || {
        readyz(port).0 == 200
    });
    wait_for(Duration::from_secs(20), "a run after the lock", || {
        successes(&runs(&s, "often")) > before
    });
    terminate(&serve.child.0);
    assert_eq!(exit_code(&mut serve, Duration::from_secs(30)), Some(0));
    let output = serve.all_output();
    assert!(output.contains("locked"), "no warning: {output}");
}

const SLOW_JOB: &str = r#"
[[jobs]]
name = "slow"
schedule = "0 0 1 1 *"
burst = { duration = "4s", interval = "100ms", records = 1 }
retries = 2
retry_delay = "1s"
"#;

/// `kill -9` during a run of a job with retries: the next `serve` marks the
/// run interrupted and runs its slot again, counting the interrupted attempt.
#[test]
fn a_run_killed_with_serve_is_retried_at_the_next_start() {
    let s = Sandbox::new();
    std::fs::write(s.dir.path().join("tributary.toml"), SLOW_JOB).unwrap();
    let mut first = serve(&s, &[], &[]);
    assert!(s.run(&["jobs", "trigger", "slow"]).status.success());
    wait_for(Duration::from_secs(30), "the run to log users", || {
        let r = runs(&s, "slow");
        r[0]["state"] == "running" && r[0]["logged"].as_u64().unwrap() > 0
    });
    first.child.0.kill().unwrap(); // SIGKILL
    first.child.0.wait().unwrap();

    let mut second = serve(&s, &[], &[]);
    wait_for(Duration::from_secs(30), "the retried run", || {
        successes(&runs(&s, "slow")) == 1
    });
    let r = runs(&s, "slow");
    assert_eq!(r.len(), 2, "{r:?}");
    let (retried, interrupted) = (&r[0], &r[1]);
    assert_eq!(interrupted["state"], "interrupted", "{r:?}");
    assert_eq!(interrupted["attempts"], 1, "{r:?}");
    assert_eq!(retried["state"], "success", "{r:?}");
    assert_eq!(
        retried["attempts"], 2,
        "the interrupted attempt counts: {r:?}"
    );
    assert_eq!(
        retried["scheduled_ms"], interrupted["scheduled_ms"],
        "{r:?}"
    );
    assert_eq!(retried["logged"], 40, "{r:?}");
    terminate(&second.child.0);
    assert_eq!(exit_code(&mut second, Duration::from_secs(30)), Some(0));
    // Every user either attempt logged is stored: the kill lost nothing.
    let report = crate::support::verified(&s, &[]);
    assert_eq!(report["present"], report["log_ids"], "{report}");
}

/// A run whose retries are spent when it is interrupted stays interrupted.
#[test]
fn a_run_killed_on_its_last_attempt_is_not_retried() {
    let s = Sandbox::new();
    std::fs::write(
        s.dir.path().join("tributary.toml"),
        SLOW_JOB.replace("retries = 2", "retries = 0"),
    )
    .unwrap();
    let mut first = serve(&s, &[], &[]);
    assert!(s.run(&["jobs", "trigger", "slow"]).status.success());
    wait_for(Duration::from_secs(30), "the run to start", || {
        runs(&s, "slow")[0]["state"] == "running"
    });
    first.child.0.kill().unwrap();
    first.child.0.wait().unwrap();

    let mut second = serve(&s, &[], &[]);
    wait_for(
        Duration::from_secs(30),
        "the run marked interrupted",
        || runs(&s, "slow")[0]["state"] == "interrupted",
    );
    // Give a wrongly queued retry the time to show.
    std::thread::sleep(Duration::from_secs(1));
    let r = runs(&s, "slow");
    assert_eq!(r.len(), 1, "{r:?}");
    terminate(&second.child.0);
    assert_eq!(exit_code(&mut second, Duration::from_secs(30)), Some(0));
    assert!(
        second.all_output().contains("retries"),
        "the log does not say why it was not retried"
    );
}

/// Two `serve`s on one data dir would run every slot twice: the second is
/// refused with the first one's pid, even after the lock file was deleted.
/// A `serve` killed with SIGKILL leaves its lock file behind, which does not
/// stop the next one.
#[test]
fn a_second_serve_on_the_same_data_dir_is_refused() {
    let s = Sandbox::new();
    std::fs::write(s.dir.path().join("tributary.toml"), SLOW_JOB).unwrap();
    let mut first = serve(&s, &[], &[]);
    let mut second = s.cmd(&["serve"]).spawn_output();
    let code = second.wait_within(Duration::from_secs(30));
    let err = second.stderr();
    assert_eq!(code, Some(1), "{err}");
    let pid = first.child.0.id();
    assert!(
        err.contains(&format!("another tributary serve (pid {pid}) is using")),
        "{err}"
    );
    assert!(err.contains(&s.data_dir().display().to_string()), "{err}");

    // The lock file deleted under it: it locks a new one, so a later
    // `serve` is still refused rather than running beside it.
    std::fs::remove_file(s.data_dir().join("serve.lock")).unwrap();
    wait_for(Duration::from_secs(10), "serve.lock again", || {
        s.data_dir().join("serve.lock").exists()
    });
    let mut again = s.cmd(&["serve"]).spawn_output();
    let code = again.wait_within(Duration::from_secs(30));
    let err = again.stderr();
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(&format!("(pid {pid})")), "{err}");
    assert!(first.child.0.try_wait().unwrap().is_none());
    assert_eq!(readyz(first.port).0, 200);

    first.child.0.kill().unwrap();
    first.child.0.wait().unwrap();
    assert!(s.data_dir().join("serve.lock").exists());
    let mut third = serve(&s, &[], &[]);
    wait_for(Duration::from_secs(30), "ready", || {
        readyz(third.port).0 == 200
    });
    terminate(&third.child.0);
    assert_eq!(exit_code(&mut third, Duration::from_secs(30)), Some(0));
}

/// `scheduler.db` deleted under a running `serve`: what `jobs trigger`
/// writes from now on goes to a new file the running scheduler would never
/// read, so `serve` stops with exit 1 and says which file went away.
#[test]
fn a_run_history_deleted_under_serve_stops_it() {
    let s = Sandbox::new();
    std::fs::write(s.dir.path().join("tributary.toml"), SLOW_JOB).unwrap();
    let mut serve = serve(&s, &[], &[]);
    wait_for(Duration::from_secs(30), "ready", || {
        readyz(serve.port).0 == 200
    });
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(s.data_dir().join(format!("scheduler.db{suffix}")));
    }
    let code = exit_code(&mut serve, Duration::from_secs(30));
    let output = serve.all_output();
    assert_eq!(code, Some(1), "{output}");
    assert!(output.contains("scheduler.db"), "{output}");
}

/// A processor that fails (here: its offsets file locked by another process
/// for longer than the busy timeout) stops `serve` with exit 1 and the error,
/// rather than leaving the scheduler and the dashboard running without it.
#[test]
fn a_failed_processor_stops_serve_with_exit_1() {
    let s = Sandbox::new();
    std::fs::write(s.dir.path().join("tributary.toml"), SLOW_JOB).unwrap();
    let mut serve = serve(&s, &[], &[]);
    wait_for(Duration::from_secs(30), "ready", || {
        readyz(serve.port).0 == 200
    });
    let holder = rusqlite::Connection::open(s.data_dir().join("log.db.offsets")).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    assert!(s.run(&["jobs", "trigger", "slow"]).status.success());
    let code = exit_code(&mut serve, Duration::from_secs(40));
    holder.execute_batch("ROLLBACK").unwrap();
    let output = serve.all_output();
    assert_eq!(code, Some(1), "{output}");
    assert!(output.contains("processor failed"), "{output}");
}

/// A child whose output is collected on threads, so a full pipe never
/// blocks it.
struct Collected {
    child: crate::support::Reap,
    err: std::thread::JoinHandle<String>,
}

trait SpawnOutput {
    fn spawn_output(&mut self) -> Collected;
}

impl SpawnOutput for std::process::Command {
    fn spawn_output(&mut self) -> Collected {
        use std::io::Read;
        let mut child = self
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut pipe = child.stderr.take().unwrap();
        let err = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = pipe.read_to_string(&mut s);
            s
        });
        Collected {
            child: crate::support::Reap(child),
            err,
        }
    }
}

impl Collected {
    fn wait_within(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.0.try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.0.kill();
                let _ = self.child.0.wait();
                panic!("did not exit within {within:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stderr(self) -> String {
        self.err.join().unwrap()
    }
}
