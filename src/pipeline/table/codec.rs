//! The log's message format for a typed table: a row as one flat JSON object
//! (column names as keys, every column present, values in one canonical form
//! per type), its log key, and the decoder that reads a message back into a
//! typed row by the schema, without building a `serde_json::Value`.
//!
//! Canonical forms: text, uuid (lower-case hyphenated), date (`YYYY-MM-DD`)
//! and decimal (its exact text) are strings; timestamps are RFC 3339 UTC
//! strings with milliseconds (`2024-02-29T22:30:00.123Z`), readable by
//! anyone tailing the topic; int, bigint and double are numbers; boolean is
//! `true`/`false`; list and map are an array and an object of strings; NULL
//! is `null`. Every canonical form is accepted by [`super::check`]'s rules,
//! which the decoder applies, so `decode(encode(row)) == row`.

use std::fmt;

use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::check::{
    Cell, CheckError, Filling, Scalar, TypedRow, UnknownFields, scalar_cell, shown, type_error,
};
use super::schema::{ColumnType, TableSchema};
use crate::record::iso8601_millis;

/// A cell in its canonical JSON form.
struct Canonical<'a>(&'a Cell);

impl Serialize for Canonical<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Cell::Null => s.serialize_unit(),
            Cell::Text(t) | Cell::Decimal(t) => s.serialize_str(t),
            Cell::Int(n) => s.serialize_i32(*n),
            Cell::Bigint(n) => s.serialize_i64(*n),
            Cell::Double(x) if x.is_finite() => s.serialize_f64(*x),
            // JSON has no such numbers (serde_json writes them as null):
            // as CQL and Java spell them. Only a row another program wrote
            // holds one; a record with one is refused.
            Cell::Double(x) => s.serialize_str(if x.is_nan() {
                "NaN"
            } else if *x > 0.0 {
                "Infinity"
            } else {
                "-Infinity"
            }),
            Cell::Boolean(b) => s.serialize_bool(*b),
            Cell::Uuid(u) => s.serialize_str(
                u.hyphenated()
                    .encode_lower(&mut uuid::Uuid::encode_buffer()),
            ),
            Cell::Timestamp(ms) => s.serialize_str(&iso8601_millis(*ms)),
            Cell::Date(d) => s.collect_str(&d.format("%Y-%m-%d")),
            Cell::List(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for i in items {
                    seq.serialize_element(i)?;
                }
                seq.end()
            }
            Cell::Map(entries) => {
                let mut map = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

struct RowJson<'a> {
    schema: &'a TableSchema,
    row: &'a [Cell],
}

impl Serialize for RowJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.row.len()))?;
        for (c, cell) in self.schema.columns.iter().zip(self.row) {
            map.serialize_entry(&c.name, &Canonical(cell))?;
        }
        map.end()
    }
}

/// The log message of a typed row (one cell per column, in column order).
pub fn encode(schema: &TableSchema, row: &[Cell]) -> Vec<u8> {
    debug_assert_eq!(schema.columns.len(), row.len());
    let mut out = Vec::with_capacity(64 + 32 * row.len());
    serde_json::to_writer(&mut out, &RowJson { schema, row })
        .expect("a row of cells always serialises: doubles come from JSON, so are finite");
    out
}

/// The log key of a row: the primary key. One key column is its canonical
/// text as is (a uuid key is the same key as the seed rows'); several are the
/// JSON array of their canonical forms, which escaping keeps unambiguous
/// (`["a,b","c"]` is not `["a","b,c"]`).
pub fn key(schema: &TableSchema, row: &[Cell]) -> Vec<u8> {
    let keys = schema.key_indexes();
    if let [only] = keys[..] {
        return match &row[only] {
            Cell::Text(t) | Cell::Decimal(t) => t.clone().into_bytes(),
            cell => match serde_json::to_value(Canonical(cell)) {
                Ok(Value::String(t)) => t.into_bytes(),
                _ => serde_json::to_vec(&Canonical(cell)).expect("a key cell serialises"),
            },
        };
    }
    let cells: Vec<Canonical<'_>> = keys.iter().map(|&i| Canonical(&row[i])).collect();
    serde_json::to_vec(&cells).expect("key cells serialise")
}

/// Decodes a log message into the typed row of `schema`, by the rules of
/// [`super::check`], with the same errors. A message over `max_bytes` is
/// not parsed.
pub fn decode(
    schema: &TableSchema,
    bytes: &[u8],
    max_bytes: usize,
    unknown: UnknownFields,
) -> Result<TypedRow, CheckError> {
    if bytes.len() > max_bytes {
        return Err(CheckError::TooLarge {
            size: bytes.len(),
            limit: max_bytes,
        });
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let filled = RowSeed { schema, unknown }
        .deserialize(&mut de)
        .and_then(|f| de.end().map(|()| f))
        .map_err(|e| CheckError::Malformed(e.to_string()))?;
    match filled {
        Ok(filling) => filling.finish(schema),
        Err(not_an_object) => Err(not_an_object),
    }
}

struct RowSeed<'s> {
    schema: &'s TableSchema,
    unknown: UnknownFields,
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_> {
    /// A filled row, or the message was valid JSON but not an object.
    type Value = Result<Filling, CheckError>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_> {
    type Value = Result<Filling, CheckError>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let columns = &self.schema.columns;
        let mut filling = Filling::new(columns.len());
        // Messages this codec wrote list the columns in order: look there first.
        let mut next = 0;
        while let Some(field) = map.next_key_seed(FieldSeed {
            schema: self.schema,
            hint: next,
        })? {
            match field {
                Field::Column(i) => {
                    let c = &columns[i];
                    let cell = map.next_value_seed(CellSeed {
                        column: &c.name,
                        ty: c.ty,
                    })?;
                    if filling.cells[i].is_some() && filling.duplicate.is_none() {
                        filling.duplicate = Some(c.name.clone());
                    }
                    filling.set(i, cell);
                    next = i + 1;
                }
                Field::Unknown(name) => {
                    map.next_value::<IgnoredAny>()?;
                    if self.unknown == UnknownFields::Reject {
                        filling.unknown.push(name);
                    }
                }
            }
        }
        Ok(Ok(filling))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        let v = Value::deserialize(SeqAccessDeserializer::new(seq))?;
        Ok(Err(CheckError::NotAnObject(shown(&v))))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Err(CheckError::NotAnObject(shown(v))))
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Err(CheckError::NotAnObject(v.to_string())))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Err(CheckError::NotAnObject(v.to_string())))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Err(CheckError::NotAnObject(v.to_string())))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Err(CheckError::NotAnObject(shown(&v))))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(Err(CheckError::NotAnObject("null".into())))
    }
}

enum Field {
    Column(usize),
    Unknown(String),
}

/// Resolves a field name to its column without allocating (the name is
/// borrowed from the message, or from the parser's buffer when escaped).
struct FieldSeed<'s> {
    schema: &'s TableSchema,
    hint: usize,
}

impl<'de> DeserializeSeed<'de> for FieldSeed<'_> {
    type Value = Field;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Field, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for FieldSeed<'_> {
    type Value = Field;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a column name")
    }

    fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Field, E> {
        let columns = &self.schema.columns;
        if columns.get(self.hint).is_some_and(|c| c.name == name) {
            return Ok(Field::Column(self.hint));
        }
        Ok(match columns.iter().position(|c| c.name == name) {
            Some(i) => Field::Column(i),
            None => Field::Unknown(name.to_owned()),
        })
    }
}

/// One column's value; the outcome of the type check is the value, so one
/// wrong value does not stop the parse (the row's errors are ordered later).
struct CellSeed<'s> {
    column: &'s str,
    ty: ColumnType,
}

impl<'de> DeserializeSeed<'de> for CellSeed<'_> {
    type Value = Result<Cell, CheckError>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl CellSeed<'_> {
    fn scalar(&self, v: Scalar<'_>) -> Result<Cell, CheckError> {
        scalar_cell(self.column, self.ty, v)
    }

    fn wrong(&self, v: &Value) -> Result<Cell, CheckError> {
        Err(type_error(self.column, self.ty, shown(v), None))
    }
}

impl<'de> Visitor<'de> for CellSeed<'_> {
    type Value = Result<Cell, CheckError>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a value of column {}", self.column)
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(self.scalar(Scalar::Bool(v)))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(self.scalar(Scalar::I64(v)))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(self.scalar(Scalar::U64(v)))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(self.scalar(Scalar::F64(v)))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        if self.ty == ColumnType::Text {
            // The one copy of the text: from the message into the cell.
            return Ok(Ok(Cell::Text(v.to_owned())));
        }
        Ok(self.scalar(Scalar::Str(v)))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
        if self.ty == ColumnType::Text {
            return Ok(Ok(Cell::Text(v)));
        }
        Ok(self.scalar(Scalar::Str(&v)))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(Ok(Cell::Null))
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(Ok(Cell::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        if self.ty != ColumnType::ListText {
            // Only for the error's text: a Value of what was sent.
            let v = Value::deserialize(SeqAccessDeserializer::new(seq))?;
            return Ok(self.wrong(&v));
        }
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(4));
        while let Some(item) = seq.next_element::<Item>()? {
            match item {
                Item::Text(t) => items.push(t),
                Item::Other(bad) => {
                    let mut all: Vec<Value> = items.into_iter().map(Value::String).collect();
                    all.push(bad);
                    while let Some(rest) = seq.next_element::<Value>()? {
                        all.push(rest);
                    }
                    return Ok(self.wrong(&Value::Array(all)));
                }
            }
        }
        Ok(Ok(Cell::List(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        if self.ty != ColumnType::MapTextText {
            let v = Value::deserialize(MapAccessDeserializer::new(map))?;
            return Ok(self.wrong(&v));
        }
        let mut entries = std::collections::BTreeMap::new();
        while let Some(k) = map.next_key::<String>()? {
            match map.next_value::<Item>()? {
                Item::Text(t) => {
                    entries.insert(k, t);
                }
                Item::Other(bad) => {
                    let mut all: serde_json::Map<String, Value> = entries
                        .into_iter()
                        .map(|(k, v)| (k, Value::String(v)))
                        .collect();
                    all.insert(k, bad);
                    while let Some((k, v)) = map.next_entry::<String, Value>()? {
                        all.insert(k, v);
                    }
                    return Ok(self.wrong(&Value::Object(all)));
                }
            }
        }
        Ok(Ok(Cell::Map(entries)))
    }
}

/// An element of a list or a value of a map: a string, or (for the error's
/// text only) whatever else was there.
enum Item {
    Text(String),
    Other(Value),
}

impl<'de> Deserialize<'de> for Item {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Item, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Item;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Item, E> {
                Ok(Item::Text(v.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Item, E> {
                Ok(Item::Text(v))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Item, E> {
                Ok(Item::Other(Value::Bool(v)))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Item, E> {
                Ok(Item::Other(v.into()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Item, E> {
                Ok(Item::Other(v.into()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Item, E> {
                Ok(Item::Other(v.into()))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Item, E> {
                Ok(Item::Other(Value::Null))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Item, A::Error> {
                Value::deserialize(SeqAccessDeserializer::new(seq)).map(Item::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Item, A::Error> {
                Value::deserialize(MapAccessDeserializer::new(map)).map(Item::Other)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests;
