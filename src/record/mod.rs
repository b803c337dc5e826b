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
//!
//! `api.rs` is the API user and its conversion, `page.rs` an API answer
//! split into its users, `row.rs` the flat row.

mod api;
mod page;
mod row;
#[cfg(test)]
mod tests;

pub use api::{
    ApiCoordinates, ApiDate, ApiId, ApiLocation, ApiLogin, ApiName, ApiPicture, ApiStreet,
    ApiTimezone, ApiUser, Scalar, iso8601_millis,
};
pub use page::{ApiInfo, DecodedPage, PageError, Rejected, decode_page, decode_page_of};
pub use row::{ROW_COLUMNS, Row};

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
