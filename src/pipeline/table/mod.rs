//! A pipeline's typed table: the declared schema and its DDL ([`schema`]),
//! the check of a transformed record against it ([`check`]), and the log's
//! message format for its rows ([`codec`]).
//!
//! The flow a row takes: the transform yields a JSON object; [`check::check`]
//! makes it a [`TypedRow`] or a [`CheckError`] naming the column, the type
//! and the value (a dead letter); [`codec::encode`] puts the row on the log
//! under [`codec::key`]; the processor reads it back with [`codec::decode`],
//! by the same rules, and the sink binds the cells in column order.

pub mod check;
pub mod codec;
pub mod schema;

pub use check::{Cell, CheckError, TypedRow, UnknownFields, check, decimal_parts, value_cell};
pub use codec::{decode, encode, key};
pub use schema::{Column, ColumnType, CqlColumnRow, SchemaError, SqliteColumnRow, TableSchema};
