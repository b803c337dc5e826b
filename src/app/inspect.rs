//! The commands that look at what the pipeline produced: `count`, `show`,
//! `dlq list`, `dlq replay` and `dlq discard`.

use std::io::{BufWriter, IsTerminal, Stdout, Write};
use std::ops::ControlFlow;

use anyhow::Context;
use indicatif::ProgressBar;

use super::table::{StreamedTable, escape, row_cells, stdout_failed};
use super::{AppError, AppResult, prepare_dirs};
use crate::cli::{DlqCommand, EndpointArgs, ShowArgs};
use crate::config::Config;
use crate::pipeline::log::discard::Discard;
use crate::pipeline::log::{DiscardOutcome, GroupMembers, LetterPreview, Letters, Log, LogConfig};
use crate::pipeline::processor::{self, ReplayReport};
use crate::pipeline::shape::Shape;
use crate::pipeline::sink::{EachRecord, Sink, SinkConfig, SinkError};

pub(super) use super::table::{cells, table};

/// These commands look at what a pipeline produced: on the embedded
/// default, neither a log nor a store file means nothing was produced,
/// which is said (and nothing is created).
fn produced(config: &Config) -> AppResult {
    let (LogConfig::Sqlite(l), SinkConfig::Sqlite(s)) =
        (&config.pipeline.log, &config.pipeline.sink)
    else {
        return Ok(());
    };
    if l.path.exists() || s.path.exists() {
        return Ok(());
    }
    let dir = l.path.parent().unwrap_or(&l.path);
    Err(AppError::Failed(anyhow::anyhow!(
        "no data in {} (no {} and no {}): run `tributary run` first, or give the \
         --data-dir, --log or --sink of an earlier run",
        dir.display(),
        l.path.display(),
        s.path.display()
    )))
}

/// The store as it is: these commands make no table (nor keyspace).
async fn open_sink(config: &Config) -> AppResult<Sink> {
    produced(config)?;
    prepare_dirs(config)?;
    Ok(
        Sink::open_existing(&config.pipeline.sink, &config.pipeline.dataset)
            .await
            .context("cannot open the store")?,
    )
}

/// The log as it is: these commands make no topic.
async fn open_log(config: &Config) -> AppResult<Log> {
    produced(config)?;
    prepare_dirs(config)?;
    Ok(Log::open_existing(&config.pipeline.log)
        .await
        .context("cannot open the log")?)
}

pub async fn count(config: Config) -> AppResult {
    let sink = open_sink(&config).await?;
    let n = sink.count().await.context("cannot count rows")?;
    println!("{n}");
    Ok(())
}

pub async fn status(config: Config, json: bool) -> AppResult {
    let log = open_log(&config).await?;
    // The log's side is worth showing even when the store cannot be
    // opened (a table dropped, a node down): that is said in its place.
    let store = match Sink::open_existing(&config.pipeline.sink, &config.pipeline.dataset).await {
        Ok(sink) => match sink.count().await {
            Ok(rows) => Ok((rows, sink.describe())),
            Err(e) => Err(format!("cannot count rows: {e}")),
        },
        // Not made yet (say, ingested but not processed): no rows.
        Err(SinkError::NotMade(why)) => Ok((0, format!("no table yet: {why}"))),
        Err(e) => Err(format!("cannot open the store: {e}")),
    };
    let lag = log
        .lag(&config.pipeline.group)
        .await
        .context("cannot read the log's offsets")?;
    let waiting = log
        .dead_letters_waiting(None)
        .await
        .context("cannot count dead letters")?;
    let lost = log
        .lost(&config.pipeline.group)
        .await
        .context("cannot read the log's offsets")?;
    // Who reads is worth less than what is read: a group that cannot be
    // described is said, and the rest is shown.
    let (members, members_error) = match log.members(&config.pipeline.group).await {
        Ok(m) => (m, None),
        Err(e) => (
            None,
            Some(format!("cannot describe the consumer group: {e}")),
        ),
    };
    let owner = |p: i32| {
        members
            .as_ref()
            .and_then(|g| g.owner(p))
            .map(|m| m.member_id.as_str())
    };
    let total_lag: i64 = lag.iter().map(|p| p.lag()).sum();
    if json {
        let partitions: Vec<_> = lag
            .iter()
            .map(|p| {
                serde_json::json!({
                    "partition": p.partition,
                    "committed": p.committed,
                    "end": p.end,
                    "lag": p.lag(),
                    "member": owner(p.partition),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "topic": log.topic(),
                "group": config.pipeline.group,
                "group_state": members.as_ref().map(|g| g.state.as_str()),
                "members": members.as_ref().map(|g| &g.members),
                "members_error": members_error,
                "partitions": partitions,
                "lag": total_lag,
                "lost_to_retention": lost,
                "rows": store.as_ref().ok().map(|(rows, _)| rows),
                "dead_letters_waiting": waiting,
                "sink": store.as_ref().ok().map(|(_, sink)| sink),
                "store_error": store.as_ref().err(),
            })
        );
        return store_read(&store);
    }
    println!(
        "log    topic {} group {}",
        log.topic(),
        config.pipeline.group
    );
    let cells: Vec<Vec<String>> = lag
        .iter()
        .map(|p| {
            let mut row = vec![
                p.partition.to_string(),
                p.committed.to_string(),
                p.end.to_string(),
                p.lag().to_string(),
            ];
            if members.is_some() {
                row.push(escape(owner(p.partition).unwrap_or("-")).into_owned());
            }
            row
        })
        .collect();
    let mut header = vec!["partition", "committed", "end", "lag"];
    if members.is_some() {
        header.push("member");
    }
    print!("{}", table(&header, &cells));
    println!("lag    {total_lag}");
    if let Some(g) = &members {
        print_members(g);
    }
    if let Some(e) = &members_error {
        println!("group  {e}");
    }
    if lost > 0 {
        println!("lost   {lost} messages dropped by retention before this group read them");
    }
    match &store {
        Ok((rows, sink)) => println!("store  {rows} rows ({sink})"),
        Err(e) => println!("store  {e}"),
    }
    println!("dlq    {waiting} dead letters waiting (tributary dlq list)");
    store_read(&store)
}

/// `status` printed all it could; a store it could not read makes it exit 1.
fn store_read<T>(store: &Result<T, String>) -> AppResult {
    match store {
        Ok(_) => Ok(()),
        Err(_) => Err(AppError::Failed(anyhow::anyhow!(
            "the store could not be read (above)"
        ))),
    }
}

fn print_members(g: &GroupMembers) {
    if g.members.is_empty() {
        let state = if g.state.is_empty() {
            "unknown"
        } else {
            &g.state
        };
        println!("group  no member reading ({state})");
        return;
    }
    println!("group  {} members ({})", g.members.len(), g.state);
    let cells: Vec<Vec<String>> = g
        .members
        .iter()
        .map(|m| {
            let parts: Vec<String> = m.partitions.iter().map(i32::to_string).collect();
            vec![
                escape(&m.member_id).into_owned(),
                escape(&m.client_id).into_owned(),
                escape(&m.host).into_owned(),
                match &m.error {
                    Some(e) => format!("? ({e})"),
                    None if parts.is_empty() => "-".to_owned(),
                    None => parts.join(","),
                },
            ]
        })
        .collect();
    print!(
        "{}",
        table(&["member", "client id", "host", "partitions"], &cells)
    );
}

/// Rows are written as they are read: memory holds one row (and, for the
/// table, the first rows that size its columns), however many are asked.
pub async fn show(config: Config, args: &ShowArgs) -> AppResult {
    let sink = open_sink(&config).await?;
    let columns: Vec<String> = sink.columns().iter().map(|c| c.to_string()).collect();
    let stdout = BufWriter::new(std::io::stdout());
    let out = if args.json {
        ShowOut::Json(stdout, None)
    } else {
        let fit = if args.wide {
            None
        } else {
            super::table::terminal_columns()
        };
        let table = StreamedTable::new(columns.clone(), stdout).fitting(fit);
        ShowOut::Table(table, columns, None)
    };
    let out = sink
        .each_record(args.limit, out)
        .await
        .context("cannot read rows")?;
    out.finish().or_else(stdout_failed)
}

/// Where `show` writes, and the first write that failed.
enum ShowOut {
    Json(BufWriter<Stdout>, Option<std::io::Error>),
    Table(
        StreamedTable<BufWriter<Stdout>>,
        Vec<String>,
        Option<std::io::Error>,
    ),
}

impl EachRecord for ShowOut {
    fn record(&mut self, row: serde_json::Value) -> ControlFlow<()> {
        let (written, failed) = match self {
            ShowOut::Json(out, failed) => (writeln!(out, "{row}"), failed),
            ShowOut::Table(table, columns, failed) => {
                let columns: Vec<&str> = columns.iter().map(String::as_str).collect();
                (table.push(row_cells(&columns, &row)), failed)
            }
        };
        match written {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                *failed = Some(e);
                ControlFlow::Break(())
            }
        }
    }
}

impl ShowOut {
    fn finish(self) -> std::io::Result<()> {
        match self {
            ShowOut::Json(_, Some(e)) | ShowOut::Table(_, _, Some(e)) => Err(e),
            ShowOut::Json(mut out, None) => out.flush(),
            ShowOut::Table(table, _, None) => {
                let rows = table.rows;
                let mut out = table.finish()?;
                writeln!(out, "\n({rows} rows)")?;
                out.flush()
            }
        }
    }
}

pub async fn dlq(
    cmd: DlqCommand,
    resolve: impl Fn(&EndpointArgs) -> AppResult<Config>,
) -> AppResult {
    match cmd {
        DlqCommand::List {
            all,
            discarded,
            limit,
            json,
            endpoints,
        } => {
            let config = resolve(&endpoints)?;
            let log = open_log(&config).await?;
            let which = match (all, discarded) {
                (true, _) => Letters::All,
                (_, true) => Letters::Discarded,
                _ => Letters::Waiting,
            };
            list_letters(&log, which, limit, json).await
        }
        DlqCommand::Discard {
            ids,
            all,
            reason,
            json,
            endpoints,
        } => {
            let config = resolve(&endpoints)?;
            let log = open_log(&config).await?;
            let what = if all {
                Discard::AllWaiting
            } else {
                Discard::Ids(ids)
            };
            let outcome = log
                .discard_dead_letters(what, reason)
                .await
                .context("cannot discard dead letters")?;
            discarded(&outcome, json)
        }
        DlqCommand::Replay {
            ids,
            overwrite,
            json,
            endpoints,
        } => {
            let config = resolve(&endpoints)?;
            let log = open_log(&config).await?;
            // A replay writes: it makes the table if nothing was stored yet.
            produced(&config)?;
            let sink = Sink::open(&config.pipeline.sink, &config.pipeline.dataset)
                .await
                .context("cannot open the store")?;
            let options = processor::ReplayOptions {
                max_message_bytes: config.processor.max_message_bytes,
                overwrite,
            };
            let shape = Shape::of(&config.pipeline.dataset, sink.schema());
            let shape = shape.as_ref();
            let mut report = ReplayReport::default();
            let mut not_found: Vec<i64> = Vec::new();
            if ids.is_empty() {
                // Page by page, so memory holds one page however long the
                // queue; letters that still fail stay behind the cursor.
                let waiting = log
                    .dead_letters_waiting(None)
                    .await
                    .context("cannot count dead letters")?;
                let bar = (!json && std::io::stderr().is_terminal()).then(|| {
                    ProgressBar::new(waiting).with_style(super::table::bar_style(
                        "{spinner} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} letters ({rate})",
                    ))
                });
                let mut after = None;
                let mut written = processor::ReplayWrites::default();
                loop {
                    let (page, last) =
                        processor::replay_page(&log, &sink, shape, after, options, &mut written)
                            .await
                            .context("replay failed")?;
                    let Some(last) = last else { break };
                    if let Some(b) = &bar {
                        b.inc(page.replayed + page.still_failing);
                    }
                    report += page;
                    after = Some(last);
                }
                if let Some(b) = bar {
                    b.finish_and_clear();
                }
            } else {
                let mut written = processor::ReplayWrites::default();
                let (page, missing) =
                    processor::replay_ids(&log, &sink, shape, &ids, options, &mut written)
                        .await
                        .context("replay failed")?;
                report = page;
                not_found = missing;
            }
            if json {
                println!(
                    "{}",
                    serde_json::to_string(&report).expect("report serialises")
                );
            } else {
                println!(
                    "replayed {} dead letters into the store; {} still failing (see tributary dlq list)",
                    report.replayed, report.still_failing
                );
            }
            let mut problems = Vec::new();
            if report.still_failing > 0 {
                // Scripts see it: a replay that left letters behind did not
                // finish its job.
                problems.push(format!(
                    "{} dead letters still fail (tributary dlq list shows why)",
                    report.still_failing
                ));
            }
            if !not_found.is_empty() {
                let discarded = log
                    .discarded_among(not_found.clone())
                    .await
                    .context("cannot read dead letters")?;
                not_found.retain(|id| !discarded.contains(id));
                if !not_found.is_empty() {
                    problems.push(format!(
                        "no dead letter with id {} (tributary dlq list --all shows every id)",
                        id_list(&not_found)
                    ));
                }
                if !discarded.is_empty() {
                    problems.push(format!(
                        "dead letter {} discarded, not replayed (tributary dlq list --discarded)",
                        if discarded.len() == 1 {
                            format!("{} is", discarded[0])
                        } else {
                            format!("{} are", id_list(&discarded))
                        }
                    ));
                }
            }
            if problems.is_empty() {
                Ok(())
            } else {
                Err(AppError::Failed(anyhow::anyhow!("{}", problems.join("; "))))
            }
        }
    }
}

fn id_list(ids: &[i64]) -> String {
    ids.iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What `dlq discard` did; exit 1 when an id named no waiting letter.
fn discarded(outcome: &DiscardOutcome, json: bool) -> AppResult {
    if json {
        println!(
            "{}",
            serde_json::to_string(outcome).expect("outcome serialises")
        );
    } else {
        println!(
            "discarded {} dead letters (kept for audit: tributary dlq list --discarded)",
            outcome.discarded
        );
        if !outcome.already_discarded.is_empty() {
            println!(
                "already discarded, left as they were: {}",
                id_list(&outcome.already_discarded)
            );
        }
    }
    let mut problems = Vec::new();
    if !outcome.not_found.is_empty() {
        problems.push(format!(
            "no dead letter with id {} (tributary dlq list --all shows every id)",
            id_list(&outcome.not_found)
        ));
    }
    if !outcome.already_replayed.is_empty() {
        problems.push(format!(
            "dead letter {} replayed already, nothing to discard",
            id_list(&outcome.already_replayed)
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(AppError::Failed(anyhow::anyhow!("{}", problems.join("; "))))
    }
}

/// Letters read at a time by `dlq list`: with `--json` each holds its whole
/// payload, for the table only a preview.
const LIST_PAGE_JSON: usize = 4;
const LIST_PAGE: usize = 500;
/// Payload bytes read per letter for its line (60 characters are shown).
const LINE_PREVIEW_BYTES: usize = 256;

/// `dlq list`: page by page (the embedded log; Kafka's dead letters are
/// read in one pass), each letter written as it comes.
async fn list_letters(log: &Log, which: Letters, limit: usize, json: bool) -> AppResult {
    let (page, cut) = match (log, json) {
        (Log::Kafka(_), true) => (limit, usize::MAX),
        (Log::Kafka(_), false) => (limit, LINE_PREVIEW_BYTES),
        (Log::Sqlite(_), true) => (LIST_PAGE_JSON, usize::MAX),
        (Log::Sqlite(_), false) => (LIST_PAGE, LINE_PREVIEW_BYTES),
    };
    let mut out = BufWriter::new(std::io::stdout());
    let mut shown = 0;
    let mut after = None;
    while shown < limit {
        let n = page.min(limit - shown);
        let letters = log
            .dead_letter_previews(which, after, n, cut)
            .await
            .context("cannot read dead letters")?;
        let Some(last) = letters.last() else { break };
        after = Some(last.letter.id);
        shown += letters.len();
        for l in &letters {
            let written = if json {
                writeln!(out, "{}", l.to_json())
            } else {
                writeln!(out, "{}", letter_line(l))
            };
            if let Err(e) = written {
                return stdout_failed(e);
            }
        }
        if letters.len() < n {
            break;
        }
    }
    let end = if json {
        out.flush()
    } else {
        // The footer says how many there are, not only how many were shown.
        let waiting = if which == Letters::Waiting {
            log.dead_letters_waiting(None).await.ok()
        } else {
            None
        };
        let footer = match waiting {
            Some(w) if w as usize > shown => {
                format!("({shown} of {w} waiting dead letters shown; --limit N for more)")
            }
            _ => format!("({shown} dead letters)"),
        };
        writeln!(out, "{footer}").and_then(|()| out.flush())
    };
    end.or_else(stdout_failed)
}

/// A letter on one line, text from the source escaped.
fn letter_line(preview: &LetterPreview) -> String {
    let l = &preview.letter;
    let origin = match &l.letter.origin {
        Some(o) => format!("{}[{}]@{}", escape(&o.topic), o.partition, o.offset),
        None => "source".to_owned(),
    };
    let payload = String::from_utf8_lossy(&l.letter.payload);
    let shown: String = payload.chars().take(60).collect();
    let more =
        if payload.chars().count() > 60 || preview.payload_bytes > l.letter.payload.len() as u64 {
            "…"
        } else {
            ""
        };
    let state = match (&l.discarded, l.replayed_ms) {
        (Some(d), _) => format!(
            " [discarded {}: {}]",
            when(d.at_ms),
            d.reason
                .as_deref()
                .map(escape)
                .unwrap_or("no reason given".into())
        ),
        (None, Some(at)) => format!(" [replayed {}]", when(at)),
        (None, None) => String::new(),
    };
    format!(
        "#{} {} {} {} | {}{more} ({} bytes){state}",
        l.id,
        l.letter.stage.as_str(),
        origin,
        escape(&l.letter.reason),
        escape(&shown),
        preview.payload_bytes
    )
}

/// A time in milliseconds since the epoch as UTC, to the second.
fn when(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| ms.to_string())
}
