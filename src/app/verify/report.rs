//! What `verify` prints: the problems that fail it, one sentence each, and
//! the reconciliation as text or JSON, with the ids listed from the ledger.

use std::io::Write;
use std::time::Instant;

use super::Scope;
use super::ledger::{self, Counts, IdList, Ledger};
use crate::cli::VerifyArgs;

/// What makes the verification fail, one sentence each.
pub(super) fn problems(scope: &Scope, c: &Counts, args: &VerifyArgs) -> Vec<String> {
    let mut out = Vec::new();
    if c.log_messages == 0 {
        let why = match &scope.log_absent {
            Some(why) => format!(" ({why})"),
            None => String::new(),
        };
        if scope.log_absent.is_some() || c.store_rows > 0 {
            out.push(format!(
                "the log holds no messages: nothing to verify against{why}; the store has {}",
                plural(c.store_rows, "row", "rows")
            ));
        }
    }
    if c.missing > 0 {
        out.push(format!(
            "{} of the log {} missing from the store",
            plural(c.missing, "id", "ids"),
            if c.missing == 1 { "is" } else { "are" }
        ));
    }
    if c.undecodable_lost > 0 {
        out.push(format!(
            "{} with no id {} no dead letter",
            plural(c.undecodable_lost, "message", "messages"),
            if c.undecodable_lost == 1 {
                "has"
            } else {
                "have"
            }
        ));
    }
    let pending = c.pending + c.undecodable_pending;
    if pending > 0 && !args.allow_pending {
        out.push(format!(
            "{} past group {}'s commit, not processed yet \
             (run `tributary process`, or pass --allow-pending)",
            plural(pending, "message is", "messages are"),
            scope.group
        ));
    }
    if args.strict && c.extra > 0 {
        out.push(format!(
            "{} of the store {} not in the log",
            plural(c.extra, "id", "ids"),
            if c.extra == 1 { "is" } else { "are" }
        ));
    }
    out
}

/// `1 row`, `2 rows`.
pub(super) fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

pub(super) fn rows(c: &Counts, strict: bool) -> Vec<(&'static str, u64)> {
    vec![
        ("log messages", c.log_messages),
        ("distinct ids in the log", c.log_ids),
        ("  repeats (same id, same payload)", c.repeats),
        ("  conflicting ids (other payloads)", c.conflicting_ids),
        ("present in the store", c.present),
        ("dead-lettered (accounted for)", c.dead_lettered),
        ("MISSING from the store", c.missing),
        ("not processed yet", c.pending),
        ("messages with no id", c.undecodable),
        ("  with a dead letter", c.undecodable_dead_lettered),
        ("  without one (dropped)", c.undecodable_lost),
        ("  not processed yet", c.undecodable_pending),
        ("rows in the store", c.store_rows),
        (
            if strict {
                "store ids not in the log"
            } else {
                "store ids not in the log (--strict)"
            },
            c.extra,
        ),
    ]
}

type Out<'a> = std::io::BufWriter<std::io::StdoutLock<'a>>;

pub(super) fn write_text(
    out: &mut Out<'_>,
    ledger: &Ledger,
    scope: &Scope,
    c: &Counts,
    problems: &[String],
    args: &VerifyArgs,
    started: Instant,
) -> Result<(), ledger::ListError> {
    writeln!(out, "log    {}", scope.log)?;
    if let Some(why) = &scope.log_absent {
        writeln!(out, "       {why}")?;
    }
    for r in &scope.ranges {
        let committed = scope
            .committed
            .iter()
            .find(|p| p.partition == r.partition)
            .map_or(0, |p| p.committed);
        writeln!(
            out,
            "       partition {}: offsets {}..{}, group {} committed {}",
            r.partition, r.low, r.end, scope.group, committed
        )?;
    }
    if scope.lost_to_retention > 0 {
        writeln!(
            out,
            "       {} dropped by retention before the group read them (lost, not checkable)",
            plural(scope.lost_to_retention, "message was", "messages were")
        )?;
    }
    writeln!(out, "store  {}", scope.store)?;
    if let Some(why) = &scope.store_absent {
        writeln!(out, "       {why}: read as empty")?;
    }
    writeln!(out)?;
    let cells: Vec<Vec<String>> = rows(c, args.strict)
        .into_iter()
        .map(|(name, n)| vec![name.to_owned(), n.to_string()])
        .collect();
    write!(
        out,
        "{}",
        crate::app::inspect::table(&["check", "count"], &cells)
    )?;

    let heading = |out: &mut Out<'_>, what: &str, n: u64| -> std::io::Result<()> {
        let shown = (args.show as u64).min(n);
        let more = if shown < n {
            format!(", first {shown}; --show or --json for more")
        } else {
            String::new()
        };
        writeln!(out, "\n{what} ({n}{more}):")
    };
    for (list, what, n) in [
        (IdList::Missing, "missing ids", c.missing),
        (IdList::Pending, "ids not processed yet", c.pending),
    ] {
        if n > 0 && args.show > 0 {
            heading(out, what, n)?;
            ledger.ids(list, Some(args.show), |i| {
                writeln!(
                    out,
                    "  {}  partition {} offset {}",
                    i.id, i.partition, i.offset
                )
            })?;
        }
    }
    if c.undecodable > 0 && args.show > 0 {
        heading(out, "messages with no id", c.undecodable)?;
        ledger.undecodable(Some(args.show), |u| {
            let letter = match (u.dead_letter, u.committed) {
                (Some(id), _) => format!("dead letter #{id}"),
                (None, true) => "NO dead letter".to_owned(),
                (None, false) => "not processed yet".to_owned(),
            };
            writeln!(
                out,
                "  partition {} offset {}  {letter}",
                u.partition, u.offset
            )
        })?;
    }
    if args.strict && c.extra > 0 && args.show > 0 {
        heading(out, "store ids not in the log", c.extra)?;
        ledger.extra(Some(args.show), |id| writeln!(out, "  {id}"))?;
    }
    writeln!(out)?;
    let rss = crate::pipeline::stats::peak_rss_bytes()
        .map(|b| format!(", peak RSS {:.1} MiB", b as f64 / (1 << 20) as f64))
        .unwrap_or_default();
    let took = format!("{:.2}s{rss}", started.elapsed().as_secs_f64());
    if problems.is_empty() {
        let what = if c.log_messages == 0 {
            "the log and the store are both empty".to_owned()
        } else {
            format!(
                "every id of the log is in the store or has a dead letter ({} ids)",
                c.log_ids
            )
        };
        writeln!(out, "verify: OK: {what} in {took}")?;
    } else {
        writeln!(out, "verify: FAILED in {took}")?;
        for p in problems {
            writeln!(out, "  - {p}")?;
        }
    }
    Ok(())
}

/// One JSON object; the lists are streamed from the ledger, so memory stays
/// flat however many ids they hold.
pub(super) fn write_json(
    out: &mut Out<'_>,
    ledger: &Ledger,
    scope: &Scope,
    c: &Counts,
    problems: &[String],
    args: &VerifyArgs,
    started: Instant,
) -> Result<(), ledger::ListError> {
    let partitions: Vec<_> = scope
        .ranges
        .iter()
        .map(|r| {
            let committed = scope
                .committed
                .iter()
                .find(|p| p.partition == r.partition)
                .map_or(0, |p| p.committed);
            serde_json::json!({
                "partition": r.partition,
                "low": r.low,
                "end": r.end,
                "committed": committed,
            })
        })
        .collect();
    let mut head = serde_json::to_value(c).expect("counts serialise");
    let obj = head.as_object_mut().expect("an object");
    obj.insert("ok".into(), problems.is_empty().into());
    obj.insert("problems".into(), problems.into());
    obj.insert("strict".into(), args.strict.into());
    obj.insert(
        "log".into(),
        serde_json::json!({
            "describe": scope.log,
            "absent": scope.log_absent,
            "group": scope.group,
            "partitions": partitions,
            "lost_to_retention": scope.lost_to_retention,
        }),
    );
    obj.insert(
        "store".into(),
        serde_json::json!({ "describe": scope.store, "absent": scope.store_absent }),
    );
    let head = head.to_string();
    // The object without its closing brace; the lists follow.
    out.write_all(&head.as_bytes()[..head.len() - 1])?;
    let list = |out: &mut Out<'_>, name: &str| -> std::io::Result<Separator> {
        write!(out, ",\"{name}\":[")?;
        Ok(Separator(false))
    };
    let mut sep = list(out, "missing_ids")?;
    ledger.ids(IdList::Missing, None, |i| {
        sep.next(out)?;
        serde_json::to_writer(&mut *out, &i).map_err(std::io::Error::from)
    })?;
    write!(out, "]")?;
    let mut sep = list(out, "pending_ids")?;
    ledger.ids(IdList::Pending, None, |i| {
        sep.next(out)?;
        serde_json::to_writer(&mut *out, &i).map_err(std::io::Error::from)
    })?;
    write!(out, "]")?;
    let mut sep = list(out, "undecodable_messages")?;
    ledger.undecodable(None, |u| {
        sep.next(out)?;
        serde_json::to_writer(&mut *out, &u).map_err(std::io::Error::from)
    })?;
    write!(out, "]")?;
    if args.strict {
        let mut sep = list(out, "extra_ids")?;
        ledger.extra(None, |id| {
            sep.next(out)?;
            serde_json::to_writer(&mut *out, &id).map_err(std::io::Error::from)
        })?;
        write!(out, "]")?;
    }
    let tail = serde_json::json!({
        "elapsed_secs": started.elapsed().as_secs_f64(),
        "peak_rss_bytes": crate::pipeline::stats::peak_rss_bytes(),
    })
    .to_string();
    writeln!(out, ",{}", &tail[1..])?;
    Ok(())
}

/// Writes `,` before every element but the first.
pub(super) struct Separator(bool);

impl Separator {
    fn next(&mut self, out: &mut impl Write) -> std::io::Result<()> {
        if self.0 {
            out.write_all(b",")?;
        }
        self.0 = true;
        Ok(())
    }
}
