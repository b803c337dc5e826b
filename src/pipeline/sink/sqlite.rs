//! The embedded store: the seed table's 12 columns in an SQLite file, `id`
//! the primary key, or a user pipeline's typed table (declared, or read
//! from the file), written with idempotent upserts. Beside the table it
//! keeps the position of the log its rows cover, written in the same
//! transaction as the rows: after a crash, a power loss or a restore from an
//! older copy, the rows and the position agree, and reading resumes there.

use std::path::PathBuf;
use std::sync::Arc;

use uuid::Uuid;

use super::{Position, Rows, SinkError, WriteAck};
use crate::clock::now_ms;
use crate::embedded::{self, Shared};
use crate::pipeline::shape::Dataset;
use crate::pipeline::table::{Cell, SqliteColumnRow, TableSchema, TypedRow};
use crate::record::{ROW_COLUMNS, Row};

/// Validated settings of the embedded store.
#[derive(Debug, Clone, PartialEq)]
pub struct SqliteSinkConfig {
    /// The database file (created with its directory if missing).
    pub path: PathBuf,
    /// Table name; a plain identifier (checked by config validation).
    pub table: String,
    /// fsync every commit (`synchronous=FULL`).
    pub durable_fsync: bool,
}

/// The table of positions: per scope (log identity, topic, consumer group)
/// and partition, the next offset after the rows stored.
pub const POSITIONS_TABLE: &str = "tributary_positions";

#[derive(Debug, Clone)]
pub struct SqliteSink {
    config: Arc<SqliteSinkConfig>,
    conn: Shared,
    /// A second connection for counts and reads (`count`, `show`, the
    /// dashboard): in WAL mode readers never wait for the writer, so looking
    /// at the store does not hold up the processor's writes.
    reader: Shared,
    upsert_sql: Arc<str>,
    /// The file opened, to notice it being deleted or replaced under us.
    file: Arc<embedded::FileId>,
    /// A user pipeline's table; `None`: the seed table.
    schema: Option<Arc<TableSchema>>,
}

/// Creates the seed table if missing; whether it was there. A table of that
/// name without the seed's columns is refused, naming what it lacks.
fn open_users_table(conn: &rusqlite::Connection, table: &str) -> Result<bool, String> {
    let sql = |e: rusqlite::Error| e.to_string();
    // A rowid table with a unique id: new rows append to the end of
    // the table (sequential pages) and only the compact id index takes
    // random inserts. Keyed WITHOUT ROWID, every batch of random uuids
    // rewrote most of the table's pages; this writes 3x less.
    let columns = ROW_COLUMNS[1..]
        .iter()
        .map(|c| format!("{c} TEXT NOT NULL"))
        .collect::<Vec<_>>()
        .join(", ");
    let had = table_exists(conn, table).map_err(sql)?;
    if had {
        let present: Vec<String> = conn
            .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .map_err(sql)?;
        let missing: Vec<&str> = ROW_COLUMNS
            .iter()
            .copied()
            .filter(|c| !present.iter().any(|p| p.eq_ignore_ascii_case(c)))
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "table {table} exists without the columns of the users table ({}): \
                 choose another table in the sink URL",
                missing.join(", ")
            ));
        }
    }
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {table} (id TEXT PRIMARY KEY NOT NULL, {columns})"
    ))
    .map_err(sql)?;
    Ok(had)
}

/// A database that holds tables, none of them tributary's and not the table
/// named, is another application's: nothing is created in it. A store of
/// the user's own database is one where the table named is there already.
fn not_someone_elses(conn: &rusqlite::Connection, table: &str) -> Result<(), String> {
    if embedded::application_id(conn)? != 0 {
        return Ok(());
    }
    let tables = embedded::table_names(conn)?;
    let ours =
        |t: &String| t.eq_ignore_ascii_case(table) || t.eq_ignore_ascii_case(POSITIONS_TABLE);
    if tables.is_empty() || tables.iter().any(ours) {
        return Ok(());
    }
    let shown = embedded::some_names(&tables);
    Err(format!(
        "this file holds tables ({shown}) and no table {table}: it belongs to another \
         application; give the store a file of its own (nothing was created in it)"
    ))
}

/// A user table's row as SQLite returns it (columns in `schema`'s order),
/// made back into typed cells.
pub(super) fn typed_row(schema: &TableSchema, r: &rusqlite::Row<'_>) -> rusqlite::Result<TypedRow> {
    schema
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            Cell::from_sqlite(c.ty, r.get_ref(i)?).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
            })
        })
        .collect()
}

/// Whether the table is there, its name compared as SQLite compares names:
/// without case (`Orders` is the table `orders`).
fn table_exists(conn: &rusqlite::Connection, table: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1 COLLATE NOCASE",
        [table],
        |r| r.get::<_, i64>(0).map(|n| n > 0),
    )
}

/// A user pipeline's table: created from the declared schema when missing;
/// when present, read back and compared with the declared one (or used as
/// it is when none was declared). Returns the schema and whether the table
/// was there.
fn open_typed_table(
    conn: &rusqlite::Connection,
    table: &str,
    declared: Option<&TableSchema>,
) -> Result<(TableSchema, bool), String> {
    let sql = |e: rusqlite::Error| e.to_string();
    if !table_exists(conn, table).map_err(sql)? {
        let Some(declared) = declared else {
            return Err(format!(
                "table {table} does not exist, and the pipeline declares no columns to create it \
                 with (add `columns` to its `table`)"
            ));
        };
        conn.execute_batch(&declared.sqlite_create(table))
            .map_err(sql)?;
        return Ok((declared.clone(), false));
    }
    let mut stmt = conn
        .prepare(&format!(
            "SELECT cid, name, type, \"notnull\", pk FROM pragma_table_info('{table}')"
        ))
        .map_err(sql)?;
    let rows = stmt
        .query_map([], |r| {
            Ok(SqliteColumnRow {
                cid: r.get(0)?,
                name: r.get(1)?,
                ty: r.get(2)?,
                notnull: r.get::<_, i64>(3)? != 0,
                pk: r.get(4)?,
            })
        })
        .map_err(sql)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql)?;
    let existing = TableSchema::from_sqlite_columns(&rows)
        .map_err(|e| format!("table {table} cannot be used: {e}"))?;
    match declared {
        None => Ok((existing, true)),
        Some(declared) => {
            let differences = declared.diff_sqlite(&existing);
            if differences.is_empty() {
                Ok((declared.clone(), true))
            } else {
                Err(format!(
                    "table {table} exists with another schema than the pipeline declares: {}",
                    differences.join("; ")
                ))
            }
        }
    }
}

impl SqliteSink {
    pub async fn open(
        config: SqliteSinkConfig,
        dataset: &Dataset,
    ) -> Result<SqliteSink, SinkError> {
        let config = Arc::new(config);
        let cfg = config.clone();
        let declared = dataset.table().map(|t| t.schema.clone());
        let (conn, reader, schema) = tokio::task::spawn_blocking(move || {
            let open_err = |source| SinkError::Open {
                path: cfg.path.display().to_string(),
                source,
            };
            let conn = embedded::open(&cfg.path, cfg.durable_fsync).map_err(open_err)?;
            let table_err = |e: String| SinkError::Table(format!("store {}: {e}", cfg.path.display()));
            embedded::check_role(&conn, embedded::Role::Store).map_err(table_err)?;
            if cfg.table.eq_ignore_ascii_case(POSITIONS_TABLE) {
                return Err(SinkError::Open {
                    path: cfg.path.display().to_string(),
                    source: rusqlite::Error::InvalidParameterName(format!(
                        "the table name {POSITIONS_TABLE} is tributary's own"
                    )),
                });
            }
            not_someone_elses(&conn, &cfg.table).map_err(table_err)?;
            let (had_table, schema) = match &declared {
                None => (
                    open_users_table(&conn, &cfg.table)
                        .map_err(table_err)?,
                    None,
                ),
                Some(declared) => {
                    let (schema, had) = open_typed_table(&conn, &cfg.table, declared.as_ref())
                        .map_err(table_err)?;
                    (had, Some(Arc::new(schema)))
                }
            };
            conn.execute_batch(&format!(
                "CREATE TABLE IF NOT EXISTS {POSITIONS_TABLE} (
                    scope TEXT NOT NULL,
                    partition INTEGER NOT NULL,
                    next_offset INTEGER NOT NULL,
                    updated_ms INTEGER NOT NULL,
                    mark TEXT,
                    PRIMARY KEY (scope, partition)
                 );"
            ))
            .map_err(open_err)?;
            let has_mark: bool = conn
                .query_row(
                    &format!(
                        "SELECT count(*) FROM pragma_table_info('{POSITIONS_TABLE}') WHERE name = 'mark'"
                    ),
                    [],
                    |r| r.get::<_, i64>(0).map(|n| n > 0),
                )
                .map_err(open_err)?;
            if !has_mark {
                conn.execute_batch(&format!("ALTER TABLE {POSITIONS_TABLE} ADD COLUMN mark TEXT"))
                    .map_err(open_err)?;
            }
            if !had_table {
                // The rows a stored position stood for are gone (the table
                // was dropped): forget the positions, so the log is read
                // again from its start.
                conn.execute(&format!("DELETE FROM {POSITIONS_TABLE}"), [])
                    .map_err(open_err)?;
            }
            embedded::mark_role(&conn, embedded::Role::Store).map_err(table_err)?;
            let reader = embedded::open(&cfg.path, false).map_err(open_err)?;
            Ok::<_, SinkError>((conn, reader, schema))
        })
        .await
        .expect("store open task panicked")?;
        let rest = &ROW_COLUMNS[1..];
        let upsert_sql = match &schema {
            Some(schema) => schema.sqlite_upsert(&config.table),
            None => format!(
                "INSERT INTO {table} ({all}) VALUES ({params})
             ON CONFLICT (id) DO UPDATE SET {set}
             WHERE ({rest}) IS NOT ({excluded})",
                table = config.table,
                all = ROW_COLUMNS.join(", "),
                params = (1..=ROW_COLUMNS.len())
                    .map(|i| format!("?{i}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                set = rest
                    .iter()
                    .map(|c| format!("{c} = excluded.{c}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                rest = rest.join(", "),
                excluded = rest
                    .iter()
                    .map(|c| format!("excluded.{c}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
        };
        let file = embedded::FileId::of(&config.path).map_err(|e| SinkError::Open {
            path: config.path.display().to_string(),
            source: rusqlite::Error::InvalidPath(format!("{e}").into()),
        })?;
        Ok(SqliteSink {
            config,
            conn: Arc::new(std::sync::Mutex::new(conn)),
            reader: Arc::new(std::sync::Mutex::new(reader)),
            upsert_sql: upsert_sql.into(),
            file: Arc::new(file),
            schema,
        })
    }

    /// A user pipeline's table, as declared or read from the file.
    /// The reading connection and the table (for `stream.rs`).
    pub(super) fn reader(&self) -> &Shared {
        &self.reader
    }

    pub(super) fn table_name(&self) -> &str {
        &self.config.table
    }

    pub fn schema(&self) -> Option<&Arc<TableSchema>> {
        self.schema.as_ref()
    }

    pub fn describe(&self) -> String {
        format!(
            "sqlite {} table {}",
            self.config.path.display(),
            self.config.table
        )
    }

    pub async fn write(&self, rows: Rows) -> Result<WriteAck, SinkError> {
        self.write_with(rows, None).await
    }

    /// Upserts the rows and records `offsets` as the position of `scope`, in
    /// one transaction: either both are stored or neither.
    pub async fn write_at(
        &self,
        rows: Rows,
        scope: &str,
        position: &Position,
    ) -> Result<WriteAck, SinkError> {
        self.write_with(rows, Some((scope.to_owned(), position.clone())))
            .await
    }

    /// The position last stored for `scope`, if any.
    pub async fn position(&self, scope: &str) -> Result<Option<Position>, SinkError> {
        let scope = scope.to_owned();
        embedded::blocking(&self.reader, move |conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT partition, next_offset, mark FROM {POSITIONS_TABLE} WHERE scope = ?1"
            ))?;
            let position = stmt
                .query_map([scope], |r| {
                    Ok((r.get::<_, i32>(0)?, (r.get::<_, i64>(1)?, r.get(2)?)))
                })?
                .collect::<Result<Position, _>>()?;
            Ok((!position.is_empty()).then_some(position))
        })
        .await
    }

    async fn write_with(
        &self,
        rows: Rows,
        position: Option<(String, Position)>,
    ) -> Result<WriteAck, SinkError> {
        let sql = self.upsert_sql.clone();
        let ack = embedded::blocking(&self.conn, move |conn| {
            let map = |e: rusqlite::Error| {
                if embedded::is_disk_full(&e) {
                    SinkError::DiskFull(e.to_string())
                } else {
                    SinkError::Sqlite(e)
                }
            };
            let tx = conn.transaction().map_err(map)?;
            let mut ack = WriteAck::default();
            {
                let mut upsert = tx.prepare_cached(&sql)?;
                let mut count = |changed: usize| match changed {
                    // 0 changes: the row was already there with these values.
                    0 => ack.unchanged += 1,
                    _ => ack.written += 1,
                };
                match &rows {
                    Rows::Users(rows) => {
                        let mut id_buf = Uuid::encode_buffer();
                        for row in rows.iter() {
                            let id: &str = row.id.hyphenated().encode_lower(&mut id_buf);
                            let changed = upsert
                                .execute(rusqlite::params![
                                    id,
                                    row.first_name,
                                    row.last_name,
                                    row.gender,
                                    row.address,
                                    row.post_code,
                                    row.email,
                                    row.username,
                                    row.dob,
                                    row.registered_date,
                                    row.phone,
                                    row.picture,
                                ])
                                .map_err(map)?;
                            count(changed);
                        }
                    }
                    Rows::Table(rows) => {
                        for row in rows.iter() {
                            let changed = upsert
                                .execute(rusqlite::params_from_iter(row.iter()))
                                .map_err(map)?;
                            count(changed);
                        }
                    }
                }
            }
            if let Some((scope, offsets)) = &position {
                let mut save = tx.prepare_cached(&format!(
                    "INSERT INTO {POSITIONS_TABLE} (scope, partition, next_offset, updated_ms, mark)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (scope, partition) DO UPDATE
                     SET next_offset = excluded.next_offset, updated_ms = excluded.updated_ms,
                        mark = excluded.mark"
                ))?;
                let now = now_ms();
                for (partition, (next, mark)) in offsets {
                    save.execute(rusqlite::params![scope, partition, next, now, mark])
                        .map_err(map)?;
                }
            }
            // The acknowledgement is given only after the commit is durable.
            tx.commit().map_err(map)?;
            Ok::<_, SinkError>(ack)
        })
        .await;
        // After the commit: a store deleted at any moment before it took
        // these rows with it, and the acknowledgement must not be given.
        self.file.vouch(ack, SinkError::FileGone)
    }

    pub async fn count(&self) -> Result<u64, SinkError> {
        let table = self.config.table.clone();
        embedded::blocking(&self.reader, move |conn| {
            let n: i64 =
                conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?;
            Ok(n as u64)
        })
        .await
    }

    pub async fn rows(&self, limit: usize) -> Result<Vec<Row>, SinkError> {
        let table = self.config.table.clone();
        embedded::blocking(&self.reader, move |conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {} FROM {table} ORDER BY rowid DESC LIMIT ?1",
                ROW_COLUMNS.join(", ")
            ))?;
            let rows = stmt.query_map([limit as i64], |r| {
                let id: String = r.get(0)?;
                Ok(Row {
                    id: Uuid::parse_str(&id).map_err(|e| {
                        rusqlite::Error::FromSqlConversionFailure(
                            0,
                            rusqlite::types::Type::Text,
                            Box::new(e),
                        )
                    })?,
                    first_name: r.get(1)?,
                    last_name: r.get(2)?,
                    gender: r.get(3)?,
                    address: r.get(4)?,
                    post_code: r.get(5)?,
                    email: r.get(6)?,
                    username: r.get(7)?,
                    dob: r.get(8)?,
                    registered_date: r.get(9)?,
                    phone: r.get(10)?,
                    picture: r.get(11)?,
                })
            })?;
            rows.collect::<Result<Vec<_>, _>>().map_err(SinkError::from)
        })
        .await
    }

    /// Up to `limit` rows of a user pipeline's table, newest first.
    pub async fn table_rows(&self, limit: usize) -> Result<Vec<TypedRow>, SinkError> {
        let table = self.config.table.clone();
        let Some(schema) = self.schema.clone() else {
            return Ok(Vec::new());
        };
        embedded::blocking(&self.reader, move |conn| {
            let columns = schema
                .columns
                .iter()
                .map(|c| format!("\"{}\"", c.name))
                .collect::<Vec<_>>()
                .join(", ");
            let mut stmt = conn.prepare(&format!(
                "SELECT {columns} FROM {table} ORDER BY rowid DESC LIMIT ?1"
            ))?;
            let rows = stmt.query_map([limit as i64], |r| typed_row(&schema, r))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(SinkError::from)
        })
        .await
    }

    /// One page of ids after `after`, in id order, on the reader connection.
    pub async fn id_page(
        &self,
        after: Option<String>,
        limit: usize,
    ) -> Result<super::IdPage, SinkError> {
        let table = self.config.table.clone();
        embedded::blocking(&self.reader, move |conn| {
            // Two statements, so each page seeks in the id index rather
            // than scanning from the first id.
            let ids = match after {
                None => conn
                    .prepare_cached(&format!("SELECT id FROM {table} ORDER BY id LIMIT ?1"))?
                    .query_map([limit as i64], |r| r.get::<_, String>(0))?
                    .collect::<Result<Vec<_>, _>>()?,
                Some(after) => conn
                    .prepare_cached(&format!(
                        "SELECT id FROM {table} WHERE id > ?1 ORDER BY id LIMIT ?2"
                    ))?
                    .query_map(rusqlite::params![after, limit as i64], |r| {
                        r.get::<_, String>(0)
                    })?
                    .collect::<Result<Vec<_>, _>>()?,
            };
            let next = match ids.last() {
                Some(last) if ids.len() >= limit => Some(super::IdCursor::Sqlite(last.clone())),
                _ => None,
            };
            Ok(super::IdPage { ids, next })
        })
        .await
    }
}

#[cfg(test)]
mod tests;
