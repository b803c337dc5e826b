//! A transformed record against its table: the typed [`Cell`]s of a row, the
//! rules that turn JSON values into them, and [`CheckError`], which names the
//! column, the expected type and the value.
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

/// An integer from a JSON number: exact, or why not.
fn integer(v: Scalar<'_>) -> Result<i128, Option<&'static str>> {
    match v {
        Scalar::I64(n) => Ok(n.into()),
        Scalar::U64(n) => Ok(n.into()),
        Scalar::F64(x) if x.fract() != 0.0 || !x.is_finite() => Err(Some("not an integer")),
        Scalar::F64(x) if x.abs() <= EXACT_IN_DOUBLE => Ok(x as i128),
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

/// Most digits a decimal may have. Far beyond any amount or measurement,
/// and it bounds the work of turning one into Cassandra's form, which grows
/// with the square of the digits: a hostile record of a million digits
/// would hold a write for many minutes.
const MAX_DECIMAL_DIGITS: usize = 10_000;

const DECIMAL_TOO_LONG: &str = "over 10000 digits";

fn too_many_digits(s: &str) -> bool {
    s.len() > MAX_DECIMAL_DIGITS
        && s.bytes().filter(u8::is_ascii_digit).count() > MAX_DECIMAL_DIGITS
}

/// A decimal's text: `[+-]digits[.digits][(e|E)[+-]digits]`, without the `+`,
/// of at most [`MAX_DECIMAL_DIGITS`] digits.
fn decimal_text(s: &str) -> Option<&str> {
    if too_many_digits(s) {
        return None;
    }
    let t = s.strip_prefix('+').unwrap_or(s);
    let body = t.strip_prefix('-').unwrap_or(t);
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(at) => (&body[..at], Some(&body[at + 1..])),
        None => (body, None),
    };
    let digits = |d: &str| !d.is_empty() && d.bytes().all(|c| c.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some((int, frac)) => digits(int) && digits(frac),
        None => digits(mantissa),
    };
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        digits(e) && e.len() <= 9
    });
    (mantissa_ok && exponent_ok).then_some(t)
}

/// A decimal's text as Cassandra's `decimal` holds it: the unscaled value as
/// a minimal two's-complement big-endian integer, and the scale (digits after
/// the point; negative for an exponent past them). `None` if `text` is not a
/// decimal as [`Cell::Decimal`] holds it, or its scale is beyond an `i32`.
pub fn decimal_parts(text: &str) -> Option<(Vec<u8>, i32)> {
    let t = decimal_text(text)?;
    let (negative, body) = match t.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, t),
    };
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(at) => (&body[..at], body[at + 1..].parse::<i64>().ok()?),
        None => (body, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let scale = i32::try_from(frac.len() as i64 - exponent).ok()?;
    // The magnitude, little-endian base 256, by multiply-and-add per digit.
    let mut le: Vec<u8> = Vec::new();
    for d in int.bytes().chain(frac.bytes()) {
        let mut carry = u32::from(d - b'0');
        for byte in le.iter_mut() {
            let v = u32::from(*byte) * 10 + carry;
            *byte = v as u8;
            carry = v >> 8;
        }
        if carry > 0 {
            le.push(carry as u8);
        }
    }
    while le.last() == Some(&0) {
        le.pop();
    }
    // Room for the sign bit.
    le.push(0);
    if negative {
        let mut carry = 1u16;
        for byte in le.iter_mut() {
            let v = u16::from(!*byte) + carry;
            *byte = v as u8;
            carry = v >> 8;
        }
    }
    let mut be: Vec<u8> = le.into_iter().rev().collect();
    // Minimal: drop a leading byte that only repeats the next byte's sign.
    while be.len() > 1
        && ((be[0] == 0 && be[1] & 0x80 == 0) || (be[0] == 0xff && be[1] & 0x80 != 0))
    {
        be.remove(0);
    }
    Some((be, scale))
}

/// A JSON number with a fraction as a decimal, when it is certainly what the
/// source wrote (see the module's rules).
fn decimal_from_double(x: f64) -> Result<String, Option<&'static str>> {
    let text = serde_json::Number::from_f64(x).ok_or(None)?.to_string();
    let mantissa = text.split(['e', 'E']).next().unwrap_or("");
    let significant = mantissa
        .bytes()
        .filter(u8::is_ascii_digit)
        .skip_while(|&c| c == b'0')
        .collect::<Vec<u8>>();
    let len = significant.len() - significant.iter().rev().take_while(|&&c| c == b'0').count();
    if len <= 15 {
        Ok(text)
    } else {
        Err(Some(
            "a JSON number this long may have been rounded; send the decimal as a string",
        ))
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> TableSchema {
        TableSchema::new(
            [
                ("id", "text"),
                ("n", "int"),
                ("big", "bigint"),
                ("x", "double"),
                ("ok", "boolean"),
                ("u", "uuid"),
                ("placed_at", "timestamp"),
                ("d", "date"),
                ("amount", "decimal"),
                ("items", "list<text>"),
                ("attrs", "map<text,text>"),
            ],
            &["id"],
            &[] as &[&str],
        )
        .unwrap()
    }

    fn one(column: &str, v: Value) -> Result<Cell, CheckError> {
        let s = schema();
        let ty = s.column(column).unwrap().ty;
        value_cell(column, ty, &v)
    }

    fn err(column: &str, v: Value) -> String {
        one(column, v).unwrap_err().to_string()
    }

    #[test]
    fn a_full_record_becomes_a_row_in_column_order() {
        let rec = json!({
            "attrs": {"b": "2", "a": "1"}, "id": "k", "n": -7, "big": 1_u64 << 40, "x": 2,
            "ok": true, "u": "0B7A3C445F434C5D9D436B5C9C7A1E10",
            "placed_at": "2024-02-29T23:30:00.1239+01:00", "d": "2024-02-29",
            "amount": "12345678901234567890.123456789", "items": ["a", "b"]
        });
        let row = check(&schema(), rec.as_object().unwrap(), UnknownFields::Reject).unwrap();
        assert_eq!(
            row,
            vec![
                Cell::Text("k".into()),
                Cell::Int(-7),
                Cell::Bigint(1 << 40),
                Cell::Double(2.0),
                Cell::Boolean(true),
                Cell::Uuid("0b7a3c44-5f43-4c5d-9d43-6b5c9c7a1e10".parse().unwrap()),
                Cell::Timestamp(1_709_245_800_123),
                Cell::Date(NaiveDate::from_ymd_opt(2024, 2, 29).unwrap()),
                Cell::Decimal("12345678901234567890.123456789".into()),
                Cell::List(vec!["a".into(), "b".into()]),
                Cell::Map(
                    [("a", "1"), ("b", "2")]
                        .map(|(k, v)| (k.into(), v.into()))
                        .into()
                ),
            ]
        );
    }

    #[test]
    fn missing_and_null_non_key_columns_are_null_but_keys_are_required() {
        let s = schema();
        let row = check(
            &s,
            json!({"id": "k", "n": null}).as_object().unwrap(),
            UnknownFields::Reject,
        )
        .unwrap();
        assert!(row[1..].iter().all(|c| *c == Cell::Null));
        let e = check(
            &s,
            json!({"n": 1}).as_object().unwrap(),
            UnknownFields::Reject,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "column id: missing (a key column needs a value)"
        );
        let e = check(
            &s,
            json!({"id": null}).as_object().unwrap(),
            UnknownFields::Reject,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "column id: expected text, got null (a key column needs a value)"
        );
    }

    #[test]
    fn unknown_fields_are_named_unless_ignored() {
        let s = schema();
        let rec = json!({"id": "k", "totl": 1, "colour": "red"});
        let e = check(&s, rec.as_object().unwrap(), UnknownFields::Reject).unwrap_err();
        assert_eq!(e.to_string(), "fields not in the table: colour, totl");
        let rec = json!({"id": "k", "nn": 1});
        let e = check(&s, rec.as_object().unwrap(), UnknownFields::Reject).unwrap_err();
        assert_eq!(e.to_string(), "field not in the table: nn");
        assert!(check(&s, rec.as_object().unwrap(), UnknownFields::Ignore).is_ok());
    }

    #[test]
    fn integers_are_integral_and_in_range() {
        assert_eq!(one("n", json!(i32::MAX)).unwrap(), Cell::Int(i32::MAX));
        assert_eq!(one("n", json!(i32::MIN)).unwrap(), Cell::Int(i32::MIN));
        assert_eq!(
            err("n", json!(2_147_483_648_i64)),
            "column n: expected int, got 2147483648 (out of range)"
        );
        assert_eq!(
            err("n", json!(-2_147_483_649_i64)),
            "column n: expected int, got -2147483649 (out of range)"
        );
        assert_eq!(
            err("n", json!(1_u64 << 40)),
            "column n: expected int, got 1099511627776 (out of range)"
        );
        assert_eq!(one("big", json!(i64::MIN)).unwrap(), Cell::Bigint(i64::MIN));
        assert_eq!(
            err("big", json!(u64::MAX)),
            "column big: expected bigint, got 18446744073709551615 (out of range)"
        );
        assert_eq!(
            err("big", json!(1.5)),
            "column big: expected bigint, got 1.5 (not an integer)"
        );
        assert_eq!(one("big", json!(3.0)).unwrap(), Cell::Bigint(3));
        assert_eq!(
            err("big", json!(1e300)),
            "column big: expected bigint, got 1e+300 (not exact as a double; write it without a fraction or exponent)"
        );
        assert_eq!(err("n", json!("42")), "column n: expected int, got \"42\"");
        assert_eq!(err("n", json!(true)), "column n: expected int, got true");
    }

    #[test]
    fn doubles_take_numbers_and_exact_integers() {
        assert_eq!(one("x", json!(0.1)).unwrap(), Cell::Double(0.1));
        assert_eq!(one("x", json!(-3)).unwrap(), Cell::Double(-3.0));
        assert_eq!(
            one("x", json!(1_u64 << 53)).unwrap(),
            Cell::Double(9_007_199_254_740_992.0)
        );
        assert_eq!(
            err("x", json!((1_u64 << 53) + 1)),
            "column x: expected double, got 9007199254740993 (not exact as a double)"
        );
        assert_eq!(
            err("x", json!("1.5")),
            "column x: expected double, got \"1.5\""
        );
    }

    #[test]
    fn booleans_and_text_are_strict() {
        assert_eq!(one("ok", json!(false)).unwrap(), Cell::Boolean(false));
        assert_eq!(
            err("ok", json!("yes")),
            "column ok: expected boolean, got \"yes\""
        );
        assert_eq!(err("ok", json!(1)), "column ok: expected boolean, got 1");
        assert_eq!(err("id", json!(7)), "column id: expected text, got 7");
        assert_eq!(one("id", json!("")).unwrap(), Cell::Text(String::new()));
    }

    #[test]
    fn uuids_are_normalised() {
        let want = Cell::Uuid("0b7a3c44-5f43-4c5d-9d43-6b5c9c7a1e10".parse().unwrap());
        for form in [
            "0B7A3C44-5F43-4C5D-9D43-6B5C9C7A1E10",
            "{0b7a3c44-5f43-4c5d-9d43-6b5c9c7a1e10}",
            "urn:uuid:0b7a3c44-5f43-4c5d-9d43-6b5c9c7a1e10",
        ] {
            assert_eq!(one("u", json!(form)).unwrap(), want, "{form}");
        }
        assert_eq!(
            err("u", json!("0b7a3c44")),
            "column u: expected uuid, got \"0b7a3c44\""
        );
    }

    #[test]
    fn timestamps_are_rfc3339_or_epoch_ms_kept_as_utc_ms() {
        let ts = |v| match one("placed_at", v).unwrap() {
            Cell::Timestamp(ms) => ms,
            other => panic!("{other:?}"),
        };
        assert_eq!(ts(json!("1970-01-01T00:00:00Z")), 0);
        assert_eq!(ts(json!("1970-01-01T01:00:00.5+01:00")), 500);
        assert_eq!(ts(json!("2024-02-29T23:30:00.123999Z")), 1_709_249_400_123);
        // Rounding down, before 1970 too.
        assert_eq!(ts(json!("1969-12-31T23:59:59.9999Z")), -1);
        assert_eq!(ts(json!(1_709_249_400_123_i64)), 1_709_249_400_123);
        assert_eq!(ts(json!(-1)), -1);
        assert_eq!(
            err("placed_at", json!("yesterday")),
            "column placed_at: expected timestamp, got \"yesterday\""
        );
        assert_eq!(
            err("placed_at", json!("2024-02-29T23:30:00")),
            "column placed_at: expected timestamp, got \"2024-02-29T23:30:00\"",
            "no time zone"
        );
        assert_eq!(
            err("placed_at", json!(1.5)),
            "column placed_at: expected timestamp, got 1.5 (not an integer)"
        );
        assert_eq!(
            err("placed_at", json!(MAX_MS + 1)),
            "column placed_at: expected timestamp, got 253402300800000 (out of range: years 0000 to 9999)"
        );
        assert_eq!(ts(json!(MIN_MS)), MIN_MS);
    }

    #[test]
    fn dates_are_yyyy_mm_dd() {
        assert_eq!(
            one("d", json!("0001-01-01")).unwrap(),
            Cell::Date(NaiveDate::from_ymd_opt(1, 1, 1).unwrap())
        );
        for bad in [
            "2024-2-29",
            "2023-02-29",
            "2024-02-29T00:00:00Z",
            "20240229",
            "+024-02-29",
        ] {
            assert_eq!(
                err("d", json!(bad)),
                format!("column d: expected date, got \"{bad}\""),
            );
        }
    }

    #[test]
    fn a_decimal_of_a_hundred_thousand_digits_is_refused() {
        let long = "7".repeat(100_001);
        let start = std::time::Instant::now();
        let e = err("amount", json!(long));
        assert!(e.ends_with("(over 10000 digits)"), "{e}");
        let ok = "7".repeat(10_000);
        assert_eq!(one("amount", json!(ok)).unwrap(), Cell::Decimal(ok.clone()));
        assert!(decimal_parts(&ok).is_some());
        assert!(decimal_parts(&long).is_none());
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn decimals_stay_exact() {
        let dec = |v| one("amount", v).unwrap();
        assert_eq!(
            dec(json!("12345678901234567890.123456789")),
            Cell::Decimal("12345678901234567890.123456789".into())
        );
        assert_eq!(dec(json!("+1.50")), Cell::Decimal("1.50".into()));
        assert_eq!(dec(json!("-1E-7")), Cell::Decimal("-1E-7".into()));
        assert_eq!(
            dec(json!(u64::MAX)),
            Cell::Decimal("18446744073709551615".into())
        );
        assert_eq!(dec(json!(19.99)), Cell::Decimal("19.99".into()));
        assert_eq!(
            dec(json!(0.000123456789012345)),
            Cell::Decimal("0.000123456789012345".into())
        );
        assert_eq!(
            err("amount", json!(0.1 + 0.2)),
            "column amount: expected decimal, got 0.30000000000000004 (a JSON number this long may have been rounded; send the decimal as a string)"
        );
        for bad in ["1.", ".5", "1e", "NaN", "1,5", "--1", ""] {
            assert_eq!(
                err("amount", json!(bad)),
                format!("column amount: expected decimal, got \"{bad}\""),
            );
        }
    }

    #[test]
    fn decimal_parts_are_cassandras_unscaled_value_and_scale() {
        assert_eq!(
            decimal_parts("12345678901234567890.123456789"),
            Some((
                vec![39, 228, 27, 50, 70, 190, 201, 177, 110, 57, 129, 21],
                9
            ))
        );
        assert_eq!(
            decimal_parts("-12345678901234567890.123456789"),
            Some((
                vec![216, 27, 228, 205, 185, 65, 54, 78, 145, 198, 126, 235],
                9
            ))
        );
        assert_eq!(decimal_parts("0.00"), Some((vec![0], 2)));
        assert_eq!(decimal_parts("-0"), Some((vec![0], 0)));
        assert_eq!(decimal_parts("-1"), Some((vec![0xff], 0)));
        assert_eq!(decimal_parts("127"), Some((vec![0x7f], 0)));
        assert_eq!(decimal_parts("128"), Some((vec![0x00, 0x80], 0)));
        assert_eq!(decimal_parts("-128"), Some((vec![0x80], 0)));
        assert_eq!(decimal_parts("-129"), Some((vec![0xff, 0x7f], 0)));
        assert_eq!(decimal_parts("1.5E+3"), Some((vec![15], -2)));
        assert_eq!(decimal_parts("25e-2"), Some((vec![25], 2)));
        assert_eq!(decimal_parts("1e999999999"), Some((vec![1], -999_999_999)));
        assert_eq!(decimal_parts("x"), None);
    }

    #[test]
    fn lists_and_maps_hold_strings_only() {
        assert_eq!(one("items", json!([])).unwrap(), Cell::List(vec![]));
        assert_eq!(
            err("items", json!(["a", 1])),
            "column items: expected list<text>, got [\"a\",1]"
        );
        assert_eq!(
            err("items", json!("a")),
            "column items: expected list<text>, got \"a\""
        );
        assert_eq!(one("items", json!(null)).unwrap(), Cell::Null);
        assert_eq!(
            err("attrs", json!({"a": null})),
            "column attrs: expected map<text, text>, got {\"a\":null}"
        );
        assert_eq!(
            err("attrs", json!([["a", "b"]])),
            "column attrs: expected map<text, text>, got [[\"a\",\"b\"]]"
        );
    }

    #[test]
    fn long_values_are_cut_in_errors() {
        let long = "é".repeat(200);
        let e = err("n", json!(long));
        let got = e.strip_prefix("column n: expected int, got ").unwrap();
        assert_eq!(got.chars().count(), SHOWN_CHARS + 1);
        assert!(got.starts_with("\"éé") && got.ends_with("é…"), "{got}");
    }
}
