//! Black-box tests of the `tributary` binary: one integration-test binary,
//! a module per area. Each test works in its own temporary data dir.

mod browser;
mod cassandra;
mod cli;
mod cluster;
mod crash;
mod dashboard;
mod dashboard_browse;
mod deploy;
mod fuzz;
mod hostile_source;
mod hostile_web;
mod http_source;
mod kafka;
mod kafka_faults;
mod kafka_scale;
mod ops;
mod overlap;
mod pipelines;
mod pipelines_hostile;
mod poison;
mod reliability;
mod scheduler_faults;
mod serve;
mod support;
mod tidy;
mod transport_security;
mod verify;
