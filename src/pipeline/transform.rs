//! The transform step of a user pipeline: a program in VRL (the language of
//! Vector) that reshapes each source record into the row to store. Compiled
//! once at start — a mistake is an error naming the line and column of the
//! file the program sits in — then run per record; a record the program
//! rejects at run time is an `Err` with the error text (a dead letter
//! upstream), and the next record goes on.
//!
//! The program sees the record as `.` and leaves the row in `.`, which must
//! be an object. Functions that would make a replay differ from the first
//! run (`now`, random numbers, fresh uuids) or reach outside the record
//! (logging) are not offered: a pipeline's rows must depend on its input
//! alone, or exactly-once results would not be.

mod depth;

use vrl::compiler::runtime::{Runtime, Terminate};
use vrl::compiler::{Function, Program, TargetValue, TimeZone, compile};
use vrl::value::{Secrets, Value};

/// Functions left out of the language (see the module doc).
const NOT_OFFERED: &[&str] = &[
    "now",
    "random_bool",
    "random_bytes",
    "random_float",
    "random_int",
    "uuid_v4",
    "uuid_v7",
    "log",
    "get_env_var",
    "get_hostname",
    "get_timezone_name",
];

/// Where a program's text sits, for error messages: the file and the line
/// (from 1) of the program's first character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: String,
    pub line: usize,
    /// The column (from 1) of the first character on that line.
    pub column: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    /// Every mistake found, one per line, each starting `file:line:column:`.
    #[error("the transform does not compile:\n{}", .0.join("\n"))]
    Compile(Vec<String>),
}

/// A compiled transform. Runs one record at a time; each task that runs
/// records holds its own (the runtime keeps per-run state).
pub struct Transform {
    program: Program,
    runtime: Runtime,
    tz: TimeZone,
    /// The program's text and where it sits, to name the place of a
    /// failure as the compiler's errors do.
    text: std::sync::Arc<str>,
    origin: Origin,
}

impl std::fmt::Debug for Transform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transform").finish_non_exhaustive()
    }
}

/// The functions programs may call.
fn functions() -> Vec<Box<dyn Function>> {
    vrl::stdlib::all()
        .into_iter()
        .filter(|f| !NOT_OFFERED.contains(&f.identifier()))
        .collect()
}

impl Transform {
    /// Compiles `text`; errors name their place as `origin` says.
    pub fn compile(text: &str, origin: &Origin) -> Result<Transform, TransformError> {
        if let Err(deep) = depth::check(text) {
            let (at, what) = match deep {
                depth::TooDeep::Nesting(at) => (
                    at,
                    format!("brackets nest more than {} deep", depth::MAX_NESTING),
                ),
                depth::TooDeep::Operators(at) => (
                    at,
                    format!(
                        "an expression of more than {} operators",
                        depth::MAX_OPERATORS
                    ),
                ),
            };
            let (line, column) = place(text, at, origin);
            return Err(TransformError::Compile(vec![format!(
                "{}:{line}:{column}: {what}: split it into statements (the compiler \
                 would run out of stack)",
                origin.file
            )]));
        }
        match compile(text, &functions()) {
            Ok(compiled) => Ok(Transform {
                program: compiled.program,
                runtime: Runtime::default(),
                tz: TimeZone::parse("UTC").expect("UTC is a time zone"),
                text: text.into(),
                origin: origin.clone(),
            }),
            Err(diagnostics) => Err(TransformError::Compile(
                diagnostics
                    .errors()
                    .into_iter()
                    .map(|d| {
                        // The primary label holds the place; labels on the
                        // same place add hints ("did you mean ...?").
                        let label = d.labels.iter().find(|l| l.primary).or(d.labels.first());
                        let span = label.map(|l| l.span).unwrap_or_default();
                        let hints: Vec<&str> = d
                            .labels
                            .iter()
                            .filter(|l| l.span == span && !l.message.is_empty())
                            .map(|l| l.message.as_str())
                            .collect();
                        let (line, column) = place(text, span.start(), origin);
                        let hints = if hints.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", hints.join("; "))
                        };
                        format!(
                            "{}:{line}:{column}: error[E{}]: {}{hints}",
                            origin.file, d.code, d.message
                        )
                    })
                    .collect(),
            )),
        }
    }

    /// The top-level fields the program certainly leaves in the row it
    /// makes (assigned, and not deleted on any path), as the compiler's
    /// type checking knows them. Fields it passes through from the input
    /// unchanged are not known until it runs.
    pub fn fields_set(&self) -> Vec<String> {
        let info = self.program.final_type_info();
        let kind = info.state.external.target_kind();
        let Some(object) = kind.as_object() else {
            return Vec::new();
        };
        object
            .known()
            .iter()
            .filter(|(_, k)| !k.contains_undefined() && !k.is_never())
            .map(|(field, _)| field.as_str().to_owned())
            .collect()
    }

    /// Runs the program on one record. `Err` holds the reason the program
    /// gave (`abort "..."`) or the failure it met, for a dead letter.
    pub fn run(&mut self, record: serde_json::Value) -> Result<serde_json::Value, String> {
        let value: Value =
            serde_json::from_value(record).map_err(|e| format!("not a JSON value: {e}"))?;
        let mut target = TargetValue {
            value,
            metadata: Value::Object(Default::default()),
            secrets: Secrets::default(),
        };
        let resolved = self.runtime.resolve(&mut target, &self.program, &self.tz);
        self.runtime.clear();
        match resolved {
            Ok(_) => {}
            Err(Terminate::Abort(e) | Terminate::Error(e)) => {
                return Err(self.placed(e.to_string()));
            }
            Err(Terminate::Interrupted) => return Err("the transform was interrupted".into()),
        }
        if !matches!(target.value, Value::Object(_)) {
            return Err(format!(
                "the transform must leave an object in `.`, not {}",
                target.value.kind_str()
            ));
        }
        if let Some(at) = not_finite(&target.value, String::new()) {
            // JSON has no infinity: serialised, it would become a null, and
            // the value would be lost without a word.
            return Err(format!(
                "the transform made a number that is not finite at {at}"
            ));
        }
        serde_json::to_value(&target.value).map_err(|e| format!("the row is not JSON: {e}"))
    }
}

/// The path of the first infinite float in `value` (`.a.b[2]`), if any.
fn not_finite(value: &Value, at: String) -> Option<String> {
    match value {
        Value::Float(x) if !x.is_finite() => Some(if at.is_empty() { ".".into() } else { at }),
        Value::Object(fields) => fields
            .iter()
            .find_map(|(k, v)| not_finite(v, format!("{at}.{k}"))),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| not_finite(v, format!("{at}[{i}]"))),
        _ => None,
    }
}

/// The file line and column of byte `offset` of a program placed at
/// `origin`.
fn place(text: &str, offset: usize, origin: &Origin) -> (usize, usize) {
    let (line, column) = line_column(text, offset);
    let column = if line == 1 {
        origin.column + column - 1
    } else {
        column
    };
    (origin.line + line - 1, column)
}

impl Transform {
    /// `message` with the place VRL gives as byte offsets, `at (17:29)`,
    /// named as the compiler's errors name theirs: `at file:line:column`.
    fn placed(&self, message: String) -> String {
        let Some(at) = message.rfind(" at (") else {
            return message;
        };
        let rest = &message[at + 5..];
        let Some((start, end)) = rest
            .split_once(')')
            .and_then(|(span, _)| span.split_once(':'))
            .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)))
        else {
            return message;
        };
        if start > end || end > self.text.len() {
            return message;
        }
        let (line, column) = place(&self.text, start, &self.origin);
        let after = &rest[rest.find(')').map_or(rest.len(), |i| i + 1)..];
        format!(
            "{} at {}:{line}:{column}{after}",
            &message[..at],
            self.origin.file
        )
    }
}

/// The line and column (both from 1) of byte `offset` of `text`.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::record::ApiUser;

    fn origin() -> Origin {
        Origin {
            file: "pipes.toml".into(),
            line: 10,
            column: 1,
        }
    }

    #[test]
    fn a_mistake_is_named_by_its_line_and_column_in_the_file() {
        let text = ".a = 1\n.b = downcaes(.name)\n";
        let err = Transform::compile(text, &origin()).unwrap_err().to_string();
        assert!(err.contains("pipes.toml:11:6: error[E105]"), "{err}");
        assert!(err.contains("downcase"), "{err}");

        let text = ".n = to_int(.s)\n";
        let err = Transform::compile(text, &origin()).unwrap_err().to_string();
        assert!(err.contains("pipes.toml:10:"), "{err}");
        assert!(err.contains("E103"), "{err}");
    }

    #[test]
    fn an_infinite_number_is_an_error_not_a_null() {
        let text = ".x = to_float!(.x) * to_float!(\"1e308\")\n.y = [1.5, .x]\n";
        let mut t = Transform::compile(text, &origin()).unwrap();
        let err = t.run(serde_json::json!({"x": 10})).unwrap_err();
        assert_eq!(err, "the transform made a number that is not finite at .x");
        let row = t.run(serde_json::json!({"x": 1})).unwrap();
        assert_eq!(row, serde_json::json!({"x": 1e308, "y": [1.5, 1e308]}));
        let mut t = Transform::compile(".y = [1, to_float!(\"-inf\")]", &origin()).unwrap();
        let err = t.run(serde_json::json!({})).unwrap_err();
        assert_eq!(
            err,
            "the transform made a number that is not finite at .y[1]"
        );
    }

    #[test]
    fn functions_that_make_replays_differ_are_not_offered() {
        for text in [".t = now()", ".u = uuid_v4()", ".r = random_int(0, 9)"] {
            let err = Transform::compile(text, &origin()).unwrap_err().to_string();
            assert!(err.contains("E105"), "{text}: {err}");
        }
    }

    #[test]
    fn a_record_the_program_rejects_is_an_error_and_the_next_goes_on() {
        let text = "if !exists(.id) { abort \"no id\" }\n.id = upcase!(.id)\n";
        let mut t = Transform::compile(text, &origin()).unwrap();
        assert_eq!(
            t.run(serde_json::json!({"name": "x"})).unwrap_err(),
            "no id"
        );
        let err = t.run(serde_json::json!({"id": 7})).unwrap_err();
        assert!(err.contains("expected string"), "{err}");
        // Named by line and column, as the compiler names its errors, not
        // by VRL's byte offsets.
        assert!(err.contains("\"upcase\" at pipes.toml:11:7: "), "{err}");
        assert_eq!(
            t.run(serde_json::json!({"id": "ab"})).unwrap(),
            serde_json::json!({"id": "AB"})
        );
        let mut t = Transform::compile(". = 5", &origin()).unwrap();
        let err = t.run(serde_json::json!({})).unwrap_err();
        assert!(err.contains("must leave an object"), "{err}");
    }

    /// The built-in Random User path and the same job written in VRL give
    /// the same rows, for every API format and its quirks.
    #[test]
    fn the_random_user_program_gives_the_rows_of_the_built_in_path() {
        let text = include_str!("../../examples/randomuser.vrl");
        let mut t = Transform::compile(text, &origin()).unwrap();
        let mut compared = 0;
        for (version, results) in [("1.4", 4000), ("1.3", 2000), ("1.2", 2000), ("1.0", 2000)] {
            let q: HashMap<String, String> = [
                ("results".to_owned(), results.to_string()),
                ("seed".to_owned(), format!("vrl-{version}")),
            ]
            .into();
            let body = crate::devtools::mock_api::page_body(version, &q, false, 0.0);
            let page: serde_json::Value = serde_json::from_slice(&body).unwrap();
            for user in page["results"].as_array().unwrap() {
                let typed: ApiUser = serde_json::from_value(user.clone()).unwrap();
                let built_in: serde_json::Value =
                    serde_json::from_slice(&typed.to_row().unwrap().to_json()).unwrap();
                let transformed = t.run(user.clone()).unwrap();
                assert_eq!(transformed, built_in, "format {version}");
                compared += 1;
            }
        }
        assert_eq!(compared, 10_000);
    }
}
