//! The API user's formats and quirks, the row's decoding and validation.

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
