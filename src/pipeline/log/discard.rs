//! Dead letters set aside by an operator (`dlq discard`): which letters a
//! look selects ([`Letters`]), and the discard itself on both logs. A
//! discarded letter is kept for audit with the time and the reason; it is
//! not waiting any more, so no replay takes it and no count includes it.
//!
//! The embedded log marks the letter's row (`discarded_ms`,
//! `discard_reason`) and, at the first discard, raises the file's log
//! schema to [`embedded::LOG_SCHEMA_DISCARDS`], so an older tributary,
//! which would replay the letter, refuses the file instead. On Kafka the
//! dead-letter topic stays append-only: a marker message names the letter
//! (`kafka/dead_letter.rs`), as a replay's does.

use rusqlite::params;

use super::{Log, LogError};
use crate::clock::now_ms;
use crate::embedded;

/// Held while dead letters are replayed or discarded (see
/// [`Log::lock_letters`]).
#[derive(Debug)]
pub struct LettersLock {
    _file: Option<std::fs::File>,
}

/// Which dead letters a look selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Letters {
    /// Neither replayed nor discarded: what a replay takes.
    Waiting,
    /// Every letter, replayed and discarded ones too.
    All,
    /// Only the discarded ones.
    Discarded,
}

impl Letters {
    /// The `WHERE` condition (and its `AND`) of the embedded log's query.
    pub(super) fn sql_filter(self) -> &'static str {
        match self {
            Letters::Waiting => "replayed_ms IS NULL AND discarded_ms IS NULL AND",
            Letters::All => "",
            Letters::Discarded => "discarded_ms IS NOT NULL AND",
        }
    }

    pub(super) fn selects(self, replayed: bool, discarded: bool) -> bool {
        match self {
            Letters::Waiting => !replayed && !discarded,
            Letters::All => true,
            Letters::Discarded => discarded,
        }
    }
}

/// When and why a letter was discarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discarded {
    pub at_ms: i64,
    pub reason: Option<String>,
}

/// What a discard did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DiscardOutcome {
    /// Letters discarded by this call.
    pub discarded: u64,
    /// Asked-for ids that name no dead letter.
    pub not_found: Vec<i64>,
    /// Asked-for ids of letters replayed already (nothing to discard).
    pub already_replayed: Vec<i64>,
    /// Asked-for ids discarded before (left as they were, first reason kept).
    pub already_discarded: Vec<i64>,
}

/// What a discard takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discard {
    /// These letters.
    Ids(Vec<i64>),
    /// Every waiting letter.
    AllWaiting,
}

impl Log {
    /// Discards the letters `what` names with `reason`: each is kept, marked
    /// with the time and the reason, and leaves the waiting letters.
    pub async fn discard_dead_letters(
        &self,
        what: Discard,
        reason: Option<String>,
    ) -> Result<DiscardOutcome, LogError> {
        let _replays_wait = self.lock_letters().await?;
        let outcome = match self {
            Log::Sqlite(l) => sqlite_discard(l, what, reason).await?,
            Log::Kafka(l) => l.discard_dead_letters(what, reason).await?,
        };
        metrics::counter!(crate::telemetry::metrics::LOG_DEAD_LETTERS_DISCARDED.name)
            .increment(outcome.discarded);
        Ok(outcome)
    }

    /// The dead-letter lock: a replay holds it while it stores letters and
    /// a discard while it marks them, so no letter is both discarded and
    /// replayed. It is the operating system's lock on a file, and goes
    /// with the process: `<log file>.letters.lock` for the embedded log;
    /// for a Kafka topic, a file in the data dir named by a hash of the
    /// brokers and the topic, which keeps apart the processes that share
    /// the data dir (a replay and a discard run from two data dirs or two
    /// machines at once are not).
    pub async fn lock_letters(&self) -> Result<LettersLock, LogError> {
        let path = match self {
            Log::Sqlite(l) => {
                let file: Option<String> = embedded::blocking(l.connection(), |conn| {
                    Ok::<_, LogError>(conn.path().map(str::to_owned))
                })
                .await?;
                let Some(file) = file.filter(|f| !f.is_empty()) else {
                    // An in-memory log: one process, its own connection's lock.
                    return Ok(LettersLock { _file: None });
                };
                std::path::PathBuf::from(format!("{file}.letters.lock"))
            }
            Log::Kafka(l) => {
                let config = l.config();
                let name = format!("{}\0{}", config.broker_list().join(","), config.topic);
                let hash = twox_hash::XxHash3_64::oneshot(name.as_bytes());
                let dir = config.lock_dir.clone().unwrap_or_else(std::env::temp_dir);
                dir.join(format!("kafka-{hash:016x}.letters.lock"))
            }
        };
        let locked = tokio::task::spawn_blocking(move || {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let file = std::fs::File::options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)?;
            file.lock()?;
            Ok::<_, std::io::Error>(file)
        })
        .await
        .map_err(|e| LogError::FileGone(format!("dead-letter lock: {e}")))?
        .map_err(|e| LogError::FileGone(format!("dead-letter lock: {e}")))?;
        Ok(LettersLock {
            _file: Some(locked),
        })
    }

    /// Of `ids`, those no longer waiting (replayed or discarded since they
    /// were read).
    pub async fn settled_among(&self, ids: Vec<i64>) -> Result<Vec<i64>, LogError> {
        match self {
            Log::Sqlite(l) => {
                letters_among(
                    l,
                    ids,
                    "replayed_ms IS NOT NULL OR discarded_ms IS NOT NULL",
                )
                .await
            }
            Log::Kafka(l) => l.settled_among(ids).await,
        }
    }

    /// Dead letters, oldest first, at most `limit`, those `which` selects,
    /// only ids above `after` when given.
    pub async fn dead_letters_in(
        &self,
        which: Letters,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Vec<super::StoredDeadLetter>, LogError> {
        match self {
            Log::Sqlite(l) => l.dead_letters(which, after, limit).await,
            Log::Kafka(l) => l.dead_letters(which, after, limit).await,
        }
    }

    /// How many letters were discarded.
    pub async fn dead_letters_discarded(&self) -> Result<u64, LogError> {
        match self {
            Log::Sqlite(l) => {
                embedded::blocking(l.connection(), |conn| {
                    let n: i64 = conn.query_row(
                        "SELECT count(*) FROM dead_letters WHERE discarded_ms IS NOT NULL",
                        [],
                        |r| r.get(0),
                    )?;
                    Ok(n as u64)
                })
                .await
            }
            Log::Kafka(l) => {
                l.dead_letter_states(|ledger| ledger.count(Letters::Discarded, None))
                    .await
            }
        }
    }

    /// The ids among `ids` of letters that were discarded (a replay by id
    /// names them apart from unknown ids).
    pub async fn discarded_among(&self, ids: Vec<i64>) -> Result<Vec<i64>, LogError> {
        let mut found = match self {
            Log::Sqlite(l) => letters_among(l, ids, "discarded_ms IS NOT NULL").await?,
            Log::Kafka(l) => {
                l.dead_letter_states(move |ledger| {
                    ids.into_iter()
                        .filter(|&id| ledger.is_discarded(id))
                        .collect()
                })
                .await?
            }
        };
        found.sort_unstable();
        Ok(found)
    }
}

/// Of `ids`, those of the embedded log's letters that meet `condition` (SQL
/// over the `dead_letters` columns), each looked up by its id.
async fn letters_among(
    log: &super::sqlite::SqliteLog,
    ids: Vec<i64>,
    condition: &'static str,
) -> Result<Vec<i64>, LogError> {
    embedded::blocking(log.connection(), move |conn| {
        let mut stmt = conn.prepare(&format!(
            "SELECT id FROM dead_letters WHERE id = ?1 AND ({condition})"
        ))?;
        let mut found = Vec::new();
        for id in ids {
            if stmt.exists([id])? {
                found.push(id);
            }
        }
        Ok(found)
    })
    .await
}

async fn sqlite_discard(
    log: &super::SqliteLog,
    what: Discard,
    reason: Option<String>,
) -> Result<DiscardOutcome, LogError> {
    embedded::blocking(log.connection(), move |conn| {
        // Immediate: a concurrent discard or replay waits for the write lock
        // instead of failing on a read lock's upgrade.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let now = now_ms();
        let mut outcome = DiscardOutcome::default();
        match what {
            Discard::AllWaiting => {
                outcome.discarded = tx.execute(
                    "UPDATE dead_letters SET discarded_ms = ?1, discard_reason = ?2
                     WHERE replayed_ms IS NULL AND discarded_ms IS NULL",
                    params![now, reason],
                )? as u64;
            }
            Discard::Ids(mut ids) => {
                ids.sort_unstable();
                ids.dedup();
                let mut state = tx.prepare_cached(
                    "SELECT replayed_ms IS NOT NULL, discarded_ms IS NOT NULL
                     FROM dead_letters WHERE id = ?1",
                )?;
                let mut mark = tx.prepare_cached(
                    "UPDATE dead_letters SET discarded_ms = ?1, discard_reason = ?2
                     WHERE id = ?3",
                )?;
                for id in ids {
                    let found: Option<(bool, bool)> = rusqlite::OptionalExtension::optional(
                        state.query_row([id], |r| Ok((r.get(0)?, r.get(1)?))),
                    )?;
                    match found {
                        None => outcome.not_found.push(id),
                        Some((true, _)) => outcome.already_replayed.push(id),
                        Some((_, true)) => outcome.already_discarded.push(id),
                        Some((false, false)) => {
                            mark.execute(params![now, reason, id])?;
                            outcome.discarded += 1;
                        }
                    }
                }
            }
        }
        if outcome.discarded > 0 {
            embedded::raise_log_schema(&tx, embedded::LOG_SCHEMA_DISCARDS)?;
        }
        tx.commit()?;
        Ok(outcome)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::log::{DeadLetter, LogConfig, OffsetReset, SqliteLogConfig, Stage};

    fn config(dir: &std::path::Path) -> LogConfig {
        LogConfig::Sqlite(SqliteLogConfig {
            path: dir.join("log.db"),
            topic: "users_created".into(),
            retention_messages: None,
            retention_age: None,
            durable_fsync: false,
            offset_reset: OffsetReset::Earliest,
        })
    }

    fn letter(n: usize) -> DeadLetter {
        DeadLetter {
            stage: Stage::Decode,
            reason: format!("bad {n}"),
            origin: Some(crate::pipeline::log::Origin {
                topic: "users_created".into(),
                partition: 0,
                offset: n as i64,
            }),
            source_position: None,
            key: None,
            payload: format!("payload {n}").into_bytes(),
        }
    }

    #[tokio::test]
    async fn a_discard_waits_for_a_replay_and_the_replay_skips_what_was_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(&config(dir.path())).await.unwrap();
        log.dead_letter((0..3).map(letter).collect()).await.unwrap();
        let read: Vec<i64> = log
            .dead_letters(false, None, 10)
            .await
            .unwrap()
            .iter()
            .map(|l| l.id)
            .collect();

        // A replay holds the lock: a discard (another handle, as another
        // process would have) waits for it.
        let replaying = log.lock_letters().await.unwrap();
        let other = Log::open(&config(dir.path())).await.unwrap();
        let ids = vec![read[1]];
        let mut discard = tokio::spawn(async move {
            other
                .discard_dead_letters(Discard::Ids(ids), Some("bad batch".into()))
                .await
        });
        let waited =
            tokio::time::timeout(std::time::Duration::from_millis(300), &mut discard).await;
        assert!(waited.is_err(), "the discard went ahead of the replay");
        assert!(log.settled_among(read.clone()).await.unwrap().is_empty());
        drop(replaying);
        assert_eq!(discard.await.unwrap().unwrap().discarded, 1);

        // A replay that read the letters before the discard leaves it.
        assert_eq!(log.settled_among(read.clone()).await.unwrap(), [read[1]]);
    }

    #[tokio::test]
    async fn discarded_letters_are_kept_but_neither_waiting_nor_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(&config(dir.path())).await.unwrap();
        log.dead_letter((0..4).map(letter).collect()).await.unwrap();
        let ids: Vec<i64> = log
            .dead_letters(false, None, 10)
            .await
            .unwrap()
            .iter()
            .map(|l| l.id)
            .collect();
        log.settle_dead_letter(ids[3], Ok(())).await.unwrap();

        let out = log
            .discard_dead_letters(Discard::Ids(vec![ids[0], ids[3], 999]), Some("junk".into()))
            .await
            .unwrap();
        assert_eq!(out.discarded, 1);
        assert_eq!(out.not_found, [999]);
        assert_eq!(out.already_replayed, [ids[3]]);
        let again = log
            .discard_dead_letters(Discard::Ids(vec![ids[0]]), Some("other".into()))
            .await
            .unwrap();
        assert_eq!(
            (again.discarded, again.already_discarded),
            (0, vec![ids[0]])
        );

        assert_eq!(log.dead_letters_waiting(None).await.unwrap(), 2);
        let waiting = log.dead_letters(false, None, 10).await.unwrap();
        assert_eq!(
            waiting.iter().map(|l| l.id).collect::<Vec<_>>(),
            [ids[1], ids[2]]
        );
        assert!(
            log.dead_letters_by_id(vec![ids[0]])
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            log.discarded_among(vec![ids[0], ids[1]]).await.unwrap(),
            [ids[0]]
        );

        let discarded = log
            .dead_letters_in(Letters::Discarded, None, 10)
            .await
            .unwrap();
        assert_eq!(discarded.len(), 1);
        let d = discarded[0].discarded.as_ref().unwrap();
        assert_eq!(d.reason.as_deref(), Some("junk"));
        assert!(d.at_ms > 0);
        let previews = log
            .dead_letter_previews(Letters::Discarded, None, 10, 4)
            .await
            .unwrap();
        assert_eq!(previews[0].letter.discarded.as_ref(), Some(d));
        assert_eq!(log.dead_letters(true, None, 10).await.unwrap().len(), 4);

        let all = log
            .discard_dead_letters(Discard::AllWaiting, Some("upstream bug".into()))
            .await
            .unwrap();
        assert_eq!(all.discarded, 2);
        assert_eq!(log.dead_letters_waiting(None).await.unwrap(), 0);
        assert_eq!(log.dead_letters_discarded().await.unwrap(), 3);
        assert_eq!(
            log.dead_letters_in(Letters::Discarded, None, 10)
                .await
                .unwrap()
                .len(),
            3
        );
    }

    /// A log file written before letters could be discarded: its letters
    /// are read, counted and discarded; the first discard raises the
    /// file's schema, so an older build refuses it rather than replay them.
    #[tokio::test]
    async fn a_log_from_before_discards_keeps_working() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.db");
        {
            let old = rusqlite::Connection::open(&path).unwrap();
            old.execute_batch(
                "PRAGMA application_id = 1953655911; PRAGMA user_version = 1;
                 CREATE TABLE topics (
                    id INTEGER PRIMARY KEY,
                    name TEXT NOT NULL UNIQUE,
                    next_offset INTEGER NOT NULL DEFAULT 0
                 );
                 CREATE TABLE dead_letters (
                    id INTEGER PRIMARY KEY,
                    created_ms INTEGER NOT NULL,
                    stage TEXT NOT NULL,
                    reason TEXT NOT NULL,
                    topic TEXT,
                    partition INTEGER,
                    offset INTEGER,
                    key BLOB,
                    payload BLOB NOT NULL,
                    replayed_ms INTEGER,
                    source_position TEXT,
                    fingerprint TEXT,
                    UNIQUE (stage, topic, partition, offset)
                 );
                 CREATE INDEX dead_letters_waiting ON dead_letters (id) WHERE replayed_ms IS NULL;
                 CREATE TABLE log_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 INSERT INTO dead_letters (created_ms, stage, reason, topic, partition, offset, payload)
                    VALUES (1, 'decode', 'old reason', 'users_created', 0, 7, x'7b7d'),
                           (2, 'decode', 'old too', 'users_created', 0, 8, x'7b7d');",
            )
            .unwrap();
        }
        let log = Log::open(&config(dir.path())).await.unwrap();
        assert_eq!(log.dead_letters_waiting(None).await.unwrap(), 2);
        let letters = log.dead_letters(false, None, 10).await.unwrap();
        assert_eq!(letters[0].letter.reason, "old reason");
        assert_eq!(letters[0].discarded, None);
        let out = log
            .discard_dead_letters(Discard::Ids(vec![letters[0].id]), None)
            .await
            .unwrap();
        assert_eq!(out.discarded, 1);
        assert_eq!(log.dead_letters_waiting(None).await.unwrap(), 1);
        drop(log);
        let conn = rusqlite::Connection::open(&path).unwrap();
        let version: i32 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, embedded::LOG_SCHEMA_DISCARDS);
        // This build still opens it.
        let log = Log::open(&config(dir.path())).await.unwrap();
        assert_eq!(log.dead_letters_waiting(None).await.unwrap(), 1);
    }
}
