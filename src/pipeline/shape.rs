//! What a pipeline's records are and how each becomes a row: the built-in
//! Random User users (flattened by `record/` into the seed table's 12
//! columns), or a user pipeline's records, reshaped by its transform and
//! checked against its typed table. Owns the per-record step of a user
//! pipeline's ingestion ([`Shaper::shape`]): transform → type check → the
//! log message (flat JSON of the row, keyed by the primary key).

use std::sync::Arc;

use serde_json::Value;

use super::source::json_page;
use super::table::{self, TableSchema, TypedRow, UnknownFields};
use super::transform::{Origin, Transform, TransformError};

/// A pipeline's kind of records: a closed set.
#[derive(Debug, Clone, PartialEq)]
pub enum Dataset {
    /// Random User users into the seed table (`created_users`).
    Users,
    /// Records of any JSON source into a typed table.
    Table(Arc<TableSpec>),
}

impl Dataset {
    pub fn table(&self) -> Option<&Arc<TableSpec>> {
        match self {
            Dataset::Users => None,
            Dataset::Table(t) => Some(t),
        }
    }
}

/// A user pipeline's table and transform, as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSpec {
    /// The declared columns and key; `None`: the store's existing table is
    /// read at start and used.
    pub schema: Option<TableSchema>,
    pub transform: Option<TransformSpec>,
    pub unknown_fields: UnknownFields,
}

/// A transform's program text and where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransformSpec {
    pub text: String,
    pub origin: Origin,
}

impl TransformSpec {
    pub fn compile(&self) -> Result<Transform, TransformError> {
        Transform::compile(&self.text, &self.origin)
    }
}

/// A user pipeline's records as the store sees them: its table (resolved:
/// declared, or read from the store) and its transform. Shared; each task
/// that shapes records makes its own [`Shaper`].
#[derive(Debug, Clone)]
pub struct Shape {
    pub schema: Arc<TableSchema>,
    pub transform: Option<TransformSpec>,
    pub unknown_fields: UnknownFields,
}

/// Why a record did not become a row.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    #[error("transform: {0}")]
    Transform(String),
    #[error(transparent)]
    Check(#[from] table::CheckError),
}

/// A record made into a log message.
#[derive(Debug, Clone, PartialEq)]
pub struct Shaped {
    pub row: TypedRow,
    /// The primary key ([`table::key`]).
    pub key: Vec<u8>,
    /// The flat JSON of the row ([`table::encode`]).
    pub payload: Vec<u8>,
}

/// Runs the per-record step; holds the compiled transform (its runtime is
/// per task).
pub struct Shaper {
    shape: Arc<Shape>,
    transform: Option<Transform>,
}

impl Shape {
    /// The shape of a user pipeline's records: its dataset's transform, and
    /// the table as the store has it (`store`), or as declared. `None` for
    /// the Random User pipeline, or when the table is known only to a store
    /// not yet opened.
    pub fn of(dataset: &Dataset, store: Option<&Arc<TableSchema>>) -> Option<Arc<Shape>> {
        let spec = dataset.table()?;
        let schema = store
            .cloned()
            .or_else(|| spec.schema.clone().map(Arc::new))?;
        Some(Arc::new(Shape {
            schema,
            transform: spec.transform.clone(),
            unknown_fields: spec.unknown_fields,
        }))
    }

    /// Checks, before any record is read, that every field the transform
    /// certainly sets has a column (unless unknown fields are ignored):
    /// otherwise every record would become a dead letter.
    pub fn check_fields(&self) -> Result<(), String> {
        check_fields(&self.schema, self.transform.as_ref(), self.unknown_fields)
    }

    /// A shaper with the transform compiled (compiled once at start by the
    /// config check, so this cannot fail in a running pipeline).
    pub fn shaper(self: &Arc<Self>) -> Result<Shaper, TransformError> {
        Ok(Shaper {
            shape: self.clone(),
            transform: self.transform.as_ref().map(|t| t.compile()).transpose()?,
        })
    }
}

impl Shaper {
    pub fn shape(&mut self, record: Value) -> Result<Shaped, ShapeError> {
        let value = match &mut self.transform {
            Some(t) => t.run(record).map_err(ShapeError::Transform)?,
            None => record,
        };
        let Value::Object(map) = &value else {
            return Err(table::CheckError::NotAnObject(json_page::kind(&value).into()).into());
        };
        let schema = &self.shape.schema;
        let row = table::check(schema, map, self.shape.unknown_fields)?;
        Ok(Shaped {
            key: table::key(schema, &row),
            payload: table::encode(schema, &row),
            row,
        })
    }

    pub fn schema(&self) -> &Arc<TableSchema> {
        &self.shape.schema
    }
}

/// See [`Shape::check_fields`].
pub fn check_fields(
    schema: &TableSchema,
    transform: Option<&TransformSpec>,
    unknown: UnknownFields,
) -> Result<(), String> {
    let (Some(spec), UnknownFields::Reject) = (transform, unknown) else {
        return Ok(());
    };
    let compiled = spec.compile().map_err(|e| e.to_string())?;
    let missing: Vec<String> = compiled
        .fields_set()
        .into_iter()
        .filter(|f| schema.column(f).is_none())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let columns: Vec<&str> = schema.columns.iter().map(|c| c.name.as_str()).collect();
    Err(format!(
        "the transform sets {} {}, which the table has no column for (its columns: {}); \
         add the column, drop the field in the transform (del(.{})), or set \
         unknown_fields = \"ignore\"",
        if missing.len() == 1 {
            "field"
        } else {
            "fields"
        },
        missing.join(", "),
        columns.join(", "),
        missing[0],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn shape(transform: Option<&str>) -> Arc<Shape> {
        Arc::new(Shape {
            schema: Arc::new(
                TableSchema::new(
                    [("id", "text"), ("total", "double"), ("tags", "list<text>")],
                    &["id"],
                    &[] as &[&str],
                )
                .unwrap(),
            ),
            transform: transform.map(|t| TransformSpec {
                text: t.into(),
                origin: Origin {
                    file: "p.toml".into(),
                    line: 3,
                    column: 1,
                },
            }),
            unknown_fields: UnknownFields::Reject,
        })
    }

    #[test]
    fn a_record_becomes_its_row_keyed_by_the_primary_key() {
        let mut s = shape(Some(".id = to_string!(.n)\ndel(.n)"))
            .shaper()
            .unwrap();
        let shaped = s
            .shape(json!({"n": 7, "total": 2.5, "tags": ["a"]}))
            .unwrap();
        assert_eq!(shaped.key, b"7");
        let payload: Value = serde_json::from_slice(&shaped.payload).unwrap();
        assert_eq!(payload, json!({"id": "7", "total": 2.5, "tags": ["a"]}));
    }

    #[test]
    fn rejections_name_the_transform_or_the_column() {
        let mut s = shape(Some("if !exists(.id) { abort \"no id\" }"))
            .shaper()
            .unwrap();
        assert_eq!(
            s.shape(json!({"total": 1})).unwrap_err().to_string(),
            "transform: no id"
        );
        let err = s.shape(json!({"id": "a", "total": "x"})).unwrap_err();
        assert!(
            err.to_string().contains("column total: expected double"),
            "{err}"
        );
        let mut plain = shape(None).shaper().unwrap();
        let err = plain.shape(json!([1])).unwrap_err();
        assert!(err.to_string().contains("expected a JSON object"), "{err}");
    }
}
