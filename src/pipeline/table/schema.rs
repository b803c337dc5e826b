//! A pipeline's declared table: column types, the validated schema, the DDL
//! for Cassandra and SQLite, the schema read back from either store, and the
//! differences between two schemas.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::str::FromStr;

use rusqlite::types::{ToSqlOutput, ValueRef};

use super::check::Cell;

/// Longest column name: Cassandra's limit for table names, applied to columns
/// too so a name never has to be shortened for one store.
pub const MAX_NAME_LEN: usize = 48;

/// The type of a column, as the user writes it (`text`, `list<text>`, ...).
/// `Display` is the canonical CQL name; parsing is case-insensitive and
/// ignores spaces, so `LIST< Text >` is `list<text>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColumnType {
    Text,
    Int,
    Bigint,
    Double,
    Boolean,
    Uuid,
    Timestamp,
    Date,
    Decimal,
    ListText,
    MapTextText,
}

impl ColumnType {
    pub const ALL: [ColumnType; 11] = [
        ColumnType::Text,
        ColumnType::Int,
        ColumnType::Bigint,
        ColumnType::Double,
        ColumnType::Boolean,
        ColumnType::Uuid,
        ColumnType::Timestamp,
        ColumnType::Date,
        ColumnType::Decimal,
        ColumnType::ListText,
        ColumnType::MapTextText,
    ];

    /// The canonical CQL name.
    pub fn cql(self) -> &'static str {
        match self {
            ColumnType::Text => "text",
            ColumnType::Int => "int",
            ColumnType::Bigint => "bigint",
            ColumnType::Double => "double",
            ColumnType::Boolean => "boolean",
            ColumnType::Uuid => "uuid",
            ColumnType::Timestamp => "timestamp",
            ColumnType::Date => "date",
            ColumnType::Decimal => "decimal",
            ColumnType::ListText => "list<text>",
            ColumnType::MapTextText => "map<text, text>",
        }
    }

    /// The type in a CQL `CREATE TABLE`. Collections are frozen: tributary
    /// always writes a whole row, and a frozen collection is one cell, so a
    /// rewrite replaces it without the tombstone a non-frozen collection
    /// gets on every INSERT (a replayed batch would otherwise pile them up).
    pub fn cql_ddl(self) -> &'static str {
        match self {
            ColumnType::ListText => "frozen<list<text>>",
            ColumnType::MapTextText => "frozen<map<text, text>>",
            other => other.cql(),
        }
    }

    /// The declared type of the SQLite column. Each name is chosen so that
    /// SQLite's affinity rules give the storage tributary writes (a name
    /// containing `INT` is INTEGER, `TEXT` is TEXT, `DOUB` is REAL), and so
    /// that `PRAGMA table_info` gives the logical type back. The types stored
    /// as text must have TEXT affinity: under the NUMERIC affinity a bare
    /// `DECIMAL` would get, SQLite turns `'12.50'` into the double 12.5.
    ///
    /// Storage: uuid as lower-case hyphenated text; timestamp as INTEGER
    /// milliseconds since the epoch (UTC), the value Cassandra stores, exact,
    /// eight bytes, and ordered as numbers (text would order correctly only
    /// while every value had the same shape); date as `YYYY-MM-DD`; decimal as
    /// its exact text; boolean as 0/1; list and map as JSON text.
    pub fn sqlite(self) -> &'static str {
        match self {
            ColumnType::Text => "TEXT",
            ColumnType::Int => "INT",
            ColumnType::Bigint => "BIGINT",
            ColumnType::Double => "DOUBLE",
            ColumnType::Boolean => "BOOLEAN INTEGER",
            ColumnType::Uuid => "UUID TEXT",
            ColumnType::Timestamp => "TIMESTAMP INTEGER",
            ColumnType::Date => "DATE TEXT",
            ColumnType::Decimal => "DECIMAL TEXT",
            ColumnType::ListText => "LIST TEXT",
            ColumnType::MapTextText => "MAP TEXT",
        }
    }

    /// Lists and maps cannot be part of a key.
    pub fn is_collection(self) -> bool {
        matches!(self, ColumnType::ListText | ColumnType::MapTextText)
    }

    /// A type as Cassandra's `system_schema.columns` spells it: `text`,
    /// `map<text, text>`, `frozen<list<text>>`. Frozen and non-frozen
    /// collections are the same type here: both take a whole-row write.
    pub fn from_cql(s: &str) -> Option<ColumnType> {
        let mut t: String = s
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_lowercase();
        while let Some(inner) = t.strip_prefix("frozen<").and_then(|r| r.strip_suffix('>')) {
            t = inner.to_owned();
        }
        Self::from_compact(&t)
    }

    /// A declared type of a SQLite column, as [`ColumnType::sqlite`] writes it.
    pub fn from_sqlite(s: &str) -> Option<ColumnType> {
        let t = s.split_whitespace().collect::<Vec<_>>().join(" ");
        ColumnType::ALL
            .into_iter()
            .find(|ty| ty.sqlite().eq_ignore_ascii_case(&t))
    }

    /// `t` is lower case without spaces.
    fn from_compact(t: &str) -> Option<ColumnType> {
        Some(match t {
            // CQL's alias: Cassandra itself reports `varchar` as `text`.
            "text" | "varchar" => ColumnType::Text,
            "int" => ColumnType::Int,
            "bigint" => ColumnType::Bigint,
            "double" => ColumnType::Double,
            "boolean" => ColumnType::Boolean,
            "uuid" => ColumnType::Uuid,
            "timestamp" => ColumnType::Timestamp,
            "date" => ColumnType::Date,
            "decimal" => ColumnType::Decimal,
            "list<text>" => ColumnType::ListText,
            "map<text,text>" => ColumnType::MapTextText,
            _ => return None,
        })
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.cql())
    }
}

impl FromStr for ColumnType {
    type Err = SchemaError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let compact: String = s
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_lowercase();
        ColumnType::from_compact(&compact).ok_or_else(|| SchemaError::UnknownType {
            column: None,
            ty: s.to_owned(),
        })
    }
}

fn valid_types() -> String {
    ColumnType::ALL
        .iter()
        .map(|t| t.cql())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A cell bound to a SQLite parameter, in the storage [`ColumnType::sqlite`]
/// names: timestamps as INTEGER milliseconds, booleans as 0/1, uuids and
/// dates as text, lists and maps as JSON text.
impl rusqlite::ToSql for Cell {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        use rusqlite::types::Value as Sql;
        Ok(match self {
            Cell::Null => ToSqlOutput::Owned(Sql::Null),
            Cell::Text(t) | Cell::Decimal(t) => ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes())),
            Cell::Int(n) => ToSqlOutput::Owned(Sql::Integer((*n).into())),
            Cell::Bigint(n) | Cell::Timestamp(n) => ToSqlOutput::Owned(Sql::Integer(*n)),
            Cell::Double(x) => ToSqlOutput::Owned(Sql::Real(*x)),
            Cell::Boolean(b) => ToSqlOutput::Owned(Sql::Integer((*b).into())),
            Cell::Uuid(u) => ToSqlOutput::Owned(Sql::Text(u.hyphenated().to_string())),
            Cell::Date(d) => ToSqlOutput::Owned(Sql::Text(d.format("%Y-%m-%d").to_string())),
            Cell::List(items) => ToSqlOutput::Owned(Sql::Text(
                serde_json::to_string(items).expect("strings serialise"),
            )),
            Cell::Map(entries) => ToSqlOutput::Owned(Sql::Text(
                serde_json::to_string(entries).expect("strings serialise"),
            )),
        })
    }
}

impl Cell {
    /// A cell read back from SQLite, by the column's type (the inverse of
    /// the `ToSql` above).
    pub fn from_sqlite(ty: ColumnType, v: ValueRef<'_>) -> Result<Cell, String> {
        let text = |v: ValueRef<'_>| -> Result<String, String> {
            v.as_str().map(str::to_owned).map_err(|e| e.to_string())
        };
        if let ValueRef::Null = v {
            return Ok(Cell::Null);
        }
        let int = |v: ValueRef<'_>| v.as_i64().map_err(|e| e.to_string());
        Ok(match ty {
            ColumnType::Text => Cell::Text(text(v)?),
            ColumnType::Decimal => Cell::Decimal(text(v)?),
            ColumnType::Int => Cell::Int(i32::try_from(int(v)?).map_err(|e| e.to_string())?),
            ColumnType::Bigint => Cell::Bigint(int(v)?),
            ColumnType::Timestamp => Cell::Timestamp(int(v)?),
            ColumnType::Double => Cell::Double(match v {
                ValueRef::Integer(n) => n as f64,
                other => other.as_f64().map_err(|e| e.to_string())?,
            }),
            ColumnType::Boolean => Cell::Boolean(int(v)? != 0),
            ColumnType::Uuid => {
                Cell::Uuid(uuid::Uuid::parse_str(&text(v)?).map_err(|e| e.to_string())?)
            }
            ColumnType::Date => Cell::Date(
                chrono::NaiveDate::parse_from_str(&text(v)?, "%Y-%m-%d")
                    .map_err(|e| e.to_string())?,
            ),
            ColumnType::ListText => {
                Cell::List(serde_json::from_str(&text(v)?).map_err(|e| e.to_string())?)
            }
            ColumnType::MapTextText => {
                Cell::Map(serde_json::from_str(&text(v)?).map_err(|e| e.to_string())?)
            }
        })
    }
}

/// Why a declared table, or a table read back from a store, is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("{}unknown type {ty:?}; valid types: {}", column.as_ref().map(|c| format!("column {c}: ")).unwrap_or_default(), valid_types())]
    UnknownType { column: Option<String>, ty: String },
    #[error("column name {name:?} {reason}")]
    BadName { name: String, reason: &'static str },
    #[error("column {0} is declared twice (names differ only in case at most)")]
    DuplicateColumn(String),
    #[error("the table needs at least one partition key column")]
    NoPartitionKey,
    #[error("key column {0} is not a column of the table")]
    UnknownKeyColumn(String),
    #[error("key column {0} appears twice in the key")]
    DuplicateKeyColumn(String),
    #[error("key column {column} is a {ty}; a key column cannot be a list or a map")]
    CollectionKey { column: String, ty: ColumnType },
    #[error("column {column}: {reason}")]
    Existing { column: String, reason: String },
}

/// One column: its name (also the field of the transformed record) and type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub ty: ColumnType,
}

/// A validated table.
///
/// The key is declared as two lists: `key` names the partition key columns
/// (all of them: `key = ["shop", "order"]` is a composite partition key) and
/// the optional `clustering` names the clustering columns, in order:
///
/// ```toml
/// table = { key = ["id"], columns = { id = "text", total = "double" } }
/// table = { key = ["shop"], clustering = ["placed_at", "id"], columns = { ... } }
/// ```
///
/// Two flat lists rather than CQL's nested `((a, b), c)`: `key = ["a", "b"]`
/// means what a reader who does not know CQL expects (the row is identified
/// by a and b together, both spreading rows across the cluster), and the
/// second list is only there for whoever wants rows ordered within a
/// partition. The primary key is partition key then clustering key.
///
/// Column names are ASCII letters, digits and `_`, not starting with a digit,
/// at most [`MAX_NAME_LEN`] long, and unique ignoring case (SQLite compares
/// column names without case). They are quoted in the DDL, so their case is
/// kept and words such as `key` or `order` are usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSchema {
    pub columns: Vec<Column>,
    pub partition_key: Vec<String>,
    pub clustering_key: Vec<String>,
}

/// One row of Cassandra's `system_schema.columns` for a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CqlColumnRow {
    pub column_name: String,
    /// `partition_key`, `clustering`, `regular` or `static`.
    pub kind: String,
    /// Place in the partition or clustering key; -1 for regular columns.
    pub position: i32,
    /// The CQL type: `text`, `map<text, text>`, `frozen<list<text>>`, ...
    pub ty: String,
}

/// One row of SQLite's `PRAGMA table_info(table)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteColumnRow {
    pub cid: i64,
    pub name: String,
    /// The declared type, as written in the CREATE TABLE.
    pub ty: String,
    pub notnull: bool,
    /// 1-based place in the primary key, 0 for other columns.
    pub pk: i64,
}

/// Quotes an identifier for CQL and SQLite (both use double quotes). Names
/// are validated identifiers, so there is nothing to escape.
fn quote(name: &str) -> String {
    format!("\"{name}\"")
}

fn check_name(name: &str) -> Result<(), SchemaError> {
    let bad = |reason| {
        Err(SchemaError::BadName {
            name: name.to_owned(),
            reason,
        })
    };
    let Some(first) = name.chars().next() else {
        return bad("is empty");
    };
    if name.len() > MAX_NAME_LEN {
        return bad("is longer than 48 characters");
    }
    if first.is_ascii_digit() {
        return bad("starts with a digit");
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return bad("has a character other than ASCII letters, digits and _");
    }
    Ok(())
}

impl TableSchema {
    /// Builds and validates a schema from the user's declaration: columns as
    /// (name, type text) in table order, the partition key and the clustering
    /// key by column name.
    pub fn new<N, T>(
        columns: impl IntoIterator<Item = (N, T)>,
        partition_key: &[impl AsRef<str>],
        clustering_key: &[impl AsRef<str>],
    ) -> Result<TableSchema, SchemaError>
    where
        N: Into<String>,
        T: AsRef<str>,
    {
        let columns = columns
            .into_iter()
            .map(|(name, ty)| {
                let name = name.into();
                let ty = ty.as_ref().parse().map_err(|e| match e {
                    SchemaError::UnknownType { ty, .. } => SchemaError::UnknownType {
                        column: Some(name.clone()),
                        ty,
                    },
                    other => other,
                })?;
                Ok(Column { name, ty })
            })
            .collect::<Result<Vec<_>, SchemaError>>()?;
        let schema = TableSchema {
            columns,
            partition_key: partition_key
                .iter()
                .map(|k| k.as_ref().to_owned())
                .collect(),
            clustering_key: clustering_key
                .iter()
                .map(|k| k.as_ref().to_owned())
                .collect(),
        };
        schema.validate()?;
        Ok(schema)
    }

    /// Checks every rule of the type's documentation.
    pub fn validate(&self) -> Result<(), SchemaError> {
        let mut seen = HashSet::new();
        for c in &self.columns {
            check_name(&c.name)?;
            if !seen.insert(c.name.to_ascii_lowercase()) {
                return Err(SchemaError::DuplicateColumn(c.name.clone()));
            }
        }
        if self.partition_key.is_empty() {
            return Err(SchemaError::NoPartitionKey);
        }
        let mut in_key = HashSet::new();
        for k in self.partition_key.iter().chain(&self.clustering_key) {
            let column = self
                .column(k)
                .ok_or_else(|| SchemaError::UnknownKeyColumn(k.clone()))?;
            if !in_key.insert(k.as_str()) {
                return Err(SchemaError::DuplicateKeyColumn(k.clone()));
            }
            if column.ty.is_collection() {
                return Err(SchemaError::CollectionKey {
                    column: k.clone(),
                    ty: column.ty,
                });
            }
        }
        Ok(())
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The index of a column in [`TableSchema::columns`].
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// The primary key's columns: partition key, then clustering key.
    pub fn primary_key(&self) -> impl Iterator<Item = &str> {
        self.partition_key
            .iter()
            .chain(&self.clustering_key)
            .map(String::as_str)
    }

    pub fn is_key(&self, name: &str) -> bool {
        self.primary_key().any(|k| k == name)
    }

    /// The indexes of the primary key's columns, in key order.
    pub fn key_indexes(&self) -> Vec<usize> {
        self.primary_key()
            .map(|k| self.index_of(k).expect("validated: key columns exist"))
            .collect()
    }

    /// `CREATE TABLE IF NOT EXISTS` for Cassandra. The keyspace and table are
    /// written as given, as the other sinks write them (unquoted, so CQL
    /// folds them to lower case); columns are quoted.
    pub fn cql_create(&self, keyspace: &str, table: &str) -> String {
        let columns = self
            .columns
            .iter()
            .map(|c| format!("{} {}", quote(&c.name), c.ty.cql_ddl()))
            .collect::<Vec<_>>()
            .join(", ");
        let partition = self
            .partition_key
            .iter()
            .map(|k| quote(k))
            .collect::<Vec<_>>()
            .join(", ");
        let clustering: String = self
            .clustering_key
            .iter()
            .map(|k| format!(", {}", quote(k)))
            .collect();
        format!(
            "CREATE TABLE IF NOT EXISTS {keyspace}.{table} ({columns}, \
             PRIMARY KEY (({partition}){clustering}))"
        )
    }

    /// `CREATE TABLE IF NOT EXISTS` for SQLite: a rowid table (new rows
    /// append; only the key's index takes random inserts) with the primary
    /// key's columns NOT NULL, which SQLite does not imply for a rowid table.
    pub fn sqlite_create(&self, table: &str) -> String {
        let columns = self
            .columns
            .iter()
            .map(|c| {
                let not_null = if self.is_key(&c.name) {
                    " NOT NULL"
                } else {
                    ""
                };
                format!("{} {}{not_null}", quote(&c.name), c.ty.sqlite())
            })
            .collect::<Vec<_>>()
            .join(", ");
        let key = self.primary_key().map(quote).collect::<Vec<_>>().join(", ");
        format!("CREATE TABLE IF NOT EXISTS {table} ({columns}, PRIMARY KEY ({key}))")
    }

    /// The SQLite upsert of one row, parameters `?1..?n` in column order. A
    /// row already stored with the same values is not rewritten, so the
    /// statement reports 0 changes for it: a replayed batch counts as
    /// unchanged. `IS NOT` compares NULLs as values.
    pub fn sqlite_upsert(&self, table: &str) -> String {
        let all = self
            .columns
            .iter()
            .map(|c| quote(&c.name))
            .collect::<Vec<_>>()
            .join(", ");
        let params = (1..=self.columns.len())
            .map(|i| format!("?{i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let key = self.primary_key().map(quote).collect::<Vec<_>>().join(", ");
        let rest: Vec<String> = self
            .columns
            .iter()
            .filter(|c| !self.is_key(&c.name))
            .map(|c| quote(&c.name))
            .collect();
        if rest.is_empty() {
            // Every column is in the key: a row present is the same row.
            return format!(
                "INSERT INTO {table} ({all}) VALUES ({params}) ON CONFLICT ({key}) DO NOTHING"
            );
        }
        let set = rest
            .iter()
            .map(|c| format!("{c} = excluded.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let excluded = rest
            .iter()
            .map(|c| format!("excluded.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        // A row value of one column is just that column, in parentheses.
        format!(
            "INSERT INTO {table} ({all}) VALUES ({params}) ON CONFLICT ({key}) DO UPDATE SET {set} \
             WHERE ({}) IS NOT ({excluded})",
            rest.join(", ")
        )
    }

    /// The schema of an existing Cassandra table from its rows of
    /// `system_schema.columns` (in any order). Key columns are ordered by
    /// position; the other columns by name, as Cassandra has no column order.
    pub fn from_cql_columns(rows: &[CqlColumnRow]) -> Result<TableSchema, SchemaError> {
        let mut partition = Vec::new();
        let mut clustering = Vec::new();
        let mut regular = BTreeMap::new();
        let existing = |column: &str, reason: String| SchemaError::Existing {
            column: column.to_owned(),
            reason,
        };
        for r in rows {
            let ty = ColumnType::from_cql(&r.ty).ok_or_else(|| {
                existing(
                    &r.column_name,
                    format!("type {} is not one tributary writes", r.ty),
                )
            })?;
            let column = Column {
                name: r.column_name.clone(),
                ty,
            };
            match r.kind.as_str() {
                "partition_key" => partition.push((r.position, column)),
                "clustering" => clustering.push((r.position, column)),
                "regular" => {
                    regular.insert(r.column_name.clone(), column);
                }
                other => {
                    return Err(existing(
                        &r.column_name,
                        format!("a {other} column, which tributary does not write"),
                    ));
                }
            }
        }
        partition.sort_by_key(|(p, _)| *p);
        clustering.sort_by_key(|(p, _)| *p);
        let schema = TableSchema {
            partition_key: partition.iter().map(|(_, c)| c.name.clone()).collect(),
            clustering_key: clustering.iter().map(|(_, c)| c.name.clone()).collect(),
            columns: partition
                .into_iter()
                .chain(clustering)
                .map(|(_, c)| c)
                .chain(regular.into_values())
                .collect(),
        };
        schema.validate()?;
        Ok(schema)
    }

    /// The schema of an existing SQLite table from its `PRAGMA table_info`
    /// rows. SQLite has no clustering: the whole primary key comes back as
    /// the partition key (see [`TableSchema::diff_sqlite`]).
    pub fn from_sqlite_columns(rows: &[SqliteColumnRow]) -> Result<TableSchema, SchemaError> {
        let mut rows: Vec<&SqliteColumnRow> = rows.iter().collect();
        rows.sort_by_key(|r| r.cid);
        let columns = rows
            .iter()
            .map(|r| {
                let ty = ColumnType::from_sqlite(&r.ty).ok_or_else(|| SchemaError::Existing {
                    column: r.name.clone(),
                    reason: format!("declared type {:?} is not one tributary writes", r.ty),
                })?;
                Ok(Column {
                    name: r.name.clone(),
                    ty,
                })
            })
            .collect::<Result<Vec<_>, SchemaError>>()?;
        let mut key: Vec<&SqliteColumnRow> = rows.iter().copied().filter(|r| r.pk > 0).collect();
        key.sort_by_key(|r| r.pk);
        let schema = TableSchema {
            columns,
            partition_key: key.iter().map(|r| r.name.clone()).collect(),
            clustering_key: Vec::new(),
        };
        schema.validate()?;
        Ok(schema)
    }

    /// What differs between this (declared) schema and `existing`, one
    /// sentence each: missing, extra and retyped columns, then the keys.
    /// Column order does not matter; key order does. Empty when they match.
    pub fn diff(&self, existing: &TableSchema) -> Vec<String> {
        let mut out = Vec::new();
        for c in &self.columns {
            match existing.column(&c.name) {
                None => out.push(format!("column {} is missing (want {})", c.name, c.ty)),
                Some(e) if e.ty != c.ty => {
                    out.push(format!("column {} is {}, want {}", c.name, e.ty, c.ty))
                }
                Some(_) => {}
            }
        }
        for e in &existing.columns {
            if self.column(&e.name).is_none() {
                out.push(format!(
                    "column {} ({}) is not in the declared table",
                    e.name, e.ty
                ));
            }
        }
        let list = |k: &[String]| format!("({})", k.join(", "));
        if self.partition_key != existing.partition_key {
            out.push(format!(
                "partition key is {}, want {}",
                list(&existing.partition_key),
                list(&self.partition_key)
            ));
        }
        if self.clustering_key != existing.clustering_key {
            out.push(format!(
                "clustering key is {}, want {}",
                list(&existing.clustering_key),
                list(&self.clustering_key)
            ));
        }
        out
    }

    /// [`TableSchema::diff`] against a SQLite table, whose primary key has no
    /// partition/clustering split: only the whole key is compared.
    pub fn diff_sqlite(&self, existing: &TableSchema) -> Vec<String> {
        let flat = TableSchema {
            columns: self.columns.clone(),
            partition_key: self.primary_key().map(str::to_owned).collect(),
            clustering_key: Vec::new(),
        };
        flat.diff(existing)
            .into_iter()
            .map(|d| match d.strip_prefix("partition key") {
                Some(rest) => format!("primary key{rest}"),
                None => d,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn orders() -> TableSchema {
        TableSchema::new(
            [
                ("shop", "text"),
                ("id", "uuid"),
                ("total", "double"),
                ("placed_at", "timestamp"),
                ("items", "list<text>"),
                ("attrs", "map<text,text>"),
            ],
            &["shop"],
            &["placed_at", "id"],
        )
        .unwrap()
    }

    #[test]
    fn types_parse_case_insensitively_with_spaces() {
        assert_eq!("TEXT".parse::<ColumnType>().unwrap(), ColumnType::Text);
        assert_eq!(
            " List< Text > ".parse::<ColumnType>().unwrap(),
            ColumnType::ListText
        );
        assert_eq!(
            "map < text , TEXT >".parse::<ColumnType>().unwrap(),
            ColumnType::MapTextText
        );
        for ty in ColumnType::ALL {
            assert_eq!(ty.to_string().parse::<ColumnType>().unwrap(), ty);
        }
        assert_eq!(ColumnType::MapTextText.to_string(), "map<text, text>");
    }

    #[test]
    fn unknown_type_lists_the_valid_ones() {
        let err = TableSchema::new([("n", "integer")], &["n"], &[] as &[&str]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "column n: unknown type \"integer\"; valid types: text, int, bigint, double, \
             boolean, uuid, timestamp, date, decimal, list<text>, map<text, text>"
        );
        assert!("list<int>".parse::<ColumnType>().is_err());
    }

    #[test]
    fn names_are_plain_identifiers() {
        let one = |name: &str| TableSchema::new([(name, "text")], &[name], &[] as &[&str]);
        assert!(one("a_1").is_ok());
        assert!(one("_x").is_ok());
        assert!(one(&"a".repeat(48)).is_ok());
        assert_eq!(
            one(&"a".repeat(49)).unwrap_err().to_string(),
            format!(
                "column name \"{}\" is longer than 48 characters",
                "a".repeat(49)
            )
        );
        assert_eq!(
            one("1a").unwrap_err().to_string(),
            "column name \"1a\" starts with a digit"
        );
        assert!(matches!(one("a-b"), Err(SchemaError::BadName { .. })));
        assert!(matches!(one("é"), Err(SchemaError::BadName { .. })));
        assert!(matches!(one(""), Err(SchemaError::BadName { .. })));
    }

    #[test]
    fn keys_are_checked() {
        let cols = [("id", "text"), ("tags", "list<text>"), ("Id", "int")];
        assert_eq!(
            TableSchema::new(cols, &["id"], &[] as &[&str]).unwrap_err(),
            SchemaError::DuplicateColumn("Id".into())
        );
        let cols = [("id", "text"), ("tags", "list<text>")];
        assert_eq!(
            TableSchema::new(cols, &[] as &[&str], &["id"]).unwrap_err(),
            SchemaError::NoPartitionKey
        );
        assert_eq!(
            TableSchema::new(cols, &["idd"], &[] as &[&str])
                .unwrap_err()
                .to_string(),
            "key column idd is not a column of the table"
        );
        assert_eq!(
            TableSchema::new(cols, &["id"], &["tags"])
                .unwrap_err()
                .to_string(),
            "key column tags is a list<text>; a key column cannot be a list or a map"
        );
        assert_eq!(
            TableSchema::new(cols, &["id"], &["id"]).unwrap_err(),
            SchemaError::DuplicateKeyColumn("id".into())
        );
    }

    #[test]
    fn cql_create_quotes_columns_freezes_collections_and_nests_the_key() {
        assert_eq!(
            orders().cql_create("shop", "orders"),
            "CREATE TABLE IF NOT EXISTS shop.orders (\"shop\" text, \"id\" uuid, \
             \"total\" double, \"placed_at\" timestamp, \"items\" frozen<list<text>>, \
             \"attrs\" frozen<map<text, text>>, \
             PRIMARY KEY ((\"shop\"), \"placed_at\", \"id\"))"
        );
        let s =
            TableSchema::new([("a", "int"), ("b", "date")], &["a", "b"], &[] as &[&str]).unwrap();
        assert_eq!(
            s.cql_create("k", "t"),
            "CREATE TABLE IF NOT EXISTS k.t (\"a\" int, \"b\" date, PRIMARY KEY ((\"a\", \"b\")))"
        );
    }

    #[test]
    fn sqlite_create_and_upsert() {
        let s = orders();
        assert_eq!(
            s.sqlite_create("orders"),
            "CREATE TABLE IF NOT EXISTS orders (\"shop\" TEXT NOT NULL, \"id\" UUID TEXT NOT NULL, \
             \"total\" DOUBLE, \"placed_at\" TIMESTAMP INTEGER NOT NULL, \"items\" LIST TEXT, \
             \"attrs\" MAP TEXT, PRIMARY KEY (\"shop\", \"placed_at\", \"id\"))"
        );
        assert_eq!(
            s.sqlite_upsert("orders"),
            "INSERT INTO orders (\"shop\", \"id\", \"total\", \"placed_at\", \"items\", \"attrs\") \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (\"shop\", \"placed_at\", \"id\") \
             DO UPDATE SET \"total\" = excluded.\"total\", \"items\" = excluded.\"items\", \
             \"attrs\" = excluded.\"attrs\" WHERE (\"total\", \"items\", \"attrs\") IS NOT \
             (excluded.\"total\", excluded.\"items\", excluded.\"attrs\")"
        );
        let keys_only = TableSchema::new([("a", "text")], &["a"], &[] as &[&str]).unwrap();
        assert_eq!(
            keys_only.sqlite_upsert("t"),
            "INSERT INTO t (\"a\") VALUES (?1) ON CONFLICT (\"a\") DO NOTHING"
        );
    }

    /// The DDL runs on SQLite, the declared types give the intended storage,
    /// the upsert counts a replay as unchanged, and `PRAGMA table_info` gives
    /// the schema back.
    #[test]
    fn sqlite_ddl_runs_and_reads_back() {
        let s = TableSchema::new(
            [
                ("id", "text"),
                ("n", "int"),
                ("big", "bigint"),
                ("x", "double"),
                ("ok", "boolean"),
                ("u", "uuid"),
                ("at", "timestamp"),
                ("d", "date"),
                ("amount", "decimal"),
                ("tags", "list<text>"),
                ("attrs", "map<text,text>"),
                ("one", "text"),
            ],
            &["id"],
            &[] as &[&str],
        )
        .unwrap();
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(&s.sqlite_create("t")).unwrap();
        let upsert = s.sqlite_upsert("t");
        let row = rusqlite::params![
            "k",
            1,
            2_i64,
            0.5,
            1,
            "0b7a3c44-5f43-4c5d-9d43-6b5c9c7a1e10",
            1_700_000_000_000_i64,
            "2024-02-29",
            "12345678901234567890.123456789",
            "[\"a\"]",
            "{}",
            rusqlite::types::Null,
        ];
        assert_eq!(conn.execute(&upsert, row).unwrap(), 1);
        assert_eq!(
            conn.execute(&upsert, row).unwrap(),
            0,
            "a replay is unchanged"
        );
        let kinds: (String, String, String, String) = conn
            .query_row(
                "SELECT typeof(amount), amount, typeof(at), typeof(ok) FROM t",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap();
        assert_eq!(
            kinds,
            (
                "text".into(),
                "12345678901234567890.123456789".into(),
                "integer".into(),
                "integer".into()
            )
        );
        let mut stmt = conn.prepare("PRAGMA table_info(t)").unwrap();
        let rows: Vec<SqliteColumnRow> = stmt
            .query_map([], |r| {
                Ok(SqliteColumnRow {
                    cid: r.get(0)?,
                    name: r.get(1)?,
                    ty: r.get(2)?,
                    notnull: r.get(3)?,
                    pk: r.get(5)?,
                })
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(TableSchema::from_sqlite_columns(&rows).unwrap(), s);
        assert!(rows[0].notnull);
    }

    /// Checked cells bind in the declared storage, and the upsert tells a
    /// replay (0 changes) from a changed row (1).
    #[test]
    fn checked_cells_bind_in_the_declared_storage() {
        use super::super::check::{UnknownFields, check};
        let s = TableSchema::new(
            [
                ("id", "uuid"),
                ("ok", "boolean"),
                ("at", "timestamp"),
                ("d", "date"),
                ("amount", "decimal"),
                ("tags", "list<text>"),
                ("attrs", "map<text, text>"),
                ("note", "text"),
            ],
            &["id"],
            &[] as &[&str],
        )
        .unwrap();
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(&s.sqlite_create("t")).unwrap();
        let upsert = s.sqlite_upsert("t");
        let mut rec = serde_json::json!({
            "id": "0B7A3C44-5F43-4C5D-9D43-6B5C9C7A1E10", "ok": true,
            "at": "2024-02-29T23:30:00.123+01:00", "d": "2024-02-29",
            "amount": "0.10", "tags": ["a", "b"], "attrs": {"k": "v"}
        });
        let write = |rec: &serde_json::Value| {
            let row = check(&s, rec.as_object().unwrap(), UnknownFields::Reject).unwrap();
            conn.execute(&upsert, rusqlite::params_from_iter(&row))
                .unwrap()
        };
        assert_eq!(write(&rec), 1);
        assert_eq!(write(&rec), 0);
        rec["note"] = "new".into();
        assert_eq!(write(&rec), 1);
        let stored: Vec<String> = conn
            .query_row(
                "SELECT id, typeof(ok) || ok, typeof(at) || at, d, amount, tags, attrs FROM t",
                [],
                |r| (0..7).map(|i| r.get::<_, String>(i)).collect(),
            )
            .unwrap();
        assert_eq!(
            stored,
            [
                "0b7a3c44-5f43-4c5d-9d43-6b5c9c7a1e10",
                "integer1",
                "integer1709245800123",
                "2024-02-29",
                "0.10",
                r#"["a","b"]"#,
                r#"{"k":"v"}"#,
            ]
        );
    }

    fn cql(name: &str, kind: &str, position: i32, ty: &str) -> CqlColumnRow {
        CqlColumnRow {
            column_name: name.into(),
            kind: kind.into(),
            position,
            ty: ty.into(),
        }
    }

    #[test]
    fn system_schema_rows_give_the_schema_back() {
        // As Cassandra lists them: by name, the clustering positions out of order.
        let rows = [
            cql("attrs", "regular", -1, "frozen<map<text, text>>"),
            cql("id", "clustering", 1, "uuid"),
            cql("items", "regular", -1, "list<text>"),
            cql("placed_at", "clustering", 0, "timestamp"),
            cql("shop", "partition_key", 0, "text"),
            cql("total", "regular", -1, "double"),
        ];
        let back = TableSchema::from_cql_columns(&rows).unwrap();
        assert_eq!(back.partition_key, ["shop"]);
        assert_eq!(back.clustering_key, ["placed_at", "id"]);
        let names: Vec<_> = back.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            ["shop", "placed_at", "id", "attrs", "items", "total"]
        );
        assert_eq!(back.column("attrs").unwrap().ty, ColumnType::MapTextText);
        assert!(orders().diff(&back).is_empty());
        assert_eq!(
            ColumnType::from_cql("frozen<list<text>>"),
            Some(ColumnType::ListText)
        );
        assert_eq!(ColumnType::from_cql("varchar"), Some(ColumnType::Text));
    }

    #[test]
    fn system_schema_with_foreign_types_or_static_columns_is_refused() {
        let err = TableSchema::from_cql_columns(&[
            cql("id", "partition_key", 0, "text"),
            cql("n", "regular", -1, "varint"),
        ])
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "column n: type varint is not one tributary writes"
        );
        let err = TableSchema::from_cql_columns(&[
            cql("id", "partition_key", 0, "text"),
            cql("s", "static", -1, "text"),
        ])
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "column s: a static column, which tributary does not write"
        );
    }

    #[test]
    fn diff_names_every_difference() {
        let rows = [
            cql("shop", "partition_key", 0, "text"),
            cql("id", "partition_key", 1, "uuid"),
            cql("placed_at", "clustering", 0, "timestamp"),
            cql("total", "regular", -1, "decimal"),
            cql("note", "regular", -1, "text"),
            cql("attrs", "regular", -1, "map<text, text>"),
        ];
        let existing = TableSchema::from_cql_columns(&rows).unwrap();
        assert_eq!(
            orders().diff(&existing),
            [
                "column total is decimal, want double",
                "column items is missing (want list<text>)",
                "column note (text) is not in the declared table",
                "partition key is (shop, id), want (shop)",
                "clustering key is (placed_at), want (placed_at, id)",
            ]
        );
    }

    #[test]
    fn diff_sqlite_compares_the_whole_key() {
        let sqlite_row = |cid, name: &str, ty: &str, pk| SqliteColumnRow {
            cid,
            name: name.into(),
            ty: ty.into(),
            notnull: pk > 0,
            pk,
        };
        let mut rows = vec![
            sqlite_row(0, "shop", "TEXT", 1),
            sqlite_row(1, "id", "UUID TEXT", 3),
            sqlite_row(2, "total", "DOUBLE", 0),
            sqlite_row(3, "placed_at", "TIMESTAMP INTEGER", 2),
            sqlite_row(4, "items", "LIST TEXT", 0),
            sqlite_row(5, "attrs", "map  text", 0),
        ];
        let existing = TableSchema::from_sqlite_columns(&rows).unwrap();
        assert!(orders().diff_sqlite(&existing).is_empty());
        rows[1].pk = 0;
        let existing = TableSchema::from_sqlite_columns(&rows).unwrap();
        assert_eq!(
            orders().diff_sqlite(&existing),
            ["primary key is (shop, placed_at), want (shop, placed_at, id)"]
        );
        rows[2].ty = "REAL".into();
        assert_eq!(
            TableSchema::from_sqlite_columns(&rows)
                .unwrap_err()
                .to_string(),
            "column total: declared type \"REAL\" is not one tributary writes"
        );
    }
}
