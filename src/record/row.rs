//! The seed stack's flat 12-field row: the JSON on the log and the columns
//! of the store, decoded and validated from a log message.

use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

use super::RecordError;
use super::api::{Scalar, not_nil};

/// The seed stack's flat record: the JSON on the topic and the columns of
/// `spark_streams.created_users`, in the seeds' order. `id` is the user's
/// `login.uuid`, so the same user is the same row everywhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    pub id: Uuid,
    pub first_name: String,
    pub last_name: String,
    pub gender: String,
    pub address: String,
    /// The seeds put the API's postcode through unchanged, so a number is
    /// accepted here; it is always written back as a string.
    #[serde(deserialize_with = "string_or_number")]
    pub post_code: String,
    pub email: String,
    pub username: String,
    pub dob: String,
    pub registered_date: String,
    pub phone: String,
    pub picture: String,
}

/// The row's column names, in table order.
pub const ROW_COLUMNS: [&str; 12] = [
    "id",
    "first_name",
    "last_name",
    "gender",
    "address",
    "post_code",
    "email",
    "username",
    "dob",
    "registered_date",
    "phone",
    "picture",
];

fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Scalar::deserialize(d)? {
        Scalar::Text(s) => Ok(s),
        Scalar::Number(n) => Ok(n.to_string()),
    }
}

impl Row {
    /// Decodes and validates one log message (the flat JSON, UTF-8). Unknown
    /// fields are ignored, as the seed Spark job ignores them; every one of
    /// the 12 fields must be present and non-null, `id` must be a UUID and
    /// the names must not be empty.
    pub fn from_json(bytes: &[u8], max_bytes: usize) -> Result<Row, RecordError> {
        if bytes.len() > max_bytes {
            return Err(RecordError::TooLarge {
                size: bytes.len(),
                limit: max_bytes,
            });
        }
        let row: Row = serde_json::from_slice(bytes).map_err(|e| {
            let error = RecordError::from_json(e);
            match error {
                RecordError::Shape(_) => field_at_fault(bytes).unwrap_or(error),
                other => other,
            }
        })?;
        row.validate()?;
        Ok(row)
    }

    /// Checks what the types cannot: the id is not the nil UUID, and the
    /// fields a person looks a user up by are not empty.
    pub fn validate(&self) -> Result<(), RecordError> {
        not_nil(self.id, "id")?;
        for (field, value) in [
            ("first_name", &self.first_name),
            ("last_name", &self.last_name),
            ("email", &self.email),
        ] {
            if value.trim().is_empty() {
                return Err(RecordError::Invalid {
                    field,
                    reason: "empty".into(),
                });
            }
        }
        Ok(())
    }

    /// The flat JSON the seed stack puts on its topic.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a row of strings always serialises")
    }

    /// The log key: the id as text.
    pub fn key(&self) -> Vec<u8> {
        self.id.hyphenated().to_string().into_bytes()
    }
}

/// Which of a row's fields made valid JSON the wrong shape, by name (serde's
/// own message gives only a line and column): the first one missing, null
/// or of another type than text.
fn field_at_fault(bytes: &[u8]) -> Option<RecordError> {
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let Some(object) = value.as_object() else {
        let kind = json_kind(&value);
        return Some(RecordError::Shape(format!(
            "a row is a JSON object, not {kind}"
        )));
    };
    ROW_COLUMNS
        .iter()
        .find_map(|field| match object.get(*field) {
            None => Some(RecordError::Shape(format!("missing field {field}"))),
            Some(serde_json::Value::String(_)) => None,
            // The seeds' postcode may be a number (see `Row::post_code`).
            Some(serde_json::Value::Number(_)) if *field == "post_code" => None,
            Some(other) => Some(RecordError::Shape(format!(
                "field {field} is {}, not text",
                json_kind(other)
            ))),
        })
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "text",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}
