//! Cells in SQLite: bound as parameters in the storage each type names, and
//! read back by the column's type.

use rusqlite::types::{ToSqlOutput, ValueRef};

use super::super::check::Cell;
use super::ColumnType;

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
