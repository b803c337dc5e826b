//! tributary: the Random User → Kafka → Spark → Cassandra pipeline of the
//! seed stack, as one program.
//!
//! A run pulls users from a [`pipeline::source`] (the built-in generator or a
//! Random User-compatible HTTP API), flattens each into the seed stack's
//! 12-field [`record::Row`] keyed by the user's stable `login.uuid`, appends
//! them to a durable [`pipeline::log`], and a [`pipeline::processor`] moves
//! them in batches into a [`pipeline::sink`] with idempotent upserts,
//! committing log offsets only after the sink acknowledged. Anything that
//! cannot become a row is kept as a dead letter with its bytes and reason.
//!
//! ```text
//!  cli ─► config ─► app ─► pipeline: source ─► ingest ─► log ─► processor ─► sink
//!                                                    └─► dead letters ◄─┘
//! ```
//!
//! `main.rs` only parses flags, calls [`app::main`] and maps errors to exit
//! codes. See ARCHITECTURE.md for the code map and invariants.

pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod devtools;
pub mod embedded;
pub mod pipeline;
pub mod record;
pub mod scheduler;
pub mod telemetry;
pub mod web;
