//! The Random User API user (formats 1.0-1.4), the seed stack's flat 12-field
//! row, and the conversion between them. Owns every decoding quirk; owns no I/O.
//!
//! Two decoders live here, one per hop of the pipeline:
//! - [`decode_page`] takes an API response body and yields users (one bad user
//!   does not spoil its page: it comes back as a [`Rejected`] with its bytes);
//! - [`Row::from_json`] takes a log message (the seed stack's flat JSON) and
//!   yields a validated row.
//!
//! A user missing what the row needs is a [`RecordError`], never a panic and
//! never a row of nulls.

use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

/// Why a user or a message could not become a row. The text is what a dead
/// letter carries as its reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The bytes are not JSON at all (or are cut short, or not UTF-8).
    #[error("malformed json: {0}")]
    Malformed(String),
    /// Valid JSON of the wrong shape: a missing field, a null, a wrong type.
    #[error("wrong shape: {0}")]
    Shape(String),
    /// A field the row needs is absent from the API user.
    #[error("missing field {0}")]
    Missing(&'static str),
    /// A field is present but its value is unusable.
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// The message is larger than the configured limit; it is not parsed.
    #[error("message of {size} bytes is over the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
}

impl RecordError {
    fn from_json(e: serde_json::Error) -> Self {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => RecordError::Shape(e.to_string()),
            Category::Io | Category::Syntax | Category::Eof => {
                RecordError::Malformed(e.to_string())
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The API user
// ---------------------------------------------------------------------------

/// One user as the Random User API serves it. Every field is optional so that
/// older formats and partial answers decode; [`ApiUser::to_row`] decides what
/// is required. Serialises back to the 1.4 shape (or an older one, if the
/// variants of [`ApiStreet`] and [`ApiDate`] say so).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ApiUser {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gender: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<ApiName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<ApiLocation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<ApiLogin>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dob: Option<ApiDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered: Option<ApiDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cell: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<ApiId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub picture: Option<ApiPicture>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ApiName {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub first: Option<String>,
    #[serde(default)]
    pub last: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ApiLocation {
    #[serde(default)]
    pub street: Option<ApiStreet>,
    #[serde(default)]
    pub city: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// A JSON number for some nationalities, a string for others.
    #[serde(default)]
    pub postcode: Option<Scalar>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coordinates: Option<ApiCoordinates>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<ApiTimezone>,
}

/// `location.street`: an object since format 1.4, one string before.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ApiStreet {
    Structured {
        #[serde(default)]
        number: Option<Scalar>,
        #[serde(default)]
        name: Option<String>,
    },
    Line(String),
}

/// Coordinates arrive as strings; numbers are accepted too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiCoordinates {
    #[serde(default)]
    pub latitude: Option<Scalar>,
    #[serde(default)]
    pub longitude: Option<Scalar>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiTimezone {
    #[serde(default)]
    pub offset: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ApiLogin {
    #[serde(default)]
    pub uuid: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha1: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// `dob` and `registered`: `{date, age}` since format 1.2-ish, a plain string
/// or Unix seconds before.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ApiDate {
    Structured {
        #[serde(default)]
        date: Option<String>,
        #[serde(default)]
        age: Option<u32>,
    },
    Text(String),
    UnixSeconds(i64),
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ApiId {
    #[serde(default)]
    pub name: Option<String>,
    /// `null` for several nationalities.
    #[serde(default)]
    pub value: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ApiPicture {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub large: Option<String>,
    #[serde(default)]
    pub medium: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail: Option<String>,
}

/// A JSON value that may be a string or a number, kept as the API sent it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    Text(String),
    Number(serde_json::Number),
}

impl Scalar {
    /// The value as text: a number keeps its JSON spelling.
    pub fn to_text(&self) -> String {
        match self {
            Scalar::Text(s) => s.clone(),
            Scalar::Number(n) => n.to_string(),
        }
    }
}

impl ApiDate {
    /// The date as the row stores it: the 1.4 ISO string as is, an old plain
    /// string as is, Unix seconds as an ISO string with milliseconds.
    fn to_text(&self) -> Option<String> {
        match self {
            ApiDate::Structured { date, .. } => date.clone(),
            ApiDate::Text(s) => Some(s.clone()),
            ApiDate::UnixSeconds(secs) => Some(iso8601_millis(secs.saturating_mul(1000))),
        }
    }
}

/// Formats Unix milliseconds as the API's ISO date, `1992-03-08T15:13:16.688Z`.
/// Works before 1970 too (old formats send negative seconds for early dates).
pub fn iso8601_millis(unix_ms: i64) -> String {
    let days = unix_ms.div_euclid(86_400_000);
    let ms_of_day = unix_ms.rem_euclid(86_400_000);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, rem) = (ms_of_day / 3_600_000, ms_of_day % 3_600_000);
    let (m, rem) = (rem / 60_000, rem % 60_000);
    let (s, ms) = (rem / 1000, rem % 1000);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{ms:03}Z")
}

/// The nil UUID is no one's id: every user sent with it would become the
/// same row.
fn not_nil(id: Uuid, field: &'static str) -> Result<(), RecordError> {
    if id.is_nil() {
        return Err(RecordError::Invalid {
            field,
            reason: "the nil UUID (all zeros) is not an id".into(),
        });
    }
    Ok(())
}

fn required(value: Option<&String>, field: &'static str) -> Result<String, RecordError> {
    match value {
        Some(v) if !v.is_empty() => Ok(v.clone()),
        _ => Err(RecordError::Missing(field)),
    }
}

impl ApiUser {
    /// Flattens the user into the seed stack's row, as the seed DAGs'
    /// `format_data` does, except that `id` is the stable `login.uuid`.
    pub fn to_row(&self) -> Result<Row, RecordError> {
        let login = self.login.as_ref().ok_or(RecordError::Missing("login"))?;
        let uuid = required(login.uuid.as_ref(), "login.uuid")?;
        let id = Uuid::parse_str(&uuid).map_err(|e| RecordError::Invalid {
            field: "login.uuid",
            reason: e.to_string(),
        })?;
        not_nil(id, "login.uuid")?;
        let name = self.name.as_ref().ok_or(RecordError::Missing("name"))?;
        let loc = self
            .location
            .as_ref()
            .ok_or(RecordError::Missing("location"))?;
        let street = match loc.street.as_ref() {
            Some(ApiStreet::Structured { number, name }) => {
                let name = required(name.as_ref(), "location.street.name")?;
                match number {
                    Some(n) => format!("{} {}", n.to_text(), name),
                    None => name,
                }
            }
            Some(ApiStreet::Line(line)) if !line.is_empty() => line.clone(),
            _ => return Err(RecordError::Missing("location.street")),
        };
        let city = required(loc.city.as_ref(), "location.city")?;
        let state = required(loc.state.as_ref(), "location.state")?;
        // Formats before 1.1 have no country; the address then ends at the state.
        let address = match loc.country.as_ref().filter(|c| !c.is_empty()) {
            Some(country) => format!("{street}, {city}, {state}, {country}"),
            None => format!("{street}, {city}, {state}"),
        };
        let post_code = loc
            .postcode
            .as_ref()
            .map(Scalar::to_text)
            .filter(|p| !p.is_empty())
            .ok_or(RecordError::Missing("location.postcode"))?;
        let dob = self
            .dob
            .as_ref()
            .and_then(ApiDate::to_text)
            .ok_or(RecordError::Missing("dob.date"))?;
        let registered_date = self
            .registered
            .as_ref()
            .and_then(ApiDate::to_text)
            .ok_or(RecordError::Missing("registered.date"))?;
        let picture = self
            .picture
            .as_ref()
            .ok_or(RecordError::Missing("picture"))?;
        Ok(Row {
            id,
            first_name: required(name.first.as_ref(), "name.first")?,
            last_name: required(name.last.as_ref(), "name.last")?,
            gender: required(self.gender.as_ref(), "gender")?,
            address,
            post_code,
            email: required(self.email.as_ref(), "email")?,
            username: required(login.username.as_ref(), "login.username")?,
            dob,
            registered_date,
            phone: required(self.phone.as_ref(), "phone")?,
            picture: required(picture.medium.as_ref(), "picture.medium")?,
        })
    }
}

// An API response: see `page.rs`.
mod page;
pub use page::{ApiInfo, DecodedPage, PageError, Rejected, decode_page, decode_page_of};

// ---------------------------------------------------------------------------
// The flat row
// ---------------------------------------------------------------------------

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_of_the_wrong_shape_names_its_field() {
        let row = Row::from_json(
            br#"{"id":"7a0eed16-9430-4d68-901f-c0d4c1c3bf00","first_name":"a","last_name":"b",
                "gender":"f","address":"x","post_code":12345,"email":"e","username":"u",
                "dob":"d","registered_date":"r","phone":"p","picture":"q"}"#,
            usize::MAX,
        )
        .expect("a numeric postcode is the seeds' own");
        let mut value: serde_json::Value = serde_json::from_slice(&row.to_json()).unwrap();
        value["post_code"] = 12345.into();
        value["phone"] = serde_json::Value::Null;
        let err = Row::from_json(&serde_json::to_vec(&value).unwrap(), usize::MAX).unwrap_err();
        assert_eq!(
            err.to_string(),
            "wrong shape: field phone is null, not text"
        );
        value["phone"] = "p".into();
        value["email"] = 42.into();
        let err = Row::from_json(&serde_json::to_vec(&value).unwrap(), usize::MAX).unwrap_err();
        assert_eq!(
            err.to_string(),
            "wrong shape: field email is a number, not text"
        );
        let err = Row::from_json(b"[1]", usize::MAX).unwrap_err();
        assert_eq!(
            err.to_string(),
            "wrong shape: a row is a JSON object, not an array"
        );
    }

    pub(super) const USER_1_4: &str = r#"{
      "gender": "female",
      "name": {"title": "Miss", "first": "Jennie", "last": "Nichols"},
      "location": {
        "street": {"number": 8929, "name": "Valwood Pkwy"},
        "city": "Billings", "state": "Michigan", "country": "United States",
        "postcode": "63104",
        "coordinates": {"latitude": "-69.8246", "longitude": "134.8719"},
        "timezone": {"offset": "+9:30", "description": "Adelaide, Darwin"}
      },
      "email": "jennie.nichols@example.com",
      "login": {
        "uuid": "7a0eed16-9430-4d68-901f-c0d4c1c3bf00",
        "username": "yellowpeacock117", "password": "addison", "salt": "sld1yGtd",
        "md5": "a", "sha1": "b", "sha256": "c"
      },
      "dob": {"date": "1992-03-08T15:13:16.688Z", "age": 30},
      "registered": {"date": "2007-07-09T05:51:59.390Z", "age": 14},
      "phone": "(272) 790-0888", "cell": "(489) 330-2385",
      "id": {"name": "SSN", "value": "405-88-3636"},
      "picture": {
        "large": "https://randomuser.me/api/portraits/women/75.jpg",
        "medium": "https://randomuser.me/api/portraits/med/women/75.jpg",
        "thumbnail": "https://randomuser.me/api/portraits/thumb/women/75.jpg"
      },
      "nat": "US"
    }"#;

    fn user(json: &str) -> ApiUser {
        serde_json::from_str(json).expect("decodes")
    }

    fn patched(f: impl FnOnce(&mut serde_json::Value)) -> String {
        let mut v: serde_json::Value = serde_json::from_str(USER_1_4).unwrap();
        f(&mut v);
        v.to_string()
    }

    #[test]
    fn format_1_4_flattens_like_the_seed_dags() {
        let row = user(USER_1_4).to_row().unwrap();
        assert_eq!(row.id.to_string(), "7a0eed16-9430-4d68-901f-c0d4c1c3bf00");
        assert_eq!(row.first_name, "Jennie");
        assert_eq!(row.last_name, "Nichols");
        assert_eq!(row.gender, "female");
        assert_eq!(
            row.address,
            "8929 Valwood Pkwy, Billings, Michigan, United States"
        );
        assert_eq!(row.post_code, "63104");
        assert_eq!(row.email, "jennie.nichols@example.com");
        assert_eq!(row.username, "yellowpeacock117");
        assert_eq!(row.dob, "1992-03-08T15:13:16.688Z");
        assert_eq!(row.registered_date, "2007-07-09T05:51:59.390Z");
        assert_eq!(row.phone, "(272) 790-0888");
        assert_eq!(
            row.picture,
            "https://randomuser.me/api/portraits/med/women/75.jpg"
        );
    }

    #[test]
    fn postcode_as_number() {
        let json = patched(|v| v["location"]["postcode"] = serde_json::json!(95038));
        assert_eq!(user(&json).to_row().unwrap().post_code, "95038");
    }

    #[test]
    fn postcode_as_string_with_spaces() {
        let json = patched(|v| v["location"]["postcode"] = serde_json::json!("EC1 2AB"));
        assert_eq!(user(&json).to_row().unwrap().post_code, "EC1 2AB");
    }

    #[test]
    fn id_value_null_and_name_empty() {
        let json = patched(|v| v["id"] = serde_json::json!({"name": "", "value": null}));
        let u = user(&json);
        assert_eq!(u.id.as_ref().unwrap().value, None);
        assert!(u.to_row().is_ok());
    }

    #[test]
    fn coordinates_as_strings_or_numbers() {
        let json = patched(|v| {
            v["location"]["coordinates"] =
                serde_json::json!({"latitude": -69.8246, "longitude": "134.8719"})
        });
        let u = user(&json);
        let c = u.location.unwrap().coordinates.unwrap();
        assert_eq!(c.latitude.unwrap().to_text(), "-69.8246");
        assert_eq!(c.longitude.unwrap().to_text(), "134.8719");
    }

    #[test]
    fn old_format_street_as_one_string_and_dates_as_strings() {
        let json = patched(|v| {
            v["location"]["street"] = serde_json::json!("8929 valwood pkwy");
            v["dob"] = serde_json::json!("1992-03-08 15:13:16");
            v["registered"] = serde_json::json!("2007-07-09 05:51:59");
        });
        let row = user(&json).to_row().unwrap();
        assert_eq!(
            row.address,
            "8929 valwood pkwy, Billings, Michigan, United States"
        );
        assert_eq!(row.dob, "1992-03-08 15:13:16");
        assert_eq!(row.registered_date, "2007-07-09 05:51:59");
    }

    #[test]
    fn old_format_dates_as_unix_seconds() {
        let json = patched(|v| {
            v["dob"] = serde_json::json!(700_000_000);
            v["registered"] = serde_json::json!(-86_400);
        });
        let row = user(&json).to_row().unwrap();
        assert_eq!(row.dob, "1992-03-07T20:26:40.000Z");
        assert_eq!(row.registered_date, "1969-12-31T00:00:00.000Z");
    }

    #[test]
    fn old_format_without_country() {
        let json = patched(|v| {
            v["location"].as_object_mut().unwrap().remove("country");
        });
        let row = user(&json).to_row().unwrap();
        assert_eq!(row.address, "8929 Valwood Pkwy, Billings, Michigan");
    }

    #[test]
    fn multibyte_text_survives_both_hops() {
        let json = patched(|v| {
            v["name"]["first"] = serde_json::json!("آرمین");
            v["name"]["last"] = serde_json::json!("O'Brien, \"Ли\"");
            v["location"]["city"] = serde_json::json!("Київ");
        });
        let row = user(&json).to_row().unwrap();
        let back = Row::from_json(&row.to_json(), 1 << 20).unwrap();
        assert_eq!(back, row);
        assert_eq!(back.first_name, "آرمین");
        assert_eq!(back.last_name, "O'Brien, \"Ли\"");
        assert!(back.address.contains("Київ"));
    }

    #[test]
    fn missing_uuid_is_a_typed_error() {
        let json = patched(|v| {
            v["login"].as_object_mut().unwrap().remove("uuid");
        });
        assert_eq!(
            user(&json).to_row(),
            Err(RecordError::Missing("login.uuid"))
        );
    }

    #[test]
    fn bad_uuid_is_a_typed_error() {
        let json = patched(|v| v["login"]["uuid"] = serde_json::json!("not-a-uuid"));
        assert!(matches!(
            user(&json).to_row(),
            Err(RecordError::Invalid {
                field: "login.uuid",
                ..
            })
        ));
    }

    #[test]
    fn the_nil_uuid_is_not_an_id() {
        let nil = "00000000-0000-0000-0000-000000000000";
        let json = patched(|v| v["login"]["uuid"] = serde_json::json!(nil));
        match user(&json).to_row() {
            Err(RecordError::Invalid {
                field: "login.uuid",
                reason,
            }) => assert!(reason.contains("nil UUID"), "{reason}"),
            other => panic!("{other:?}"),
        }
        // Nor on the log, from another producer.
        let row = user(USER_1_4).to_row().unwrap();
        let mut v: serde_json::Value = serde_json::from_slice(&row.to_json()).unwrap();
        v["id"] = serde_json::json!(nil);
        assert!(matches!(
            Row::from_json(v.to_string().as_bytes(), 1 << 20),
            Err(RecordError::Invalid { field: "id", .. })
        ));
    }

    #[test]
    fn missing_name_is_a_typed_error_not_nulls() {
        let json = patched(|v| v["name"]["first"] = serde_json::Value::Null);
        assert_eq!(
            user(&json).to_row(),
            Err(RecordError::Missing("name.first"))
        );
    }

    #[test]
    fn flat_row_accepts_seed_messages_with_numeric_postcode() {
        // What the seed DAG's format_data sends: a fresh uuid4 and the raw postcode.
        let msg = br#"{"id": "0b7a3c44-5f43-4c5d-9d43-6b5c9c7a1e10", "first_name": "Jennie", "last_name": "Nichols", "gender": "female", "address": "8929 Valwood Pkwy, Billings, Michigan, United States", "post_code": 63104, "email": "j@example.com", "username": "yp117", "dob": "1992-03-08T15:13:16.688Z", "registered_date": "2007-07-09T05:51:59.390Z", "phone": "(272) 790-0888", "picture": "https://x/y.jpg"}"#;
        let row = Row::from_json(msg, 1 << 20).unwrap();
        assert_eq!(row.post_code, "63104");
        let out: serde_json::Value = serde_json::from_slice(&row.to_json()).unwrap();
        assert_eq!(out["post_code"], serde_json::json!("63104"));
        let keys: Vec<_> = out.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys.len(), 12);
    }

    #[test]
    fn flat_row_rejects_non_json() {
        assert!(matches!(
            Row::from_json(b"hello", 1 << 20),
            Err(RecordError::Malformed(_))
        ));
    }

    #[test]
    fn flat_row_rejects_invalid_utf8() {
        let row = user(USER_1_4).to_row().unwrap();
        let mut bytes = row.to_json();
        let at = bytes.windows(6).position(|w| w == b"Jennie").unwrap();
        bytes[at] = 0xff;
        assert!(matches!(
            Row::from_json(&bytes, 1 << 20),
            Err(RecordError::Malformed(_))
        ));
    }

    #[test]
    fn flat_row_rejects_wrong_types_and_nulls() {
        let row = user(USER_1_4).to_row().unwrap();
        let mut v: serde_json::Value = serde_json::from_slice(&row.to_json()).unwrap();
        v["email"] = serde_json::Value::Null;
        let err = Row::from_json(v.to_string().as_bytes(), 1 << 20).unwrap_err();
        assert!(
            matches!(err, RecordError::Shape(ref m) if m.contains("null")),
            "{err}"
        );
        v["email"] = serde_json::json!(["a"]);
        assert!(matches!(
            Row::from_json(v.to_string().as_bytes(), 1 << 20),
            Err(RecordError::Shape(_))
        ));
    }

    #[test]
    fn flat_row_rejects_missing_field() {
        let row = user(USER_1_4).to_row().unwrap();
        let mut v: serde_json::Value = serde_json::from_slice(&row.to_json()).unwrap();
        v.as_object_mut().unwrap().remove("phone");
        let err = Row::from_json(v.to_string().as_bytes(), 1 << 20).unwrap_err();
        assert_eq!(err.to_string(), "wrong shape: missing field phone");
    }

    #[test]
    fn flat_row_rejects_empty_name() {
        let row = user(USER_1_4).to_row().unwrap();
        let mut v: serde_json::Value = serde_json::from_slice(&row.to_json()).unwrap();
        v["first_name"] = serde_json::json!("  ");
        assert_eq!(
            Row::from_json(v.to_string().as_bytes(), 1 << 20),
            Err(RecordError::Invalid {
                field: "first_name",
                reason: "empty".into()
            })
        );
    }

    #[test]
    fn oversized_message_is_not_parsed() {
        let big = vec![b' '; 10 << 20];
        assert_eq!(
            Row::from_json(&big, 1 << 20),
            Err(RecordError::TooLarge {
                size: 10 << 20,
                limit: 1 << 20
            })
        );
    }
}
