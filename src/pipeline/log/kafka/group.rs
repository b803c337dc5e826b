//! Who reads a topic: a consumer group's members and the partitions each
//! holds, from Kafka's DescribeGroups (librdkafka's group list). Owns the
//! parser of a member's assignment as the consumer protocol encodes it,
//! written by hand and bounded by its input (the bytes come from the
//! broker, which passes on what each member's leader chose).

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};

use super::kafka_err;
use crate::pipeline::log::LogError;

/// How long a look at the group's members may take: the status command and
/// the dashboard's probe wait no longer.
pub const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(10);

/// A consumer group as its coordinator describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupMembers {
    /// Kafka's name for the group's state: `Stable`, `PreparingRebalance`,
    /// `CompletingRebalance`, `Empty`, `Dead`; empty when no such group.
    pub state: String,
    pub members: Vec<GroupMember>,
}

/// One member of a consumer group and the partitions of the topic it holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GroupMember {
    pub member_id: String,
    /// The `client.id` the member set (`tributary` unless configured).
    pub client_id: String,
    /// The member's address as the broker saw it.
    pub host: String,
    /// Partitions of the topic it holds, ascending.
    pub partitions: Vec<i32>,
    /// Why its assignment could not be read, when it could not.
    pub error: Option<String>,
}

impl GroupMembers {
    /// The member holding `partition`, if any.
    pub fn owner(&self, partition: i32) -> Option<&GroupMember> {
        self.members
            .iter()
            .find(|m| m.partitions.binary_search(&partition).is_ok())
    }
}

/// Why an assignment's bytes do not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssignmentError {
    #[error("assignment cut short at byte {0}")]
    Truncated(usize),
    #[error("assignment has a negative length at byte {0}")]
    NegativeLength(usize),
    #[error("assignment names a topic that is not UTF-8")]
    TopicNotUtf8,
}

/// A member's assignment: per topic, the partitions it holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Assignment {
    pub version: i16,
    pub topics: Vec<(String, Vec<i32>)>,
}

impl Assignment {
    /// The partitions of `topic` it holds, ascending.
    pub fn partitions_of(&self, topic: &str) -> Vec<i32> {
        let mut out: Vec<i32> = self
            .topics
            .iter()
            .filter(|(t, _)| t == topic)
            .flat_map(|(_, ps)| ps.iter().copied())
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// Reads big-endian fields from a byte slice, never past its end.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], AssignmentError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or(AssignmentError::Truncated(self.at))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn i16(&mut self) -> Result<i16, AssignmentError> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Result<i32, AssignmentError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// An array's length, checked against what is left: each element takes
    /// at least `min_size` bytes, so a forged count cannot make the caller
    /// reserve or loop beyond the input.
    fn count(&mut self, min_size: usize) -> Result<usize, AssignmentError> {
        let at = self.at;
        let n = self.i32()?;
        let n = usize::try_from(n).map_err(|_| AssignmentError::NegativeLength(at))?;
        let left = self.bytes.len() - self.at;
        if n.saturating_mul(min_size) > left {
            return Err(AssignmentError::Truncated(self.at));
        }
        Ok(n)
    }
}

/// Parses the consumer protocol's assignment: version (i16), then
/// `[topic (i16 length + UTF-8), [partition (i32)]]`, then user data
/// (i32 length, -1 for none). Versions 0 to 3 share this layout; bytes
/// after the user data (fields of a newer version) are ignored. An empty
/// input is an empty assignment (a member the leader gave nothing).
pub fn parse_assignment(bytes: &[u8]) -> Result<Assignment, AssignmentError> {
    if bytes.is_empty() {
        return Ok(Assignment::default());
    }
    let mut c = Cursor { bytes, at: 0 };
    let version = c.i16()?;
    // A topic entry is at least a 2-byte name length and a 4-byte count.
    let topics = c.count(6)?;
    let mut out = Vec::with_capacity(topics);
    for _ in 0..topics {
        let at = c.at;
        let len = c.i16()?;
        let len = usize::try_from(len).map_err(|_| AssignmentError::NegativeLength(at))?;
        let name = std::str::from_utf8(c.take(len)?)
            .map_err(|_| AssignmentError::TopicNotUtf8)?
            .to_owned();
        let n = c.count(4)?;
        let mut partitions = Vec::with_capacity(n);
        for _ in 0..n {
            partitions.push(c.i32()?);
        }
        out.push((name, partitions));
    }
    // User data: present in every version; its bytes are not ours to read.
    let at = c.at;
    let user = c.i32()?;
    if user < -1 {
        return Err(AssignmentError::NegativeLength(at));
    }
    if user > 0 {
        c.take(user as usize)?;
    }
    Ok(Assignment {
        version,
        topics: out,
    })
}

/// The members of `group` and the partitions of `topic` each holds, as
/// the group's coordinator describes them. A group no member has joined
/// (or that never existed) has no members; a member whose assignment does
/// not parse is listed with no partitions and the reason.
pub fn describe(
    consumer: &BaseConsumer,
    group: &str,
    topic: &str,
) -> Result<GroupMembers, LogError> {
    let list = consumer
        .fetch_group_list(Some(group), DESCRIBE_TIMEOUT)
        .map_err(|e| kafka_err("cannot describe the consumer group", e))?;
    let Some(info) = list.groups().iter().find(|g| g.name() == group) else {
        return Ok(GroupMembers::default());
    };
    let mut members: Vec<GroupMember> = info
        .members()
        .iter()
        .map(|m| {
            let (partitions, error) = match parse_assignment(m.assignment().unwrap_or_default()) {
                Ok(a) => (a.partitions_of(topic), None),
                Err(e) => (Vec::new(), Some(e.to_string())),
            };
            GroupMember {
                member_id: m.id().to_owned(),
                client_id: m.client_id().to_owned(),
                host: m.client_host().trim_start_matches('/').to_owned(),
                partitions,
                error,
            }
        })
        .collect();
    members.sort_by(|a, b| {
        (a.partitions.first(), &a.member_id).cmp(&(b.partitions.first(), &b.member_id))
    });
    Ok(GroupMembers {
        state: info.state().to_owned(),
        members,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encodes an assignment as a Java consumer would.
    fn encode(version: i16, topics: &[(&str, &[i32])], user: Option<&[u8]>) -> Vec<u8> {
        let mut b = version.to_be_bytes().to_vec();
        b.extend((topics.len() as i32).to_be_bytes());
        for (t, ps) in topics {
            b.extend((t.len() as i16).to_be_bytes());
            b.extend(t.as_bytes());
            b.extend((ps.len() as i32).to_be_bytes());
            for p in *ps {
                b.extend(p.to_be_bytes());
            }
        }
        match user {
            None => b.extend((-1i32).to_be_bytes()),
            Some(u) => {
                b.extend((u.len() as i32).to_be_bytes());
                b.extend(u);
            }
        }
        b
    }

    #[test]
    fn parses_topics_partitions_and_skips_user_data() {
        let bytes = encode(1, &[("t", &[4, 0, 2]), ("t.dlq", &[0])], Some(b"xyz"));
        let a = parse_assignment(&bytes).unwrap();
        assert_eq!(a.version, 1);
        assert_eq!(
            a.topics,
            vec![("t".into(), vec![4, 0, 2]), ("t.dlq".into(), vec![0])]
        );
        assert_eq!(a.partitions_of("t"), vec![0, 2, 4]);
        assert_eq!(a.partitions_of("other"), Vec::<i32>::new());
        let none = encode(0, &[("t", &[1])], None);
        assert_eq!(parse_assignment(&none).unwrap().partitions_of("t"), vec![1]);
    }

    #[test]
    fn an_empty_assignment_is_no_partitions() {
        assert_eq!(parse_assignment(&[]).unwrap(), Assignment::default());
        let bytes = encode(3, &[], None);
        assert!(parse_assignment(&bytes).unwrap().topics.is_empty());
    }

    #[test]
    fn bytes_of_a_newer_version_after_the_user_data_are_ignored() {
        let mut bytes = encode(4, &[("t", &[0, 1])], Some(b""));
        bytes.extend([0, 0, 0, 7, 9, 9]);
        assert_eq!(
            parse_assignment(&bytes).unwrap().partitions_of("t"),
            vec![0, 1]
        );
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let bytes = encode(1, &[("topic", &[0, 1, 2]), ("b", &[5])], Some(b"data"));
        for cut in 1..bytes.len() {
            assert!(
                parse_assignment(&bytes[..cut]).is_err(),
                "{cut} of {} bytes parsed",
                bytes.len()
            );
        }
    }

    #[test]
    fn forged_lengths_are_refused_before_anything_is_reserved() {
        // Two billion topics in a 10-byte input.
        let mut b = 0i16.to_be_bytes().to_vec();
        b.extend(i32::MAX.to_be_bytes());
        b.extend([0, 0, 0, 0]);
        assert!(matches!(
            parse_assignment(&b),
            Err(AssignmentError::Truncated(_))
        ));
        // A negative topic count, name length, partition count, user data.
        let mut b = 0i16.to_be_bytes().to_vec();
        b.extend((-5i32).to_be_bytes());
        assert_eq!(
            parse_assignment(&b),
            Err(AssignmentError::NegativeLength(2))
        );
        let mut b = encode(0, &[("t", &[1])], None);
        b[6] = 0xff; // the name length's high byte: negative
        assert!(matches!(
            parse_assignment(&b),
            Err(AssignmentError::NegativeLength(6))
        ));
        let mut b = encode(0, &[("t", &[])], None);
        let n = b.len();
        b[n - 8..n - 4].copy_from_slice(&(-2i32).to_be_bytes());
        assert!(matches!(
            parse_assignment(&b),
            Err(AssignmentError::NegativeLength(_))
        ));
        let mut b = encode(0, &[], None);
        let n = b.len();
        b[n - 4..].copy_from_slice(&(-2i32).to_be_bytes());
        assert!(matches!(
            parse_assignment(&b),
            Err(AssignmentError::NegativeLength(_))
        ));
        // A name that is not UTF-8.
        let mut b = encode(0, &[("t", &[1])], None);
        b[8] = 0xff;
        assert_eq!(parse_assignment(&b), Err(AssignmentError::TopicNotUtf8));
    }

    #[test]
    fn garbage_never_panics() {
        // A deterministic walk over garbage of every length up to 64, and
        // valid encodings with one byte flipped.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 0..64 {
            for _ in 0..200 {
                let bytes: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect();
                let _ = parse_assignment(&bytes);
            }
        }
        let good = encode(2, &[("topic", &[0, 3]), ("x", &[1])], Some(b"ud"));
        for i in 0..good.len() {
            for bit in 0..8 {
                let mut b = good.clone();
                b[i] ^= 1 << bit;
                if let Ok(a) = parse_assignment(&b) {
                    let parts: usize = a.topics.iter().map(|(_, p)| p.len()).sum();
                    assert!(parts * 4 <= b.len());
                }
            }
        }
    }
}
