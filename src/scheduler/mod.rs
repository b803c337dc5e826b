//! When ingestion runs happen: schedules (`schedule.rs`), the run history
//! and job state shared by `serve` and the `jobs` commands (`history.rs`),
//! retries of a run (`runner.rs`), the loop inside `serve` that starts runs
//! (`run_loop.rs`), and how that loop is doing (`health.rs`).

pub mod health;
pub mod history;
pub mod run_loop;
pub mod runner;
pub mod schedule;

pub use health::{Health, SchedulerState};
pub use history::{History, RunCounts, RunRecord, RunState};
pub use run_loop::{JobConfig, SERVE_BUSY_TIMEOUT, Scheduler, Target};
pub use schedule::{Schedule, ScheduleError};
