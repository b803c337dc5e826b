//! Stored rows handed out one at a time (`show`): an embedded store's rows
//! are read and passed on row by row, so memory holds one row however many
//! are asked for. A Cassandra store's rows are read as [`Sink::records`]
//! reads them, then handed out. [`Sink::record_previews`] is the
//! dashboard's look: text cells cut in the read.

use std::ops::ControlFlow;

use serde_json::Value;

use super::{Sink, SinkError, SqliteSink};
use crate::pipeline::embedded;
use crate::pipeline::table::ColumnType;
use crate::record::ROW_COLUMNS;

/// Takes the rows of [`Sink::each_record`] one at a time (on a blocking
/// thread, for the embedded store).
pub trait EachRecord: Send + 'static {
    /// One row; `Break` stops the read.
    fn record(&mut self, row: Value) -> ControlFlow<()>;
}

impl Sink {
    /// Up to `limit` stored rows as JSON objects, as [`Sink::records`]
    /// gives them, each passed to `f` as it is read, until `f` breaks.
    /// Returns `f` (with whatever it gathered).
    pub async fn each_record<F: EachRecord>(&self, limit: usize, f: F) -> Result<F, SinkError> {
        self.each_record_cut(limit, None, f).await
    }

    /// Up to `limit` stored rows as [`Sink::records`] gives them, each text
    /// cell longer than `cut` characters cut to `cut` and marked with `…`
    /// (on the embedded store in the read, so a page of huge rows is never
    /// held whole).
    pub async fn record_previews(&self, limit: usize, cut: usize) -> Result<Vec<Value>, SinkError> {
        struct Gather(Vec<Value>);
        impl EachRecord for Gather {
            fn record(&mut self, row: Value) -> ControlFlow<()> {
                self.0.push(row);
                ControlFlow::Continue(())
            }
        }
        let Gather(mut rows) = self
            .each_record_cut(limit, Some(cut), Gather(Vec::new()))
            .await?;
        for row in &mut rows {
            if let Value::Object(cells) = row {
                for cell in cells.values_mut() {
                    if let Value::String(s) = cell
                        && let Some((at, _)) = s.char_indices().nth(cut)
                        && !s[at..].eq(ELLIPSIS)
                    {
                        s.truncate(at);
                        s.push_str(ELLIPSIS);
                    }
                }
            }
        }
        Ok(rows)
    }

    async fn each_record_cut<F: EachRecord>(
        &self,
        limit: usize,
        cut: Option<usize>,
        mut f: F,
    ) -> Result<F, SinkError> {
        match self {
            Sink::Sqlite(s) => sqlite_each(s, limit, cut, f).await,
            Sink::Cassandra(_) | Sink::CassandraTable(_) => {
                for record in self.records(limit).await? {
                    if f.record(record).is_break() {
                        break;
                    }
                }
                Ok(f)
            }
        }
    }
}

/// What marks a cut cell.
const ELLIPSIS: &str = "…";

/// A text column as read: cut to `cut` characters (and marked) when given.
fn text_column(name: &str, cut: Option<usize>) -> String {
    match cut {
        None => name.to_owned(),
        Some(n) => format!(
            "CASE WHEN length({name}) > {n} THEN substr({name}, 1, {n}) || '{ELLIPSIS}' \
             ELSE {name} END"
        ),
    }
}

async fn sqlite_each<F: EachRecord>(
    sink: &SqliteSink,
    limit: usize,
    cut: Option<usize>,
    mut f: F,
) -> Result<F, SinkError> {
    let table = sink.table_name().to_owned();
    let schema = sink.schema().cloned();
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    embedded::blocking(sink.reader(), move |conn| {
        let columns: Vec<String> = match &schema {
            Some(schema) => schema
                .columns
                .iter()
                .map(|c| {
                    let name = format!("\"{}\"", c.name);
                    match c.ty {
                        ColumnType::Text => text_column(&name, cut),
                        _ => name,
                    }
                })
                .collect(),
            None => ROW_COLUMNS.iter().map(|c| text_column(c, cut)).collect(),
        };
        let mut stmt = conn.prepare(&format!(
            "SELECT {} FROM {table} ORDER BY rowid DESC LIMIT ?1",
            columns.join(", ")
        ))?;
        let mut rows = stmt.query([limit])?;
        while let Some(r) = rows.next()? {
            let record = match &schema {
                // The seed table: text columns, as the row's JSON has them.
                None => {
                    let mut object = serde_json::Map::new();
                    for (i, name) in ROW_COLUMNS.iter().enumerate() {
                        object.insert((*name).to_owned(), Value::String(r.get(i)?));
                    }
                    Value::Object(object)
                }
                Some(schema) => {
                    let row = super::sqlite::typed_row(schema, r)?;
                    serde_json::from_slice(&crate::pipeline::table::encode(schema, &row))
                        .expect("an encoded row is JSON")
                }
            };
            if f.record(record).is_break() {
                break;
            }
        }
        Ok(f)
    })
    .await
}
