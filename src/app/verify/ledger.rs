//! The scratch database of `verify`: the log's (id, payload hash, partition,
//! offset), the undecodable messages, the dead letters' origins and the
//! store's ids are streamed into a temporary SQLite file in pages, then
//! compared with set queries. Memory stays bounded however long the log;
//! the file is deleted when the ledger is dropped.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, params};

#[cfg(test)]
mod tests;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("cannot create the scratch database {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("scratch database: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// One log message as the ledger keeps it: where it sits, its id (`None`
/// when it has none) and a hash of its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub partition: i32,
    pub offset: i64,
    pub id: Option<String>,
    pub hash: i64,
}

/// A dead letter's origin in the verified topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LetterEntry {
    pub partition: i32,
    pub offset: i64,
    /// The letter's id (`dlq list`).
    pub id: i64,
    /// Not replayed yet.
    pub waiting: bool,
}

/// What the comparison found, in counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Messages read from the log, with an id or not.
    pub log_messages: u64,
    /// Distinct ids among them.
    pub log_ids: u64,
    /// Messages repeating an earlier one: same id, same payload (harmless).
    pub repeats: u64,
    /// Ids logged with more than one payload.
    pub conflicting_ids: u64,
    /// Log ids the store holds.
    pub present: u64,
    /// Log ids not in the store whose message has a waiting dead letter.
    pub dead_lettered: u64,
    /// Log ids not in the store, behind the group's commit, with no dead
    /// letter: lost on the way.
    pub missing: u64,
    /// Log ids not in the store, past the group's commit: not processed yet.
    pub pending: u64,
    /// Messages without an id.
    pub undecodable: u64,
    /// Of those, with a dead letter.
    pub undecodable_dead_lettered: u64,
    /// Of those, behind the commit with no dead letter: dropped silently.
    pub undecodable_lost: u64,
    /// Of those, past the commit with no dead letter.
    pub undecodable_pending: u64,
    /// Rows (distinct ids) in the store.
    pub store_rows: u64,
    /// Store ids the log does not hold.
    pub extra: u64,
}

/// An id with the place of its first message in the log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IdAt {
    pub id: String,
    pub partition: i32,
    pub offset: i64,
}

/// An undecodable message and its dead letter, if it has one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Undecodable {
    pub partition: i32,
    pub offset: i64,
    pub dead_letter: Option<i64>,
    /// Behind the group's commit (the processor has passed it).
    pub committed: bool,
}

/// Which list of ids to read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdList {
    Missing,
    Pending,
}

pub struct Ledger {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").field("path", &self.path).finish()
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        for suffix in ["-journal", "-wal", "-shm"] {
            let mut p = self.path.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
}

impl Ledger {
    /// Creates an empty ledger in `dir` (a new file, named so that a left
    /// over one is recognisable: `.verify-<pid>-<uuid>.db`).
    pub fn create(dir: &Path) -> Result<Ledger, LedgerError> {
        let path = dir.join(format!(
            ".verify-{}-{}.db",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        let open_err = |source| LedgerError::Open {
            path: path.display().to_string(),
            source,
        };
        let conn = Connection::open(&path).map_err(open_err)?;
        // Scratch data: no journal, no fsync; a bounded page cache; sorts
        // spill to temporary files rather than memory.
        conn.execute_batch(
            "PRAGMA journal_mode = OFF;
             PRAGMA synchronous = OFF;
             PRAGMA locking_mode = EXCLUSIVE;
             PRAGMA cache_size = -4096;
             PRAGMA temp_store = FILE;
             CREATE TABLE store_id (id TEXT PRIMARY KEY) WITHOUT ROWID;
             CREATE TABLE log_msg (
                id TEXT NOT NULL,
                hash INTEGER NOT NULL,
                partition INTEGER NOT NULL,
                offset INTEGER NOT NULL
             );
             CREATE TABLE undecodable (
                partition INTEGER NOT NULL,
                offset INTEGER NOT NULL,
                PRIMARY KEY (partition, offset)
             ) WITHOUT ROWID;
             CREATE TABLE letter (
                partition INTEGER NOT NULL,
                offset INTEGER NOT NULL,
                letter_id INTEGER NOT NULL,
                waiting INTEGER NOT NULL,
                PRIMARY KEY (partition, offset)
             ) WITHOUT ROWID;
             CREATE TABLE committed (
                partition INTEGER PRIMARY KEY,
                next_offset INTEGER NOT NULL
             );",
        )
        .map_err(|source| LedgerError::Open {
            path: path.display().to_string(),
            source,
        })?;
        Ok(Ledger { conn, path })
    }

    /// Removes scratch files left in `dir` by a verify that was killed
    /// (its process is gone), where the system tells which processes run.
    pub fn remove_stale(dir: &Path) {
        if !Path::new("/proc/self").exists() {
            return;
        }
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .and_then(|n| n.strip_prefix(".verify-"))
                .and_then(|rest| rest.split('-').next())
                .and_then(|pid| pid.parse::<u32>().ok())
            else {
                continue;
            };
            if !Path::new("/proc").join(pid.to_string()).exists() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// A handle that stops the statement running now (Ctrl-C during the
    /// comparison); the interrupted call fails.
    pub fn interrupt_handle(&self) -> rusqlite::InterruptHandle {
        self.conn.get_interrupt_handle()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The group's next offset per partition: messages before it were
    /// handed to the store (or to the dead letters) by the processor.
    pub fn set_committed(&mut self, partition: i32, next_offset: i64) -> Result<(), LedgerError> {
        self.conn.execute(
            "INSERT OR REPLACE INTO committed (partition, next_offset) VALUES (?1, ?2)",
            params![partition, next_offset],
        )?;
        Ok(())
    }

    pub fn add_store_ids(&mut self, ids: &[String]) -> Result<(), LedgerError> {
        let tx = self.conn.transaction()?;
        {
            let mut insert =
                tx.prepare_cached("INSERT OR IGNORE INTO store_id (id) VALUES (?1)")?;
            for id in ids {
                insert.execute([id])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub fn add_log(&mut self, entries: &[LogEntry]) -> Result<(), LedgerError> {
        let tx = self.conn.transaction()?;
        {
            let mut with_id = tx.prepare_cached(
                "INSERT INTO log_msg (id, hash, partition, offset) VALUES (?1, ?2, ?3, ?4)",
            )?;
            let mut without = tx.prepare_cached(
                "INSERT OR IGNORE INTO undecodable (partition, offset) VALUES (?1, ?2)",
            )?;
            for e in entries {
                match &e.id {
                    Some(id) => with_id.execute(params![id, e.hash, e.partition, e.offset])?,
                    None => without.execute(params![e.partition, e.offset])?,
                };
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Several letters may come from one message (a decode and a sink
    /// stage, or a Kafka letter written twice): a waiting one wins.
    pub fn add_letters(&mut self, letters: &[LetterEntry]) -> Result<(), LedgerError> {
        let tx = self.conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO letter (partition, offset, letter_id, waiting) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (partition, offset) DO UPDATE
                 SET letter_id = excluded.letter_id, waiting = excluded.waiting
                 WHERE excluded.waiting >= letter.waiting",
            )?;
            for l in letters {
                insert.execute(params![l.partition, l.offset, l.id, l.waiting])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Indexes what was loaded and counts every class. Call once, after
    /// everything was added; the lists are read afterwards.
    pub fn reconcile(&mut self) -> Result<Counts, LedgerError> {
        // One row per distinct log id: how often and with how many payloads
        // it was logged, whether any of its messages is behind the commit
        // or has a waiting dead letter, where it first appears, and whether
        // the store has it. min() is the only min/max aggregate, so the
        // bare `m.partition` comes from the row of the smallest offset.
        self.conn.execute_batch(
            "CREATE INDEX log_msg_by_id ON log_msg (id, hash);
             CREATE TABLE log_id (
                id TEXT PRIMARY KEY,
                copies INTEGER NOT NULL,
                payloads INTEGER NOT NULL,
                committed INTEGER NOT NULL,
                lettered INTEGER NOT NULL,
                partition INTEGER NOT NULL,
                offset INTEGER NOT NULL,
                in_store INTEGER NOT NULL
             ) WITHOUT ROWID;
             INSERT INTO log_id
             SELECT m.id,
                    count(*),
                    count(DISTINCT m.hash),
                    total(m.offset < coalesce(c.next_offset, 0)) > 0,
                    total(coalesce(l.waiting, 0)) > 0,
                    m.partition,
                    min(m.offset),
                    EXISTS (SELECT 1 FROM store_id s WHERE s.id = m.id)
             FROM log_msg m
             LEFT JOIN committed c ON c.partition = m.partition
             LEFT JOIN letter l ON l.partition = m.partition AND l.offset = m.offset
             GROUP BY m.id;",
        )?;
        let one = |sql: &str| -> Result<u64, LedgerError> {
            Ok(self.conn.query_row(sql, [], |r| r.get::<_, i64>(0))? as u64)
        };
        let (log_ids, repeats, conflicting_ids, present, dead_lettered, missing, pending) =
            self.conn.query_row(
                "SELECT count(*),
                        coalesce(sum(copies - payloads), 0),
                        coalesce(sum(payloads > 1), 0),
                        coalesce(sum(in_store), 0),
                        coalesce(sum(NOT in_store AND lettered), 0),
                        coalesce(sum(NOT in_store AND NOT lettered AND committed), 0),
                        coalesce(sum(NOT in_store AND NOT lettered AND NOT committed), 0)
                 FROM log_id",
                [],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)? as u64,
                        r.get::<_, i64>(1)? as u64,
                        r.get::<_, i64>(2)? as u64,
                        r.get::<_, i64>(3)? as u64,
                        r.get::<_, i64>(4)? as u64,
                        r.get::<_, i64>(5)? as u64,
                        r.get::<_, i64>(6)? as u64,
                    ))
                },
            )?;
        let (undecodable, undecodable_dead_lettered, undecodable_lost) = self.conn.query_row(
            "SELECT count(*),
                    coalesce(sum(l.letter_id IS NOT NULL), 0),
                    coalesce(sum(l.letter_id IS NULL AND u.offset < coalesce(c.next_offset, 0)), 0)
             FROM undecodable u
             LEFT JOIN committed c ON c.partition = u.partition
             LEFT JOIN letter l ON l.partition = u.partition AND l.offset = u.offset",
            [],
            |r| {
                Ok((
                    r.get::<_, i64>(0)? as u64,
                    r.get::<_, i64>(1)? as u64,
                    r.get::<_, i64>(2)? as u64,
                ))
            },
        )?;
        let messages = one("SELECT count(*) FROM log_msg")?;
        Ok(Counts {
            log_messages: messages + undecodable,
            log_ids,
            repeats,
            conflicting_ids,
            present,
            dead_lettered,
            missing,
            pending,
            undecodable,
            undecodable_dead_lettered,
            undecodable_lost,
            undecodable_pending: undecodable - undecodable_dead_lettered - undecodable_lost,
            store_rows: one("SELECT count(*) FROM store_id")?,
            extra: one("SELECT count(*) FROM store_id s
                 WHERE NOT EXISTS (SELECT 1 FROM log_id l WHERE l.id = s.id)")?,
        })
    }

    /// Calls `each` for up to `limit` ids of the list, in log order.
    pub fn ids(
        &self,
        list: IdList,
        limit: Option<usize>,
        mut each: impl FnMut(IdAt) -> std::io::Result<()>,
    ) -> Result<(), ListError> {
        let committed = match list {
            IdList::Missing => 1,
            IdList::Pending => 0,
        };
        let mut stmt = self.conn.prepare(
            "SELECT id, partition, offset FROM log_id
             WHERE NOT in_store AND NOT lettered AND committed = ?1
             ORDER BY partition, offset LIMIT ?2",
        )?;
        let mut rows = stmt.query(params![committed, limit_sql(limit)])?;
        while let Some(r) = rows.next()? {
            each(IdAt {
                id: r.get(0)?,
                partition: r.get(1)?,
                offset: r.get(2)?,
            })?;
        }
        Ok(())
    }

    /// Calls `each` for up to `limit` store ids the log does not hold.
    pub fn extra(
        &self,
        limit: Option<usize>,
        mut each: impl FnMut(String) -> std::io::Result<()>,
    ) -> Result<(), ListError> {
        let mut stmt = self.conn.prepare(
            "SELECT id FROM store_id s
             WHERE NOT EXISTS (SELECT 1 FROM log_id l WHERE l.id = s.id)
             ORDER BY id LIMIT ?1",
        )?;
        let mut rows = stmt.query([limit_sql(limit)])?;
        while let Some(r) = rows.next()? {
            each(r.get(0)?)?;
        }
        Ok(())
    }

    /// Calls `each` for up to `limit` undecodable messages, in log order.
    pub fn undecodable(
        &self,
        limit: Option<usize>,
        mut each: impl FnMut(Undecodable) -> std::io::Result<()>,
    ) -> Result<(), ListError> {
        let mut stmt = self.conn.prepare(
            "SELECT u.partition, u.offset, l.letter_id, u.offset < coalesce(c.next_offset, 0)
             FROM undecodable u
             LEFT JOIN committed c ON c.partition = u.partition
             LEFT JOIN letter l ON l.partition = u.partition AND l.offset = u.offset
             ORDER BY u.partition, u.offset LIMIT ?1",
        )?;
        let mut rows = stmt.query([limit_sql(limit)])?;
        while let Some(r) = rows.next()? {
            each(Undecodable {
                partition: r.get(0)?,
                offset: r.get(1)?,
                dead_letter: r.get(2)?,
                committed: r.get(3)?,
            })?;
        }
        Ok(())
    }
}

/// Reading a list back failed: in the ledger or writing it out.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("cannot write the list: {0}")]
    Io(#[from] std::io::Error),
}

impl From<rusqlite::Error> for ListError {
    fn from(e: rusqlite::Error) -> Self {
        ListError::Ledger(LedgerError::Sqlite(e))
    }
}

/// `LIMIT -1` is no limit in SQLite.
fn limit_sql(limit: Option<usize>) -> i64 {
    limit.map_or(-1, |n| n.min(i64::MAX as usize) as i64)
}
