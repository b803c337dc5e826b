//! When ingestion runs happen: schedules (`schedule.rs`). The job runner,
//! run history and `serve` build on it (issue 7, in progress).

pub mod schedule;

pub use schedule::{Schedule, ScheduleError};
