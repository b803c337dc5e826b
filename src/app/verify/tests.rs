//! Ids read from log messages as the store keys them.

use super::*;

fn message(key: Option<&str>, payload: &str) -> LogMessage {
    LogMessage {
        partition: 0,
        offset: 0,
        timestamp_ms: 0,
        key: key.map(|k| k.as_bytes().to_vec()),
        payload: payload.as_bytes().to_vec(),
    }
}

#[test]
fn a_file_removed_or_replaced_is_noticed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.db");
    assert!(FileIdentity::of(&path).is_none());
    std::fs::write(&path, b"one").unwrap();
    let file = FileIdentity::of(&path).unwrap();
    assert!(file.unchanged());
    // Kept open, as SQLite keeps it, while a new file takes its name.
    let _held = std::fs::File::open(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(!file.unchanged());
    std::fs::write(&path, b"two").unwrap();
    assert!(!file.unchanged());
}

#[test]
fn the_id_is_the_key_else_the_payloads_id_field() {
    let id = "0b6f8a0e-51b3-4c1a-9a7e-3c2d1e0f9a8b";
    assert_eq!(
        message_id(&message(Some(id), "not json")).as_deref(),
        Some(id)
    );
    // The seed DAG: no key; the id is read and nothing else decoded.
    let payload = format!(r#"{{"first_name":{{"deep":[1,2]}},"id":"{id}","x":null}}"#);
    assert_eq!(message_id(&message(None, &payload)).as_deref(), Some(id));
    assert_eq!(
        message_id(&message(Some(""), &payload)).as_deref(),
        Some(id)
    );
    // Upper case or braced uuids name the same row as the store's form.
    let upper = format!(r#"{{"id":"{{{}}}"}}"#, id.to_uppercase());
    assert_eq!(message_id(&message(None, &upper)).as_deref(), Some(id));
    // Not a uuid: kept as it is (the store cannot hold it).
    assert_eq!(
        message_id(&message(Some("bad"), "{}")).as_deref(),
        Some("bad")
    );
    for payload in ["not json", "{}", r#"{"id":""}"#, r#"{"id":42}"#, "[1]"] {
        assert_eq!(message_id(&message(None, payload)), None, "{payload}");
    }
}
