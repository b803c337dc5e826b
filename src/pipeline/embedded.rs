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
