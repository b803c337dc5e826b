//! A table's schema read back from a store (Cassandra's `system_schema`,
//! SQLite's `PRAGMA table_info`) and its differences from the declared one.

use std::collections::BTreeMap;

use super::{Column, ColumnType, SchemaError, TableSchema};

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

impl TableSchema {
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
