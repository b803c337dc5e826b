//! Tools for developing and measuring tributary, not stages of a pipeline:
//! `tributary mock-api` (`mock_api.rs`, the Random User API as a local
//! server with injected faults) and `tributary bench` (`bench/`, throughput
//! beside ceilings, one file per target). The pipeline never imports them
//! (test code aside).

pub(crate) mod bench;
pub mod mock_api;
