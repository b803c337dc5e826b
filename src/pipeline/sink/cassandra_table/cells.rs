//! A typed row's cells on the wire: each [`Cell`] bound as the CQL type of
//! its column, and a column's CQL value read back as a [`Cell`].

use chrono::NaiveDate;
use scylla::frame::response::result::ColumnType as CqlType;
use scylla::serialize::SerializationError;
use scylla::serialize::value::SerializeValue;
use scylla::serialize::writers::{CellWriter, WrittenCellProof};
use scylla::value::{CqlDate, CqlDecimalBorrowed, CqlTimestamp, CqlValue};

use crate::pipeline::table::{Cell, ColumnType, decimal_parts};

/// CQL counts dates in days with 2^31 at 1970-01-01.
const EPOCH_DAY: i64 = 1 << 31;

fn epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("a valid date")
}

/// A date as CQL's `date` holds it.
pub(super) fn cql_date(d: NaiveDate) -> CqlDate {
    // Every date chrono holds (about ±262,000 years) is well inside CQL's
    // range of ±2^31 days.
    CqlDate((d.signed_duration_since(epoch()).num_days() + EPOCH_DAY) as u32)
}

/// A CQL `date` as a calendar date, if chrono can hold it.
pub(super) fn date_of(d: CqlDate) -> Option<NaiveDate> {
    let days = i64::from(d.0) - EPOCH_DAY;
    epoch().checked_add_signed(chrono::TimeDelta::try_days(days)?)
}

/// Beyond this many digits after the point, a decimal read back is written
/// with an exponent rather than spelt out in zeros.
const MAX_PLAIN_SCALE: i32 = 100;

/// The text of a CQL `decimal`: its unscaled value (two's-complement,
/// big-endian) and scale. The inverse of [`decimal_parts`] for decimals
/// written without an exponent; others come back in `<digits>e<exponent>`
/// form, the same value.
pub(super) fn decimal_text(unscaled: &[u8], scale: i32) -> String {
    let negative = unscaled.first().is_some_and(|b| b & 0x80 != 0);
    let mut magnitude = unscaled.to_vec();
    if negative {
        magnitude.iter_mut().for_each(|b| *b = !*b);
        for b in magnitude.iter_mut().rev() {
            let (v, carry) = b.overflowing_add(1);
            *b = v;
            if !carry {
                break;
            }
        }
    }
    // Base 256 to base 10, by repeated division of the big-endian bytes.
    let mut digits = Vec::new();
    while magnitude.iter().any(|&b| b != 0) {
        let mut remainder = 0u32;
        for b in magnitude.iter_mut() {
            let v = (remainder << 8) | u32::from(*b);
            *b = (v / 10) as u8;
            remainder = v % 10;
        }
        digits.push(b'0' + remainder as u8);
    }
    if digits.is_empty() {
        digits.push(b'0');
    }
    digits.reverse();
    let digits = String::from_utf8(digits).expect("ASCII digits");
    let sign = if negative { "-" } else { "" };
    match scale {
        0 => format!("{sign}{digits}"),
        s if !(1..=MAX_PLAIN_SCALE).contains(&s) => format!("{sign}{digits}e{}", -i64::from(s)),
        s => {
            let s = s as usize;
            let padded = format!("{digits:0>width$}", width = s + 1);
            let (int, frac) = padded.split_at(padded.len() - s);
            format!("{sign}{int}.{frac}")
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a decimal")]
struct NotADecimal(String);

/// Each cell is bound as its column's CQL type; the driver refuses a cell
/// of another type than its column's (the row is then rejected).
///
/// [`Cell::Null`] is bound as null, not *unset*: the stored row must be
/// the last record, whatever an earlier write of the same key stored (an
/// unset column would keep the old value, and the store would hold a row
/// no record had; the embedded store clears it too). Cassandra keeps a
/// tombstone for each null written, until compaction; a table with many
/// optional columns is better served by a transform that fills them. A
/// null key cell is refused by Cassandra, and the row rejected.
impl SerializeValue for Cell {
    fn serialize<'b>(
        &self,
        typ: &CqlType,
        writer: CellWriter<'b>,
    ) -> Result<WrittenCellProof<'b>, SerializationError> {
        match self {
            Cell::Null => Ok(writer.set_null()),
            Cell::Text(t) => t.serialize(typ, writer),
            Cell::Int(n) => n.serialize(typ, writer),
            Cell::Bigint(n) => n.serialize(typ, writer),
            Cell::Double(x) => x.serialize(typ, writer),
            Cell::Boolean(b) => b.serialize(typ, writer),
            Cell::Uuid(u) => u.serialize(typ, writer),
            Cell::Timestamp(ms) => CqlTimestamp(*ms).serialize(typ, writer),
            Cell::Date(d) => cql_date(*d).serialize(typ, writer),
            Cell::Decimal(t) => {
                let (unscaled, scale) = decimal_parts(t)
                    .ok_or_else(|| SerializationError::new(NotADecimal(t.clone())))?;
                CqlDecimalBorrowed::from_signed_be_bytes_slice_and_exponent(&unscaled, scale)
                    .serialize(typ, writer)
            }
            Cell::List(items) => items.serialize(typ, writer),
            Cell::Map(entries) => entries.serialize(typ, writer),
        }
    }
}

fn text(v: CqlValue) -> Option<String> {
    match v {
        CqlValue::Text(t) | CqlValue::Ascii(t) => Some(t),
        _ => None,
    }
}

/// A column's value, as the driver read it, as the cell of a column of type
/// `ty`; or what was found instead.
pub(super) fn cell(ty: ColumnType, value: Option<CqlValue>) -> Result<Cell, String> {
    let Some(value) = value else {
        return Ok(Cell::Null);
    };
    let unexpected = |v: &CqlValue| format!("expected {ty}, got {v:?}");
    Ok(match (ty, value) {
        (ColumnType::Text, CqlValue::Text(t) | CqlValue::Ascii(t)) => Cell::Text(t),
        (ColumnType::Int, CqlValue::Int(n)) => Cell::Int(n),
        (ColumnType::Bigint, CqlValue::BigInt(n)) => Cell::Bigint(n),
        (ColumnType::Double, CqlValue::Double(x)) => Cell::Double(x),
        (ColumnType::Boolean, CqlValue::Boolean(b)) => Cell::Boolean(b),
        (ColumnType::Uuid, CqlValue::Uuid(u)) => Cell::Uuid(u),
        (ColumnType::Timestamp, CqlValue::Timestamp(t)) => Cell::Timestamp(t.0),
        (ColumnType::Date, CqlValue::Date(d)) => {
            Cell::Date(date_of(d).ok_or_else(|| format!("date {} is out of range", d.0))?)
        }
        (ColumnType::Decimal, CqlValue::Decimal(d)) => {
            let (unscaled, scale) = d.as_signed_be_bytes_slice_and_exponent();
            Cell::Decimal(decimal_text(unscaled, scale))
        }
        (ColumnType::ListText, CqlValue::List(items)) => Cell::List(
            items
                .into_iter()
                .map(|v| text(v.clone()).ok_or_else(|| unexpected(&v)))
                .collect::<Result<_, _>>()?,
        ),
        (ColumnType::MapTextText, CqlValue::Map(entries)) => Cell::Map(
            entries
                .into_iter()
                .map(|(k, v)| match (text(k.clone()), text(v.clone())) {
                    (Some(k), Some(v)) => Ok((k, v)),
                    _ => Err(unexpected(&CqlValue::Map(vec![(k, v)]))),
                })
                .collect::<Result<_, _>>()?,
        ),
        (_, other) => return Err(unexpected(&other)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use scylla::frame::response::result::{CollectionType, NativeType};
    use std::collections::BTreeMap;

    /// The bytes a cell is bound as, length first.
    fn bound(cell: &Cell, typ: &CqlType) -> Result<Vec<u8>, SerializationError> {
        let mut buf = Vec::new();
        cell.serialize(typ, CellWriter::new(&mut buf))?;
        Ok(buf)
    }

    fn native(t: NativeType) -> CqlType<'static> {
        CqlType::Native(t)
    }

    #[test]
    fn null_is_null_and_cells_take_their_columns_types() {
        assert_eq!(
            bound(&Cell::Null, &native(NativeType::Int)).unwrap(),
            [0xff, 0xff, 0xff, 0xff]
        );
        assert_eq!(
            bound(&Cell::Timestamp(-1), &native(NativeType::Timestamp)).unwrap(),
            [0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
        assert_eq!(
            bound(&Cell::Date(epoch()), &native(NativeType::Date)).unwrap(),
            [0, 0, 0, 4, 0x80, 0, 0, 0]
        );
        assert_eq!(
            bound(&Cell::Decimal("-1.28".into()), &native(NativeType::Decimal)).unwrap(),
            [0, 0, 0, 5, 0, 0, 0, 2, 0x80]
        );
        let frozen_list = CqlType::Collection {
            frozen: true,
            typ: CollectionType::List(Box::new(native(NativeType::Text))),
        };
        assert_eq!(
            bound(&Cell::List(vec!["ab".into()]), &frozen_list).unwrap(),
            [0, 0, 0, 10, 0, 0, 0, 1, 0, 0, 0, 2, b'a', b'b']
        );
        let map = CqlType::Collection {
            frozen: true,
            typ: CollectionType::Map(
                Box::new(native(NativeType::Text)),
                Box::new(native(NativeType::Text)),
            ),
        };
        let entries = BTreeMap::from([("k".to_owned(), "v".to_owned())]);
        assert_eq!(
            bound(&Cell::Map(entries), &map).unwrap(),
            [0, 0, 0, 14, 0, 0, 0, 1, 0, 0, 0, 1, b'k', 0, 0, 0, 1, b'v']
        );
        assert!(bound(&Cell::Text("1".into()), &native(NativeType::Int)).is_err());
        assert!(bound(&Cell::Decimal("1.2.3".into()), &native(NativeType::Decimal)).is_err());
    }

    #[test]
    fn decimal_text_inverts_decimal_parts() {
        for t in [
            "0",
            "1",
            "-1",
            "127",
            "128",
            "-128",
            "-129",
            "255",
            "256",
            "0.10",
            "-0.5",
            "0.001",
            "12345678901234567890.123456789",
            "-12345678901234567890.123456789",
            "1e3",
            "-15e2",
        ] {
            let (unscaled, scale) = decimal_parts(t).unwrap();
            assert_eq!(decimal_text(&unscaled, scale), t, "{unscaled:?} {scale}");
        }
        assert_eq!(decimal_text(&[0x7f], 0), "127");
        assert_eq!(decimal_text(&[], 0), "0");
        assert_eq!(decimal_text(&[1], 1000), "1e-1000");
        assert_eq!(decimal_parts("1e-1000"), Some((vec![1], 1000)));
    }

    #[test]
    fn dates_count_from_two_to_the_31() {
        for d in [
            "1970-01-01",
            "1969-07-20",
            "2024-02-29",
            "0001-01-01",
            "9999-12-31",
        ] {
            let d: NaiveDate = d.parse().unwrap();
            assert_eq!(date_of(cql_date(d)), Some(d));
        }
        assert_eq!(cql_date(epoch()).0, 1 << 31);
        assert_eq!(date_of(CqlDate(0)), None, "before chrono's range");
    }

    #[test]
    fn values_read_back_by_column_type() {
        assert_eq!(cell(ColumnType::Int, None), Ok(Cell::Null));
        assert_eq!(
            cell(
                ColumnType::Timestamp,
                Some(CqlValue::Timestamp(CqlTimestamp(5)))
            ),
            Ok(Cell::Timestamp(5))
        );
        assert_eq!(
            cell(
                ColumnType::MapTextText,
                Some(CqlValue::Map(vec![(
                    CqlValue::Text("k".into()),
                    CqlValue::Text("v".into())
                )]))
            ),
            Ok(Cell::Map(BTreeMap::from([("k".into(), "v".into())])))
        );
        let err = cell(ColumnType::Int, Some(CqlValue::BigInt(1))).unwrap_err();
        assert_eq!(err, "expected int, got BigInt(1)");
        assert!(
            cell(
                ColumnType::ListText,
                Some(CqlValue::List(vec![CqlValue::Int(1)]))
            )
            .is_err()
        );
    }
}
