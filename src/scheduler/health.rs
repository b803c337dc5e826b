//! How the scheduler inside `serve` is doing, shared with the web side:
//! starting, running, waiting for the run history to be usable again, or
//! stopped. `/readyz` is ready only while it is running.

use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::clock::now_ms;

/// The scheduler's state as last reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum SchedulerState {
    /// Recovering runs left by the previous process, planning the slots.
    Starting,
    Running,
    /// The run history cannot be written (another process holds its lock);
    /// the scheduler retries with back-off until it can.
    Retrying {
        error: String,
        since_ms: i64,
    },
    /// The scheduler ended (shutdown, or an error it cannot wait out).
    Stopped {
        error: Option<String>,
    },
}

impl SchedulerState {
    /// Why `/readyz` says not ready, in words fit for anyone to read (no
    /// paths, no error text): `None` when running.
    pub fn not_ready_because(&self) -> Option<&'static str> {
        match self {
            SchedulerState::Running => None,
            SchedulerState::Starting => Some("scheduler starting"),
            SchedulerState::Retrying { .. } => {
                Some("scheduler waiting for the run history (locked by another process)")
            }
            SchedulerState::Stopped { .. } => Some("scheduler stopped"),
        }
    }
}

/// A shared handle on the scheduler's state. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Health(Arc<Mutex<SchedulerState>>);

impl Default for Health {
    fn default() -> Self {
        Health(Arc::new(Mutex::new(SchedulerState::Starting)))
    }
}

impl Health {
    pub fn get(&self) -> SchedulerState {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(super) fn set(&self, state: SchedulerState) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = state;
    }

    /// Marks the history unusable for now; keeps the first failure's time.
    /// Returns whether this starts a new spell of failures.
    pub(super) fn retrying(&self, error: String) -> bool {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match &mut *s {
            SchedulerState::Retrying { error: e, .. } => {
                *e = error;
                false
            }
            SchedulerState::Stopped { .. } => false,
            _ => {
                *s = SchedulerState::Retrying {
                    error,
                    since_ms: now_ms(),
                };
                true
            }
        }
    }

    /// The history answered: back to running if it was retrying. Returns
    /// when the failures had started, if they had.
    pub(super) fn recovered(&self) -> Option<i64> {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match &*s {
            SchedulerState::Retrying { since_ms, .. } => {
                let since = *since_ms;
                *s = SchedulerState::Running;
                Some(since)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_while_running_and_a_spell_of_failures_keeps_its_start() {
        let h = Health::default();
        assert!(h.get().not_ready_because().is_some());
        h.set(SchedulerState::Running);
        assert_eq!(h.get().not_ready_because(), None);
        assert!(h.retrying("database is locked".into()));
        let SchedulerState::Retrying { since_ms, .. } = h.get() else {
            panic!("{:?}", h.get())
        };
        assert!(!h.retrying("still locked".into()));
        assert_eq!(
            h.get(),
            SchedulerState::Retrying {
                error: "still locked".into(),
                since_ms
            }
        );
        assert!(h.get().not_ready_because().unwrap().contains("locked"));
        assert_eq!(h.recovered(), Some(since_ms));
        assert_eq!(h.get(), SchedulerState::Running);
        assert_eq!(h.recovered(), None);
        h.set(SchedulerState::Stopped { error: None });
        assert!(
            !h.retrying("late".into()),
            "a stopped scheduler stays stopped"
        );
        assert_eq!(h.get().not_ready_because(), Some("scheduler stopped"));
    }
}
