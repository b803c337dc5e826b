//! The typing rules of the module's documentation, value by value.

use super::*;
use serde_json::json;

fn schema() -> TableSchema {
    TableSchema::new(
        [
            ("id", "text"),
            ("n", "int"),
            ("big", "bigint"),
            ("x", "double"),
            ("ok", "boolean"),
            ("u", "uuid"),
            ("placed_at", "timestamp"),
            ("d", "date"),
            ("amount", "decimal"),
            ("items", "list<text>"),
            ("attrs", "map<text,text>"),
        ],
        &["id"],
        &[] as &[&str],
    )
    .unwrap()
}

fn one(column: &str, v: Value) -> Result<Cell, CheckError> {
    let s = schema();
    let ty = s.column(column).unwrap().ty;
    value_cell(column, ty, &v)
}

fn err(column: &str, v: Value) -> String {
    one(column, v).unwrap_err().to_string()
}

#[test]
fn a_full_record_becomes_a_row_in_column_order() {
    let rec = json!({
        "attrs": {"b": "2", "a": "1"}, "id": "k", "n": -7, "big": 1_u64 << 40, "x": 2,
        "ok": true, "u": "0B7A3C445F434C5D9D436B5C9C7A1E10",
        "placed_at": "2024-02-29T23:30:00.1239+01:00", "d": "2024-02-29",
        "amount": "12345678901234567890.123456789", "items": ["a", "b"]
    });
    let row = check(&schema(), rec.as_object().unwrap(), UnknownFields::Reject).unwrap();
    assert_eq!(
        row,
        vec![
            Cell::Text("k".into()),
            Cell::Int(-7),
            Cell::Bigint(1 << 40),
            Cell::Double(2.0),
            Cell::Boolean(true),
            Cell::Uuid("0b7a3c44-5f43-4c5d-9d43-6b5c9c7a1e10".parse().unwrap()),
            Cell::Timestamp(1_709_245_800_123),
            Cell::Date(NaiveDate::from_ymd_opt(2024, 2, 29).unwrap()),
            Cell::Decimal("12345678901234567890.123456789".into()),
            Cell::List(vec!["a".into(), "b".into()]),
            Cell::Map(
                [("a", "1"), ("b", "2")]
                    .map(|(k, v)| (k.into(), v.into()))
                    .into()
            ),
        ]
    );
}

#[test]
fn missing_and_null_non_key_columns_are_null_but_keys_are_required() {
    let s = schema();
    let row = check(
        &s,
        json!({"id": "k", "n": null}).as_object().unwrap(),
        UnknownFields::Reject,
    )
    .unwrap();
    assert!(row[1..].iter().all(|c| *c == Cell::Null));
    let e = check(
        &s,
        json!({"n": 1}).as_object().unwrap(),
        UnknownFields::Reject,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "column id: missing (a key column needs a value)"
    );
    let e = check(
        &s,
        json!({"id": null}).as_object().unwrap(),
        UnknownFields::Reject,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "column id: expected text, got null (a key column needs a value)"
    );
}

#[test]
fn unknown_fields_are_named_unless_ignored() {
    let s = schema();
    let rec = json!({"id": "k", "totl": 1, "colour": "red"});
    let e = check(&s, rec.as_object().unwrap(), UnknownFields::Reject).unwrap_err();
    assert_eq!(e.to_string(), "fields not in the table: colour, totl");
    let rec = json!({"id": "k", "nn": 1});
    let e = check(&s, rec.as_object().unwrap(), UnknownFields::Reject).unwrap_err();
    assert_eq!(e.to_string(), "field not in the table: nn");
    assert!(check(&s, rec.as_object().unwrap(), UnknownFields::Ignore).is_ok());
}

#[test]
fn integers_are_integral_and_in_range() {
    assert_eq!(one("n", json!(i32::MAX)).unwrap(), Cell::Int(i32::MAX));
    assert_eq!(one("n", json!(i32::MIN)).unwrap(), Cell::Int(i32::MIN));
    assert_eq!(
        err("n", json!(2_147_483_648_i64)),
        "column n: expected int, got 2147483648 (out of range)"
    );
    assert_eq!(
        err("n", json!(-2_147_483_649_i64)),
        "column n: expected int, got -2147483649 (out of range)"
    );
    assert_eq!(
        err("n", json!(1_u64 << 40)),
        "column n: expected int, got 1099511627776 (out of range)"
    );
    assert_eq!(one("big", json!(i64::MIN)).unwrap(), Cell::Bigint(i64::MIN));
    assert_eq!(
        err("big", json!(u64::MAX)),
        "column big: expected bigint, got 18446744073709551615 (out of range)"
    );
    assert_eq!(
        err("big", json!(1.5)),
        "column big: expected bigint, got 1.5 (not an integer)"
    );
    assert_eq!(one("big", json!(3.0)).unwrap(), Cell::Bigint(3));
    assert_eq!(
        err("big", json!(1e300)),
        "column big: expected bigint, got 1e+300 (out of range)"
    );
    assert_eq!(
        err("big", json!(1e17)),
        "column big: expected bigint, got 1e+17 (not exact as a double; write it without a fraction or exponent)"
    );
    assert_eq!(err("n", json!("42")), "column n: expected int, got \"42\"");
    assert_eq!(err("n", json!(true)), "column n: expected int, got true");
}

#[test]
fn doubles_take_numbers_and_exact_integers() {
    assert_eq!(one("x", json!(0.1)).unwrap(), Cell::Double(0.1));
    assert_eq!(one("x", json!(-3)).unwrap(), Cell::Double(-3.0));
    assert_eq!(
        one("x", json!(1_u64 << 53)).unwrap(),
        Cell::Double(9_007_199_254_740_992.0)
    );
    assert_eq!(
        err("x", json!((1_u64 << 53) + 1)),
        "column x: expected double, got 9007199254740993 (not exact as a double)"
    );
    assert_eq!(
        err("x", json!("1.5")),
        "column x: expected double, got \"1.5\""
    );
}

#[test]
fn booleans_and_text_are_strict() {
    assert_eq!(one("ok", json!(false)).unwrap(), Cell::Boolean(false));
    assert_eq!(
        err("ok", json!("yes")),
        "column ok: expected boolean, got \"yes\""
    );
    assert_eq!(err("ok", json!(1)), "column ok: expected boolean, got 1");
    assert_eq!(err("id", json!(7)), "column id: expected text, got 7");
    assert_eq!(one("id", json!("")).unwrap(), Cell::Text(String::new()));
}

#[test]
fn uuids_are_normalised() {
    let want = Cell::Uuid("0b7a3c44-5f43-4c5d-9d43-6b5c9c7a1e10".parse().unwrap());
    for form in [
        "0B7A3C44-5F43-4C5D-9D43-6B5C9C7A1E10",
        "{0b7a3c44-5f43-4c5d-9d43-6b5c9c7a1e10}",
        "urn:uuid:0b7a3c44-5f43-4c5d-9d43-6b5c9c7a1e10",
    ] {
        assert_eq!(one("u", json!(form)).unwrap(), want, "{form}");
    }
    assert_eq!(
        err("u", json!("0b7a3c44")),
        "column u: expected uuid, got \"0b7a3c44\""
    );
}

#[test]
fn timestamps_are_rfc3339_or_epoch_ms_kept_as_utc_ms() {
    let ts = |v| match one("placed_at", v).unwrap() {
        Cell::Timestamp(ms) => ms,
        other => panic!("{other:?}"),
    };
    assert_eq!(ts(json!("1970-01-01T00:00:00Z")), 0);
    assert_eq!(ts(json!("1970-01-01T01:00:00.5+01:00")), 500);
    assert_eq!(ts(json!("2024-02-29T23:30:00.123999Z")), 1_709_249_400_123);
    // Rounding down, before 1970 too.
    assert_eq!(ts(json!("1969-12-31T23:59:59.9999Z")), -1);
    assert_eq!(ts(json!(1_709_249_400_123_i64)), 1_709_249_400_123);
    assert_eq!(ts(json!(-1)), -1);
    assert_eq!(
        err("placed_at", json!("yesterday")),
        "column placed_at: expected timestamp, got \"yesterday\""
    );
    assert_eq!(
        err("placed_at", json!("2024-02-29T23:30:00")),
        "column placed_at: expected timestamp, got \"2024-02-29T23:30:00\"",
        "no time zone"
    );
    assert_eq!(
        err("placed_at", json!(1.5)),
        "column placed_at: expected timestamp, got 1.5 (not an integer)"
    );
    assert_eq!(
        err("placed_at", json!(MAX_MS + 1)),
        "column placed_at: expected timestamp, got 253402300800000 (out of range: years 0000 to 9999)"
    );
    assert_eq!(ts(json!(MIN_MS)), MIN_MS);
}

#[test]
fn dates_are_yyyy_mm_dd() {
    assert_eq!(
        one("d", json!("0001-01-01")).unwrap(),
        Cell::Date(NaiveDate::from_ymd_opt(1, 1, 1).unwrap())
    );
    for bad in [
        "2024-2-29",
        "2023-02-29",
        "2024-02-29T00:00:00Z",
        "20240229",
        "+024-02-29",
    ] {
        assert_eq!(
            err("d", json!(bad)),
            format!("column d: expected date, got \"{bad}\""),
        );
    }
}

#[test]
fn a_decimal_of_a_hundred_thousand_digits_is_refused() {
    let long = "7".repeat(100_001);
    let start = std::time::Instant::now();
    let e = err("amount", json!(long));
    assert!(e.ends_with("(over 10000 digits)"), "{e}");
    let ok = "7".repeat(10_000);
    assert_eq!(one("amount", json!(ok)).unwrap(), Cell::Decimal(ok.clone()));
    assert!(decimal_parts(&ok).is_some());
    assert!(decimal_parts(&long).is_none());
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn decimals_stay_exact() {
    let dec = |v| one("amount", v).unwrap();
    assert_eq!(
        dec(json!("12345678901234567890.123456789")),
        Cell::Decimal("12345678901234567890.123456789".into())
    );
    assert_eq!(dec(json!("+1.50")), Cell::Decimal("1.50".into()));
    assert_eq!(dec(json!("-1E-7")), Cell::Decimal("-1E-7".into()));
    assert_eq!(
        dec(json!(u64::MAX)),
        Cell::Decimal("18446744073709551615".into())
    );
    assert_eq!(dec(json!(19.99)), Cell::Decimal("19.99".into()));
    assert_eq!(
        dec(json!(0.000123456789012345)),
        Cell::Decimal("0.000123456789012345".into())
    );
    assert_eq!(
        err("amount", json!(0.1 + 0.2)),
        "column amount: expected decimal, got 0.30000000000000004 (a JSON number this long may have been rounded; send the decimal as a string)"
    );
    for bad in ["1.", ".5", "1e", "NaN", "1,5", "--1", ""] {
        assert_eq!(
            err("amount", json!(bad)),
            format!("column amount: expected decimal, got \"{bad}\""),
        );
    }
}

#[test]
fn decimal_parts_are_cassandras_unscaled_value_and_scale() {
    assert_eq!(
        decimal_parts("12345678901234567890.123456789"),
        Some((
            vec![39, 228, 27, 50, 70, 190, 201, 177, 110, 57, 129, 21],
            9
        ))
    );
    assert_eq!(
        decimal_parts("-12345678901234567890.123456789"),
        Some((
            vec![216, 27, 228, 205, 185, 65, 54, 78, 145, 198, 126, 235],
            9
        ))
    );
    assert_eq!(decimal_parts("0.00"), Some((vec![0], 2)));
    assert_eq!(decimal_parts("-0"), Some((vec![0], 0)));
    assert_eq!(decimal_parts("-1"), Some((vec![0xff], 0)));
    assert_eq!(decimal_parts("127"), Some((vec![0x7f], 0)));
    assert_eq!(decimal_parts("128"), Some((vec![0x00, 0x80], 0)));
    assert_eq!(decimal_parts("-128"), Some((vec![0x80], 0)));
    assert_eq!(decimal_parts("-129"), Some((vec![0xff, 0x7f], 0)));
    assert_eq!(decimal_parts("1.5E+3"), Some((vec![15], -2)));
    assert_eq!(decimal_parts("25e-2"), Some((vec![25], 2)));
    assert_eq!(decimal_parts("1e999999999"), Some((vec![1], -999_999_999)));
    assert_eq!(decimal_parts("x"), None);
}

#[test]
fn lists_and_maps_hold_strings_only() {
    assert_eq!(one("items", json!([])).unwrap(), Cell::List(vec![]));
    assert_eq!(
        err("items", json!(["a", 1])),
        "column items: expected list<text>, got [\"a\",1]"
    );
    assert_eq!(
        err("items", json!("a")),
        "column items: expected list<text>, got \"a\""
    );
    assert_eq!(one("items", json!(null)).unwrap(), Cell::Null);
    assert_eq!(
        err("attrs", json!({"a": null})),
        "column attrs: expected map<text, text>, got {\"a\":null}"
    );
    assert_eq!(
        err("attrs", json!([["a", "b"]])),
        "column attrs: expected map<text, text>, got [[\"a\",\"b\"]]"
    );
}

#[test]
fn long_values_are_cut_in_errors() {
    let long = "é".repeat(200);
    let e = err("n", json!(long));
    let got = e.strip_prefix("column n: expected int, got ").unwrap();
    assert_eq!(got.chars().count(), SHOWN_CHARS + 1);
    assert!(got.starts_with("\"éé") && got.ends_with("é…"), "{got}");
}
