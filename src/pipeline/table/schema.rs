//! A pipeline's declared table: column types and the validated schema.
//! `ddl.rs` its DDL for Cassandra and SQLite, `read_back.rs` the schema read
//! back from either store and the differences between two schemas,
//! `cells.rs` cells bound to and read back from SQLite.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

mod cells;
mod ddl;
mod read_back;
#[cfg(test)]
mod tests;

pub use read_back::{CqlColumnRow, SqliteColumnRow};

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
}
