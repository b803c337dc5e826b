//! Schema differences named, TLS trust from a PEM CA, no password in `Debug`.

use super::connect::tls_config;
use super::*;

#[test]
fn schema_differences_name_every_problem() {
    let mut cols: BTreeMap<String, String> = ROW_COLUMNS
        .iter()
        .map(|c| (c.to_string(), column_type(c).to_string()))
        .collect();
    assert!(schema_differences(&cols).is_empty());
    cols.insert("id".into(), "text".into());
    cols.remove("phone");
    cols.insert("age".into(), "int".into());
    let d = schema_differences(&cols);
    assert_eq!(
        d,
        [
            "column id is text, want uuid",
            "column phone is missing (want text)",
            "column age is not in the seed table"
        ]
    );
}

#[test]
fn tls_trusts_a_pem_ca_and_refuses_files_without_one() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    assert!(tls_config(&fixtures.join("test-ca.pem")).is_ok());
    let err = tls_config(&fixtures.join("no-such.pem"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot use TLS CA file"), "{err}");
    let not_pem = std::env::temp_dir().join(format!("tributary-not-pem-{}", std::process::id()));
    std::fs::write(&not_pem, "hello").unwrap();
    let err = tls_config(&not_pem).unwrap_err().to_string();
    std::fs::remove_file(&not_pem).ok();
    assert!(err.contains("no certificate"), "{err}");
}

#[test]
fn debug_never_shows_the_password() {
    let c = CassandraSinkConfig {
        nodes: vec!["127.0.0.1:9042".into()],
        keyspace: "ks".into(),
        table: "t".into(),
        user: Some("cassandra".into()),
        password: Some("s3cret".into()),
        replication: BTreeMap::new(),
        consistency: Consistency::LocalQuorum,
        concurrency: Some(8),
        tls_ca_file: None,
        local_datacenter: None,
    };
    let shown = format!("{c:?}");
    assert!(!shown.contains("s3cret"), "{shown}");
}

/// With too few replicas alive for the consistency level, or a replica
/// that did not answer in time, a write must wait and be tried again (the
/// processor pauses), never refuse the row as a dead letter.
#[test]
fn too_few_replicas_is_transient_not_a_rejected_row() {
    for db in [
        DbError::Unavailable {
            consistency: Consistency::LocalQuorum,
            required: 2,
            alive: 1,
        },
        DbError::WriteTimeout {
            consistency: Consistency::LocalQuorum,
            received: 1,
            required: 2,
            write_type: scylla::errors::WriteType::Simple,
        },
        DbError::Overloaded,
    ] {
        let e = ExecutionError::LastAttemptError(RequestAttemptError::DbError(db, "x".into()));
        assert!(matches!(classify(&e), Failure::Transient(_)), "{e}");
    }
    let invalid = ExecutionError::LastAttemptError(RequestAttemptError::DbError(
        DbError::Invalid,
        "x".into(),
    ));
    assert!(matches!(classify(&invalid), Failure::Rejected(_)));
}

/// A table dropped under a running processor: every row is refused with
/// the same answer, which is no row's fault. Before, each became a dead
/// letter and the run ended "successfully".
#[test]
fn a_table_gone_fails_the_batch_for_good_instead_of_refusing_its_rows() {
    for msg in [
        "table big5 does not exist",
        "unconfigured table created_users",
        "Keyspace 'ks' does not exist",
        "Undefined column name v",
    ] {
        let e = ExecutionError::LastAttemptError(RequestAttemptError::DbError(
            DbError::Invalid,
            msg.into(),
        ));
        match classify(&e) {
            Failure::Fatal(why) => assert!(why.contains("dropped while in use"), "{why}"),
            _ => panic!("{msg}: not fatal"),
        }
    }
    for msg in [
        "Key may not be empty",
        "field city of type address does not exist",
    ] {
        let bad_value = ExecutionError::LastAttemptError(RequestAttemptError::DbError(
            DbError::Invalid,
            msg.into(),
        ));
        assert!(
            matches!(classify(&bad_value), Failure::Rejected(_)),
            "{msg}"
        );
    }
}
