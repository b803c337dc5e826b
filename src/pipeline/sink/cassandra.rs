//! Apache Cassandra as the store, over the `scylla` driver (it speaks CQL to
//! Cassandra): the seed table `spark_streams.created_users`, created if
//! missing and checked if present, written with one prepared idempotent
//! INSERT per row, a bounded number in flight, token-aware routing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use scylla::client::session::Session;
use scylla::errors::{DbError, ExecutionError, RequestAttemptError};
use scylla::response::query_result::QueryRowsResult;
use scylla::statement::Consistency;
use scylla::statement::prepared::PreparedStatement;
use uuid::Uuid;

pub(super) use connect::connect;
pub use nodes::{NodeView, NodeWatch};

use super::concurrency::Limiter;
use super::{KeyFilter, SinkError, WriteAck};
use crate::pipeline::Missing;
use crate::pipeline::table::Cell;
use crate::record::{ROW_COLUMNS, Row};

/// Validated settings of the Cassandra store.
#[derive(Clone, PartialEq)]
pub struct CassandraSinkConfig {
    /// Contact points, `host:port`.
    pub nodes: Vec<String>,
    pub keyspace: String,
    pub table: String,
    pub user: Option<String>,
    /// Never printed (see the `Debug` impl).
    pub password: Option<String>,
    /// Replication of a keyspace tributary creates, as CQL map entries:
    /// `{'class': 'SimpleStrategy', 'replication_factor': '1'}` by default.
    pub replication: BTreeMap<String, String>,
    pub consistency: Consistency,
    /// Rows written at once, at most: a fixed number, or `None` for a limit
    /// that adapts to the store's answers (see `sink/concurrency.rs`).
    pub concurrency: Option<usize>,
    /// TLS to the nodes, trusting the CA certificates in this PEM file.
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// The datacenter whose nodes take the requests (`LOCAL_*` consistency
    /// counts its replicas): the one of `datacenters` when it names one.
    pub local_datacenter: Option<String>,
}

impl std::fmt::Debug for CassandraSinkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CassandraSinkConfig")
            .field("nodes", &self.nodes)
            .field("keyspace", &self.keyspace)
            .field("table", &self.table)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("replication", &self.replication)
            .field("consistency", &self.consistency)
            .field("concurrency", &self.concurrency)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("local_datacenter", &self.local_datacenter)
            .finish()
    }
}

/// The seed table's column types, in [`ROW_COLUMNS`] order.
fn column_type(column: &str) -> &'static str {
    if column == "id" { "uuid" } else { "text" }
}

/// The bind values of the prepared INSERT, in [`ROW_COLUMNS`] order; the id
/// is bound as a value so the driver can route by token.
pub(crate) type InsertValues<'a> = (
    Uuid,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
);

/// A row's bind values; visible in the crate for `tributary bench`, whose
/// raw driver loop binds exactly what the sink binds.
pub(crate) fn insert_values(r: &Row) -> InsertValues<'_> {
    (
        r.id,
        &r.first_name,
        &r.last_name,
        &r.gender,
        &r.address,
        &r.post_code,
        &r.email,
        &r.username,
        &r.dob,
        &r.registered_date,
        &r.phone,
        &r.picture,
    )
}

#[derive(Clone)]
pub struct CassandraSink {
    config: Arc<CassandraSinkConfig>,
    session: Arc<Session>,
    insert: PreparedStatement,
    nodes: NodeWatch,
    limiter: Arc<Limiter>,
}

impl std::fmt::Debug for CassandraSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CassandraSink")
            .field("config", &self.config)
            .finish()
    }
}

pub(super) fn fatal(context: &str, e: impl std::fmt::Display) -> SinkError {
    SinkError::Cassandra {
        message: format!("{context}: {e}"),
        retryable: false,
    }
}

/// What a failed write means: try the batch again later, refuse this row
/// for good, or stop.
pub(super) enum Failure {
    Transient(String),
    Rejected(String),
    Fatal(String),
}

pub(super) fn classify(e: &ExecutionError) -> Failure {
    match e {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(db, msg)) => match db {
            DbError::Invalid if schema_gone(msg) => Failure::Fatal(format!(
                "{db}: {msg}: the table or a column of it was dropped while in use; nothing of \
                 this batch is committed. `process` makes the table again and goes on from the \
                 group's commit, so rows stored before are not in it: to write the whole log \
                 into it again, run `process --group` with a new group"
            )),
            DbError::Invalid | DbError::SyntaxError | DbError::FunctionFailure { .. } => {
                Failure::Rejected(format!("{db}: {msg}"))
            }
            DbError::AuthenticationError | DbError::Unauthorized | DbError::ConfigError => {
                Failure::Fatal(format!("{db}: {msg}"))
            }
            _ => Failure::Transient(format!("{db}: {msg}")),
        },
        ExecutionError::BadQuery(b) => Failure::Rejected(b.to_string()),
        other => Failure::Transient(other.to_string()),
    }
}

/// Whether Cassandra refused a write because its table, keyspace or a
/// column is gone: true of every row, not one row's fault (Cassandra 5
/// says "table t does not exist", older nodes "unconfigured table t").
fn schema_gone(msg: &str) -> bool {
    let msg = msg.to_ascii_lowercase();
    // "table t does not exist", "keyspace 'ks' does not exist": the two
    // words before it name what is gone.
    let named_gone = msg.match_indices(" does not exist").any(|(at, _)| {
        let mut words = msg[..at].split_whitespace().rev();
        let _name = words.next();
        matches!(words.next(), Some("table" | "keyspace"))
    });
    named_gone
        || ["unconfigured table", "undefined column name"]
            .iter()
            .any(|said| msg.contains(said))
}

/// Creates the configured keyspace, with the configured replication, if it
/// is missing.
pub(super) async fn create_keyspace(
    session: &Session,
    config: &CassandraSinkConfig,
) -> Result<(), SinkError> {
    let replication = config
        .replication
        .iter()
        .map(|(k, v)| format!("'{k}': '{v}'"))
        .collect::<Vec<_>>()
        .join(", ");
    session
        .query_unpaged(
            format!(
                "CREATE KEYSPACE IF NOT EXISTS {} WITH replication = {{{replication}}}",
                config.keyspace
            ),
            (),
        )
        .await
        .map_err(|e| fatal(&format!("cannot create keyspace {}", config.keyspace), e))?;
    Ok(())
}

/// The INSERT of every column of the configured table (an upsert of the
/// whole row), prepared at the configured consistency and marked idempotent.
/// Columns are written as given: quote them for a case-sensitive name.
pub(super) async fn prepare_insert<'a>(
    session: &Session,
    config: &CassandraSinkConfig,
    columns: impl ExactSizeIterator<Item = &'a str>,
) -> Result<PreparedStatement, SinkError> {
    let placeholders = vec!["?"; columns.len()].join(", ");
    let columns = columns.collect::<Vec<_>>().join(", ");
    let mut insert = session
        .prepare(format!(
            "INSERT INTO {}.{} ({columns}) VALUES ({placeholders})",
            config.keyspace, config.table
        ))
        .await
        .map_err(|e| fatal("cannot prepare the insert", e))?;
    insert.set_consistency(config.consistency);
    // The partition key is bound as a value, so the driver computes each
    // row's token and sends it to a replica (token-aware routing).
    if insert.is_token_aware() {
        tracing::debug!(
            keyspace = %config.keyspace,
            table = %config.table,
            "insert is token-aware: the partition key is bound"
        );
    } else {
        tracing::warn!(
            keyspace = %config.keyspace,
            table = %config.table,
            "insert is not token-aware: rows go to any node, which forwards them"
        );
    }
    // An upsert of the whole row: writing it twice is harmless, so the
    // driver may retry and speculate.
    insert.set_is_idempotent(true);
    Ok(insert)
}

/// Up to `limit` rows of a table, `columns` of each, in token order.
pub(super) async fn select_rows(
    session: &Session,
    keyspace: &str,
    table: &str,
    columns: &[impl AsRef<str>],
    filter: &KeyFilter,
    limit: usize,
) -> Result<QueryRowsResult, SinkError> {
    let columns: Vec<&str> = columns.iter().map(AsRef::as_ref).collect();
    let limit = limit.min(i32::MAX as usize);
    let result = if filter.is_empty() {
        session
            .query_unpaged(
                format!(
                    "SELECT {} FROM {keyspace}.{table} LIMIT {limit}",
                    columns.join(", ")
                ),
                (),
            )
            .await
    } else {
        // Key columns only, each `= ?`: a read of one partition.
        let wanted: Vec<String> = filter
            .iter()
            .map(|(name, _)| format!("\"{name}\" = ?"))
            .collect();
        let values: Vec<Cell> = filter.iter().map(|(_, cell)| cell.clone()).collect();
        session
            .query_unpaged(
                format!(
                    "SELECT {} FROM {keyspace}.{table} WHERE {} LIMIT {limit}",
                    columns.join(", "),
                    wanted.join(" AND ")
                ),
                values,
            )
            .await
    };
    result
        .map_err(|e| fatal("cannot read rows", e))?
        .into_rows_result()
        .map_err(|e| fatal("cannot read rows", e))
}

/// `SELECT count(*)` of a table: a full scan, given two minutes. The
/// request is paged, so the server reads the table a page at a time, each
/// under its own read timeout, and still answers with one row, the count.
/// A busy cluster (a node just back, replaying hints) can still time a
/// page out: a count that failed that way is asked again, after 1, 2, 4
/// and 8 s, saying so.
pub(super) async fn count_rows(
    session: &Session,
    keyspace: &str,
    table: &str,
) -> Result<u64, SinkError> {
    let mut delay = Duration::from_secs(1);
    let mut attempt = 1;
    loop {
        match count_once(session, keyspace, table).await {
            Err(CountError::Transient(e)) if attempt < COUNT_ATTEMPTS => {
                tracing::warn!(
                    attempt,
                    delay_s = delay.as_secs(),
                    error = %e,
                    "cassandra: the count failed; asking again"
                );
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            Err(CountError::Transient(e) | CountError::Fatal(e)) => {
                return Err(fatal("cannot count rows", e));
            }
            Ok(n) => return Ok(n),
        }
    }
}

/// Attempts of a count (see [`count_rows`]).
const COUNT_ATTEMPTS: u32 = 5;

enum CountError {
    /// A timeout or an unavailable replica: the same count later may do.
    Transient(String),
    Fatal(String),
}

async fn count_once(session: &Session, keyspace: &str, table: &str) -> Result<u64, CountError> {
    let mut q = scylla::statement::unprepared::Statement::new(format!(
        "SELECT count(*) FROM {keyspace}.{table}"
    ));
    q.set_page_size(COUNT_PAGE);
    q.set_request_timeout(Some(Duration::from_secs(120)));
    let fatal = |e: &dyn std::fmt::Display| CountError::Fatal(e.to_string());
    let mut state = scylla::response::PagingState::start();
    let mut count = None;
    loop {
        let (result, paging) = session
            .query_single_page(q.clone(), (), state)
            .await
            .map_err(|e| match classify(&e) {
                Failure::Transient(_) => CountError::Transient(e.to_string()),
                _ => CountError::Fatal(e.to_string()),
            })?;
        let rows = result.into_rows_result().map_err(|e| fatal(&e))?;
        for row in rows.rows::<(i64,)>().map_err(|e| fatal(&e))? {
            let (n,) = row.map_err(|e| fatal(&e))?;
            count = Some(n);
        }
        match paging.into_paging_control_flow() {
            std::ops::ControlFlow::Continue(next) => state = next,
            std::ops::ControlFlow::Break(()) => break,
        }
    }
    count
        .map(|n| n as u64)
        .ok_or_else(|| CountError::Fatal("the answer held no count".into()))
}

/// Rows a page of a count reads.
const COUNT_PAGE: i32 = 5_000;

/// Fails, naming the table, unless the configured table exists: the
/// commands that only look at a store do not make one (a mistyped name
/// would otherwise be made on the cluster, and read as empty).
pub(super) async fn table_exists(
    session: &Session,
    config: &CassandraSinkConfig,
) -> Result<(), SinkError> {
    let result = session
        .query_unpaged(
            "SELECT table_name FROM system_schema.tables \
             WHERE keyspace_name = ? AND table_name = ?",
            (
                config.keyspace.to_ascii_lowercase(),
                config.table.to_ascii_lowercase(),
            ),
        )
        .await
        .map_err(|e| fatal("cannot read the table's schema", e))?;
    let found = result
        .into_rows_result()
        .map_err(|e| fatal("cannot read the table's schema", e))?
        .rows_num()
        > 0;
    if found {
        return Ok(());
    }
    Err(SinkError::NotMade(format!(
        "table {}.{} does not exist on {}: nothing was stored in it yet (`run`, `process` and \
         `serve` make it), or its name is mistyped",
        config.keyspace,
        config.table,
        config.nodes.join(",")
    )))
}

impl CassandraSink {
    /// Opens the seed table, made with its keyspace when missing.
    pub async fn open(config: CassandraSinkConfig) -> Result<CassandraSink, SinkError> {
        Self::open_as(config, Missing::Make).await
    }

    pub async fn open_as(
        config: CassandraSinkConfig,
        missing: Missing,
    ) -> Result<CassandraSink, SinkError> {
        let started = std::time::Instant::now();
        let session = connect(&config).await?;
        tracing::debug!(
            ms = started.elapsed().as_millis() as u64,
            "start: cassandra connected"
        );
        match missing {
            Missing::Make => create_keyspace(&session, &config).await?,
            Missing::Refuse => table_exists(&session, &config).await?,
        }
        let sink_table = format!("{}.{}", config.keyspace, config.table);
        let columns = ROW_COLUMNS
            .iter()
            .map(|c| {
                let key = if *c == "id" { " PRIMARY KEY" } else { "" };
                format!("{c} {}{key}", column_type(c).to_uppercase())
            })
            .collect::<Vec<_>>()
            .join(", ");
        if missing == Missing::Make {
            session
                .query_unpaged(
                    format!("CREATE TABLE IF NOT EXISTS {sink_table} ({columns})"),
                    (),
                )
                .await
                .map_err(|e| fatal(&format!("cannot create table {sink_table}"), e))?;
        }
        check_schema(&session, &config.keyspace, &config.table).await?;
        tracing::debug!(
            ms = started.elapsed().as_millis() as u64,
            "start: cassandra table checked"
        );
        let insert = prepare_insert(&session, &config, ROW_COLUMNS.iter().copied()).await?;
        tracing::debug!(
            ms = started.elapsed().as_millis() as u64,
            "start: cassandra insert prepared"
        );
        let session = Arc::new(session);
        Ok(CassandraSink {
            limiter: Limiter::new(config.concurrency),
            config: Arc::new(config),
            nodes: NodeWatch::start(&session),
            session,
            insert,
        })
    }

    pub fn describe(&self) -> String {
        format!(
            "cassandra {} table {}.{}",
            self.config.nodes.join(","),
            self.config.keyspace,
            self.config.table
        )
    }

    /// Writes every row with at most `concurrency` in flight. A row Cassandra
    /// refuses for good is listed in `rejected`; any other failure fails the
    /// batch as retryable (the processor writes it again; upserts make that
    /// harmless).
    pub async fn write(&self, rows: Arc<[Row]>) -> Result<WriteAck, SinkError> {
        // Each write owns handles to what it needs, so the stream of
        // futures is 'static and Send (borrowing closures are not, for the
        // processor's spawned write stage).
        let (session, insert) = (&self.session, &self.insert);
        write_all(rows.len(), &self.limiter, |i| {
            let (session, insert, rows) = (session.clone(), insert.clone(), rows.clone());
            async move {
                session
                    .execute_unpaged(&insert, insert_values(&rows[i]))
                    .await
            }
        })
        .await
    }

    /// The nodes as the driver sees them (address, datacenter, up).
    pub fn nodes(&self) -> Vec<NodeView> {
        self.nodes.nodes()
    }

    /// Whether the prepared insert routes by token (its partition key is
    /// bound as a value).
    pub fn token_aware(&self) -> bool {
        self.insert.is_token_aware()
    }

    pub async fn count(&self) -> Result<u64, SinkError> {
        count_rows(&self.session, &self.config.keyspace, &self.config.table).await
    }

    /// Writes in flight at once, at most, now.
    pub fn concurrency_limit(&self) -> usize {
        self.limiter.limit()
    }

    pub async fn rows(&self, limit: usize) -> Result<Vec<Row>, SinkError> {
        self.rows_where(&KeyFilter::new(), limit).await
    }

    /// As [`CassandraSink::rows`], only those whose key columns are `filter`'s.
    pub async fn rows_where(
        &self,
        filter: &KeyFilter,
        limit: usize,
    ) -> Result<Vec<Row>, SinkError> {
        type Cells = (
            Uuid,
            String,
            String,
            String,
            String,
            String,
            String,
            String,
            String,
            String,
            String,
            String,
        );
        let rows = select_rows(
            &self.session,
            &self.config.keyspace,
            &self.config.table,
            &ROW_COLUMNS,
            filter,
            limit,
        )
        .await?;
        let mut out = Vec::new();
        for cells in rows
            .rows::<Cells>()
            .map_err(|e| fatal("cannot read rows", e))?
        {
            let c = cells.map_err(|e| fatal("cannot read rows", e))?;
            out.push(Row {
                id: c.0,
                first_name: c.1,
                last_name: c.2,
                gender: c.3,
                address: c.4,
                post_code: c.5,
                email: c.6,
                username: c.7,
                dob: c.8,
                registered_date: c.9,
                phone: c.10,
                picture: c.11,
            });
        }
        Ok(out)
    }

    /// One page of ids, in token order, continuing from the driver's paging
    /// state. Read at the write consistency, so every acknowledged row is
    /// seen. A page that times out can be asked again with the same state.
    pub async fn id_page(
        &self,
        from: Option<scylla::response::PagingState>,
        limit: usize,
    ) -> Result<super::IdPage, SinkError> {
        let mut q = scylla::statement::unprepared::Statement::new(format!(
            "SELECT id FROM {}.{}",
            self.config.keyspace, self.config.table
        ));
        q.set_page_size(limit.clamp(1, i32::MAX as usize) as i32);
        q.set_consistency(self.config.consistency);
        q.set_request_timeout(Some(Duration::from_secs(60)));
        let state = from.unwrap_or_else(scylla::response::PagingState::start);
        let failed = |e: ExecutionError| {
            let retryable = matches!(classify(&e), Failure::Transient(_));
            SinkError::Cassandra {
                message: format!("cannot read ids: {e}"),
                retryable,
            }
        };
        let (result, paging) = self
            .session
            .query_single_page(q, (), state)
            .await
            .map_err(failed)?;
        let rows = result
            .into_rows_result()
            .map_err(|e| fatal("cannot read ids", e))?;
        let mut ids = Vec::with_capacity(rows.rows_num());
        for id in rows
            .rows::<(Uuid,)>()
            .map_err(|e| fatal("cannot read ids", e))?
        {
            let (id,) = id.map_err(|e| fatal("cannot read ids", e))?;
            ids.push(id.hyphenated().to_string());
        }
        let next = match paging.into_paging_control_flow() {
            std::ops::ControlFlow::Continue(state) => Some(super::IdCursor::Cassandra(state)),
            std::ops::ControlFlow::Break(()) => None,
        };
        Ok(super::IdPage { ids, next })
    }
}

/// Fails with the list of differences when an existing table does not have
/// the seed table's columns and types.
async fn check_schema(session: &Session, keyspace: &str, table: &str) -> Result<(), SinkError> {
    let result = session
        .query_unpaged(
            "SELECT column_name, type FROM system_schema.columns \
             WHERE keyspace_name = ? AND table_name = ?",
            (keyspace, table),
        )
        .await
        .map_err(|e| fatal("cannot read the table's schema", e))?;
    let rows = result
        .into_rows_result()
        .map_err(|e| fatal("cannot read the table's schema", e))?;
    let mut actual = BTreeMap::new();
    for row in rows
        .rows::<(String, String)>()
        .map_err(|e| fatal("cannot read the table's schema", e))?
    {
        let (name, ty) = row.map_err(|e| fatal("cannot read the table's schema", e))?;
        actual.insert(name, ty);
    }
    let differences = schema_differences(&actual);
    if differences.is_empty() {
        Ok(())
    } else {
        Err(fatal(
            &format!("table {keyspace}.{table} exists but differs from the seed table"),
            differences.join("; "),
        ))
    }
}

/// Differences between an existing table's columns (name → CQL type) and the
/// seed table.
fn schema_differences(actual: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    for c in ROW_COLUMNS {
        let want = column_type(c);
        match actual.get(c) {
            None => out.push(format!("column {c} is missing (want {want})")),
            Some(ty) if ty != want => out.push(format!("column {c} is {ty}, want {want}")),
            Some(_) => {}
        }
    }
    for name in actual.keys() {
        if !ROW_COLUMNS.contains(&name.as_str()) {
            out.push(format!("column {name} is not in the seed table"));
        }
    }
    out
}

mod connect;
mod nodes;
#[cfg(test)]
mod tests;
mod write;

pub(super) use write::write_all;
