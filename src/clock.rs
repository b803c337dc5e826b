//! Wall-clock time, behind one seam. What decides by the wall clock (the
//! scheduler's slots) holds a [`Clock`], so a test can set the time instead
//! of waiting for it. What only stamps or compares a time asks [`now_ms`].

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};

/// Milliseconds since the Unix epoch, from the system clock (0 before it).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// The time source of a component: the system clock, or one a test moves.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    #[default]
    System,
    /// Stands still until its [`ManualClock`] moves it.
    Manual(Arc<AtomicI64>),
}

impl Clock {
    /// A clock at `start_ms` that only `handle` moves.
    pub fn manual(start_ms: i64) -> (Clock, ManualClock) {
        let at = Arc::new(AtomicI64::new(start_ms));
        (Clock::Manual(at.clone()), ManualClock(at))
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        match self {
            Clock::System => now_ms(),
            Clock::Manual(at) => at.load(Ordering::SeqCst),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Manual(at) => {
                DateTime::from_timestamp_millis(at.load(Ordering::SeqCst)).unwrap_or_default()
            }
        }
    }
}

/// Moves a [`Clock::manual`].
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }

    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_millis() as i64, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let (clock, hand) = Clock::manual(1_000);
        assert_eq!(clock.now_ms(), 1_000);
        hand.advance(Duration::from_millis(250));
        assert_eq!(clock.now_ms(), 1_250);
        assert_eq!(clock.now().timestamp_millis(), 1_250);
        hand.set(86_400_000);
        assert_eq!(clock.now().to_rfc3339(), "1970-01-02T00:00:00+00:00");
    }

    #[test]
    fn the_system_clock_agrees_with_chrono() {
        let clock = Clock::System;
        let (a, b) = (clock.now_ms(), Utc::now().timestamp_millis());
        assert!((b - a).abs() < 5_000, "{a} vs {b}");
        assert!(a > 1_700_000_000_000, "{a}");
    }
}
