//! The ledger's classification of ids, against small hand-made logs,
//! stores and dead letters.

use super::*;

fn entry(partition: i32, offset: i64, id: Option<&str>, hash: i64) -> LogEntry {
    LogEntry {
        partition,
        offset,
        id: id.map(str::to_owned),
        hash,
    }
}

#[test]
fn every_class_is_counted_and_listed() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::create(dir.path()).unwrap();
    let path = ledger.path().to_path_buf();
    assert!(path.exists());
    ledger.set_committed(0, 8).unwrap();
    ledger.set_committed(1, 0).unwrap();
    ledger
        .add_log(&[
            entry(0, 0, Some("a"), 1),
            entry(0, 1, Some("a"), 1), // a harmless repeat
            entry(0, 2, Some("b"), 1),
            entry(0, 3, Some("b"), 2), // same id, another payload
            entry(0, 4, Some("lost"), 1),
            entry(0, 5, Some("poison"), 1),
            entry(0, 6, None, 0), // undecodable, with a letter
            entry(0, 7, None, 0), // undecodable, dropped silently
            entry(1, 0, Some("late"), 1),
            entry(1, 1, None, 0), // undecodable, not processed yet
        ])
        .unwrap();
    ledger
        .add_letters(&[
            LetterEntry {
                partition: 0,
                offset: 5,
                id: 10,
                waiting: true,
            },
            LetterEntry {
                partition: 0,
                offset: 6,
                id: 11,
                waiting: false,
            },
        ])
        .unwrap();
    ledger
        .add_store_ids(&["a".into(), "b".into(), "extra".into()])
        .unwrap();
    let c = ledger.reconcile().unwrap();
    assert_eq!(
        c,
        Counts {
            log_messages: 10,
            log_ids: 5,
            repeats: 1,
            conflicting_ids: 1,
            present: 2,
            dead_lettered: 1,
            missing: 1,
            pending: 1,
            undecodable: 3,
            undecodable_dead_lettered: 1,
            undecodable_lost: 1,
            undecodable_pending: 1,
            store_rows: 3,
            extra: 1,
        }
    );
    let mut missing = Vec::new();
    ledger
        .ids(IdList::Missing, None, |i| {
            missing.push(i);
            Ok(())
        })
        .unwrap();
    assert_eq!(
        missing,
        [IdAt {
            id: "lost".into(),
            partition: 0,
            offset: 4
        }]
    );
    let mut pending = Vec::new();
    ledger
        .ids(IdList::Pending, Some(5), |i| {
            pending.push(i.id);
            Ok(())
        })
        .unwrap();
    assert_eq!(pending, ["late"]);
    let mut extra = Vec::new();
    ledger
        .extra(None, |id| {
            extra.push(id);
            Ok(())
        })
        .unwrap();
    assert_eq!(extra, ["extra"]);
    let mut undecodable = Vec::new();
    ledger
        .undecodable(Some(2), |u| {
            undecodable.push(u);
            Ok(())
        })
        .unwrap();
    assert_eq!(
        undecodable,
        [
            Undecodable {
                partition: 0,
                offset: 6,
                dead_letter: Some(11),
                committed: true
            },
            Undecodable {
                partition: 0,
                offset: 7,
                dead_letter: None,
                committed: true
            },
        ]
    );
    drop(ledger);
    assert!(!path.exists(), "the scratch file is removed");
}

#[test]
fn scratch_files_of_dead_processes_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let live = Ledger::create(dir.path()).unwrap();
    // No process has pid 0 in /proc.
    let dead = dir.path().join(".verify-0-abc.db");
    let other = dir.path().join(".verify-notes.txt");
    std::fs::write(&dead, b"").unwrap();
    std::fs::write(&other, b"").unwrap();
    Ledger::remove_stale(dir.path());
    assert!(live.path().exists());
    assert!(other.exists());
    assert_eq!(dead.exists(), !Path::new("/proc/self").exists());
}

#[test]
fn a_replayed_letter_does_not_account_for_a_row_that_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::create(dir.path()).unwrap();
    ledger.set_committed(0, 2).unwrap();
    ledger
        .add_log(&[entry(0, 0, Some("x"), 1), entry(0, 1, Some("y"), 1)])
        .unwrap();
    // x: a letter that was replayed, and a waiting one from another
    // stage arriving later for y.
    ledger
        .add_letters(&[
            LetterEntry {
                partition: 0,
                offset: 0,
                id: 1,
                waiting: false,
            },
            LetterEntry {
                partition: 0,
                offset: 1,
                id: 2,
                waiting: false,
            },
            LetterEntry {
                partition: 0,
                offset: 1,
                id: 3,
                waiting: true,
            },
        ])
        .unwrap();
    let c = ledger.reconcile().unwrap();
    assert_eq!((c.missing, c.dead_lettered), (1, 1), "{c:?}");
}
