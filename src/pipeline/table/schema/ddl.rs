//! The DDL of a declared table: `CREATE TABLE` for Cassandra and SQLite,
//! and SQLite's upsert that leaves an unchanged row alone.

use super::{TableSchema, quote};

impl TableSchema {
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
}
