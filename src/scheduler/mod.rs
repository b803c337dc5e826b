//! When ingestion runs happen: schedules (`schedule.rs`), the run history
//! and job state shared by `serve` and the `jobs` commands (`history.rs`),
//! and retries of a run (`runner.rs`). The loop of `serve` builds on these
//! (issue 7, in progress).

pub mod history;
pub mod runner;
pub mod schedule;

pub use history::{History, RunCounts, RunRecord, RunState};
pub use schedule::{Schedule, ScheduleError};
