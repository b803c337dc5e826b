//! `tributary preview`: the first records of a pipeline's source, as the
//! rows they would become and the dead letters they would make. Nothing is
//! logged or stored.

use anyhow::Context;

use super::AppResult;
use super::inspect::{cells, table};
use crate::cli::PreviewArgs;
use crate::config::Config;
use crate::pipeline::ingest::{self, Feed};
use crate::pipeline::table;
use crate::record::ROW_COLUMNS;

pub async fn preview(config: Config, args: &PreviewArgs) -> AppResult {
    let feed = super::run::feed(&config, None).await?;
    let (columns, rows, letters): (Vec<String>, Vec<serde_json::Value>, _) = match &feed {
        Feed::Users { source, .. } => {
            let batch = source
                .fetch(1, args.limit)
                .await
                .context("cannot fetch from the source")?;
            let (rows, letters) = ingest::flatten(source, batch);
            let rows = rows
                .iter()
                .map(|row| serde_json::from_slice(&row.to_json()).expect("a row is JSON"))
                .collect();
            let columns = ROW_COLUMNS.iter().map(|c| (*c).to_owned()).collect();
            (columns, rows, letters)
        }
        Feed::Records(feed) => {
            let previewed = ingest::records::preview(feed, args.limit)
                .await
                .context("cannot fetch from the source")?;
            let schema = &feed.shape.schema;
            let rows = previewed
                .rows
                .iter()
                .map(|r| serde_json::from_slice(&table::encode(schema, r)).expect("a row is JSON"))
                .collect();
            let columns = schema.columns.iter().map(|c| c.name.clone()).collect();
            (columns, rows, previewed.letters)
        }
    };
    if args.json {
        let letters: Vec<_> = letters
            .iter()
            .map(|l| {
                serde_json::json!({
                    "position": l.position,
                    "reason": l.reason,
                    "record": String::from_utf8_lossy(&l.raw),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "pipeline": config.pipeline.name,
                "columns": columns,
                "rows": rows,
                "dead_letters": letters,
            })
        );
        return Ok(());
    }
    let header: Vec<&str> = columns.iter().map(String::as_str).collect();
    println!("pipeline {}: {} rows", config.pipeline.name, rows.len());
    print!("{}", table(&header, &cells(&header, &rows)));
    if letters.is_empty() {
        println!("\nno dead letters");
    } else {
        println!("\n{} would be dead letters:", letters.len());
        for l in &letters {
            let (position, reason) = (&l.position, &l.reason);
            let raw = String::from_utf8_lossy(&l.raw);
            let shown: String = raw.chars().take(160).collect();
            let more = if raw.chars().count() > 160 { "…" } else { "" };
            println!("  {position}\n    {reason}\n    {shown}{more}");
        }
    }
    Ok(())
}
