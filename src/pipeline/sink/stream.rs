//! Stored rows handed out one at a time (`show`): an embedded store's rows
//! are read and passed on row by row, so memory holds one row however many
//! are asked for. A Cassandra store's rows are read as [`Sink::records`]
//! reads them, then handed out. [`Sink::record_previews`] is the
//! dashboard's look: text cells cut in the read; [`Sink::record_lookup`]
//! the rows of one key (a read of the key's columns, never a scan).

use std::ops::ControlFlow;

use serde_json::Value;

use super::{Sink, SinkError, SqliteSink};
use crate::embedded;
use crate::pipeline::table::{Cell, ColumnType, value_cell};
use crate::record::ROW_COLUMNS;

/// Key columns and the value each must have: a whole primary key, or its
/// partition key and the first of its clustering columns.
pub type KeyFilter = Vec<(String, Cell)>;

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
        self.each_record_cut(limit, None, &KeyFilter::new(), f)
            .await
    }

    /// Up to `limit` stored rows as [`Sink::records`] gives them, each text
    /// cell longer than `cut` characters cut to `cut` and marked with `…`
    /// (on the embedded store in the read, so a page of huge rows is never
    /// held whole).
    pub async fn record_previews(&self, limit: usize, cut: usize) -> Result<Vec<Value>, SinkError> {
        self.record_lookup(&KeyFilter::new(), limit, cut).await
    }

    /// As [`Sink::record_previews`], only the rows whose key columns hold
    /// `filter`'s values (every row for an empty filter).
    pub async fn record_lookup(
        &self,
        filter: &KeyFilter,
        limit: usize,
        cut: usize,
    ) -> Result<Vec<Value>, SinkError> {
        struct Gather(Vec<Value>);
        impl EachRecord for Gather {
            fn record(&mut self, row: Value) -> ControlFlow<()> {
                self.0.push(row);
                ControlFlow::Continue(())
            }
        }
        let Gather(mut rows) = self
            .each_record_cut(limit, Some(cut), filter, Gather(Vec::new()))
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

    /// The filter that finds the stored row of `row`'s key: the users'
    /// id, or a user table's whole primary key. `None` for no row.
    pub fn row_key_filter(&self, rows: &super::Rows) -> Option<KeyFilter> {
        match rows {
            super::Rows::Users(rows) => {
                let row = rows.first()?;
                Some(vec![("id".into(), Cell::Uuid(row.id))])
            }
            super::Rows::Table(rows) => {
                let (row, schema) = (rows.first()?, self.schema()?);
                Some(
                    schema
                        .key_indexes()
                        .into_iter()
                        .map(|i| (schema.columns[i].name.clone(), row[i].clone()))
                        .collect(),
                )
            }
        }
    }

    /// The stored row that `filter` finds first, as [`Sink::records`]
    /// gives it, whole.
    pub async fn stored_record(&self, filter: &KeyFilter) -> Result<Option<Value>, SinkError> {
        struct First(Option<Value>);
        impl EachRecord for First {
            fn record(&mut self, row: Value) -> ControlFlow<()> {
                self.0 = Some(row);
                ControlFlow::Break(())
            }
        }
        let First(row) = self.each_record_cut(1, None, filter, First(None)).await?;
        Ok(row)
    }

    /// The rows as [`Sink::records`] gives stored ones.
    pub fn records_of(&self, rows: &super::Rows) -> Vec<Value> {
        match (rows, self.schema()) {
            (super::Rows::Users(rows), _) => super::users_json(rows.to_vec()),
            (super::Rows::Table(rows), Some(schema)) => super::typed_json(schema, rows),
            (super::Rows::Table(_), None) => Vec::new(),
        }
    }

    async fn each_record_cut<F: EachRecord>(
        &self,
        limit: usize,
        cut: Option<usize>,
        filter: &KeyFilter,
        mut f: F,
    ) -> Result<F, SinkError> {
        let records = match self {
            Sink::Sqlite(s) => return sqlite_each(s, limit, cut, filter.clone(), f).await,
            Sink::Cassandra(s) if !filter.is_empty() => {
                super::users_json(s.rows_where(filter, limit).await?)
            }
            Sink::CassandraTable(s) if !filter.is_empty() => {
                let schema = s.schema();
                super::typed_json(schema, &s.rows_where(filter, limit).await?)
            }
            Sink::Cassandra(_) | Sink::CassandraTable(_) => self.records(limit).await?,
        };
        {
            {
                for record in records {
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
    filter: KeyFilter,
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
        // Key columns, each `= ?`: the primary key's index answers.
        let wanted: String = filter
            .iter()
            .enumerate()
            .map(|(i, (name, _))| format!("\"{name}\" = ?{} AND ", i + 2))
            .collect();
        let mut stmt = conn.prepare(&format!(
            "SELECT {} FROM {table} WHERE {wanted} 1 ORDER BY rowid DESC LIMIT ?1",
            columns.join(", ")
        ))?;
        let mut params: Vec<&dyn rusqlite::ToSql> = vec![&limit];
        params.extend(filter.iter().map(|(_, cell)| cell as &dyn rusqlite::ToSql));
        let mut rows = stmt.query(params.as_slice())?;
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

impl Sink {
    /// `key` as the filter of a lookup. The seed table's key is its `id`
    /// (a uuid); a user table's is the value of its one partition-key
    /// column, or a JSON object of key columns: every partition-key column
    /// and, optionally, its first clustering columns in order. Values are
    /// checked against their columns' types as a record's are.
    pub fn key_filter(&self, key: &str) -> Result<KeyFilter, String> {
        let Some(schema) = self.schema() else {
            let id = uuid::Uuid::parse_str(key.trim())
                .map_err(|e| format!("the users' key is their id, a uuid: {e}"))?;
            return Ok(vec![("id".into(), Cell::Uuid(id))]);
        };
        let typed = |name: &str, v: &Value| {
            let ty = schema.column(name).expect("a key column is a column").ty;
            value_cell(name, ty, v).map_err(|e| e.to_string())
        };
        let example = || {
            let names: Vec<String> = schema
                .partition_key
                .iter()
                .map(|k| format!("\"{k}\": …"))
                .collect();
            format!("{{{}}}", names.join(", "))
        };
        let mut given: serde_json::Map<String, Value> = if key.trim_start().starts_with('{') {
            serde_json::from_str(key)
                .map_err(|e| format!("the key is not a JSON object ({e}); e.g. {}", example()))?
        } else {
            match schema.partition_key.as_slice() {
                [one] => {
                    let ty = schema.column(one).expect("a key column is a column").ty;
                    let v = match ty {
                        ColumnType::Text => Value::String(key.to_owned()),
                        _ => serde_json::from_str(key).unwrap_or(Value::String(key.to_owned())),
                    };
                    [(one.clone(), v)].into_iter().collect()
                }
                _ => {
                    return Err(format!(
                        "the partition key has {} columns: give the key as {}",
                        schema.partition_key.len(),
                        example()
                    ));
                }
            }
        };
        let mut filter = Vec::new();
        for name in &schema.partition_key {
            let v = given.remove(name).ok_or_else(|| {
                format!("the key needs every partition-key column: {}", example())
            })?;
            filter.push((name.clone(), typed(name, &v)?));
        }
        for name in &schema.clustering_key {
            let Some(v) = given.remove(name) else { break };
            filter.push((name.clone(), typed(name, &v)?));
        }
        if let Some(name) = given.keys().next() {
            return Err(if schema.is_key(name) {
                format!("clustering columns are given in order: {name} without the ones before it")
            } else {
                format!("{name} is not a column of the primary key")
            });
        }
        if filter.iter().any(|(_, c)| *c == Cell::Null) {
            return Err("a key column is never null".into());
        }
        Ok(filter)
    }
}
