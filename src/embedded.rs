//! The embedded SQLite databases' common ground: how a file is opened (WAL,
//! pragmas, busy timeout) and how blocking SQLite work is run from async code.
//! The schemas belong to the log and the sink, not here.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;

/// How long a writer waits for another process's transaction before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens (creating if needed) a database file for the pipeline.
///
/// WAL lets the processor read the log while the ingester appends. With
/// `synchronous=NORMAL` a committed transaction survives a crash of the
/// process (SIGKILL included); after a power loss the last transactions may
/// roll back, which the idempotent sink and the offset rule tolerate.
/// `synchronous=FULL` is chosen with `durable_fsync`.
pub fn open(path: &Path, durable_fsync: bool) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Switching to WAL takes an exclusive lock and SQLite does not wait for
    // it through the busy timeout: when another process opens the same file
    // at the same moment, the switch fails with "database is locked". Retry
    // it for as long as the busy timeout.
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Ok(()) => break,
            Err(e) if is_busy(&e) && std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e),
        }
    }
    conn.pragma_update(
        None,
        "synchronous",
        if durable_fsync { "FULL" } else { "NORMAL" },
    )?;
    // 4 MiB of page cache per connection (a run has four): bounded, and
    // enough for the hot end of the log and the store's id index.
    conn.pragma_update(None, "cache_size", -4096)?;
    // Checkpoint the WAL every 4096 pages (16 MiB) rather than 1000: a page
    // rewritten by several batches is copied into the database once.
    conn.pragma_update(None, "wal_autocheckpoint", 4096)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(conn)
}

/// A connection shared by the tasks of one process. A std mutex, not tokio's:
/// it is only ever locked inside `spawn_blocking`, never across an await.
pub type Shared = Arc<Mutex<Connection>>;

/// Runs `f` with the connection on tokio's blocking pool.
pub async fn blocking<T, E, F>(conn: &Shared, f: F) -> Result<T, E>
where
    T: Send + 'static,
    E: Send + 'static + From<rusqlite::Error>,
    F: FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
{
    let conn = conn.clone();
    tokio::task::spawn_blocking(move || {
        // A poisoned lock means a panic mid-transaction; SQLite rolled the
        // transaction back, so the connection is still usable.
        let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    })
    .await
    .expect("sqlite task panicked")
}

/// What a database file is to tributary, written in its header
/// (`PRAGMA application_id`) when tributary first opens it, so a log
/// opened as a store (or any other file opened as a log) is refused at
/// open with the reason, not by a failing statement after a batch was
/// logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Log,
    Store,
}

impl Role {
    fn application_id(self) -> i32 {
        match self {
            Role::Log => 0x7472_6c67,   // "trlg"
            Role::Store => 0x7472_7374, // "trst"
        }
    }

    fn name(self) -> &'static str {
        match self {
            Role::Log => "log",
            Role::Store => "store",
        }
    }
}

/// The highest log schema this build knows: a log written by a newer
/// tributary is refused rather than misread.
const LOG_SCHEMA: i32 = LOG_SCHEMA_DISCARDS;
/// The schema a new log starts with, which every earlier build reads.
const LOG_SCHEMA_FIRST: i32 = 1;
/// A log holding discarded dead letters (`log/discard.rs`): an earlier
/// build would take them for waiting ones and replay them. A file is raised
/// to it at its first discard, so until then older builds still open it.
pub const LOG_SCHEMA_DISCARDS: i32 = 2;

/// Raises the log's schema to `version` (never lowers it), in the caller's
/// transaction.
pub fn raise_log_schema(conn: &Connection, version: i32) -> rusqlite::Result<()> {
    let now: i32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if now < version {
        conn.execute_batch(&format!("PRAGMA user_version = {version}"))?;
    }
    Ok(())
}

/// Checks that the file `conn` opened can serve as `role`, and marks a new
/// (or unmarked earlier tributary) file as such.
pub fn claim(conn: &Connection, role: Role) -> Result<(), String> {
    check_role(conn, role)?;
    mark_role(conn, role)
}

/// Marks the file as `role`'s once it serves as one (a store: once its
/// table opened, so a refused open leaves the user's file as it was).
pub fn mark_role(conn: &Connection, role: Role) -> Result<(), String> {
    let id = application_id(conn)?;
    if id != 0 {
        // Ours already, or a database of the user's own that keeps its
        // header (check_role refused any other for a log).
        return Ok(());
    }
    let version = match role {
        Role::Log => format!("PRAGMA user_version = {LOG_SCHEMA_FIRST};"),
        Role::Store => String::new(),
    };
    conn.execute_batch(&format!(
        "PRAGMA application_id = {};{version}",
        role.application_id()
    ))
    .map_err(|e| e.to_string())
}

/// Whether the file can serve as `role`. A store may live in a database of
/// the user's own, with their tables and header: only a tributary log is
/// refused there.
pub fn check_role(conn: &Connection, role: Role) -> Result<(), String> {
    let sql = |e: rusqlite::Error| e.to_string();
    let id = application_id(conn)?;
    let is_log = |c: &Connection| -> rusqlite::Result<bool> {
        c.query_row(
            "SELECT count(*) FROM pragma_table_info('topics') WHERE name = 'next_offset'",
            [],
            |r| r.get::<_, i64>(0).map(|n| n > 0),
        )
    };
    let other = match role {
        Role::Log => Role::Store,
        Role::Store => Role::Log,
    };
    if id == other.application_id()
        || (role == Role::Store && id == 0 && is_log(conn).map_err(sql)?)
    {
        return Err(format!(
            "this file is a tributary {}, not a {}: give the log and the store a file each",
            other.name(),
            role.name()
        ));
    }
    match role {
        Role::Log => {
            if id == 0 {
                let tables = table_names(conn)?;
                if !tables.is_empty() && !is_log(conn).map_err(sql)? {
                    let shown = some_names(&tables);
                    return Err(format!(
                        "this file holds tables ({shown}) and is not a tributary log: \
                         give the log a file of its own"
                    ));
                }
            } else if id != role.application_id() {
                return Err(format!(
                    "this file belongs to another application (application_id {id:#x}): \
                     give the log a file of its own"
                ));
            }
            let version: i32 = conn
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .map_err(sql)?;
            if version > LOG_SCHEMA {
                return Err(format!(
                    "this log was written by a newer tributary (log schema {version}; this \
                     build reads up to {LOG_SCHEMA}): upgrade tributary"
                ));
            }
        }
        Role::Store => {}
    }
    Ok(())
}

/// The file's `PRAGMA application_id` (0: none written).
pub fn application_id(conn: &Connection) -> Result<i32, String> {
    conn.query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(|e| e.to_string())
}

/// The names of the file's own tables, sorted.
pub fn table_names(conn: &Connection) -> Result<Vec<String>, String> {
    conn.prepare(
        "SELECT name FROM sqlite_master WHERE type = 'table' \
         AND name NOT LIKE 'sqlite_%' ORDER BY name",
    )
    .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
    .map_err(|e| e.to_string())
}

/// Up to five table names for a message, `…` for the rest.
pub fn some_names(tables: &[String]) -> String {
    let mut shown = tables
        .iter()
        .take(5)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if tables.len() > 5 {
        shown.push_str(", …");
    }
    shown
}

/// Whether an SQLite error means another connection holds the lock (waiting
/// and trying again can help).
pub fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// Whether an SQLite error means the disk (or its quota) is full.
pub fn is_disk_full(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::DiskFull))
}

/// The device and inode `path` names now (on other systems, `(0, 0)` while
/// it exists); `None` when it does not exist. Two equal ids are one file.
pub fn file_id(path: &Path) -> Option<(u64, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Some((meta.dev(), meta.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        Some((0, 0))
    }
}

/// Which file a path named when it was opened, so a writer can tell that
/// the file it writes to was deleted or replaced under it: SQLite goes on
/// writing into the open, unlinked file, and everything written after that
/// is lost with it.
#[derive(Debug, Clone)]
pub struct FileId {
    path: std::path::PathBuf,
    id: (u64, u64),
}

impl FileId {
    /// The file `path` names now.
    pub fn of(path: &Path) -> std::io::Result<FileId> {
        let id = file_id(path)
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"))?;
        Ok(FileId {
            path: path.to_owned(),
            id,
        })
    }

    /// What a write to this file gave, unless the path no longer names the
    /// file: then the sentence for people, whatever the write said. A write
    /// into a deleted file may succeed into nothing, or fail with whatever
    /// SQLite makes of the files left beside it ("no such table").
    pub fn vouch<T, E>(
        &self,
        written: Result<T, E>,
        gone: impl FnOnce(String) -> E,
    ) -> Result<T, E> {
        self.check().map_err(gone)?;
        written
    }

    /// `Err` with a sentence for people when the path no longer names the
    /// file that was opened.
    pub fn check(&self) -> Result<(), String> {
        match file_id(&self.path) {
            Some(now) if now == self.id => Ok(()),
            Some(_) => Err(format!(
                "{} was replaced by another file while in use; what was written since is not in it",
                self.path.display()
            )),
            None => Err(format!(
                "{} was deleted while in use; what was written since is lost with it",
                self.path.display()
            )),
        }
    }
}

#[cfg(test)]
mod claim_tests {
    use super::*;

    #[test]
    fn a_log_and_a_store_refuse_each_others_files_and_foreign_ones() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(&dir.path().join("log.db"), false).unwrap();
        claim(&log, Role::Log).unwrap();
        claim(&log, Role::Log).unwrap();
        let err = claim(&log, Role::Store).unwrap_err();
        assert!(err.contains("is a tributary log, not a store"), "{err}");

        let store = open(&dir.path().join("store.db"), false).unwrap();
        store.execute_batch("CREATE TABLE mine (a)").unwrap();
        claim(&store, Role::Store).unwrap();
        let err = claim(&store, Role::Log).unwrap_err();
        assert!(err.contains("is a tributary store, not a log"), "{err}");

        let other = open(&dir.path().join("other.db"), false).unwrap();
        other
            .execute_batch("CREATE TABLE orders (a); CREATE TABLE topics (x)")
            .unwrap();
        let err = claim(&other, Role::Log).unwrap_err();
        assert!(err.contains("holds tables (orders, topics)"), "{err}");

        // A log from before the header was written: recognised and marked.
        let old = open(&dir.path().join("old.db"), false).unwrap();
        old.execute_batch("CREATE TABLE topics (id, name, next_offset)")
            .unwrap();
        let err = claim(&old, Role::Store).unwrap_err();
        assert!(err.contains("is a tributary log"), "{err}");
        claim(&old, Role::Log).unwrap();

        old.execute_batch("PRAGMA user_version = 99").unwrap();
        let err = claim(&old, Role::Log).unwrap_err();
        assert!(err.contains("newer tributary"), "{err}");
    }
}
