//! The transform stage of a user pipeline beside the built-in typed path, on
//! the same Random User API bodies (format 1.4, pages of 5,000 users).
//!
//! - ours: parse the body to a `serde_json::Value`, take `results`, and per
//!   record run the compiled `examples/randomuser.vrl`, check the result
//!   against the seed table's schema (`id uuid`, 11 `text` columns), and make
//!   the log message and key (`table::encode`, `table::key`) — what ingest
//!   does with each record of a user pipeline;
//! - ceiling: `decode_page` + `ApiUser::to_row` + `Row::to_json` + `Row::key`.
//!
//! A stage that rejects records would make fewer rows, so both sides count
//! theirs and the bench fails unless every user became a row on both, and
//! the first page's messages and keys are compared before timing. The time
//! per record of each step of ours (parse, program, check, encode + key),
//! each timed over whole pages, goes to stderr on one line, with two other
//! ways to parse the users for comparison.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;
use serde_json::value::RawValue;
use vrl::value::Value as VrlValue;

use super::{Measure, best, measure, rate};
use crate::devtools::mock_api::page_body;
use crate::pipeline::source::MAX_RESULTS_PER_REQUEST;
use crate::pipeline::table::{Cell, TableSchema, UnknownFields, check, encode, key};
use crate::pipeline::transform::{Origin, Transform};
use crate::record::{ROW_COLUMNS, decode_page};

const PROGRAM: &str = include_str!("../../../examples/randomuser.vrl");

/// The seed table `created_users` as a declared schema.
fn seed_schema() -> anyhow::Result<TableSchema> {
    let columns = ROW_COLUMNS.map(|c| (c, if c == "id" { "uuid" } else { "text" }));
    Ok(TableSchema::new(columns, &["id"], &[] as &[&str])?)
}

/// The users of one body, as ingest sees them.
fn results(body: &[u8]) -> anyhow::Result<Vec<Value>> {
    let mut page: Value = serde_json::from_slice(body)?;
    match page.get_mut("results").map(Value::take) {
        Some(Value::Array(users)) => Ok(users),
        _ => bail!("a page without a results array"),
    }
}

/// The transformed record, checked into a typed row.
fn typed(schema: &TableSchema, out: &Value) -> Option<Vec<Cell>> {
    check(schema, out.as_object()?, UnknownFields::Reject).ok()
}

pub(super) fn bench(n: u64) -> anyhow::Result<Vec<Measure>> {
    let pages: Vec<Vec<u8>> = (1..=n.div_ceil(MAX_RESULTS_PER_REQUEST))
        .map(|p| {
            let q: HashMap<String, String> = [
                ("results", MAX_RESULTS_PER_REQUEST.to_string()),
                ("seed", "bench".to_owned()),
                ("page", p.to_string()),
            ]
            .map(|(k, v)| (k.to_owned(), v))
            .into();
            page_body("1.4", &q, false, 0.0)
        })
        .collect();
    let users = pages.len() as u64 * MAX_RESULTS_PER_REQUEST;
    let schema = seed_schema()?;
    let origin = Origin {
        file: "examples/randomuser.vrl".into(),
        line: 1,
        column: 1,
    };
    let mut transform = Transform::compile(PROGRAM, &origin)?;

    // The two sides make the same messages under the same keys.
    let built_in = decode_page(&pages[0])?;
    for (user, typed_user) in results(&pages[0])?.into_iter().zip(&built_in.users) {
        let row = typed_user.to_row()?;
        let out = transform.run(user).map_err(anyhow::Error::msg)?;
        let cells = typed(&schema, &out).context("a transformed user is not a row")?;
        let ours: Value = serde_json::from_slice(&encode(&schema, &cells))?;
        let theirs: Value = serde_json::from_slice(&row.to_json())?;
        if ours != theirs || key(&schema, &cells) != row.key() {
            bail!("the transform stage and the built-in path differ: {ours} vs {theirs}");
        }
    }

    let mut ours_rows = 0;
    let ours = best(|| {
        let t = Instant::now();
        ours_rows = 0;
        for body in &pages {
            for user in results(body)? {
                let Ok(out) = transform.run(user) else {
                    continue;
                };
                let Some(cells) = typed(&schema, &out) else {
                    continue;
                };
                black_box((encode(&schema, &cells), key(&schema, &cells)));
                ours_rows += 1;
            }
        }
        Ok(t.elapsed())
    })?;
    let mut ceiling_rows = 0;
    let ceiling = best(|| {
        let t = Instant::now();
        ceiling_rows = 0;
        for body in &pages {
            for user in &decode_page(body)?.users {
                let Ok(row) = user.to_row() else {
                    continue;
                };
                black_box((row.to_json(), row.key()));
                ceiling_rows += 1;
            }
        }
        Ok(t.elapsed())
    })?;
    if ours_rows != ceiling_rows || ceiling_rows != users {
        bail!(
            "of {users} users, the transform stage made {ours_rows} rows and the built-in path {ceiling_rows}"
        );
    }

    let step = steps(&pages, &schema, &mut transform)?;
    let micros = |d: Duration| d.as_secs_f64() * 1e6 / users as f64;
    eprintln!(
        "bench transform: µs a record: parse the page to Value {:.2} (each user from the page's raw slices {:.2}, \
         straight into VRL values {:.2}), run {:.2} (of which Value into VRL value {:.2}), check {:.2}, \
         encode + key {:.2}; built-in typed path {:.2}",
        micros(step.parse),
        micros(step.parse_each),
        micros(step.parse_vrl),
        micros(step.run),
        micros(step.into_vrl),
        micros(step.check),
        micros(step.encode),
        micros(ceiling),
    );

    Ok(vec![measure(
        "transform stage (VRL)",
        rate(users, ours),
        "built-in typed path",
        rate(users, ceiling),
    )])
}

/// The time of each step of ours over all pages, best of the rounds, and
/// two other ways to parse the same users. Each step includes freeing what
/// it consumed or made and no later step needs.
#[derive(Default)]
struct Steps {
    /// The page to a `Value` tree, `results` taken (what ours does).
    parse: Duration,
    /// The page to raw slices, then each user to a `Value` on its own (one
    /// user's tree alive at a time).
    parse_each: Duration,
    /// The page to raw slices, then each user straight into VRL's value.
    parse_vrl: Duration,
    /// `Transform::run`: into VRL's value, the program, back to JSON.
    run: Duration,
    /// The first part of `run` alone.
    into_vrl: Duration,
    check: Duration,
    encode: Duration,
}

#[derive(serde::Deserialize)]
struct RawPage<'a> {
    #[serde(borrow)]
    results: Vec<&'a RawValue>,
}

fn steps(
    pages: &[Vec<u8>],
    schema: &TableSchema,
    transform: &mut Transform,
) -> anyhow::Result<Steps> {
    let timed = |total: &mut Duration, t: Instant| *total += t.elapsed();
    let mut fastest = Steps {
        parse: Duration::MAX,
        parse_each: Duration::MAX,
        parse_vrl: Duration::MAX,
        run: Duration::MAX,
        into_vrl: Duration::MAX,
        check: Duration::MAX,
        encode: Duration::MAX,
    };
    for _ in 0..super::ROUNDS {
        let mut round = Steps::default();
        for body in pages {
            let t = Instant::now();
            drop(black_box(results(body)?));
            timed(&mut round.parse, t);

            let t = Instant::now();
            let raw: RawPage<'_> = serde_json::from_slice(body)?;
            for user in raw.results {
                drop(black_box(serde_json::from_str::<Value>(user.get())?));
            }
            timed(&mut round.parse_each, t);

            let t = Instant::now();
            let raw: RawPage<'_> = serde_json::from_slice(body)?;
            for user in raw.results {
                drop(black_box(serde_json::from_str::<VrlValue>(user.get())?));
            }
            timed(&mut round.parse_vrl, t);

            let records = results(body)?;
            let t = Instant::now();
            for record in records {
                drop(black_box(serde_json::from_value::<VrlValue>(record)?));
            }
            timed(&mut round.into_vrl, t);

            let records = results(body)?;
            let t = Instant::now();
            let outs: Vec<Value> = records
                .into_iter()
                .filter_map(|r| transform.run(r).ok())
                .collect();
            timed(&mut round.run, t);

            let t = Instant::now();
            let rows: Vec<Vec<Cell>> = outs.iter().filter_map(|o| typed(schema, o)).collect();
            timed(&mut round.check, t);

            let t = Instant::now();
            for cells in &rows {
                black_box((encode(schema, cells), key(schema, cells)));
            }
            timed(&mut round.encode, t);
        }
        for (b, r) in [
            (&mut fastest.parse, round.parse),
            (&mut fastest.parse_each, round.parse_each),
            (&mut fastest.parse_vrl, round.parse_vrl),
            (&mut fastest.run, round.run),
            (&mut fastest.into_vrl, round.into_vrl),
            (&mut fastest.check, round.check),
            (&mut fastest.encode, round.encode),
        ] {
            *b = (*b).min(r);
        }
    }
    Ok(fastest)
}
