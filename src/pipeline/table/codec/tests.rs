//! Rows on the log: encoded in column order, keyed by the primary key, and decoded back with the check's errors.

use super::super::check::check;
use super::*;
use serde_json::json;

fn schema() -> TableSchema {
    TableSchema::new(
        [
            ("id", "uuid"),
            ("name", "text"),
            ("n", "int"),
            ("big", "bigint"),
            ("x", "double"),
            ("ok", "boolean"),
            ("placed_at", "timestamp"),
            ("d", "date"),
            ("amount", "decimal"),
            ("items", "list<text>"),
            ("attrs", "map<text,text>"),
            ("note", "text"),
        ],
        &["id"],
        &[] as &[&str],
    )
    .unwrap()
}

const MAX: usize = 1 << 20;

fn record() -> Value {
    json!({
        "id": "0B7A3C44-5F43-4C5D-9D43-6B5C9C7A1E10",
        "name": "O'Brien, \"Ли\" \u{1F600}\n",
        "n": i32::MIN, "big": i64::MAX, "x": 0.1, "ok": false,
        "placed_at": "1969-12-31T23:59:59.9995-00:30",
        "d": "0001-01-01", "amount": "-12345678901234567890.123456789",
        "items": ["", "a\"b"], "attrs": {"k": "v", "": "é"}
    })
}

#[test]
fn encodes_canonical_flat_json_in_column_order() {
    let s = schema();
    let row = check(&s, record().as_object().unwrap(), UnknownFields::Reject).unwrap();
    let text = String::from_utf8(encode(&s, &row)).unwrap();
    assert_eq!(
        text,
        r#"{"id":"0b7a3c44-5f43-4c5d-9d43-6b5c9c7a1e10","name":"O'Brien, \"Ли\" 😀\n","n":-2147483648,"big":9223372036854775807,"x":0.1,"ok":false,"placed_at":"1970-01-01T00:29:59.999Z","d":"0001-01-01","amount":"-12345678901234567890.123456789","items":["","a\"b"],"attrs":{"":"é","k":"v"},"note":null}"#
    );
}

#[test]
fn round_trips_every_type() {
    let s = schema();
    let records = [
        record(),
        json!({"id": "00000000-0000-0000-0000-000000000000"}),
        json!({
            "id": "urn:uuid:ffffffff-ffff-ffff-ffff-ffffffffffff", "name": "",
            "n": i32::MAX, "big": i64::MIN, "x": -1e300, "ok": true,
            "placed_at": 253_402_300_799_999_i64, "d": "9999-12-31", "amount": 19.99,
            "items": [], "attrs": {}, "note": "\u{0}\u{1f}\\"
        }),
        json!({"id": "0b7a3c44-5f43-4c5d-9d43-6b5c9c7a1e10", "x": 3, "amount": u64::MAX,
               "placed_at": "0000-01-01T00:00:00Z", "big": 4.0}),
    ];
    for rec in records {
        let row = check(&s, rec.as_object().unwrap(), UnknownFields::Reject).unwrap();
        let bytes = encode(&s, &row);
        let back = decode(&s, &bytes, MAX, UnknownFields::Reject).unwrap();
        assert_eq!(back, row, "{}", String::from_utf8_lossy(&bytes));
        // And the canonical form is a fixed point.
        assert_eq!(encode(&s, &back), bytes);
    }
}

#[test]
fn decoder_gives_the_checker_errors() {
    let s = schema();
    let cases = [
        json!({"id": "0b7a3c44-5f43-4c5d-9d43-6b5c9c7a1e10", "placed_at": "yesterday"}),
        json!({"id": "0b7a3c44-5f43-4c5d-9d43-6b5c9c7a1e10", "n": 1_u64 << 40, "x": "a"}),
        json!({"id": "0b7a3c44-5f43-4c5d-9d43-6b5c9c7a1e10", "big": 1.5}),
        json!({"id": "0b7a3c44-5f43-4c5d-9d43-6b5c9c7a1e10", "items": ["a", 1, {"b": [2]}]}),
        json!({"id": "0b7a3c44-5f43-4c5d-9d43-6b5c9c7a1e10", "attrs": {"a": "x", "b": false}}),
        json!({"id": "0b7a3c44-5f43-4c5d-9d43-6b5c9c7a1e10", "name": ["a"]}),
        json!({"id": "0b7a3c44-5f43-4c5d-9d43-6b5c9c7a1e10", "ok": {"yes": 1}}),
        json!({"id": "0b7a3c44-5f43-4c5d-9d43-6b5c9c7a1e10", "totl": 1, "nme": "x"}),
        json!({"id": null, "name": 3}),
        json!({"name": "x"}),
        json!({"n": 1.5, "id": "nope"}),
        json!({"id": "0b7a3c44-5f43-4c5d-9d43-6b5c9c7a1e10", "amount": 0.30000000000000004}),
    ];
    for rec in cases {
        let want = check(&s, rec.as_object().unwrap(), UnknownFields::Reject).unwrap_err();
        let got = decode(&s, rec.to_string().as_bytes(), MAX, UnknownFields::Reject).unwrap_err();
        assert_eq!(got, want, "{rec}");
    }
}

#[test]
fn decoder_error_texts() {
    let s = schema();
    let dec = |m: &str| {
        decode(&s, m.as_bytes(), MAX, UnknownFields::Reject)
            .unwrap_err()
            .to_string()
    };
    let id = r#""id":"0b7a3c44-5f43-4c5d-9d43-6b5c9c7a1e10""#;
    assert_eq!(
        dec(&format!(r#"{{{id},"placed_at":"yesterday"}}"#)),
        r#"column placed_at: expected timestamp, got "yesterday""#
    );
    assert_eq!(
        dec(&format!(r#"{{{id},"items":["a",1]}}"#)),
        r#"column items: expected list<text>, got ["a",1]"#
    );
    assert_eq!(
        dec(&format!(r#"{{{id},"n":1.5,"name":"x","name":"y"}}"#)),
        "column name: given twice"
    );
    assert_eq!(
        dec(&format!(r#"{{{id},"colour":"red"}}"#)),
        "field not in the table: colour"
    );
    assert!(
        decode(
            &s,
            format!(r#"{{{id},"colour":"red"}}"#).as_bytes(),
            MAX,
            UnknownFields::Ignore
        )
        .is_ok()
    );
    assert_eq!(dec("[1,2]"), "expected a JSON object, got [1,2]");
    assert_eq!(dec("\"x\""), "expected a JSON object, got \"x\"");
    assert!(dec(&format!(r#"{{{id}"#)).starts_with("malformed json: EOF"));
    assert!(dec(&format!(r#"{{{id}}} x"#)).starts_with("malformed json: trailing"));
    assert_eq!(
        decode(&s, b"{}", 1, UnknownFields::Reject).unwrap_err(),
        CheckError::TooLarge { size: 2, limit: 1 }
    );
}

#[test]
fn escaped_field_names_resolve() {
    let s = schema();
    let m = r#"{"\u0069d":"0b7a3c44-5f43-4c5d-9d43-6b5c9c7a1e10","na\u006de":"a\tb"}"#;
    let row = decode(&s, m.as_bytes(), MAX, UnknownFields::Reject).unwrap();
    assert_eq!(row[1], Cell::Text("a\tb".into()));
}

#[test]
fn keys_are_the_primary_key_text() {
    let s = schema();
    let row = check(&s, record().as_object().unwrap(), UnknownFields::Reject).unwrap();
    assert_eq!(key(&s, &row), b"0b7a3c44-5f43-4c5d-9d43-6b5c9c7a1e10");
    let composite = TableSchema::new(
        [
            ("a", "text"),
            ("b", "text"),
            ("at", "timestamp"),
            ("n", "int"),
        ],
        &["a", "b"],
        &["at", "n"],
    )
    .unwrap();
    let k = |a: &str, b: &str| {
        let rec = json!({"a": a, "b": b, "at": 0, "n": -1});
        let row = check(&composite, rec.as_object().unwrap(), UnknownFields::Reject).unwrap();
        String::from_utf8(key(&composite, &row)).unwrap()
    };
    assert_eq!(
        k("a,b", "c"),
        r#"["a,b","c","1970-01-01T00:00:00.000Z",-1]"#
    );
    assert_ne!(k("a,b", "c"), k("a", "b,c"));
    let by_int = TableSchema::new([("n", "bigint")], &["n"], &[] as &[&str]).unwrap();
    assert_eq!(key(&by_int, &[Cell::Bigint(-5)]), b"-5");
}

#[test]
fn doubles_json_cannot_hold_are_spelled_as_cql_does() {
    let schema =
        TableSchema::new([("id", "text"), ("x", "double")], &["id"], &[] as &[&str]).unwrap();
    for (x, spelled) in [
        (f64::NAN, "\"NaN\""),
        (f64::INFINITY, "\"Infinity\""),
        (f64::NEG_INFINITY, "\"-Infinity\""),
        (1.5, "1.5"),
    ] {
        let row = [Cell::Text("k".into()), Cell::Double(x)];
        let text = String::from_utf8(encode(&schema, &row)).unwrap();
        assert!(text.contains(&format!("\"x\":{spelled}")), "{text}");
    }
}
