//! The API user as the Random User API serves it (formats 1.0-1.4, every
//! quirk), and its flattening into the seed stack's row.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{RecordError, Row};

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
pub(super) fn not_nil(id: Uuid, field: &'static str) -> Result<(), RecordError> {
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
