//! `tributary bench --scale-out N --kafka … --cassandra …`: processors
//! 1, 2, … N in one consumer group draining the same topic of
//! [`PARTITIONS`] partitions into Cassandra. The ceiling of each step is
//! one processor in the same run: the ratio says what adding processors
//! buys on this machine and this cluster.
//!
//! The topic is written once (`tributary ingest`); each step reads it with
//! a group and a keyspace of its own, replicated to every node up to three
//! per datacenter. A step's time runs from spawning its processors to the
//! last one's exit (each drains the partitions it holds, then stops), and
//! the rows in its table are counted after.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;

use super::{rate, succeeded, tempdir, tributary};

/// Partitions of the bench topic: enough for three processors two each.
const PARTITIONS: u32 = 6;

pub async fn scale_out(brokers: &str, node: &str, n: u64, max: u32) -> anyhow::Result<()> {
    let stamp = crate::pipeline::source::generator::random_seed();
    let session = SessionBuilder::new()
        .known_nodes(node.split(','))
        .build()
        .await
        .with_context(|| format!("cannot connect to Cassandra at {node}"))?;
    let datacenters = datacenters(&session);
    let nodes: u32 = datacenters.values().sum();
    let replication: Vec<String> = datacenters
        .iter()
        .map(|(dc, k)| format!("{} = {}", toml::Value::String(dc.clone()), k.min(&3)))
        .collect();
    let dir = tempdir()?;
    let config = dir.join("bench.toml");
    std::fs::write(
        &config,
        format!(
            "[log.kafka]\npartitions = {PARTITIONS}\n\
             [sink.cassandra]\ndatacenters = {{ {} }}\n",
            replication.join(", ")
        ),
    )
    .context("cannot write the bench config")?;
    let topic = format!("bench_scale_{stamp}");
    let log = format!("kafka://{brokers}/{topic}");
    eprintln!(
        "bench scale-out: {n} records on {PARTITIONS} partitions, {nodes} Cassandra node(s) \
         (replicas {}), processors 1…{max}",
        replication.join(", ")
    );
    let t = Instant::now();
    let mut ingest = tributary(Some(&config), &dir.join("ingest"));
    ingest
        .args([
            "ingest",
            "--json",
            "--records",
            &n.to_string(),
            "--seed",
            "bench",
        ])
        .args(["--log", &log]);
    succeeded(ingest, "ingest").await?;
    eprintln!("  topic written in {:.1} s", t.elapsed().as_secs_f64());

    println!("| processors | rows/s | vs one | peak RSS per processor (MiB) |");
    println!("| ---: | ---: | ---: | --- |");
    let mut one = None;
    for p in 1..=max {
        let name = format!("bench_scale_{stamp}_{p}");
        let sink = format!("cassandra://{node}/{name}.created_users");
        let (elapsed, rss) = step(&config, &dir, &log, &name, &sink, p).await?;
        let stored = count(&session, &name).await?;
        if stored != n {
            bail!("{p} processor(s) stored {stored} of {n} rows");
        }
        let per_sec = rate(n, elapsed);
        let base = *one.get_or_insert(per_sec);
        let rss: Vec<String> = rss
            .iter()
            .map(|b| format!("{:.1}", *b as f64 / (1 << 20) as f64))
            .collect();
        println!(
            "| {p} | {per_sec:.0} | {:.0} % | {} |",
            100.0 * per_sec / base,
            rss.join(", ")
        );
    }
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

/// Nodes per datacenter, as the driver sees the cluster.
fn datacenters(session: &Session) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    for node in session.get_cluster_state().get_nodes_info() {
        let dc = node
            .datacenter
            .clone()
            .unwrap_or_else(|| "datacenter1".into());
        *out.entry(dc).or_default() += 1;
    }
    out
}

/// `p` processors in group `name`, each until it has drained what it holds;
/// the time until the last exits and each one's peak RSS.
async fn step(
    config: &Path,
    dir: &Path,
    log: &str,
    name: &str,
    sink: &str,
    p: u32,
) -> anyhow::Result<(Duration, Vec<u64>)> {
    let t = Instant::now();
    let children: Vec<_> = (0..p)
        .map(|i| {
            tributary(Some(config), &dir.join(format!("{name}-{i}")))
                .args(["process", "--json", "--log", log, "--group", name])
                .args(["--sink", sink])
                .output()
        })
        .collect();
    let outputs = futures::future::join_all(children).await;
    let elapsed = t.elapsed();
    let mut rss = Vec::new();
    for out in outputs {
        let out = out.context("cannot start tributary process")?;
        if !out.status.success() {
            bail!(
                "tributary process failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout)
            .context("tributary process printed no JSON summary")?;
        rss.push(summary["peak_rss_bytes"].as_u64().unwrap_or_default());
    }
    Ok((elapsed, rss))
}

async fn count(session: &Session, keyspace: &str) -> anyhow::Result<u64> {
    let rows = session
        .query_unpaged(format!("SELECT count(*) FROM {keyspace}.created_users"), ())
        .await
        .context("cannot count the stored rows")?
        .into_rows_result()?;
    let (n,): (i64,) = rows.first_row()?;
    Ok(n as u64)
}
