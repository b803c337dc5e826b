//! The embedded store: rows and their position commit together or not at all.

use super::*;
use crate::pipeline::source::Generator;

async fn open(dir: &std::path::Path) -> SqliteSink {
    SqliteSink::open(
        SqliteSinkConfig {
            path: dir.join("store.db"),
            table: "created_users".into(),
            durable_fsync: false,
        },
        &Dataset::Users,
    )
    .await
    .unwrap()
}

fn rows(from: u64, n: u64) -> Rows {
    let g = Generator::new("positions", vec![], None);
    Rows::Users(
        (from..from + n)
            .map(|k| g.user(k).to_row().unwrap())
            .collect::<Vec<_>>()
            .into(),
    )
}

#[tokio::test]
async fn rows_and_their_position_commit_together_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let sink = open(dir.path()).await;
    let at = |n: i64| Position::from([(0, (n, Some(format!("m{n}"))))]);
    sink.write_at(rows(0, 10), "log/topic/group", &at(10))
        .await
        .unwrap();
    assert_eq!(
        sink.position("log/topic/group").await.unwrap(),
        Some(at(10))
    );
    assert_eq!(sink.position("other/topic/group").await.unwrap(), None);

    // A batch the store refuses half-way (here: a trigger on one row)
    // leaves neither its rows nor its position behind.
    let batch = rows(10, 10);
    let Rows::Users(users) = &batch else {
        unreachable!()
    };
    let poisoned = users[7].id.to_string();
    let conn = rusqlite::Connection::open(dir.path().join("store.db")).unwrap();
    conn.execute_batch(&format!(
        "CREATE TRIGGER refuse BEFORE INSERT ON created_users
         WHEN NEW.id = '{poisoned}' BEGIN SELECT RAISE(ABORT, 'refused'); END;"
    ))
    .unwrap();
    let err = sink.write_at(batch, "log/topic/group", &at(20)).await;
    assert!(err.is_err());
    assert_eq!(sink.count().await.unwrap(), 10);
    assert_eq!(
        sink.position("log/topic/group").await.unwrap(),
        Some(at(10))
    );

    // An empty batch still moves the position (messages that all went
    // to the dead letters, or a range lost to retention).
    conn.execute_batch("DROP TRIGGER refuse").unwrap();
    sink.write_at(rows(0, 0), "log/topic/group", &at(25))
        .await
        .unwrap();
    assert_eq!(
        sink.position("log/topic/group").await.unwrap(),
        Some(at(25))
    );
}
