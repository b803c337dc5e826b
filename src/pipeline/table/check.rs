//! A transformed record against its table: the typed [`Cell`]s of a row, the
//! rules that turn JSON values into them, and [`CheckError`], which names the
//! column, the expected type and the value; `decimal.rs` the decimals.
//!
//! The rules (the decoder of the log applies the same ones):
//! - a key column must be present and not null;
//! - a missing or null non-key column is NULL, as in Cassandra: JSON sources
//!   omit optional fields as a matter of course, and refusing every record
//!   without, say, a `coupon` would make optional data unloadable. The
//!   mistake that "missing is NULL" could hide, a misspelt field in the
//!   transform, is caught by the next rule;
//! - a field that is not a column is an error naming it, by default
//!   ([`UnknownFields::Reject`]): it is almost always a typo or a renamed
//!   field, and dropping it would silently lose data that no replay brings
//!   back once the log has moved on, whereas a dead letter can be replayed
//!   after the table or the transform is fixed;
//! - `int`/`bigint` take JSON integers in range (an integral number such as
//!   `3.0` or `1e3` too, up to 2^53 where a double is still exact); never a
//!   fraction, never a string, never wrapped;
//! - `double` takes any JSON number; an integer must be exactly representable;
//! - `boolean` takes `true`/`false` only;
//! - `text` takes a string only (a number is not silently turned into text);
//! - `uuid` takes any form the `uuid` crate reads, kept lower-case hyphenated;
//! - `timestamp` takes an RFC 3339 string with a time zone (`Z` or an offset)
//!   or an integer of milliseconds since the epoch; it is kept as UTC
//!   milliseconds, Cassandra's precision (finer digits are dropped, rounding
//!   down), and must lie in years 0000–9999 so its text form is RFC 3339;
//! - `date` takes `YYYY-MM-DD`;
//! - `decimal` takes a decimal string of at most 10,000 digits, kept exactly
//!   as written (a leading `+` dropped), or a JSON number when it is certainly exact: an integer, or a
//!   number of at most 15 significant digits (every such decimal survives the
//!   double it was parsed into, so its shortest form is what was written);
//!   a longer JSON number may already have been rounded, so it is refused;
//! - `list<text>` takes an array of strings, `map<text, text>` an object of
//!   strings (null elements are refused: Cassandra collections cannot hold
//!   them).

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, NaiveDate};
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::schema::{ColumnType, TableSchema};

mod decimal;
#[cfg(test)]
mod tests;

pub use decimal::decimal_parts;
use decimal::{DECIMAL_TOO_LONG, decimal_from_double, decimal_text, too_many_digits};

/// One typed value of a row. Cells own their text: rows travel to the
/// spawned write stage as `Arc<[..]>`, which must not borrow the batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Text(String),
    Int(i32),
    Bigint(i64),
    Double(f64),
    Boolean(bool),
    Uuid(Uuid),
    /// Milliseconds since the epoch, UTC.
    Timestamp(i64),
    Date(NaiveDate),
    /// The exact decimal text, validated.
    Decimal(String),
    List(Vec<String>),
    Map(BTreeMap<String, String>),
}

/// A typed row: one cell per column, in the schema's column order.
pub type TypedRow = Vec<Cell>;

/// What to do with a field of the record that is not a column.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UnknownFields {
    /// The record is refused, naming the fields (see the module's rules).
    #[default]
    Reject,
    /// The fields are dropped.
    Ignore,
}

/// Why a record (or a log message) is not a row of its table. The text is
/// what a dead letter carries as its reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    #[error("column {column}: expected {expected}, got {got}{}", reason.map(|r| format!(" ({r})")).unwrap_or_default())]
    Type {
        column: String,
        expected: ColumnType,
        /// The value as JSON, cut to about 80 characters.
        got: String,
        reason: Option<&'static str>,
    },
    #[error("column {0}: missing (a key column needs a value)")]
    MissingKey(String),
    #[error("{} not in the table: {}", if fields.len() == 1 { "field" } else { "fields" }, fields.join(", "))]
    UnknownFields { fields: Vec<String> },
    #[error("column {0}: given twice")]
    Duplicate(String),
    #[error("expected a JSON object, got {0}")]
    NotAnObject(String),
    #[error("malformed json: {0}")]
    Malformed(String),
    #[error("message of {size} bytes is over the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
}

/// How much of a value an error shows.
const SHOWN_CHARS: usize = 80;

/// A value as JSON text, cut at [`SHOWN_CHARS`] (on a character boundary,
/// with `…`), without serialising more than that of a large value.
pub(super) fn shown<T: Serialize + ?Sized>(value: &T) -> String {
    struct Limited(Vec<u8>);
    impl std::io::Write for Limited {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            // A little past the limit, so a cut is known to be needed.
            let room = (SHOWN_CHARS * 4 + 4).saturating_sub(self.0.len());
            if room == 0 {
                return Err(std::io::Error::other("enough"));
            }
            let n = buf.len().min(room);
            self.0.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut out = Limited(Vec::new());
    let _ = serde_json::to_writer(&mut out, value);
    let text = String::from_utf8_lossy(&out.0);
    match text.char_indices().nth(SHOWN_CHARS) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.into_owned(),
    }
}

/// A JSON scalar as the rules see it, borrowed from a `Value` or straight
/// from the decoder.
#[derive(Debug, Clone, Copy)]
pub(super) enum Scalar<'a> {
    Null,
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    Str(&'a str),
}

impl Serialize for Scalar<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            Scalar::Null => s.serialize_unit(),
            Scalar::Bool(b) => s.serialize_bool(b),
            Scalar::I64(n) => s.serialize_i64(n),
            Scalar::U64(n) => s.serialize_u64(n),
            Scalar::F64(x) => s.serialize_f64(x),
            Scalar::Str(t) => s.serialize_str(t),
        }
    }
}

impl fmt::Display for Scalar<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&shown(self))
    }
}

pub(super) fn type_error(
    column: &str,
    expected: ColumnType,
    got: String,
    reason: Option<&'static str>,
) -> CheckError {
    CheckError::Type {
        column: column.to_owned(),
        expected,
        got,
        reason,
    }
}

/// Largest integer a double holds exactly, with all below it.
const EXACT_IN_DOUBLE: f64 = 9_007_199_254_740_992.0;

/// 2^63, the first integer past a bigint.
const TWO_TO_63: f64 = 9_223_372_036_854_775_808.0;

/// An integer from a JSON number: exact, or why not.
fn integer(v: Scalar<'_>) -> Result<i128, Option<&'static str>> {
    match v {
        Scalar::I64(n) => Ok(n.into()),
        Scalar::U64(n) => Ok(n.into()),
        Scalar::F64(x) if x.fract() != 0.0 || !x.is_finite() => Err(Some("not an integer")),
        Scalar::F64(x) if x.abs() <= EXACT_IN_DOUBLE => Ok(x as i128),
        // Past what any integer column holds (a transform keeps integers
        // past 2^63 as doubles, so it is no help to write them plainly).
        Scalar::F64(x) if !(-TWO_TO_63..TWO_TO_63).contains(&x) => Err(Some("out of range")),
        Scalar::F64(_) => Err(Some(
            "not exact as a double; write it without a fraction or exponent",
        )),
        _ => Err(None),
    }
}

/// Earliest and latest timestamps: years 0000 to 9999, which RFC 3339 spells.
const MIN_MS: i64 = -62_167_219_200_000;
const MAX_MS: i64 = 253_402_300_799_999;

fn timestamp(v: Scalar<'_>) -> Result<i64, Option<&'static str>> {
    let ms = match v {
        Scalar::Str(s) => DateTime::parse_from_rfc3339(s)
            .map_err(|_| None)?
            .timestamp_millis(),
        other => {
            let n = integer(other)?;
            i64::try_from(n).map_err(|_| Some("out of range"))?
        }
    };
    if (MIN_MS..=MAX_MS).contains(&ms) {
        Ok(ms)
    } else {
        Err(Some("out of range: years 0000 to 9999"))
    }
}

fn date(s: &str) -> Option<NaiveDate> {
    let b = s.as_bytes();
    let shaped = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shaped {
        return None;
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

/// The cell of a scalar for a column of type `ty`. Null is `Cell::Null`
/// here; whether that is allowed is the row's business (key columns).
pub(super) fn scalar_cell(column: &str, ty: ColumnType, v: Scalar<'_>) -> Result<Cell, CheckError> {
    if let Scalar::Null = v {
        return Ok(Cell::Null);
    }
    let fail = |reason| type_error(column, ty, shown(&v), reason);
    let cell = match (ty, v) {
        (ColumnType::Text, Scalar::Str(s)) => Cell::Text(s.to_owned()),
        (ColumnType::Int, _) => {
            let n = integer(v).map_err(fail)?;
            Cell::Int(i32::try_from(n).map_err(|_| fail(Some("out of range")))?)
        }
        (ColumnType::Bigint, _) => {
            let n = integer(v).map_err(fail)?;
            Cell::Bigint(i64::try_from(n).map_err(|_| fail(Some("out of range")))?)
        }
        (ColumnType::Double, Scalar::F64(x)) => Cell::Double(x),
        (ColumnType::Double, Scalar::I64(_) | Scalar::U64(_)) => {
            let n = integer(v).map_err(fail)?;
            let x = n as f64;
            if x as i128 != n {
                return Err(fail(Some("not exact as a double")));
            }
            Cell::Double(x)
        }
        (ColumnType::Boolean, Scalar::Bool(b)) => Cell::Boolean(b),
        (ColumnType::Uuid, Scalar::Str(s)) => {
            Cell::Uuid(Uuid::parse_str(s).map_err(|_| fail(None))?)
        }
        (ColumnType::Timestamp, _) => Cell::Timestamp(timestamp(v).map_err(fail)?),
        (ColumnType::Date, Scalar::Str(s)) => Cell::Date(date(s).ok_or_else(|| fail(None))?),
        (ColumnType::Decimal, Scalar::Str(s)) => {
            let reason = too_many_digits(s).then_some(DECIMAL_TOO_LONG);
            Cell::Decimal(decimal_text(s).ok_or_else(|| fail(reason))?.to_owned())
        }
        (ColumnType::Decimal, Scalar::I64(n)) => Cell::Decimal(n.to_string()),
        (ColumnType::Decimal, Scalar::U64(n)) => Cell::Decimal(n.to_string()),
        (ColumnType::Decimal, Scalar::F64(x)) => {
            Cell::Decimal(decimal_from_double(x).map_err(fail)?)
        }
        _ => return Err(fail(None)),
    };
    Ok(cell)
}

fn scalar_of(v: &Value) -> Option<Scalar<'_>> {
    Some(match v {
        Value::Null => Scalar::Null,
        Value::Bool(b) => Scalar::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Scalar::I64(i),
            (None, Some(u)) => Scalar::U64(u),
            _ => Scalar::F64(n.as_f64()?),
        },
        Value::String(s) => Scalar::Str(s),
        Value::Array(_) | Value::Object(_) => return None,
    })
}

/// The cell of one JSON value for a column of type `ty`.
pub fn value_cell(column: &str, ty: ColumnType, v: &Value) -> Result<Cell, CheckError> {
    let fail = || type_error(column, ty, shown(v), None);
    match (ty, v) {
        (ColumnType::ListText, Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().map(str::to_owned).ok_or_else(fail))
            .collect::<Result<_, _>>()
            .map(Cell::List),
        (ColumnType::MapTextText, Value::Object(entries)) => entries
            .iter()
            .map(|(k, i)| Ok((k.clone(), i.as_str().ok_or_else(fail)?.to_owned())))
            .collect::<Result<_, _>>()
            .map(Cell::Map),
        (ColumnType::ListText | ColumnType::MapTextText, Value::Null) => Ok(Cell::Null),
        (ColumnType::ListText | ColumnType::MapTextText, _) => Err(fail()),
        (_, v) => match scalar_of(v) {
            Some(s) => scalar_cell(column, ty, s),
            None => Err(fail()),
        },
    }
}

/// A row being filled from a record or a message, field by field in any
/// order; [`Filling::finish`] reports what is wrong in one fixed order
/// (unknown fields, a field given twice, then column by column), so the
/// checker and the log's decoder give the same error for the same input.
pub(super) struct Filling {
    pub cells: Vec<Option<Cell>>,
    /// The failing column with the lowest index, and why.
    pub error: Option<(usize, CheckError)>,
    pub unknown: Vec<String>,
    pub duplicate: Option<String>,
}

impl Filling {
    pub fn new(columns: usize) -> Filling {
        Filling {
            cells: vec![None; columns],
            error: None,
            unknown: Vec::new(),
            duplicate: None,
        }
    }

    /// Records the outcome of column `i`.
    pub fn set(&mut self, i: usize, cell: Result<Cell, CheckError>) {
        match cell {
            Ok(cell) => self.cells[i] = Some(cell),
            Err(e) => {
                if self.error.as_ref().is_none_or(|(at, _)| i < *at) {
                    self.error = Some((i, e));
                }
            }
        }
    }

    pub fn finish(mut self, schema: &TableSchema) -> Result<TypedRow, CheckError> {
        if !self.unknown.is_empty() {
            self.unknown.sort();
            self.unknown.dedup();
            return Err(CheckError::UnknownFields {
                fields: self.unknown,
            });
        }
        if let Some(column) = self.duplicate {
            return Err(CheckError::Duplicate(column));
        }
        let mut error = self.error;
        // Collected in place: the cells' vector becomes the row's.
        self.cells
            .into_iter()
            .zip(&schema.columns)
            .enumerate()
            .map(|(i, (cell, column))| {
                if error.as_ref().is_some_and(|(at, _)| *at == i) {
                    return Err(error.take().expect("checked above").1);
                }
                match cell {
                    Some(Cell::Null) | None if schema.is_key(&column.name) => Err(match cell {
                        None => CheckError::MissingKey(column.name.clone()),
                        _ => type_error(
                            &column.name,
                            column.ty,
                            "null".into(),
                            Some("a key column needs a value"),
                        ),
                    }),
                    cell => Ok(cell.unwrap_or(Cell::Null)),
                }
            })
            .collect()
    }
}

/// The typed row of a transformed record, in column order, by the rules of
/// this module. Unknown fields are reported first: a misspelt field also
/// leaves its column missing, and the misspelling is the cause.
pub fn check(
    schema: &TableSchema,
    record: &Map<String, Value>,
    unknown: UnknownFields,
) -> Result<TypedRow, CheckError> {
    let mut filling = Filling::new(schema.columns.len());
    if unknown == UnknownFields::Reject {
        filling.unknown = record
            .keys()
            .filter(|k| schema.column(k).is_none())
            .cloned()
            .collect();
    }
    for (i, c) in schema.columns.iter().enumerate() {
        if let Some(v) = record.get(&c.name) {
            filling.set(i, value_cell(&c.name, c.ty, v));
        }
    }
    filling.finish(schema)
}
