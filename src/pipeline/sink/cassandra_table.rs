//! A pipeline's typed table in Cassandra: the table is created from its
//! declared schema (or an existing table's schema is read and used), and
//! every [`TypedRow`] is written with one prepared idempotent INSERT of all
//! columns, an upsert keyed by the primary key, a bounded number in flight.

mod cells;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;

use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::Row;

use super::cassandra::{
    CassandraSinkConfig, connect, count_rows, create_keyspace, fatal, prepare_insert, select_rows,
    write_all,
};
use super::concurrency::Limiter;
use super::{KeyFilter, SinkError, WriteAck};
use crate::pipeline::Missing;
use crate::pipeline::table::{Cell, CqlColumnRow, TableSchema, TypedRow};

/// Cheap to clone: clones share the session and the prepared statement.
#[derive(Clone)]
pub struct CassandraTableSink {
    config: Arc<CassandraSinkConfig>,
    schema: Arc<TableSchema>,
    session: Arc<Session>,
    nodes: super::cassandra::NodeWatch,
    insert: PreparedStatement,
    limiter: Arc<Limiter>,
}

impl std::fmt::Debug for CassandraTableSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The config's own `Debug` hides the password.
        f.debug_struct("CassandraTableSink")
            .field("config", &self.config)
            .field("schema", &self.schema)
            .finish()
    }
}

/// The differences between a declared table and an existing one that break
/// writing the declared rows: a declared column missing or of another type,
/// another partition or clustering key. A column of the existing table that
/// is not declared is left alone, unless it is part of the key, and so are
/// its type and kind: the upsert does not name it.
fn breaking_differences(
    declared: &TableSchema,
    existing: &[CqlColumnRow],
) -> Result<Vec<String>, String> {
    let relevant: Vec<CqlColumnRow> = existing
        .iter()
        .filter(|r| {
            declared.column(&r.column_name).is_some()
                || r.kind == "partition_key"
                || r.kind == "clustering"
        })
        .cloned()
        .collect();
    let existing = TableSchema::from_cql_columns(&relevant).map_err(|e| e.to_string())?;
    Ok(declared.diff(&existing))
}

/// The indexes of the rows to write, in batch order: the last row of each
/// primary key. Beside it, per row, the index of the later row with its key
/// that replaces it (`None` for a row that is written). A row with a null
/// key cell is always written, for Cassandra to refuse.
fn last_of_each_key(schema: &TableSchema, rows: &[TypedRow]) -> (Vec<usize>, Vec<Option<usize>>) {
    let key_indexes = schema.key_indexes();
    let keys: Vec<Option<Vec<u8>>> = rows
        .iter()
        .map(|row| {
            let null = key_indexes.iter().any(|&k| row[k] == Cell::Null);
            (!null).then(|| crate::pipeline::table::key(schema, row))
        })
        .collect();
    let mut last = HashMap::with_capacity(rows.len());
    for (i, key) in keys.iter().enumerate() {
        if let Some(key) = key {
            last.insert(key.as_slice(), i);
        }
    }
    let superseded_by: Vec<Option<usize>> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| {
            let l = key.as_ref().map_or(i, |k| last[k.as_slice()]);
            (l != i).then_some(l)
        })
        .collect();
    let kept = (0..rows.len())
        .filter(|&i| superseded_by[i].is_none())
        .collect();
    (kept, superseded_by)
}

/// Quotes a column name (a validated identifier) for CQL, keeping its case.
fn quoted(name: &str) -> String {
    format!("\"{name}\"")
}

impl CassandraTableSink {
    /// Connects with the settings of the Cassandra store (user, password,
    /// TLS), then:
    /// - with a declared `schema`: creates the keyspace and the table if
    ///   missing; an existing table must take the declared rows (the
    ///   declared columns, of their types, and the same key), or opening
    ///   fails naming each difference;
    /// - without one: the table must exist, and its schema, read from
    ///   `system_schema.columns`, is used; a column of a type tributary does
    ///   not write is an error naming it.
    ///
    /// Every failure here is final (not retryable): it needs a person.
    pub async fn open(
        config: CassandraSinkConfig,
        schema: Option<TableSchema>,
        missing: Missing,
    ) -> Result<Self, SinkError> {
        let session = connect(&config).await?;
        let name = format!("{}.{}", config.keyspace, config.table);
        if missing == Missing::Refuse {
            super::cassandra::table_exists(&session, &config).await?;
        }
        let schema = match schema {
            Some(declared) => {
                if missing == Missing::Make {
                    create_keyspace(&session, &config).await?;
                    session
                        .query_unpaged(declared.cql_create(&config.keyspace, &config.table), ())
                        .await
                        .map_err(|e| fatal(&format!("cannot create table {name}"), e))?;
                }
                let existing = read_columns(&session, &config).await?;
                let differences = breaking_differences(&declared, &existing)
                    .map_err(|e| fatal(&format!("table {name}"), e))?;
                if !differences.is_empty() {
                    return Err(fatal(
                        &format!("table {name} exists but differs from the declared table"),
                        differences.join("; "),
                    ));
                }
                declared
            }
            None => {
                let existing = read_columns(&session, &config).await?;
                if existing.is_empty() {
                    return Err(SinkError::Cassandra {
                        message: format!(
                            "table {name} does not exist (declare its columns to have it created)"
                        ),
                        retryable: false,
                    });
                }
                TableSchema::from_cql_columns(&existing)
                    .map_err(|e| fatal(&format!("table {name}"), e))?
            }
        };
        let columns: Vec<String> = schema.columns.iter().map(|c| quoted(&c.name)).collect();
        let insert = prepare_insert(&session, &config, columns.iter().map(String::as_str)).await?;
        let session = Arc::new(session);
        Ok(CassandraTableSink {
            limiter: Limiter::new(config.concurrency),
            config: Arc::new(config),
            schema: Arc::new(schema),
            nodes: super::cassandra::NodeWatch::start(&session),
            session,
            insert,
        })
    }

    /// The nodes as the driver sees them (address, datacenter, up).
    pub fn nodes(&self) -> Vec<super::cassandra::NodeView> {
        self.nodes.nodes()
    }

    /// The table's schema: the declared one, or the one read from the table.
    pub fn schema(&self) -> &Arc<TableSchema> {
        &self.schema
    }

    pub fn describe(&self) -> String {
        format!(
            "cassandra {} table {}.{}",
            self.config.nodes.join(","),
            self.config.keyspace,
            self.config.table
        )
    }

    /// Writes every row, cells in schema column order, with at most
    /// `concurrency` in flight. `Ok` means every row is stored or listed in
    /// `rejected` (a row Cassandra refuses for good, such as one with a null
    /// key cell or a cell of the wrong type); any other failure fails the
    /// batch as retryable (upserts make writing it again harmless).
    ///
    /// A null non-key cell is written as null: the stored row is the last
    /// record, as in the embedded store (a value an earlier write stored is
    /// cleared, at the cost of a tombstone).
    ///
    /// Of several rows with one primary key in the batch only the last is
    /// written: writes in flight together land in any order, so writing
    /// them all could leave an older row stored. The rows it supersedes
    /// share its outcome (counted written, or rejected with its reason).
    pub async fn write(&self, rows: Arc<[TypedRow]>) -> Result<WriteAck, SinkError> {
        let (kept, superseded_by) = last_of_each_key(&self.schema, &rows);
        let kept: Arc<[usize]> = kept.into();
        // Each write owns handles to what it needs, so the futures are
        // 'static and Send.
        let (session, insert) = (&self.session, &self.insert);
        let ack = write_all(kept.len(), &self.limiter, |j| {
            let (session, insert, rows, kept) =
                (session.clone(), insert.clone(), rows.clone(), kept.clone());
            async move {
                session
                    .execute_unpaged(&insert, rows[kept[j]].as_slice())
                    .await
            }
        })
        .await?;
        let reasons: HashMap<usize, String> = ack
            .rejected
            .into_iter()
            .map(|(j, reason)| (kept[j], reason))
            .collect();
        let mut out = WriteAck {
            written: ack.written,
            unchanged: ack.unchanged,
            rejected: Vec::new(),
        };
        for (i, last) in superseded_by.iter().enumerate() {
            let last = last.unwrap_or(i);
            match reasons.get(&last) {
                Some(reason) => out.rejected.push((i, reason.clone())),
                None if last != i => out.written += 1,
                None => {}
            }
        }
        Ok(out)
    }

    /// Writes in flight at once, at most, now.
    pub fn concurrency_limit(&self) -> usize {
        self.limiter.limit()
    }

    pub async fn count(&self) -> Result<u64, SinkError> {
        count_rows(&self.session, &self.config.keyspace, &self.config.table).await
    }

    /// Up to `limit` rows, cells in schema column order, in token order.
    pub async fn rows(&self, limit: usize) -> Result<Vec<TypedRow>, SinkError> {
        self.rows_where(&KeyFilter::new(), limit).await
    }

    /// As [`CassandraTableSink::rows`], only those whose key columns are
    /// `filter`'s.
    pub async fn rows_where(
        &self,
        filter: &KeyFilter,
        limit: usize,
    ) -> Result<Vec<TypedRow>, SinkError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let columns: Vec<String> = self
            .schema
            .columns
            .iter()
            .map(|c| quoted(&c.name))
            .collect();
        let rows = select_rows(
            &self.session,
            &self.config.keyspace,
            &self.config.table,
            &columns,
            filter,
            limit,
        )
        .await?;
        let mut out = Vec::with_capacity(rows.rows_num());
        for row in rows
            .rows::<Row>()
            .map_err(|e| fatal("cannot read rows", e))?
        {
            let row = row.map_err(|e| fatal("cannot read rows", e))?;
            let cells = self
                .schema
                .columns
                .iter()
                .zip(row.columns)
                .map(|(c, v)| {
                    cells::cell(c.ty, v)
                        .map_err(|e| fatal(&format!("cannot read column {}", c.name), e))
                })
                .collect::<Result<TypedRow, SinkError>>()?;
            out.push(cells);
        }
        Ok(out)
    }
}

/// The table's rows of `system_schema.columns`; none if it does not exist.
async fn read_columns(
    session: &Session,
    config: &CassandraSinkConfig,
) -> Result<Vec<CqlColumnRow>, SinkError> {
    let failed = |e: &dyn std::fmt::Display| fatal("cannot read the table's schema", e);
    // Keyspace and table names are unquoted in the DDL, so CQL folded them
    // to lower case.
    let result = session
        .query_unpaged(
            "SELECT column_name, kind, position, type FROM system_schema.columns \
             WHERE keyspace_name = ? AND table_name = ?",
            (
                config.keyspace.to_ascii_lowercase(),
                config.table.to_ascii_lowercase(),
            ),
        )
        .await
        .map_err(|e| failed(&e))?;
    let rows = result.into_rows_result().map_err(|e| failed(&e))?;
    rows.rows::<(String, String, i32, String)>()
        .map_err(|e| failed(&e))?
        .map(|r| {
            let (column_name, kind, position, ty) = r.map_err(|e| failed(&e))?;
            Ok(CqlColumnRow {
                column_name,
                kind,
                position,
                ty,
            })
        })
        .collect()
}
