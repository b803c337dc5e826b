//! Nothing lost without a word, nothing hung without a word: a replaced or
//! restored log or store, retention that outran the processor, a full disk,
//! absurd settings, and pages fetched twice — each ends with exactly the
//! rows of the log, or with an error and a count that say what was lost.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::support::{MockApi, Sandbox, distinct_ids, missing, run_within, stderr, verified};

/// The JSON summary a command printed last on stdout, whatever its exit.
fn summary(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no summary; stderr: {}", stderr(out)));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn remove_db(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}

fn copy_db(from: &Path, to: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let (mut f, mut t) = (from.as_os_str().to_owned(), to.as_os_str().to_owned());
        f.push(suffix);
        t.push(suffix);
        if Path::new(&f).exists() {
            std::fs::copy(&f, &t).unwrap();
        } else {
            let _ = std::fs::remove_file(&t);
        }
    }
}

#[test]
fn a_replaced_log_file_is_read_from_its_start_not_from_the_old_offset() {
    let s = Sandbox::new();
    s.run_json(&["run", "--records", "2000", "--seed", "3", "--json"]);
    // What an operator does after "database disk image is malformed".
    remove_db(&s.log_path());
    let second = s.run(&["run", "--records", "2000", "--seed", "4", "--json"]);
    assert!(second.status.success(), "{}", stderr(&second));
    assert!(
        stderr(&second).contains("committed against another log file"),
        "no warning about the replaced log: {}",
        stderr(&second)
    );
    let second = summary(&second);
    assert_eq!(second["stored"], 2000, "{second}");
    assert_eq!(s.count(), 4000);
    assert_eq!(verified(&s, &[])["present"], 2000);
}

#[test]
fn offset_reset_error_stops_a_group_whose_log_was_replaced() {
    let s = Sandbox::new();
    s.config("[log]\noffset_reset = \"error\"\n");
    s.run_json(&["run", "--records", "500", "--seed", "3", "--json"]);
    remove_db(&s.log_path());
    let out = s.run(&["run", "--records", "500", "--seed", "4"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("committed offset 500"), "{err}");
    assert!(err.contains("offset_reset"), "{err}");
}

#[test]
fn retention_that_outran_the_group_ends_process_with_the_loss_counted() {
    let s = Sandbox::new();
    s.config("[log]\nretention_messages = 500\n");
    // 2000 appended in pages of 1000; retention keeps the last 500.
    s.run_json(&["ingest", "--records", "2000", "--seed", "r", "--json"]);

    let out = run_within(&s, &["process", "--json"], Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let first = summary(&out);
    assert_eq!(first["lost_to_retention"], 1500, "{first}");
    assert_eq!(first["stored"], 500, "{first}");
    assert!(
        stderr(&out).contains("1500 messages were dropped"),
        "{}",
        stderr(&out)
    );

    let status = s.run(&["status", "--json"]);
    let status: serde_json::Value =
        serde_json::from_slice(&status.stdout).expect("status prints JSON");
    assert_eq!(status["lost_to_retention"], 1500, "{status}");
    assert_eq!(status["lag"], 0, "{status}");

    // The loss was reported once; the next look finds nothing new.
    let again = run_within(&s, &["process", "--json"], Duration::from_secs(60));
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(summary(&again)["lost_to_retention"], 0);
    // What the log still holds is all stored; the loss is shown.
    let report = verified(&s, &[]);
    assert_eq!(report["present"], 500, "{report}");
    assert_eq!(report["log"]["lost_to_retention"], 1500, "{report}");
}

#[test]
fn age_retention_past_an_idle_group_does_not_hang_process() {
    let s = Sandbox::new();
    s.config("[log]\nretention_age = \"1s\"\n");
    s.run_json(&["ingest", "--records", "1000", "--seed", "a", "--json"]);
    // Age-based retention needs the messages to age: this wait is the test.
    std::thread::sleep(Duration::from_millis(1500));
    // Looking does not drop anything; the next append does.
    let status = s.run(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["lag"], 1000, "{status}");
    s.run_json(&["ingest", "--records", "1", "--seed", "b", "--json"]);
    let out = run_within(&s, &["process", "--json"], Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(summary(&out)["lost_to_retention"], 1000);
    assert_eq!(s.count(), 1);
}

#[test]
fn a_run_that_loses_records_to_retention_fails_and_its_books_balance() {
    let s = Sandbox::new();
    s.config("[log]\nretention_messages = 1000\n");
    // A backlog the group never read, mostly dropped already.
    s.run_json(&["ingest", "--records", "3000", "--seed", "b", "--json"]);
    let out = run_within(
        &s,
        &["run", "--records", "500", "--seed", "c", "--json"],
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let sum = summary(&out);
    let lost = sum["lost_to_retention"].as_u64().unwrap();
    let stored = sum["stored"].as_u64().unwrap();
    assert!(lost >= 2000, "{sum}");
    assert_eq!(stored + lost, 3500, "{sum}");
    assert_eq!(sum["balanced"], true, "{sum}");
    assert_eq!(s.count(), stored);
}

#[test]
fn absurd_durations_are_refused_before_anything_runs() {
    let s = Sandbox::new();
    for (toml, key) in [
        (
            "[log]\nretention_age = \"300000000y\"\n",
            "log.retention_age",
        ),
        (
            "[source]\nurl = \"http://127.0.0.1:9/api/\"\nread_timeout = \"0s\"\n",
            "source.read_timeout",
        ),
        ("[processor]\nmax_outage = \"0s\"\n", "processor.max_outage"),
        ("[log]\noffset_reset = \"sometimes\"\n", "log.offset_reset"),
        (
            "[[jobs]]\nname = \"j\"\nschedule = \"@hourly\"\nburst = { duration = \"1m\", interval = \"1s\", records = 1000000 }\n",
            "jobs.burst.records",
        ),
    ] {
        let file = s.dir.path().join("bad.toml");
        std::fs::write(&file, toml).unwrap();
        let out = s.run(&["--config", file.to_str().unwrap(), "config", "check"]);
        assert_eq!(out.status.code(), Some(2), "{toml}: {}", stderr(&out));
        assert!(stderr(&out).contains(key), "{toml}: {}", stderr(&out));
    }
    let out = s.run(&["run", "--duration", "1m", "--interval", "1ns"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("between"), "{}", stderr(&out));
    let out = s.run(&[
        "run",
        "--duration",
        "1s",
        "--interval",
        "1s",
        "--per-tick",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(!s.store_path().exists(), "a refused run must not start");
}

#[test]
fn a_store_restored_from_an_older_copy_replays_from_its_own_position() {
    let s = Sandbox::new();
    s.run_json(&["run", "--records", "3000", "--seed", "old", "--json"]);
    let backup = s.dir.path().join("store-backup.db");
    copy_db(&s.store_path(), &backup);
    s.run_json(&["run", "--records", "3000", "--seed", "new", "--json"]);
    assert_eq!(s.count(), 6000);

    // The operator restores yesterday's store; the log's group offset is
    // past everything, but the store knows where its rows end.
    copy_db(&backup, &s.store_path());
    assert_eq!(distinct_ids(&s.store_path()), 3000);
    let out = s.run(&["process", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(summary(&out)["stored"], 3000);
    assert_eq!(s.count(), 6000);
    assert_eq!(verified(&s, &["--strict"])["present"], 6000);
}

#[test]
fn a_page_fetched_again_does_not_store_its_dead_letters_twice() {
    let s = Sandbox::new();
    let api = MockApi::start(&s, &["--malformed-rate", "0.1"]);
    let mut first_letters = None;
    for round in 0..3 {
        let out = s.run(&[
            "run",
            "--source",
            &api.base,
            "--records",
            "1000",
            "--seed",
            "dlq",
            "--json",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let sum = summary(&out);
        let rejected = sum["source_rejected"].as_u64().unwrap();
        assert!(rejected > 50, "round {round}: {sum}");
        first_letters.get_or_insert(rejected);
        let status = s.run(&["status", "--json"]);
        let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
        assert_eq!(
            status["dead_letters_waiting"].as_u64(),
            first_letters,
            "round {round}: {status}"
        );
    }
    let out = s.run(&["dlq", "list", "--json", "--limit", "1"]);
    let letter: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    let position = letter["source_position"].as_str().unwrap();
    assert!(position.contains("?seed=dlq#user-"), "{letter}");
    verified(&s, &["--strict"]);
}

/// A small tmpfs for the disk-full tests (root only, as CI is), unmounted
/// when dropped.
struct SmallDisk {
    dir: std::path::PathBuf,
}

impl SmallDisk {
    fn mount(s: &Sandbox, size: &str) -> Option<SmallDisk> {
        let dir = s.dir.path().join("small");
        std::fs::create_dir_all(&dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .is_ok_and(|st| st.success());
        ok.then_some(SmallDisk { dir })
    }

    fn grow(&self, size: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.dir)
            .status()
            .unwrap();
        assert!(st.success(), "remount failed");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

#[test]
fn a_full_disk_ends_run_with_its_error_and_a_rerun_stores_exactly_n() {
    let s = Sandbox::new();
    let Some(disk) = SmallDisk::mount(&s, "4m") else {
        missing(
            "a_full_disk_ends_run_with_its_error_and_a_rerun_stores_exactly_n",
            "cannot mount a tmpfs (needs root)",
        );
        return;
    };
    let data = disk.dir.join("data");
    let data = data.to_str().unwrap();
    let out = run_within(
        &s,
        &[
            "--data-dir",
            data,
            "run",
            "--records",
            "20000",
            "--seed",
            "full",
        ],
        Duration::from_secs(120),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    let first_error = err
        .lines()
        .find(|l| l.starts_with("error"))
        .unwrap_or_else(|| panic!("no error line: {err}"));
    assert!(first_error.contains("full"), "{first_error}");

    disk.grow("200m");
    let out = run_within(
        &s,
        &[
            "--data-dir",
            data,
            "run",
            "--records",
            "20000",
            "--seed",
            "full",
            "--json",
        ],
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        distinct_ids(&disk.dir.join("data").join("store.db")),
        20_000
    );
    assert_eq!(
        verified(&s, &["--data-dir", data, "--strict"])["present"],
        20_000
    );
}

#[test]
fn a_full_store_makes_process_give_up_after_max_outage_then_resume() {
    let s = Sandbox::new();
    let Some(disk) = SmallDisk::mount(&s, "1m") else {
        missing(
            "a_full_store_makes_process_give_up_after_max_outage_then_resume",
            "cannot mount a tmpfs (needs root)",
        );
        return;
    };
    s.config("[processor]\nmax_outage = \"2s\"\n");
    s.run_json(&["ingest", "--records", "10000", "--seed", "fs", "--json"]);
    let store = disk.dir.join("store.db");
    let sink = format!("sqlite:{}", store.display());
    let out = run_within(&s, &["process", "--sink", &sink], Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("gave up"), "{}", stderr(&out));
    assert!(stderr(&out).contains("full"), "{}", stderr(&out));

    disk.grow("100m");
    let out = run_within(&s, &["process", "--sink", &sink], Duration::from_secs(60));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(distinct_ids(&store), 10_000);
    assert_eq!(verified(&s, &["--sink", &sink])["present"], 10_000);
}

#[test]
fn an_older_copy_of_the_log_restored_and_written_again_is_not_trusted() {
    let s = Sandbox::new();
    s.run_json(&["run", "--records", "2000", "--seed", "1", "--json"]);
    let backup = s.dir.path().join("log-backup.db");
    copy_db(&s.log_path(), &backup);
    s.run_json(&["run", "--records", "2000", "--seed", "2", "--json"]);
    // The older copy has the same identity; new appends reuse its offsets
    // 2000..3999, up to the group's old commit.
    copy_db(&backup, &s.log_path());
    s.run_json(&["ingest", "--records", "2000", "--seed", "3", "--json"]);
    let out = s.run(&["process", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("restored from an older copy and written again"),
        "{}",
        stderr(&out)
    );
    assert_eq!(s.count(), 6000);
    assert_eq!(verified(&s, &[])["present"], 4000);
}

#[test]
fn a_deleted_store_is_refilled_from_the_log() {
    let s = Sandbox::new();
    s.run_json(&["run", "--records", "2000", "--seed", "1", "--json"]);
    remove_db(&s.store_path());
    let out = s.run(&["process", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("holds no position"),
        "{}",
        stderr(&out)
    );
    assert_eq!(summary(&out)["stored"], 2000);
    assert_eq!(verified(&s, &["--strict"])["present"], 2000);
}

#[test]
fn offset_reset_latest_skips_once_then_processes_what_comes_after() {
    let s = Sandbox::new();
    s.config("[log]\noffset_reset = \"latest\"\n");
    s.run_json(&["run", "--records", "1000", "--seed", "1", "--json"]);
    remove_db(&s.log_path());
    s.run_json(&["ingest", "--records", "1000", "--seed", "2", "--json"]);
    let skipped = s.run_json(&["process", "--json"]);
    assert_eq!(skipped["stored"], 0, "{skipped}");
    s.run_json(&["ingest", "--records", "500", "--seed", "3", "--json"]);
    let after = s.run_json(&["process", "--json"]);
    assert_eq!(after["stored"], 500, "{after}");
    assert_eq!(s.count(), 1500);
}

#[test]
fn a_store_deleted_under_a_running_run_fails_it() {
    let s = Sandbox::new();
    deleted_under_a_running_run(&s, |s| remove_db(&s.store_path()));
}

/// `rm log.db.offsets` alone: the WAL beside it stays, and the next commit
/// met whatever SQLite made of it ("no such table: group_offsets").
#[test]
fn an_offsets_file_deleted_under_a_running_run_fails_it() {
    let s = Sandbox::new();
    deleted_under_a_running_run(&s, |s| {
        std::fs::remove_file(s.data_dir().join("log.db.offsets")).unwrap()
    });
}

fn deleted_under_a_running_run(s: &Sandbox, delete: impl Fn(&Sandbox)) {
    let mut child = s
        .cmd(&[
            "run",
            "--records",
            "1000000",
            "--seed",
            "gone",
            "--batch-size",
            "500",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while crate::support::rows_now(&s.store_path()) < 1000 {
        assert!(Instant::now() < deadline, "no rows stored");
        std::thread::sleep(Duration::from_millis(20));
    }
    delete(s);
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("run went on writing into a deleted file");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("was deleted while in use"),
        "{}",
        stderr(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("not checked (the run failed)"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn a_malformed_user_fetched_with_another_page_size_is_one_dead_letter() {
    let s = Sandbox::new();
    let api = MockApi::start(&s, &["--malformed-rate", "0.1"]);
    let mut waiting = Vec::new();
    for batch in ["500", "250"] {
        let out = s.run(&[
            "run",
            "--source",
            &api.base,
            "--records",
            "1000",
            "--seed",
            "pages",
            "--batch-size",
            batch,
            "--json",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let status = s.run(&["status", "--json"]);
        let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
        waiting.push(status["dead_letters_waiting"].as_u64().unwrap());
    }
    assert!(waiting[0] > 50, "{waiting:?}");
    assert_eq!(waiting[0], waiting[1], "{waiting:?}");
}
