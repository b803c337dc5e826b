//! What a pipeline's records become: its transform compiled (a mistake
//! named at its line in the config file) and its table declared, checked
//! against the fields the transform sets.

use std::path::Path;

use crate::config::raw::{RawPipeline, RawTable};
use crate::config::{ConfigError, invalid};
use crate::pipeline::shape::{TableSpec, TransformSpec};
use crate::pipeline::table::TableSchema;
use crate::pipeline::transform::{Origin, line_column};

/// A declared table checked against the fields its transform sets.
pub(super) fn checked(
    spec: TableSpec,
    at: &dyn Fn(&str) -> String,
) -> Result<TableSpec, ConfigError> {
    if let Some(schema) = &spec.schema {
        crate::pipeline::shape::check_fields(schema, spec.transform.as_ref(), spec.unknown_fields)
            .map_err(|e| invalid("pipelines.table", at(&e)))?;
    }
    Ok(spec)
}

pub(super) fn table_schema(
    t: &RawTable,
    at: &dyn Fn(&str) -> String,
) -> Result<Option<TableSchema>, ConfigError> {
    let Some(columns) = &t.columns else {
        if t.key.is_some() || t.clustering.is_some() {
            return Err(invalid(
                "pipelines.table",
                at(
                    "a key without `columns`: declare the columns too, or neither (the store's table is read)",
                ),
            ));
        }
        return Ok(None);
    };
    let columns = columns
        .iter()
        .map(|(name, ty)| match ty.as_str() {
            Some(ty) => Ok((name.clone(), ty.to_owned())),
            None => Err(invalid(
                "pipelines.table.columns",
                at(&format!(
                    "column {name}: the type must be a string, like \"text\""
                )),
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let key = t.key.clone().ok_or_else(|| {
        invalid(
            "pipelines.table.key",
            at("the table needs a key, e.g. key = [\"id\"]"),
        )
    })?;
    let clustering = t.clustering.clone().unwrap_or_default();
    TableSchema::new(columns, &key, &clustering)
        .map(Some)
        .map_err(|e| invalid("pipelines.table", at(&e.to_string())))
}

pub(super) fn transform(
    p: &RawPipeline,
    file: Option<&Path>,
    text: &str,
    at: &dyn Fn(&str) -> String,
) -> Result<Option<TransformSpec>, ConfigError> {
    let spec = match (&p.transform, &p.transform_file) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "pipelines.transform",
                at("give `transform` or `transform_file`, not both"),
            ));
        }
        (None, None) => return Ok(None),
        (Some(program), None) => {
            let (line, column) = program_start(text, program.span());
            TransformSpec {
                text: program.get_ref().clone(),
                origin: Origin {
                    file: file
                        .map(|f| f.display().to_string())
                        .unwrap_or_else(|| "config".into()),
                    line,
                    column,
                },
            }
        }
        (None, Some(path)) => TransformSpec {
            text: crate::config::files::read_capped(path, crate::config::files::TEXT_CAP)
                .map_err(|e| invalid("pipelines.transform_file", at(&e)))?,
            origin: Origin {
                file: path.display().to_string(),
                line: 1,
                column: 1,
            },
        },
    };
    spec.compile()
        .map_err(|e| invalid("pipelines.transform", at(&e.to_string())))?;
    Ok(Some(spec))
}

/// The line and column (from 1) in the file of a program's first
/// character, from the span of its TOML string (quotes included; a
/// newline right after an opening `'''` or `"""` is not part of it).
pub(super) fn program_start(text: &str, span: std::ops::Range<usize>) -> (usize, usize) {
    let literal = text.get(span.clone()).unwrap_or("");
    let mut start = span.start;
    if literal.starts_with("'''") || literal.starts_with("\"\"\"") {
        start += 3;
        let rest = &text[start.min(text.len())..];
        if rest.starts_with("\r\n") {
            start += 2;
        } else if rest.starts_with('\n') {
            start += 1;
        }
    } else if literal.starts_with('\'') || literal.starts_with('"') {
        start += 1;
    }
    line_column(text, start)
}
