//! The commands that look at what the pipeline produced: `count`, `show`,
//! `dlq list` and `dlq replay`.

use std::io::IsTerminal;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use super::{AppResult, prepare_dirs};
use crate::cli::{DlqCommand, EndpointArgs, ShowArgs};
use crate::config::Config;
use crate::pipeline::log::{Log, StoredDeadLetter};
use crate::pipeline::processor::{self, ReplayReport};
use crate::pipeline::shape::Shape;
use crate::pipeline::sink::Sink;

async fn open_sink(config: &Config) -> AppResult<Sink> {
    prepare_dirs(config)?;
    Ok(Sink::open(&config.pipeline.sink, &config.pipeline.dataset)
        .await
        .context("cannot open the store")?)
}

async fn open_log(config: &Config) -> AppResult<Log> {
    prepare_dirs(config)?;
    Ok(Log::open(&config.pipeline.log)
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
    let sink = open_sink(&config).await?;
    let lag = log
        .lag(&config.pipeline.group)
        .await
        .context("cannot read the log's offsets")?;
    let rows = sink.count().await.context("cannot count rows")?;
    let waiting = log
        .dead_letters_waiting(None)
        .await
        .context("cannot count dead letters")?;
    let lost = log
        .lost(&config.pipeline.group)
        .await
        .context("cannot read the log's offsets")?;
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
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "topic": log.topic(),
                "group": config.pipeline.group,
                "partitions": partitions,
                "lag": total_lag,
                "lost_to_retention": lost,
                "rows": rows,
                "dead_letters_waiting": waiting,
                "sink": sink.describe(),
            })
        );
        return Ok(());
    }
    println!(
        "log    topic {} group {}",
        log.topic(),
        config.pipeline.group
    );
    let cells: Vec<Vec<String>> = lag
        .iter()
        .map(|p| {
            vec![
                p.partition.to_string(),
                p.committed.to_string(),
                p.end.to_string(),
                p.lag().to_string(),
            ]
        })
        .collect();
    print!(
        "{}",
        table(&["partition", "committed", "end", "lag"], &cells)
    );
    println!("lag    {total_lag}");
    if lost > 0 {
        println!("lost   {lost} messages dropped by retention before this group read them");
    }
    println!("store  {} rows ({})", rows, sink.describe());
    println!("dlq    {waiting} dead letters waiting (tributary dlq list)");
    Ok(())
}

pub async fn show(config: Config, args: &ShowArgs) -> AppResult {
    let sink = open_sink(&config).await?;
    let rows = sink.records(args.limit).await.context("cannot read rows")?;
    if args.json {
        for row in &rows {
            println!("{row}");
        }
        return Ok(());
    }
    let columns = sink.columns();
    print!("{}", table(&columns, &cells(&columns, &rows)));
    println!("\n({} rows)", rows.len());
    Ok(())
}

/// The cells of JSON rows for a table: text as it is, null empty, other
/// values as JSON.
pub(super) fn cells(columns: &[&str], rows: &[serde_json::Value]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|v| {
            columns
                .iter()
                .map(|c| match &v[c] {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Null => String::new(),
                    other => other.to_string(),
                })
                .collect()
        })
        .collect()
}

/// A cqlsh-style table: a header, a rule, and ` | `-separated cells.
pub(super) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let width = |s: &str| s.chars().count();
    let mut widths: Vec<usize> = header.iter().map(|h| width(h)).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(width(cell));
        }
    }
    let pad = |s: &str, w: usize| format!("{s}{}", " ".repeat(w - width(s)));
    let mut out = String::new();
    let head: Vec<String> = header
        .iter()
        .zip(&widths)
        .map(|(h, &w)| pad(h, w))
        .collect();
    out.push_str(&format!(" {}\n", head.join(" | ")));
    let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
    out.push_str(&format!("-{}-\n", rule.join("-+-")));
    for row in rows {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(c, &w)| pad(c, w)).collect();
        out.push_str(&format!(" {}\n", cells.join(" | ")));
    }
    out
}

pub async fn dlq(
    cmd: DlqCommand,
    resolve: impl Fn(&EndpointArgs) -> AppResult<Config>,
) -> AppResult {
    match cmd {
        DlqCommand::List {
            all,
            limit,
            json,
            endpoints,
        } => {
            let config = resolve(&endpoints)?;
            let log = open_log(&config).await?;
            let letters = log
                .dead_letters(all, None, limit)
                .await
                .context("cannot read dead letters")?;
            for l in &letters {
                if json {
                    println!("{}", l.to_json(usize::MAX));
                } else {
                    println!("{}", letter_line(l));
                }
            }
            if !json {
                println!("({} dead letters)", letters.len());
            }
            Ok(())
        }
        DlqCommand::Replay {
            ids,
            json,
            endpoints,
        } => {
            let config = resolve(&endpoints)?;
            let log = open_log(&config).await?;
            let sink = open_sink(&config).await?;
            let max_bytes = config.processor.max_message_bytes;
            let shape = Shape::of(&config.pipeline.dataset, sink.schema());
            let shape = shape.as_ref();
            let mut report = ReplayReport::default();
            if ids.is_empty() {
                // Page by page, so memory holds one page however long the
                // queue; letters that still fail stay behind the cursor.
                let waiting = log
                    .dead_letters_waiting(None)
                    .await
                    .context("cannot count dead letters")?;
                let bar = (!json && std::io::stderr().is_terminal()).then(|| {
                    ProgressBar::new(waiting).with_style(
                        ProgressStyle::with_template(
                            "{spinner} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} letters ({per_sec})",
                        )
                        .expect("valid template"),
                    )
                });
                let mut after = None;
                loop {
                    let (page, last) = processor::replay_page(&log, &sink, shape, after, max_bytes)
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
                for chunk in ids.chunks(processor::REPLAY_PAGE) {
                    let letters = log
                        .dead_letters_by_id(chunk.to_vec())
                        .await
                        .context("cannot read dead letters")?;
                    report += processor::replay(&log, &sink, shape, letters, max_bytes)
                        .await
                        .context("replay failed")?;
                }
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
            Ok(())
        }
    }
}

fn letter_line(l: &StoredDeadLetter) -> String {
    let origin = match &l.letter.origin {
        Some(o) => format!("{}[{}]@{}", o.topic, o.partition, o.offset),
        None => "source".to_owned(),
    };
    let payload = String::from_utf8_lossy(&l.letter.payload);
    let preview: String = payload.chars().take(60).collect();
    let more = if payload.chars().count() > 60 {
        "…"
    } else {
        ""
    };
    format!(
        "#{} {} {} {} | {preview}{more} ({} bytes)",
        l.id,
        l.letter.stage.as_str(),
        origin,
        l.letter.reason,
        l.letter.payload.len()
    )
}
