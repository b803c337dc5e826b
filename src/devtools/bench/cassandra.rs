//! The Cassandra sink beside a raw driver loop: the same `scylla` session
//! settings, the same prepared INSERT and concurrency, the same rows.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use scylla::client::session_builder::SessionBuilder;
use scylla::statement::Consistency;

use super::{BATCH, Measure, end_to_end_with, measure, median, rate};
use crate::pipeline::shape::Dataset;
use crate::pipeline::sink::cassandra::insert_values;
use crate::pipeline::sink::{CassandraSinkConfig, Rows, Sink, SinkConfig};
use crate::pipeline::source::Generator;
use crate::record::{ROW_COLUMNS, Row};

/// Rounds of the write-limit sweep; the median of each setting is kept.
const SWEEP_ROUNDS: usize = 3;
/// The raw loop's requests in flight, and the fixed limits the sweep sets
/// beside the default adaptive one.
const RAW_CONCURRENCY: usize = 256;
const SWEEP: [usize; 4] = [16, 64, 256, 512];

pub async fn bench(
    node: &str,
    kafka: Option<&str>,
    n: u64,
    sweep: bool,
) -> anyhow::Result<(Vec<Measure>, Option<u64>)> {
    let stamp = crate::pipeline::source::generator::random_seed();
    eprintln!("bench cassandra: {n} rows, node {node}");
    let g = Generator::new("bench-c", vec![], None);
    let rows: Vec<Row> = (0..n)
        .map(|k| g.user(k).to_row())
        .collect::<Result<_, _>>()
        .context("generated users flatten")?;
    let config = |ks: &str, concurrency: Option<usize>| sink_config(node, ks, concurrency);
    // The sink alone, in the processor's batches, one after the other: at
    // its default write limit (adaptive), then (with `sweep`) at fixed ones.
    let sink_alone = |ks: String, concurrency: Option<usize>| {
        let (config, rows) = (config(&ks, concurrency), &rows);
        async move {
            let sink = Sink::open(&SinkConfig::Cassandra(config), &Dataset::Users).await?;
            let t = Instant::now();
            for chunk in rows.chunks(BATCH) {
                sink.write(Rows::Users(Arc::from(chunk.to_vec()))).await?;
            }
            anyhow::Ok((t.elapsed(), sink.concurrency_limit()))
        }
    };
    // Each setting in a fresh keyspace, the settings interleaved round by
    // round (so a slow spell of the machine falls on all of them) and each
    // round starting one setting later (so none always runs first, on the
    // coldest node), the median round of each kept.
    let settings: Vec<Option<usize>> = std::iter::once(None)
        .chain(SWEEP.iter().copied().map(Some).filter(|_| sweep))
        .collect();
    let rounds = if sweep { SWEEP_ROUNDS } else { 1 };
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); settings.len()];
    for round in 0..rounds {
        for k in 0..settings.len() {
            let i = (k + round) % settings.len();
            let c = settings[i];
            let label = c.map_or("adaptive".to_owned(), |c| c.to_string());
            let ks = format!("bench_sink_{label}_{round}_{stamp}");
            let (d, limit) = sink_alone(ks, c).await?;
            eprintln!(
                "bench cassandra: round {}, the sink alone, limit {label}: {:.0} rows/s{}",
                round + 1,
                rate(n, d),
                if c.is_none() {
                    format!(" (at {} in the end)", limit.unwrap_or(0))
                } else {
                    String::new()
                }
            );
            times[i].push(d);
        }
    }
    let median_of = |i: usize| median(&mut times[i].clone());
    let sink_time = median_of(0);
    let mut fixed: Vec<(usize, Duration)> = settings
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.map(|c| (c, median_of(i))))
        .collect();

    // The raw ceiling: the same insert through the driver, all rows in
    // one stream, 256 requests in flight.
    let ks_raw = format!("bench_raw_{stamp}");
    Sink::open(
        &SinkConfig::Cassandra(config(&ks_raw, None)),
        &Dataset::Users,
    )
    .await?; // creates the table
    let session = SessionBuilder::new()
        .known_nodes(node.split(','))
        .build()
        .await?;
    let mut insert = session
        .prepare(format!(
            "INSERT INTO {ks_raw}.created_users ({}) VALUES ({})",
            ROW_COLUMNS.join(", "),
            vec!["?"; ROW_COLUMNS.len()].join(", ")
        ))
        .await?;
    insert.set_consistency(Consistency::LocalQuorum);
    insert.set_is_idempotent(true);
    let t = Instant::now();
    let failures = futures::stream::iter(rows.iter())
        .map(|r| {
            let (session, insert) = (&session, &insert);
            async move {
                session
                    .execute_unpaged(insert, insert_values(r))
                    .await
                    .is_err()
            }
        })
        .buffer_unordered(RAW_CONCURRENCY)
        .filter(|failed| std::future::ready(*failed))
        .count()
        .await;
    let raw_time = t.elapsed();
    anyhow::ensure!(failures == 0, "{failures} raw inserts failed");

    let mut out = vec![measure(
        "cassandra sink (batches of 1000, adaptive limit)",
        rate(n, sink_time),
        "raw scylla insert loop, 256 in flight",
        rate(n, raw_time),
    )];
    if sweep {
        let adaptive = sink_time;
        let &(best, best_time) = fixed.iter().min_by_key(|(_, d)| *d).expect("one at least");
        eprintln!("bench cassandra: the best fixed limit was {best}");
        out.push(measure(
            "cassandra sink, adaptive limit",
            rate(n, adaptive),
            "the sink, best fixed limit",
            rate(n, best_time),
        ));
        fixed.sort();
        for (c, d) in fixed {
            out.push(measure(
                format!("cassandra sink, fixed limit {c}"),
                rate(n, d),
                "the sink, adaptive limit",
                rate(n, adaptive),
            ));
        }
    }
    let mut rss = None;
    if let Some(brokers) = kafka {
        let name = format!("bench_path_{stamp}");
        let log = format!("kafka://{brokers}/{name}");
        let sink_url = format!("cassandra://{node}/{name}.created_users");
        let (d, r) =
            end_to_end_with(n, &["--log", &log, "--group", &name, "--sink", &sink_url]).await?;
        rss = r;
        out.push(measure(
            "gen → Kafka → Cassandra (run)",
            rate(n, d),
            "the cassandra sink alone",
            rate(n, sink_time),
        ));
    }
    Ok((out, rss))
}

/// The sink on `node` into `keyspace.created_users` (SimpleStrategy, RF 1),
/// with `concurrency` (`None`: adaptive).
pub(super) fn sink_config(
    node: &str,
    keyspace: &str,
    concurrency: Option<usize>,
) -> CassandraSinkConfig {
    CassandraSinkConfig {
        nodes: node.split(',').map(str::to_owned).collect(),
        keyspace: keyspace.to_owned(),
        table: "created_users".into(),
        user: None,
        password: None,
        replication: BTreeMap::from([
            ("class".to_owned(), "SimpleStrategy".to_owned()),
            ("replication_factor".to_owned(), "1".to_owned()),
        ]),
        consistency: Consistency::LocalQuorum,
        concurrency,
        tls_ca_file: None,
        local_datacenter: None,
    }
}
