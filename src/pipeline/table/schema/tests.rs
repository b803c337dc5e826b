//! Declared tables: types, validation, DDL, schemas read back and their
//! differences.

use super::*;

fn orders() -> TableSchema {
    TableSchema::new(
        [
            ("shop", "text"),
            ("id", "uuid"),
            ("total", "double"),
            ("placed_at", "timestamp"),
            ("items", "list<text>"),
            ("attrs", "map<text,text>"),
        ],
        &["shop"],
        &["placed_at", "id"],
    )
    .unwrap()
}

#[test]
fn types_parse_case_insensitively_with_spaces() {
    assert_eq!("TEXT".parse::<ColumnType>().unwrap(), ColumnType::Text);
    assert_eq!(
        " List< Text > ".parse::<ColumnType>().unwrap(),
        ColumnType::ListText
    );
    assert_eq!(
        "map < text , TEXT >".parse::<ColumnType>().unwrap(),
        ColumnType::MapTextText
    );
    for ty in ColumnType::ALL {
        assert_eq!(ty.to_string().parse::<ColumnType>().unwrap(), ty);
    }
    assert_eq!(ColumnType::MapTextText.to_string(), "map<text, text>");
}

#[test]
fn unknown_type_lists_the_valid_ones() {
    let err = TableSchema::new([("n", "integer")], &["n"], &[] as &[&str]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "column n: unknown type \"integer\"; valid types: text, int, bigint, double, \
         boolean, uuid, timestamp, date, decimal, list<text>, map<text, text>"
    );
    assert!("list<int>".parse::<ColumnType>().is_err());
}

#[test]
fn names_are_plain_identifiers() {
    let one = |name: &str| TableSchema::new([(name, "text")], &[name], &[] as &[&str]);
    assert!(one("a_1").is_ok());
    assert!(one("_x").is_ok());
    assert!(one(&"a".repeat(48)).is_ok());
    assert_eq!(
        one(&"a".repeat(49)).unwrap_err().to_string(),
        format!(
            "column name \"{}\" is longer than 48 characters",
            "a".repeat(49)
        )
    );
    assert_eq!(
        one("1a").unwrap_err().to_string(),
        "column name \"1a\" starts with a digit"
    );
    assert!(matches!(one("a-b"), Err(SchemaError::BadName { .. })));
    assert!(matches!(one("é"), Err(SchemaError::BadName { .. })));
    assert!(matches!(one(""), Err(SchemaError::BadName { .. })));
}

#[test]
fn keys_are_checked() {
    let cols = [("id", "text"), ("tags", "list<text>"), ("Id", "int")];
    assert_eq!(
        TableSchema::new(cols, &["id"], &[] as &[&str]).unwrap_err(),
        SchemaError::DuplicateColumn("Id".into())
    );
    let cols = [("id", "text"), ("tags", "list<text>")];
    assert_eq!(
        TableSchema::new(cols, &[] as &[&str], &["id"]).unwrap_err(),
        SchemaError::NoPartitionKey
    );
    assert_eq!(
        TableSchema::new(cols, &["idd"], &[] as &[&str])
            .unwrap_err()
            .to_string(),
        "key column idd is not a column of the table"
    );
    assert_eq!(
        TableSchema::new(cols, &["id"], &["tags"])
            .unwrap_err()
            .to_string(),
        "key column tags is a list<text>; a key column cannot be a list or a map"
    );
    assert_eq!(
        TableSchema::new(cols, &["id"], &["id"]).unwrap_err(),
        SchemaError::DuplicateKeyColumn("id".into())
    );
}

#[test]
fn cql_create_quotes_columns_freezes_collections_and_nests_the_key() {
    assert_eq!(
        orders().cql_create("shop", "orders"),
        "CREATE TABLE IF NOT EXISTS shop.orders (\"shop\" text, \"id\" uuid, \
         \"total\" double, \"placed_at\" timestamp, \"items\" frozen<list<text>>, \
         \"attrs\" frozen<map<text, text>>, \
         PRIMARY KEY ((\"shop\"), \"placed_at\", \"id\"))"
    );
    let s = TableSchema::new([("a", "int"), ("b", "date")], &["a", "b"], &[] as &[&str]).unwrap();
    assert_eq!(
        s.cql_create("k", "t"),
        "CREATE TABLE IF NOT EXISTS k.t (\"a\" int, \"b\" date, PRIMARY KEY ((\"a\", \"b\")))"
    );
}

#[test]
fn sqlite_create_and_upsert() {
    let s = orders();
    assert_eq!(
        s.sqlite_create("orders"),
        "CREATE TABLE IF NOT EXISTS orders (\"shop\" TEXT NOT NULL, \"id\" UUID TEXT NOT NULL, \
         \"total\" DOUBLE, \"placed_at\" TIMESTAMP INTEGER NOT NULL, \"items\" LIST TEXT, \
         \"attrs\" MAP TEXT, PRIMARY KEY (\"shop\", \"placed_at\", \"id\"))"
    );
    assert_eq!(
        s.sqlite_upsert("orders"),
        "INSERT INTO orders (\"shop\", \"id\", \"total\", \"placed_at\", \"items\", \"attrs\") \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (\"shop\", \"placed_at\", \"id\") \
         DO UPDATE SET \"total\" = excluded.\"total\", \"items\" = excluded.\"items\", \
         \"attrs\" = excluded.\"attrs\" WHERE (\"total\", \"items\", \"attrs\") IS NOT \
         (excluded.\"total\", excluded.\"items\", excluded.\"attrs\")"
    );
    let keys_only = TableSchema::new([("a", "text")], &["a"], &[] as &[&str]).unwrap();
    assert_eq!(
        keys_only.sqlite_upsert("t"),
        "INSERT INTO t (\"a\") VALUES (?1) ON CONFLICT (\"a\") DO NOTHING"
    );
}

/// The DDL runs on SQLite, the declared types give the intended storage,
/// the upsert counts a replay as unchanged, and `PRAGMA table_info` gives
/// the schema back.
#[test]
fn sqlite_ddl_runs_and_reads_back() {
    let s = TableSchema::new(
        [
            ("id", "text"),
            ("n", "int"),
            ("big", "bigint"),
            ("x", "double"),
            ("ok", "boolean"),
            ("u", "uuid"),
            ("at", "timestamp"),
            ("d", "date"),
            ("amount", "decimal"),
            ("tags", "list<text>"),
            ("attrs", "map<text,text>"),
            ("one", "text"),
        ],
        &["id"],
        &[] as &[&str],
    )
    .unwrap();
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    conn.execute_batch(&s.sqlite_create("t")).unwrap();
    let upsert = s.sqlite_upsert("t");
    let row = rusqlite::params![
        "k",
        1,
        2_i64,
        0.5,
        1,
        "0b7a3c44-5f43-4c5d-9d43-6b5c9c7a1e10",
        1_700_000_000_000_i64,
        "2024-02-29",
        "12345678901234567890.123456789",
        "[\"a\"]",
        "{}",
        rusqlite::types::Null,
    ];
    assert_eq!(conn.execute(&upsert, row).unwrap(), 1);
    assert_eq!(
        conn.execute(&upsert, row).unwrap(),
        0,
        "a replay is unchanged"
    );
    let kinds: (String, String, String, String) = conn
        .query_row(
            "SELECT typeof(amount), amount, typeof(at), typeof(ok) FROM t",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(
        kinds,
        (
            "text".into(),
            "12345678901234567890.123456789".into(),
            "integer".into(),
            "integer".into()
        )
    );
    let mut stmt = conn.prepare("PRAGMA table_info(t)").unwrap();
    let rows: Vec<SqliteColumnRow> = stmt
        .query_map([], |r| {
            Ok(SqliteColumnRow {
                cid: r.get(0)?,
                name: r.get(1)?,
                ty: r.get(2)?,
                notnull: r.get(3)?,
                pk: r.get(5)?,
            })
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(TableSchema::from_sqlite_columns(&rows).unwrap(), s);
    assert!(rows[0].notnull);
}

/// Checked cells bind in the declared storage, and the upsert tells a
/// replay (0 changes) from a changed row (1).
#[test]
fn checked_cells_bind_in_the_declared_storage() {
    use super::super::check::{UnknownFields, check};
    let s = TableSchema::new(
        [
            ("id", "uuid"),
            ("ok", "boolean"),
            ("at", "timestamp"),
            ("d", "date"),
            ("amount", "decimal"),
            ("tags", "list<text>"),
            ("attrs", "map<text, text>"),
            ("note", "text"),
        ],
        &["id"],
        &[] as &[&str],
    )
    .unwrap();
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    conn.execute_batch(&s.sqlite_create("t")).unwrap();
    let upsert = s.sqlite_upsert("t");
    let mut rec = serde_json::json!({
        "id": "0B7A3C44-5F43-4C5D-9D43-6B5C9C7A1E10", "ok": true,
        "at": "2024-02-29T23:30:00.123+01:00", "d": "2024-02-29",
        "amount": "0.10", "tags": ["a", "b"], "attrs": {"k": "v"}
    });
    let write = |rec: &serde_json::Value| {
        let row = check(&s, rec.as_object().unwrap(), UnknownFields::Reject).unwrap();
        conn.execute(&upsert, rusqlite::params_from_iter(&row))
            .unwrap()
    };
    assert_eq!(write(&rec), 1);
    assert_eq!(write(&rec), 0);
    rec["note"] = "new".into();
    assert_eq!(write(&rec), 1);
    let stored: Vec<String> = conn
        .query_row(
            "SELECT id, typeof(ok) || ok, typeof(at) || at, d, amount, tags, attrs FROM t",
            [],
            |r| (0..7).map(|i| r.get::<_, String>(i)).collect(),
        )
        .unwrap();
    assert_eq!(
        stored,
        [
            "0b7a3c44-5f43-4c5d-9d43-6b5c9c7a1e10",
            "integer1",
            "integer1709245800123",
            "2024-02-29",
            "0.10",
            r#"["a","b"]"#,
            r#"{"k":"v"}"#,
        ]
    );
}

fn cql(name: &str, kind: &str, position: i32, ty: &str) -> CqlColumnRow {
    CqlColumnRow {
        column_name: name.into(),
        kind: kind.into(),
        position,
        ty: ty.into(),
    }
}

#[test]
fn system_schema_rows_give_the_schema_back() {
    // As Cassandra lists them: by name, the clustering positions out of order.
    let rows = [
        cql("attrs", "regular", -1, "frozen<map<text, text>>"),
        cql("id", "clustering", 1, "uuid"),
        cql("items", "regular", -1, "list<text>"),
        cql("placed_at", "clustering", 0, "timestamp"),
        cql("shop", "partition_key", 0, "text"),
        cql("total", "regular", -1, "double"),
    ];
    let back = TableSchema::from_cql_columns(&rows).unwrap();
    assert_eq!(back.partition_key, ["shop"]);
    assert_eq!(back.clustering_key, ["placed_at", "id"]);
    let names: Vec<_> = back.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["shop", "placed_at", "id", "attrs", "items", "total"]
    );
    assert_eq!(back.column("attrs").unwrap().ty, ColumnType::MapTextText);
    assert!(orders().diff(&back).is_empty());
    assert_eq!(
        ColumnType::from_cql("frozen<list<text>>"),
        Some(ColumnType::ListText)
    );
    assert_eq!(ColumnType::from_cql("varchar"), Some(ColumnType::Text));
}

#[test]
fn system_schema_with_foreign_types_or_static_columns_is_refused() {
    let err = TableSchema::from_cql_columns(&[
        cql("id", "partition_key", 0, "text"),
        cql("n", "regular", -1, "varint"),
    ])
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "column n: type varint is not one tributary writes"
    );
    let err = TableSchema::from_cql_columns(&[
        cql("id", "partition_key", 0, "text"),
        cql("s", "static", -1, "text"),
    ])
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "column s: a static column, which tributary does not write"
    );
}

#[test]
fn diff_names_every_difference() {
    let rows = [
        cql("shop", "partition_key", 0, "text"),
        cql("id", "partition_key", 1, "uuid"),
        cql("placed_at", "clustering", 0, "timestamp"),
        cql("total", "regular", -1, "decimal"),
        cql("note", "regular", -1, "text"),
        cql("attrs", "regular", -1, "map<text, text>"),
    ];
    let existing = TableSchema::from_cql_columns(&rows).unwrap();
    assert_eq!(
        orders().diff(&existing),
        [
            "column total is decimal, want double",
            "column items is missing (want list<text>)",
            "column note (text) is not in the declared table",
            "partition key is (shop, id), want (shop)",
            "clustering key is (placed_at), want (placed_at, id)",
        ]
    );
}

#[test]
fn diff_sqlite_compares_the_whole_key() {
    let sqlite_row = |cid, name: &str, ty: &str, pk| SqliteColumnRow {
        cid,
        name: name.into(),
        ty: ty.into(),
        notnull: pk > 0,
        pk,
    };
    let mut rows = vec![
        sqlite_row(0, "shop", "TEXT", 1),
        sqlite_row(1, "id", "UUID TEXT", 3),
        sqlite_row(2, "total", "DOUBLE", 0),
        sqlite_row(3, "placed_at", "TIMESTAMP INTEGER", 2),
        sqlite_row(4, "items", "LIST TEXT", 0),
        sqlite_row(5, "attrs", "map  text", 0),
    ];
    let existing = TableSchema::from_sqlite_columns(&rows).unwrap();
    assert!(orders().diff_sqlite(&existing).is_empty());
    rows[1].pk = 0;
    let existing = TableSchema::from_sqlite_columns(&rows).unwrap();
    assert_eq!(
        orders().diff_sqlite(&existing),
        ["primary key is (shop, placed_at), want (shop, placed_at, id)"]
    );
    rows[2].ty = "REAL".into();
    assert_eq!(
        TableSchema::from_sqlite_columns(&rows)
            .unwrap_err()
            .to_string(),
        "column total: declared type \"REAL\" is not one tributary writes"
    );
}
