//! `tributary verify`: proves that the store holds what the log holds.
//! Streams every id of the log (all partitions, earliest offset to the end,
//! no group joined) and every id of the store into a scratch [`Ledger`],
//! reconciles them there, prints the table and the lists, and fails on
//! what must not be: missing ids, messages with no id and no dead letter,
//! a log that is gone, and (with `--strict`) rows the log never had.
//! `ledger.rs` is the scratch file, `report.rs` what is printed.

mod ledger;
mod report;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::hash::Hasher;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use self::ledger::{Ledger, LedgerError, LetterEntry, LogEntry};
use self::report::{problems, write_json, write_text};
use super::{AppError, AppResult};
use crate::cli::VerifyArgs;
use crate::config::Config;
use crate::embedded::file_id;
use crate::pipeline::log::scan::{LogScan, PartitionRange};
use crate::pipeline::log::{Letters, Log, LogConfig, LogMessage, PartitionLag};
use crate::pipeline::shape::Dataset;
use crate::pipeline::sink::{IdCursor, IdPage, Sink, SinkConfig, SinkError};

/// Store ids read per page.
const STORE_PAGE: usize = 5000;
/// Log messages read per page (each holds its payload until it is hashed).
const LOG_PAGE: usize = 1000;
/// Dead letters read per page from the embedded log (each holds its bytes).
const LETTER_PAGE: usize = 500;
/// Letters a page on Kafka: their origins, a few hundred bytes each.
const KAFKA_LETTER_PAGE: usize = 10_000;
/// Pages waiting for the scratch database.
const PAGES_IN_FLIGHT: usize = 4;
/// Attempts at one page of store ids when the store says a retry can help.
const STORE_ATTEMPTS: u32 = 5;

/// A page on its way into the ledger.
enum Load {
    Store(Vec<String>),
    Log(Vec<LogEntry>),
    Letters(Vec<LetterEntry>),
}

/// What verify learned besides the counts: what it compared and where.
struct Scope {
    log: String,
    /// Why there was no log to read, when there was none.
    log_absent: Option<String>,
    store: String,
    /// Why there was no store to read, when there was none.
    store_absent: Option<String>,
    group: String,
    ranges: Vec<PartitionRange>,
    committed: Vec<PartitionLag>,
    /// Messages retention dropped before the group read them: not in the
    /// log any more, so not checked here; `process` and `run` reported
    /// them and failed when they were found.
    lost_to_retention: u64,
}

pub async fn verify(config: Config, args: &VerifyArgs, shutdown: CancellationToken) -> AppResult {
    if let Dataset::Table(_) = config.pipeline.dataset {
        return Err(super::AppError::Usage(format!(
            "verify checks the Random User pipeline's store by its ids; pipeline {} writes its \
             own table, which verify does not walk yet (use `status` and `dlq list`)",
            config.pipeline.name
        )));
    }
    let started = Instant::now();
    let log_file = match &config.pipeline.log {
        LogConfig::Sqlite(c) => FileIdentity::of(&c.path),
        LogConfig::Kafka(_) => None,
    };
    let store_file = match &config.pipeline.sink {
        SinkConfig::Sqlite(c) => FileIdentity::of(&c.path),
        SinkConfig::Cassandra(_) => None,
    };
    let (log, log_absent) = open_log(&config).await?;
    let (sink, store_absent) = open_store(&config).await?;
    let mut scope = Scope {
        log: describe_log(&config.pipeline.log),
        log_absent,
        store: match &sink {
            Some(s) => s.describe(),
            None => describe_store(&config.pipeline.sink),
        },
        store_absent,
        group: config.pipeline.group.clone(),
        ranges: Vec::new(),
        committed: Vec::new(),
        lost_to_retention: 0,
    };
    let mut ledger = create_ledger(&config)?;
    debug!(path = %ledger.path().display(), "scratch database");
    // The group's commit is read before the store: every message behind it
    // was acknowledged by the store before this moment, so a row of it that
    // the store scan does not find is missing, whatever runs meanwhile.
    if let Some(log) = &log {
        scope.committed = log
            .lag(&config.pipeline.group)
            .await
            .context("cannot read the group's committed offsets")?;
        for p in &scope.committed {
            ledger
                .set_committed(p.partition, p.committed)
                .context("verify cannot start")?;
        }
        scope.lost_to_retention = log
            .lost(&config.pipeline.group)
            .await
            .context("cannot read the group's offsets")?;
    }

    let (tx, rx) = mpsc::channel::<Load>(PAGES_IN_FLIGHT);
    let writer = tokio::task::spawn_blocking(move || fill(ledger, rx));
    let fed = feed(&tx, log.as_ref(), sink.as_ref(), &shutdown).await;
    drop(tx);
    let filled = writer.await.expect("scratch database task panicked");
    // A writer that failed stops the feed; its error is the one to show.
    let mut ledger = filled.context("verify failed")?;
    scope.ranges = fed?;

    // Ctrl-C stops the comparison's long statements too.
    let interrupt = ledger.interrupt_handle();
    let watcher = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            interrupt.interrupt();
        })
    };
    let comparing = spinner("comparing");
    let (ledger, counts) = tokio::task::spawn_blocking(move || {
        let counts = ledger.reconcile();
        (ledger, counts)
    })
    .await
    .expect("reconcile task panicked");
    comparing.finish_and_clear();
    if counts.is_err() {
        interrupted(&shutdown)?;
    }
    let counts = counts.context("verify failed")?;

    let mut problems = problems(&scope, &counts, args);
    // A file removed or replaced while it was read was read to the end
    // through the open handle: the report describes a log or store that is
    // no longer there.
    for (what, file) in [("log", &log_file), ("store", &store_file)] {
        if let Some(file) = file
            && !file.unchanged()
        {
            problems.push(format!(
                "the {what} file {} was removed or replaced while verify read it; run verify again",
                file.path.display()
            ));
        }
    }
    let args = args.clone();
    let ok = problems.is_empty();
    let shown = tokio::task::spawn_blocking(move || {
        let out = std::io::stdout();
        let mut out = std::io::BufWriter::new(out.lock());
        let written = if args.json {
            write_json(
                &mut out, &ledger, &scope, &counts, &problems, &args, started,
            )
        } else {
            write_text(
                &mut out, &ledger, &scope, &counts, &problems, &args, started,
            )
        };
        written
            .and_then(|()| out.flush().map_err(Into::into))
            .map(|()| problems)
    })
    .await
    .expect("report task panicked");
    watcher.abort();
    let problems = shown.context("cannot write the report")?;
    if ok {
        Ok(())
    } else {
        Err(AppError::Failed(anyhow!("verify: {}", problems.join("; "))))
    }
}

/// An embedded file as it was when verify began.
struct FileIdentity {
    path: PathBuf,
    id: (u64, u64),
}

impl FileIdentity {
    fn of(path: &std::path::Path) -> Option<FileIdentity> {
        Some(FileIdentity {
            path: path.to_path_buf(),
            id: file_id(path)?,
        })
    }

    /// Whether the path still names the same file.
    fn unchanged(&self) -> bool {
        file_id(&self.path) == Some(self.id)
    }
}

/// The log, or why there is none to read. Nothing is created: an embedded
/// log whose file is gone, or a Kafka topic that does not exist, is
/// reported rather than made anew.
async fn open_log(config: &Config) -> AppResult<(Option<Log>, Option<String>)> {
    let mut log_config = config.pipeline.log.clone();
    match &mut log_config {
        LogConfig::Sqlite(c) => {
            if !c.path.exists() {
                return Ok((
                    None,
                    Some(format!("the log file {} does not exist", c.path.display())),
                ));
            }
        }
        LogConfig::Kafka(c) => c.create_topics = false,
    }
    let log = Log::open_existing(&log_config)
        .await
        .context("cannot open the log")?;
    Ok((Some(log), None))
}

/// The store, or why there is none to read (an embedded store whose file
/// or table does not exist is read as empty, and not created).
async fn open_store(config: &Config) -> AppResult<(Option<Sink>, Option<String>)> {
    if let SinkConfig::Sqlite(c) = &config.pipeline.sink {
        if !c.path.exists() {
            return Ok((
                None,
                Some(format!(
                    "the store file {} does not exist",
                    c.path.display()
                )),
            ));
        }
        let (path, table) = (c.path.clone(), c.table.clone());
        let has_table = tokio::task::spawn_blocking(move || {
            let conn = rusqlite::Connection::open_with_flags(
                &path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )?;
            conn.busy_timeout(Duration::from_secs(10))?;
            conn.query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [&table],
                |r| r.get::<_, i64>(0),
            )
        })
        .await
        .expect("store check panicked")
        .with_context(|| format!("cannot read the store {}", c.path.display()))?;
        if has_table == 0 {
            return Ok((
                None,
                Some(format!(
                    "the store {} has no table {}",
                    c.path.display(),
                    c.table
                )),
            ));
        }
    }
    match Sink::open_existing(&config.pipeline.sink, &config.pipeline.dataset).await {
        Ok(sink) => Ok((Some(sink), None)),
        // A Cassandra table never made (or dropped): absent, as a missing
        // embedded table is.
        Err(crate::pipeline::sink::SinkError::NotMade(why)) => Ok((None, Some(why))),
        Err(e) => Err(anyhow::Error::new(e)
            .context("cannot open the store")
            .into()),
    }
}

fn describe_log(config: &LogConfig) -> String {
    match config {
        LogConfig::Sqlite(c) => format!("sqlite {} topic {}", c.path.display(), c.topic),
        LogConfig::Kafka(c) => format!("kafka {} topic {}", c.brokers, c.topic),
    }
}

fn describe_store(config: &SinkConfig) -> String {
    match config {
        SinkConfig::Sqlite(c) => format!("sqlite {} table {}", c.path.display(), c.table),
        SinkConfig::Cassandra(c) => format!(
            "cassandra {} table {}.{}",
            c.nodes.join(","),
            c.keyspace,
            c.table
        ),
    }
}

/// The scratch database, in the data dir when it exists and takes files
/// (beside the embedded files, where there is room for them), else in the
/// system's temp dir.
fn create_ledger(config: &Config) -> AppResult<Ledger> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if config.data_dir.is_dir() {
        dirs.push(config.data_dir.clone());
    }
    dirs.push(std::env::temp_dir());
    let mut first_error = None;
    for dir in dirs {
        Ledger::remove_stale(&dir);
        match Ledger::create(&dir) {
            Ok(ledger) => return Ok(ledger),
            Err(e) => {
                debug!(error = %e, "no scratch database here");
                first_error.get_or_insert(e);
            }
        }
    }
    let e = first_error.expect("at least one dir was tried");
    Err(anyhow::Error::new(e).context("verify cannot start").into())
}

/// The scratch database's side: takes pages until the feed is done.
fn fill(mut ledger: Ledger, mut rx: mpsc::Receiver<Load>) -> Result<Ledger, LedgerError> {
    while let Some(load) = rx.blocking_recv() {
        match load {
            Load::Store(ids) => ledger.add_store_ids(&ids)?,
            Load::Log(entries) => ledger.add_log(&entries)?,
            Load::Letters(letters) => ledger.add_letters(&letters)?,
        }
    }
    Ok(ledger)
}

async fn send(tx: &mpsc::Sender<Load>, load: Load) -> anyhow::Result<()> {
    // The writer only stops early on an error, which `verify` reports.
    tx.send(load)
        .await
        .map_err(|_| anyhow!("the scratch database stopped"))
}

fn interrupted(shutdown: &CancellationToken) -> anyhow::Result<()> {
    if shutdown.is_cancelled() {
        Err(anyhow!("verify interrupted: nothing was checked"))
    } else {
        Ok(())
    }
}

/// Streams the store's ids, then the log, then the dead letters into the
/// ledger, in that order (see [`verify`] for why). Returns the log's ranges.
async fn feed(
    tx: &mpsc::Sender<Load>,
    log: Option<&Log>,
    sink: Option<&Sink>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Vec<PartitionRange>> {
    if let Some(sink) = sink {
        let bar = spinner("reading the store's ids");
        let mut cursor = None;
        loop {
            interrupted(shutdown)?;
            let page = store_page(sink, cursor, shutdown)
                .await
                .context("cannot read the store's ids")?;
            bar.inc(page.ids.len() as u64);
            cursor = page.next;
            let ids = page.ids.iter().map(|id| canonical_id(id).into_owned());
            send(tx, Load::Store(ids.collect())).await?;
            if cursor.is_none() {
                break;
            }
        }
        bar.finish_and_clear();
    }
    let Some(log) = log else {
        return Ok(Vec::new());
    };
    let mut scan = LogScan::open(log).await.context("cannot read the log")?;
    let ranges = scan.ranges();
    let total: i64 = ranges.iter().map(|r| r.end - r.low).sum();
    let bar = progress(total.max(0) as u64, "messages");
    loop {
        interrupted(shutdown)?;
        let batch = scan.next(LOG_PAGE).await.context("cannot read the log")?;
        if batch.is_empty() {
            break;
        }
        bar.inc(batch.len() as u64);
        send(tx, Load::Log(batch.iter().map(entry).collect())).await?;
    }
    bar.finish_and_clear();
    let topic = log.topic().to_owned();
    // A page at a time, from the last id on: on Kafka the log keeps the
    // topic's ids, and each page reads the topic on from the first letter
    // it wants (larger pages there: each starts a fetch). Only what a
    // letter says of its origin is needed: no key or payload is kept.
    let page = match log {
        Log::Sqlite(_) => LETTER_PAGE,
        Log::Kafka(_) => KAFKA_LETTER_PAGE,
    };
    let mut after = None;
    loop {
        interrupted(shutdown)?;
        let letters = log
            .dead_letter_previews(Letters::All, after, page, 0)
            .await
            .context("cannot read the dead letters")?;
        let Some(last) = letters.last() else { break };
        after = Some(last.letter.id);
        let from_topic = letters.iter().map(|p| &p.letter).filter_map(|l| {
            let o = l.letter.origin.as_ref()?;
            (o.topic == topic).then_some(LetterEntry {
                partition: o.partition,
                offset: o.offset,
                id: l.id,
                waiting: l.replayed_ms.is_none(),
            })
        });
        // On until a page comes back empty: a short one ends nothing (on
        // Kafka, retention may take letters chosen for a page before it is
        // read).
        send(tx, Load::Letters(from_topic.collect())).await?;
    }
    Ok(ranges)
}

/// One page of store ids, asked again (with back-off) while the store says
/// a retry can help.
async fn store_page(
    sink: &Sink,
    cursor: Option<IdCursor>,
    shutdown: &CancellationToken,
) -> Result<IdPage, SinkError> {
    let mut delay = Duration::from_millis(200);
    let mut attempt = 1;
    loop {
        match sink.id_page(cursor.clone(), STORE_PAGE).await {
            Err(e) if e.is_retryable() && attempt < STORE_ATTEMPTS && !shutdown.is_cancelled() => {
                warn!(error = %e, attempt, "reading the store's ids failed; trying again");
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// A message as the ledger keeps it.
fn entry(m: &LogMessage) -> LogEntry {
    let mut hash = std::hash::DefaultHasher::new();
    hash.write(&m.payload);
    LogEntry {
        partition: m.partition,
        offset: m.offset,
        id: message_id(m),
        hash: hash.finish() as i64,
    }
}

/// A message's record id: its key when it has one (tributary keys every
/// message by the record id), else the `id` field of its JSON payload (the
/// seed DAG sends no key). Only the id is decoded. `None` when it has none.
pub fn message_id(m: &LogMessage) -> Option<String> {
    let key = m.key.as_deref().filter(|k| !k.is_empty());
    if let Some(key) = key.and_then(|k| std::str::from_utf8(k).ok()) {
        return Some(canonical_id(key).into_owned());
    }
    #[derive(Deserialize)]
    struct IdOnly<'a> {
        #[serde(borrow, default)]
        id: Option<Cow<'a, str>>,
    }
    let id = serde_json::from_slice::<IdOnly<'_>>(&m.payload).ok()?.id?;
    (!id.is_empty()).then(|| canonical_id(&id).into_owned())
}

/// A uuid in its hyphenated lower-case form (as the store writes it);
/// anything else as it is.
fn canonical_id(id: &str) -> Cow<'_, str> {
    match uuid::Uuid::try_parse(id) {
        Ok(u) => {
            let mut buf = uuid::Uuid::encode_buffer();
            let s = u.hyphenated().encode_lower(&mut buf);
            if s == id {
                Cow::Borrowed(id)
            } else {
                Cow::Owned(s.to_owned())
            }
        }
        Err(_) => Cow::Borrowed(id),
    }
}

/// A spinner on stderr when it is a terminal, else nothing.
fn spinner(what: &'static str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner().with_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {msg}: {human_pos} ({per_sec})",
        )
        .expect("valid template"),
    );
    bar.set_message(what);
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

/// A bar of `total` on stderr when it is a terminal, else nothing.
fn progress(total: u64, unit: &'static str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    ProgressBar::new(total).with_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} [{{elapsed_precise}}] reading the log {{wide_bar}} {{human_pos}}/{{human_len}} {unit} ({{per_sec}}, eta {{eta}})"
        ))
        .expect("valid template"),
    )
}
