//! The typed table sink: its pure parts, and against a real Cassandra node
//! named by `TRIBUTARY_TEST_CASSANDRA=host:port` (with
//! `TRIBUTARY_TEST_CASSANDRA_USER`/`_PASSWORD` when it wants them). Without
//! a node those tests say loudly that they skipped, and fail instead where
//! `TRIBUTARY_REQUIRE_INFRA=1` says the node must be there. Each test has
//! its own keyspace, dropped at its end.

use std::collections::BTreeMap;
use std::sync::Arc;

use scylla::statement::Consistency;
use uuid::Uuid;

use super::*;
use crate::pipeline::table::Cell;

fn cql(name: &str, kind: &str, position: i32, ty: &str) -> CqlColumnRow {
    CqlColumnRow {
        column_name: name.into(),
        kind: kind.into(),
        position,
        ty: ty.into(),
    }
}

fn schema(columns: &[(&str, &str)], key: &[&str], clustering: &[&str]) -> TableSchema {
    TableSchema::new(columns.iter().copied(), key, clustering).unwrap()
}

#[test]
fn only_differences_that_break_writes_count() {
    let declared = schema(&[("id", "text"), ("n", "int")], &["id"], &[]);
    let existing = [
        cql("id", "partition_key", 0, "text"),
        cql("n", "regular", -1, "int"),
        // Not declared and not in the key: the upsert never names them.
        cql("extra", "regular", -1, "varint"),
        cql("s", "static", -1, "text"),
    ];
    assert_eq!(breaking_differences(&declared, &existing), Ok(vec![]));
    let existing = [
        cql("id", "partition_key", 0, "text"),
        cql("at", "clustering", 0, "timestamp"),
        cql("n", "regular", -1, "bigint"),
    ];
    assert_eq!(
        breaking_differences(&declared, &existing).unwrap(),
        [
            "column n is bigint, want int",
            "column at (timestamp) is not in the declared table",
            "clustering key is (at), want ()",
        ]
    );
    let existing = [
        cql("id", "partition_key", 0, "text"),
        cql("n", "regular", -1, "varint"),
    ];
    assert_eq!(
        breaking_differences(&declared, &existing).unwrap_err(),
        "column n: type varint is not one tributary writes"
    );
}

/// The processor spawns its writes: they must be `Send` (checked by the
/// compiler; never run).
#[allow(dead_code)]
fn writes_are_send(
    sink: &CassandraTableSink,
    rows: Arc<[TypedRow]>,
) -> impl Future<Output = Result<WriteAck, SinkError>> + Send + '_ {
    sink.write(rows)
}

/// The Cassandra node of the tests, or `None` after saying so (see the
/// module doc).
fn node(test: &str) -> Option<String> {
    match std::env::var("TRIBUTARY_TEST_CASSANDRA") {
        Ok(n) if !n.is_empty() => Some(n),
        _ => {
            if std::env::var("TRIBUTARY_REQUIRE_INFRA").is_ok_and(|v| v == "1") {
                panic!("{test} cannot run: no Cassandra (TRIBUTARY_REQUIRE_INFRA=1)");
            }
            // Past the harness's capture, so it shows in every run.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: no Cassandra (set TRIBUTARY_TEST_CASSANDRA=host:port)"
            );
            None
        }
    }
}

/// Settings for table `t` of a keyspace no other test (or run) uses.
fn config(node: &str, test: &str) -> CassandraSinkConfig {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    CassandraSinkConfig {
        nodes: node.split(',').map(str::to_owned).collect(),
        keyspace: format!("tt_{test}_{}", nanos % 1_000_000_000_000),
        table: "t".into(),
        user: env("TRIBUTARY_TEST_CASSANDRA_USER"),
        password: env("TRIBUTARY_TEST_CASSANDRA_PASSWORD"),
        replication: BTreeMap::from([
            ("class".into(), "SimpleStrategy".into()),
            ("replication_factor".into(), "1".into()),
        ]),
        consistency: Consistency::One,
        concurrency: Some(4),
        tls_ca_file: None,
        local_datacenter: None,
    }
}

async fn drop_keyspace(sink: &CassandraTableSink) {
    let _ = sink
        .session
        .query_unpaged(
            format!("DROP KEYSPACE IF EXISTS {}", sink.config.keyspace),
            (),
        )
        .await;
}

fn all_types() -> TableSchema {
    schema(
        &[
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
            ("attrs", "map<text, text>"),
        ],
        &["id"],
        &[],
    )
}

fn sorted(mut rows: Vec<TypedRow>) -> Vec<TypedRow> {
    rows.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_column_type_round_trips() {
    let Some(n) = node("every_column_type_round_trips") else {
        return;
    };
    let sink = CassandraTableSink::open(
        config(&n, "types"),
        Some(all_types()),
        crate::pipeline::Missing::Make,
    )
    .await
    .unwrap();
    let full = vec![
        Cell::Text("a ü 😀".into()),
        Cell::Int(i32::MIN),
        Cell::Bigint(i64::MAX),
        Cell::Double(-0.1),
        Cell::Boolean(true),
        Cell::Uuid(Uuid::parse_str("0b7a3c44-5f43-4c5d-9d43-6b5c9c7a1e10").unwrap()),
        Cell::Timestamp(1_709_245_800_123),
        Cell::Date("2024-02-29".parse().unwrap()),
        Cell::Decimal("-12345678901234567890.123456789".into()),
        Cell::List(vec!["b".into(), "a".into(), "b".into()]),
        Cell::Map(BTreeMap::from([
            ("k".into(), "v".into()),
            ("é".into(), String::new()),
        ])),
    ];
    let before_1970 = vec![
        Cell::Text("b".into()),
        Cell::Int(0),
        Cell::Bigint(-1),
        Cell::Double(1e300),
        Cell::Boolean(false),
        Cell::Uuid(Uuid::nil()),
        Cell::Timestamp(-14_182_940_000),
        Cell::Date("1969-07-20".parse().unwrap()),
        Cell::Decimal("0.10".into()),
        Cell::List(vec![]),
        Cell::Map(BTreeMap::new()),
    ];
    let mut nulls = vec![Cell::Null; 11];
    nulls[0] = Cell::Text("c".into());
    let rows: Arc<[TypedRow]> = vec![full, before_1970, nulls].into();
    let ack = sink.write(rows.clone()).await.unwrap();
    assert_eq!(
        ack,
        WriteAck {
            written: 3,
            ..WriteAck::default()
        }
    );
    assert_eq!(sink.count().await.unwrap(), 3);
    let back = sink.rows(10).await.unwrap();
    assert_eq!(sorted(back), sorted(rows.to_vec()));
    assert_eq!(sink.rows(2).await.unwrap().len(), 2);
    drop_keyspace(&sink).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writing_a_batch_again_is_an_upsert() {
    let Some(n) = node("writing_a_batch_again_is_an_upsert") else {
        return;
    };
    let s = schema(&[("id", "bigint"), ("note", "text")], &["id"], &[]);
    let sink = CassandraTableSink::open(
        config(&n, "upsert"),
        Some(s),
        crate::pipeline::Missing::Make,
    )
    .await
    .unwrap();
    // The partition key is a bound value: the driver routes each row to a
    // replica by its token.
    assert!(sink.insert.is_token_aware());
    // The driver's view of the nodes: every one up.
    let nodes = sink.nodes();
    assert!(!nodes.is_empty() && nodes.iter().all(|n| n.up), "{nodes:?}");
    let rows: Arc<[TypedRow]> = (0..50)
        .map(|i| vec![Cell::Bigint(i), Cell::Text(format!("row {i}"))])
        .collect();
    assert_eq!(sink.write(rows.clone()).await.unwrap().written, 50);
    assert_eq!(sink.write(rows.clone()).await.unwrap().written, 50);
    assert_eq!(sink.count().await.unwrap(), 50);
    // A changed value replaces the stored one; a null clears it: the row is
    // the last record, as in the embedded store.
    let changed: Arc<[TypedRow]> = vec![
        vec![Cell::Bigint(1), Cell::Text("changed".into())],
        vec![Cell::Bigint(2), Cell::Null],
    ]
    .into();
    sink.write(changed).await.unwrap();
    assert_eq!(sink.count().await.unwrap(), 50);
    let back = sink.rows(100).await.unwrap();
    let note = |id| back.iter().find(|r| r[0] == Cell::Bigint(id)).unwrap()[1].clone();
    assert_eq!(note(1), Cell::Text("changed".into()));
    assert_eq!(note(2), Cell::Null);
    drop_keyspace(&sink).await;
}

#[test]
fn of_rows_with_one_key_only_the_last_is_written() {
    let s = schema(&[("id", "text"), ("n", "int")], &["id"], &[]);
    let row = |id: Option<&str>, n| {
        vec![
            id.map_or(Cell::Null, |t| Cell::Text(t.into())),
            Cell::Int(n),
        ]
    };
    let rows = [
        row(Some("a"), 1),
        row(Some("b"), 2),
        row(None, 3),
        row(Some("a"), 4),
        row(Some("null"), 5),
        row(None, 6),
        row(Some("a"), 7),
    ];
    let (kept, superseded_by) = last_of_each_key(&s, &rows);
    assert_eq!(kept, [1, 2, 4, 5, 6]);
    assert_eq!(
        superseded_by,
        [Some(6), None, None, Some(6), None, None, None]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_with_one_key_many_times_stores_its_last_row() {
    let Some(n) = node("a_batch_with_one_key_many_times_stores_its_last_row") else {
        return;
    };
    let s = schema(&[("id", "text"), ("n", "int")], &["id"], &[]);
    let sink = CassandraTableSink::open(
        config(&n, "lastwins"),
        Some(s),
        crate::pipeline::Missing::Make,
    )
    .await
    .unwrap();
    let mut rows: Vec<TypedRow> = (0..400)
        .map(|i| vec![Cell::Text(format!("k{}", i % 4)), Cell::Int(i)])
        .collect();
    // The last row of key "bad" is refused: the earlier one goes with it.
    rows.push(vec![Cell::Text("bad".into()), Cell::Int(1)]);
    rows.push(vec![Cell::Text("bad".into()), Cell::Text("no int".into())]);
    let ack = sink.write(rows.into()).await.unwrap();
    assert_eq!(ack.written, 400, "{ack:?}");
    let rejected: Vec<usize> = ack.rejected.iter().map(|(i, _)| *i).collect();
    assert_eq!(rejected, [400, 401], "{ack:?}");
    let mut back = sink.rows(10).await.unwrap();
    back.sort_by_key(|r| format!("{:?}", r[0]));
    let want: Vec<TypedRow> = (396..400)
        .map(|i| vec![Cell::Text(format!("k{}", i % 4)), Cell::Int(i)])
        .collect();
    assert_eq!(back, want);
    drop_keyspace(&sink).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_cassandra_refuses_are_rejected_by_index() {
    let Some(n) = node("rows_cassandra_refuses_are_rejected_by_index") else {
        return;
    };
    let s = schema(&[("id", "text"), ("n", "int")], &["id"], &[]);
    let sink = CassandraTableSink::open(
        config(&n, "rejected"),
        Some(s),
        crate::pipeline::Missing::Make,
    )
    .await
    .unwrap();
    let rows: Arc<[TypedRow]> = vec![
        vec![Cell::Text("a".into()), Cell::Int(1)],
        vec![Cell::Null, Cell::Int(2)],
        vec![Cell::Text("c".into()), Cell::Text("not an int".into())],
        vec![Cell::Text("d".into()), Cell::Null],
    ]
    .into();
    let ack = sink.write(rows).await.unwrap();
    assert_eq!(ack.written, 2);
    let rejected: Vec<usize> = ack.rejected.iter().map(|(i, _)| *i).collect();
    assert_eq!(rejected, [1, 2], "{ack:?}");
    assert_eq!(sink.count().await.unwrap(), 2);
    drop_keyspace(&sink).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_without_a_schema_reads_the_tables() {
    let Some(n) = node("open_without_a_schema_reads_the_tables") else {
        return;
    };
    let mut c = config(&n, "read");
    if c.user.is_none() {
        // A node without authentication never asks for these.
        c.user = Some("reader".into());
        c.password = Some("never-shown".into());
    }
    let created =
        CassandraTableSink::open(c.clone(), Some(all_types()), crate::pipeline::Missing::Make)
            .await
            .unwrap();
    let read = CassandraTableSink::open(c.clone(), None, crate::pipeline::Missing::Make)
        .await
        .unwrap();
    assert!(all_types().diff(read.schema()).is_empty(), "{read:?}");
    let shown = format!("{read:?}");
    assert!(!shown.contains(c.password.as_deref().unwrap()), "{shown}");
    assert_eq!(read.schema().partition_key, ["id"]);
    assert_eq!(
        read.describe(),
        format!("cassandra {n} table {}.t", c.keyspace)
    );
    // Rows written by either come back in the reader's column order.
    let row: TypedRow = read
        .schema()
        .columns
        .iter()
        .map(|col| {
            if col.name == "id" {
                Cell::Text("k".into())
            } else {
                Cell::Null
            }
        })
        .collect();
    read.write(vec![row.clone()].into()).await.unwrap();
    assert_eq!(read.rows(5).await.unwrap(), [row]);
    // A type tributary does not write is named.
    created
        .session
        .query_unpaged(format!("ALTER TABLE {}.t ADD v varint", c.keyspace), ())
        .await
        .unwrap();
    let err = CassandraTableSink::open(c.clone(), None, crate::pipeline::Missing::Make)
        .await
        .unwrap_err();
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("column v: type varint"), "{err}");
    drop_keyspace(&created).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_without_a_schema_names_a_missing_table() {
    let Some(n) = node("open_without_a_schema_names_a_missing_table") else {
        return;
    };
    let c = config(&n, "missing");
    let err = CassandraTableSink::open(c.clone(), None, crate::pipeline::Missing::Make)
        .await
        .unwrap_err();
    assert!(!err.is_retryable());
    let shown = err.to_string();
    assert!(
        shown.contains(&format!("table {}.t does not exist", c.keyspace)),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_with_an_incompatible_schema_names_the_column() {
    let Some(n) = node("open_with_an_incompatible_schema_names_the_column") else {
        return;
    };
    let c = config(&n, "differs");
    let first = schema(
        &[("id", "text"), ("n", "int"), ("extra", "text")],
        &["id"],
        &[],
    );
    let sink = CassandraTableSink::open(c.clone(), Some(first), crate::pipeline::Missing::Make)
        .await
        .unwrap();
    // Fewer columns is fine: the extra one is left alone.
    let fewer = schema(&[("id", "text"), ("n", "int")], &["id"], &[]);
    assert!(
        CassandraTableSink::open(c.clone(), Some(fewer), crate::pipeline::Missing::Make)
            .await
            .is_ok()
    );
    let retyped = schema(&[("id", "text"), ("n", "text")], &["id"], &[]);
    let err = CassandraTableSink::open(c.clone(), Some(retyped), crate::pipeline::Missing::Make)
        .await
        .unwrap_err();
    assert!(!err.is_retryable());
    let shown = err.to_string();
    assert!(shown.contains("column n is int, want text"), "{shown}");
    drop_keyspace(&sink).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_composite_key_partitions_and_clusters() {
    let Some(n) = node("a_composite_key_partitions_and_clusters") else {
        return;
    };
    let s = schema(
        &[
            ("shop", "text"),
            ("day", "date"),
            ("at", "timestamp"),
            ("id", "uuid"),
            ("total", "decimal"),
        ],
        &["shop", "day"],
        &["at", "id"],
    );
    let c = config(&n, "composite");
    let sink = CassandraTableSink::open(c.clone(), Some(s.clone()), crate::pipeline::Missing::Make)
        .await
        .unwrap();
    let day = Cell::Date("2024-03-01".parse().unwrap());
    let row = |shop: &str, at: i64, id: u128, total: &str| {
        let (shop, id) = (Cell::Text(shop.into()), Cell::Uuid(Uuid::from_u128(id)));
        vec![
            shop,
            day.clone(),
            Cell::Timestamp(at),
            id,
            Cell::Decimal(total.into()),
        ]
    };
    let rows: Arc<[TypedRow]> = vec![
        row("a", 1, 1, "1.00"),
        row("a", 1, 2, "2.00"),
        row("a", 2, 1, "3.00"),
        row("b", 1, 1, "4.00"),
    ]
    .into();
    assert_eq!(sink.write(rows.clone()).await.unwrap().written, 4);
    // The same full key is the same row.
    sink.write(vec![row("a", 1, 2, "20.00")].into())
        .await
        .unwrap();
    assert_eq!(sink.count().await.unwrap(), 4);
    let mut expected = rows.to_vec();
    expected[1] = row("a", 1, 2, "20.00");
    assert_eq!(sorted(sink.rows(10).await.unwrap()), sorted(expected));
    let read = CassandraTableSink::open(c, None, crate::pipeline::Missing::Make)
        .await
        .unwrap();
    assert_eq!(read.schema().partition_key, ["shop", "day"]);
    assert_eq!(read.schema().clustering_key, ["at", "id"]);
    assert!(s.diff(read.schema()).is_empty());
    drop_keyspace(&sink).await;
}
