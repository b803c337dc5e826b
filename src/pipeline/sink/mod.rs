//! Where rows end up: idempotent upserts keyed by the row id. A sink knows
//! nothing of logs; what it promises is this: when `write` returns `Ok`,
//! every row of the batch is stored or listed in `rejected`, and writing the
//! same batch again changes nothing. A sink that can (the embedded store)
//! also keeps an opaque position — per scope and partition, a next offset —
//! in the same transaction as the rows it covers (`write_at`).

pub mod cassandra;
pub mod cassandra_table;
pub mod concurrency;
pub mod sqlite;
mod stream;

pub use stream::{EachRecord, KeyFilter};

use std::collections::BTreeMap;
use std::sync::Arc;

use super::Missing;
use super::shape::Dataset;
use super::table::{TableSchema, TypedRow};
use crate::record::Row;
pub use cassandra::{CassandraSink, CassandraSinkConfig};
pub use cassandra_table::CassandraTableSink;
pub use sqlite::{SqliteSink, SqliteSinkConfig};

/// A batch of rows for the store: the seed table's, or a user table's.
#[derive(Debug, Clone)]
pub enum Rows {
    Users(Arc<[Row]>),
    Table(Arc<[TypedRow]>),
}

impl Rows {
    pub fn len(&self) -> usize {
        match self {
            Rows::Users(r) => r.len(),
            Rows::Table(r) => r.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// No rows, of the kind a store of `schema` takes.
    pub fn none(schema: Option<&Arc<TableSchema>>) -> Rows {
        match schema {
            None => Rows::Users(Arc::from(Vec::new())),
            Some(_) => Rows::Table(Arc::from(Vec::new())),
        }
    }
}

/// Validated sink settings: a closed set, one variant per kind of store.
#[derive(Debug, Clone, PartialEq)]
pub enum SinkConfig {
    Sqlite(SqliteSinkConfig),
    Cassandra(CassandraSinkConfig),
}

/// A position a store keeps beside its rows: per partition, the next offset
/// and, where known, the mark of the message before it. Opaque to the store.
pub type Position = BTreeMap<i32, (i64, Option<String>)>;

/// A sink's acknowledgement of one batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteAck {
    /// Rows inserted or changed.
    pub written: u64,
    /// Rows already stored with the same values (a replay or a repeated seed).
    pub unchanged: u64,
    /// Rows the store refused for good: index in the batch, and why.
    pub rejected: Vec<(usize, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("store {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("store is full: {0}")]
    DiskFull(String),
    #[error("store: {0}")]
    FileGone(String),
    #[error("store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cassandra: {message}")]
    Cassandra { message: String, retryable: bool },
    /// A user pipeline's table cannot be used as it stands (missing, or
    /// another schema than the one declared).
    #[error("{0}")]
    Table(String),
    /// Rows of one kind handed to a store of the other (a bug).
    #[error("rows of another table: {0}")]
    WrongRows(&'static str),
    /// A look at a Cassandra table that was never made (see
    /// [`Sink::open_existing`]).
    #[error("{0}")]
    NotMade(String),
}

impl SinkError {
    /// Whether writing the same batch again later can help.
    pub fn is_retryable(&self) -> bool {
        match self {
            SinkError::DiskFull(_) => true,
            SinkError::Open { .. }
            | SinkError::FileGone(_)
            | SinkError::Table(_)
            | SinkError::NotMade(_)
            | SinkError::WrongRows(_) => false,
            SinkError::Cassandra { retryable, .. } => *retryable,
            SinkError::Sqlite(e) => crate::embedded::is_busy(e),
        }
    }
}

/// A store of rows: a closed set, matched exhaustively. Cheap to clone.
#[derive(Debug, Clone)]
pub enum Sink {
    /// The embedded store, the seed table or a user table.
    Sqlite(SqliteSink),
    /// The seed table in Cassandra.
    Cassandra(CassandraSink),
    /// A user pipeline's table in Cassandra.
    CassandraTable(CassandraTableSink),
}

impl Sink {
    /// Opens the store of a pipeline's dataset, for the commands that
    /// write: the seed table, or the user's table (created with its
    /// keyspace from its declaration when missing, read from the store when
    /// none is declared, compared when both exist).
    pub async fn open(config: &SinkConfig, dataset: &Dataset) -> Result<Sink, SinkError> {
        Self::open_as(config, dataset, Missing::Make).await
    }

    /// Opens the store as it is, for the commands that only look: a
    /// Cassandra table that does not exist is an error naming it, not made.
    /// (An embedded store's file is checked by the caller: none means
    /// nothing was produced.)
    pub async fn open_existing(config: &SinkConfig, dataset: &Dataset) -> Result<Sink, SinkError> {
        Self::open_as(config, dataset, Missing::Refuse).await
    }

    async fn open_as(
        config: &SinkConfig,
        dataset: &Dataset,
        missing: Missing,
    ) -> Result<Sink, SinkError> {
        Ok(match (config, dataset) {
            (SinkConfig::Sqlite(c), _) => Sink::Sqlite(SqliteSink::open(c.clone(), dataset).await?),
            (SinkConfig::Cassandra(c), Dataset::Users) => {
                Sink::Cassandra(CassandraSink::open_as(c.clone(), missing).await?)
            }
            (SinkConfig::Cassandra(c), Dataset::Table(t)) => Sink::CassandraTable(
                CassandraTableSink::open(c.clone(), t.schema.clone(), missing).await?,
            ),
        })
    }

    /// The store's nodes as its driver sees them (Cassandra); `None` for
    /// the embedded store.
    pub fn nodes(&self) -> Option<Vec<cassandra::NodeView>> {
        match self {
            Sink::Sqlite(_) => None,
            Sink::Cassandra(s) => Some(s.nodes()),
            Sink::CassandraTable(s) => Some(s.nodes()),
        }
    }

    /// A user pipeline's table as the store has it; `None` for the seed
    /// table.
    pub fn schema(&self) -> Option<&Arc<TableSchema>> {
        match self {
            Sink::Sqlite(s) => s.schema(),
            Sink::Cassandra(_) => None,
            Sink::CassandraTable(s) => Some(s.schema()),
        }
    }

    /// Upserts the batch; see the module doc for what `Ok` promises.
    pub async fn write(&self, rows: Rows) -> Result<WriteAck, SinkError> {
        if rows.is_empty() {
            return Ok(WriteAck::default());
        }
        timed(async {
            match (self, rows) {
                (Sink::Sqlite(s), rows) => s.write(rows).await,
                (Sink::Cassandra(s), Rows::Users(rows)) => s.write(rows).await,
                (Sink::CassandraTable(s), Rows::Table(rows)) => s.write(rows).await,
                (Sink::Cassandra(_), Rows::Table(_)) => Err(SinkError::WrongRows("typed rows")),
                (Sink::CassandraTable(_), Rows::Users(_)) => Err(SinkError::WrongRows("seed rows")),
            }
        })
        .await
    }

    /// Whether this store keeps a position atomically with its rows.
    pub fn keeps_positions(&self) -> bool {
        match self {
            Sink::Sqlite(_) => true,
            Sink::Cassandra(_) | Sink::CassandraTable(_) => false,
        }
    }

    /// Upserts the batch and, in the same transaction, records `offsets` as
    /// the position of `scope` (even for an empty batch). A store that keeps
    /// no positions writes the rows only.
    pub async fn write_at(
        &self,
        rows: Rows,
        scope: &str,
        position: &Position,
    ) -> Result<WriteAck, SinkError> {
        match self {
            Sink::Sqlite(s) => timed(s.write_at(rows, scope, position)).await,
            Sink::Cassandra(_) | Sink::CassandraTable(_) => self.write(rows).await,
        }
    }

    /// The position stored for `scope`, if this store keeps positions and
    /// has one.
    pub async fn position(&self, scope: &str) -> Result<Option<Position>, SinkError> {
        match self {
            Sink::Sqlite(s) => s.position(scope).await,
            Sink::Cassandra(_) | Sink::CassandraTable(_) => Ok(None),
        }
    }

    /// Rows written at once, at most, now (Cassandra's fixed or adaptive
    /// limit); `None` for the embedded store, which writes a batch in one
    /// transaction.
    pub fn concurrency_limit(&self) -> Option<usize> {
        match self {
            Sink::Sqlite(_) => None,
            Sink::Cassandra(s) => Some(s.concurrency_limit()),
            Sink::CassandraTable(s) => Some(s.concurrency_limit()),
        }
    }

    /// How many rows are stored.
    pub async fn count(&self) -> Result<u64, SinkError> {
        match self {
            Sink::Sqlite(s) => s.count().await,
            Sink::Cassandra(s) => s.count().await,
            Sink::CassandraTable(s) => s.count().await,
        }
    }

    /// Up to `limit` rows of the seed table, newest first where the store
    /// knows the order (none from a user table: see [`Sink::records`]).
    pub async fn rows(&self, limit: usize) -> Result<Vec<Row>, SinkError> {
        match self {
            Sink::Sqlite(s) if s.schema().is_none() => s.rows(limit).await,
            Sink::Sqlite(_) | Sink::CassandraTable(_) => Ok(Vec::new()),
            Sink::Cassandra(s) => s.rows(limit).await,
        }
    }

    /// Up to `limit` stored rows of any table as JSON objects (a user
    /// table's in the log's form), newest first where the store knows the
    /// order.
    pub async fn records(&self, limit: usize) -> Result<Vec<serde_json::Value>, SinkError> {
        let typed = match self {
            Sink::Sqlite(s) => match s.schema() {
                Some(_) => s.table_rows(limit).await?,
                None => return Ok(users_json(s.rows(limit).await?)),
            },
            Sink::Cassandra(s) => return Ok(users_json(s.rows(limit).await?)),
            Sink::CassandraTable(s) => s.rows(limit).await?,
        };
        let schema = self.schema().expect("a user table has a schema");
        Ok(typed_json(schema, &typed))
    }

    /// The stored table's columns, in table order.
    pub fn columns(&self) -> Vec<&str> {
        match self.schema() {
            Some(schema) => schema.columns.iter().map(|c| c.name.as_str()).collect(),
            None => crate::record::ROW_COLUMNS.to_vec(),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Sink::Sqlite(s) => s.describe(),
            Sink::Cassandra(s) => s.describe(),
            Sink::CassandraTable(s) => s.describe(),
        }
    }

    /// One page of the stored rows' ids (only the ids are read), at most
    /// `limit`, continuing from `from` (`None`: the first page). The page's
    /// `next` is `None` after the last page. Pages hold each id once; an id
    /// comes back in no particular order across pages on Cassandra (token
    /// order), in id order on SQLite.
    ///
    /// # Panics
    ///
    /// With a cursor that another kind of store returned.
    pub async fn id_page(&self, from: Option<IdCursor>, limit: usize) -> Result<IdPage, SinkError> {
        match (self, from) {
            (Sink::Sqlite(s), None) => s.id_page(None, limit).await,
            (Sink::Sqlite(s), Some(IdCursor::Sqlite(after))) => s.id_page(Some(after), limit).await,
            (Sink::Cassandra(s), None) => s.id_page(None, limit).await,
            (Sink::Cassandra(s), Some(IdCursor::Cassandra(state))) => {
                s.id_page(Some(state), limit).await
            }
            (Sink::CassandraTable(_), _) => Err(SinkError::WrongRows(
                "verify reads the seed table's ids; a user table is not walked",
            )),
            (_, Some(_)) => panic!("an id cursor of another kind of store"),
        }
    }
}

/// A write, its duration recorded by outcome.
async fn timed(
    write: impl std::future::Future<Output = Result<WriteAck, SinkError>>,
) -> Result<WriteAck, SinkError> {
    let started = std::time::Instant::now();
    let written = write.await;
    let outcome = if written.is_ok() { "ok" } else { "error" };
    metrics::histogram!(crate::telemetry::metrics::SINK_WRITE_DURATION.name, "outcome" => outcome)
        .record(started.elapsed().as_secs_f64());
    written
}

/// Typed rows as JSON objects, in the log's form.
fn typed_json(schema: &TableSchema, rows: &[TypedRow]) -> Vec<serde_json::Value> {
    rows.iter()
        .map(|row| {
            serde_json::from_slice(&super::table::encode(schema, row))
                .expect("an encoded row is JSON")
        })
        .collect()
}

fn users_json(rows: Vec<Row>) -> Vec<serde_json::Value> {
    rows.iter()
        .map(|r| serde_json::from_slice(&r.to_json()).expect("a row is JSON"))
        .collect()
}

/// Where a walk over the store's ids stands between two pages.
#[derive(Debug, Clone)]
pub enum IdCursor {
    /// The last id of the page before (SQLite reads ids in order).
    Sqlite(String),
    /// The driver's paging state (Cassandra reads in token order).
    Cassandra(scylla::response::PagingState),
}

/// One page of the store's ids, as text (a uuid in its hyphenated lower-case
/// form, or whatever else a hand-written row holds).
#[derive(Debug, Clone, Default)]
pub struct IdPage {
    pub ids: Vec<String>,
    /// Where the next page starts; `None` after the last page.
    pub next: Option<IdCursor>,
}
