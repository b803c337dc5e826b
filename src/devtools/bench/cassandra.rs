//! The Cassandra sink beside a raw driver loop: the same `scylla` session
//! settings, the same prepared INSERT and concurrency, the same rows.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use futures::StreamExt;
use scylla::client::session_builder::SessionBuilder;
use scylla::statement::Consistency;

use super::{BATCH, Measure, end_to_end_with, measure, rate};
use crate::pipeline::shape::Dataset;
use crate::pipeline::sink::cassandra::insert_values;
use crate::pipeline::sink::{CassandraSinkConfig, Rows, Sink, SinkConfig};
use crate::pipeline::source::Generator;
use crate::record::{ROW_COLUMNS, Row};

/// The raw loop's requests in flight: the sink's default limit.
const CONCURRENCY: usize = crate::config::DEFAULT_CASSANDRA_CONCURRENCY;

pub async fn bench(
    node: &str,
    kafka: Option<&str>,
    n: u64,
    sweep: bool,
) -> anyhow::Result<(Vec<Measure>, Option<u64>)> {
    let stamp = crate::pipeline::source::generator::random_seed();
    eprintln!("bench cassandra: {n} rows, concurrency {CONCURRENCY}, node {node}");
    let g = Generator::new("bench-c", vec![], None);
    let rows: Vec<Row> = (0..n)
        .map(|k| g.user(k).to_row())
        .collect::<Result<_, _>>()
        .context("generated users flatten")?;
    let config = |ks: &str, concurrency: Option<usize>| CassandraSinkConfig {
        nodes: node.split(',').map(str::to_owned).collect(),
        keyspace: ks.to_owned(),
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
    };
    // The sink alone, in the processor's batches, one after the other: at
    // its default write limit (a fixed 256), then (with `sweep`) with the
    // adaptive limit and other fixed ones.
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
    let (sink_time, _) = sink_alone(format!("bench_sink_{stamp}"), Some(CONCURRENCY)).await?;
    eprintln!(
        "bench cassandra: the sink alone, limit {CONCURRENCY}: {:.0} rows/s",
        rate(n, sink_time)
    );
    let mut fixed = vec![(CONCURRENCY, sink_time)];
    let mut adaptive = None;
    if sweep {
        let (d, limit) = sink_alone(format!("bench_sink_adaptive_{stamp}"), None).await?;
        eprintln!(
            "bench cassandra: the sink alone, adaptive: {:.0} rows/s, limit {} at the end",
            rate(n, d),
            limit.unwrap_or(0)
        );
        adaptive = Some(d);
        for c in [16, 64, 512] {
            let (d, _) = sink_alone(format!("bench_sink_{c}_{stamp}"), Some(c)).await?;
            eprintln!(
                "bench cassandra: the sink alone, limit {c}: {:.0} rows/s",
                rate(n, d)
            );
            fixed.push((c, d));
        }
    }

    // The raw ceiling: the same insert through the driver, all rows in
    // one stream with the same bound on requests in flight.
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
        .buffer_unordered(CONCURRENCY)
        .filter(|failed| std::future::ready(*failed))
        .count()
        .await;
    let raw_time = t.elapsed();
    anyhow::ensure!(failures == 0, "{failures} raw inserts failed");

    let mut out = vec![measure(
        "cassandra sink (batches of 1000, default limit 256)",
        rate(n, sink_time),
        "raw scylla insert loop",
        rate(n, raw_time),
    )];
    if let Some(adaptive) = adaptive {
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
            "the cassandra sink alone (limit 256)",
            rate(n, sink_time),
        ));
    }
    Ok((out, rss))
}
