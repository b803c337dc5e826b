//! `Checkpoint::after`: what a commit of a batch says.

use super::*;

fn message(partition: i32, offset: i64, payload: &str) -> LogMessage {
    LogMessage {
        partition,
        offset,
        timestamp_ms: 1_700_000_000_000 + offset,
        key: Some(format!("k{offset}").into_bytes()),
        payload: payload.as_bytes().to_vec(),
    }
}

#[test]
fn an_empty_batch_moves_nothing() {
    assert_eq!(Checkpoint::after(&[]), Checkpoint::default());
}

#[test]
fn the_checkpoint_is_the_offset_after_the_last_message() {
    let batch = [message(0, 7, "a"), message(0, 8, "b"), message(0, 9, "c")];
    let past = Checkpoint::after(&batch);
    assert_eq!(past.next, BTreeMap::from([(0, 10)]));
    assert_eq!(past.marks, BTreeMap::from([(0, batch[2].mark())]));
}

#[test]
fn each_partition_moves_past_its_highest_offset_in_any_order() {
    // Partitions interleaved, and one out of order within its partition.
    let batch = [
        message(1, 41, "p1-41"),
        message(0, 5, "p0-5"),
        message(1, 40, "p1-40"),
        message(0, 3, "p0-3"),
        message(2, 0, "p2-0"),
    ];
    let past = Checkpoint::after(&batch);
    assert_eq!(past.next, BTreeMap::from([(0, 6), (1, 42), (2, 1)]));
    assert_eq!(
        past.marks,
        BTreeMap::from([
            (0, batch[1].mark()),
            (1, batch[0].mark()),
            (2, batch[4].mark()),
        ])
    );
}

#[test]
fn the_mark_names_the_message_not_only_its_offset() {
    let one = Checkpoint::after(&[message(0, 3, "one")]);
    let other = Checkpoint::after(&[message(0, 3, "other")]);
    assert_eq!(one.next, other.next);
    assert_ne!(one.marks, other.marks);
    assert!(one.marks[&0].starts_with(MARK_PREFIX));
}

#[test]
fn at_carries_offsets_without_marks() {
    let at = Checkpoint::at(BTreeMap::from([(0, 12)]));
    assert_eq!(at.next, BTreeMap::from([(0, 12)]));
    assert!(at.marks.is_empty());
}
