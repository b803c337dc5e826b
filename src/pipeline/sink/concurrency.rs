//! How many Cassandra writes are in flight at once: a fixed number (an
//! explicit `[sink.cassandra] concurrency`), or, by default, a limit that
//! adapts: it backs off multiplicatively, as TCP's congestion window or
//! Vector's adaptive request concurrency do, and grows back the way BIC-TCP
//! does, so that a store that paused now and then is soon used in full
//! again.
//!
//! The adaptive limit looks at each write's round-trip time and outcome, a
//! window at a time (as many answers as the limit, about one round trip of
//! a full pipe). A window backs off (the limit times [`DECREASE`]) when it
//! holds an overload answer (overloaded, timeout, unavailable, a broken
//! connection), or when its mean round trip is well above the moving
//! baseline (by more than half of it and by more than
//! [`RTT_DEVIATION_SCALE`] times its usual deviation) and it did not carry
//! [`RATE_GAIN`] more writes per second than both the usual and the last
//! full window (Little's law: writes in flight over round trip; a longer
//! round trip that bought throughput is a busier store, not a queue). Any
//! other window that used the whole limit grows it: until the first
//! back-off it doubles (slow start); below the limit of the last back-off
//! it climbs half the way back there; from there on it probes by 1, 2, 4, …
//! (at most an eighth of the limit) per window. A back-off before the climb
//! got back aims lower next time (BIC's fast convergence). The limit stays
//! within [`MIN`]..=[`MAX`]. The controller reads no clock: it is fed
//! samples, so its behaviour is a function of them.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// The adaptive limit's bounds and start.
pub const MIN: usize = 1;
pub const MAX: usize = 512;
pub const START: usize = 16;
/// The factor a window with overload or a rising round trip applies.
pub const DECREASE: f64 = 0.9;
/// A window's mean round trip counts as rising when it is above the
/// baseline by more than this share of the baseline...
pub const RTT_RISE: f64 = 0.5;
/// ...and by more than this many times the round trip's usual deviation
/// from the baseline (as Vector's `rtt_deviation_scale`): on a busy machine
/// the round trip is noisy, and noise is not queueing.
pub const RTT_DEVIATION_SCALE: f64 = 2.5;
/// A rising round trip is not queueing when the window also carried this
/// share more writes per second than the usual (Little's law: in flight
/// over round trip): on a saturated cluster more writes in flight lengthen
/// the round trip and still raise throughput.
pub const RATE_GAIN: f64 = 0.1;
/// The weight of the newest window in the baseline (an EWMA).
const BASELINE_WEIGHT: f64 = 0.4;

/// What a write's answer says about the store's load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Stored, or refused for reasons of the row's own (no load signal
    /// beyond its round trip).
    Done,
    /// Overloaded, timed out, unavailable, connection lost: back off.
    Overload,
}

/// The adaptive controller: samples in, limit out.
#[derive(Debug, Clone)]
pub struct Aimd {
    limit: usize,
    slow_start: bool,
    /// EWMA of the windows' mean round trips, in seconds.
    baseline: Option<f64>,
    /// EWMA of the windows' absolute deviation from the baseline, seconds.
    deviation: f64,
    /// EWMA of the windows' writes per second (mean in flight over mean
    /// round trip).
    rate: Option<f64>,
    /// The last clean window's writes per second.
    last_rate: f64,
    /// The limit when it last backed off: the last one known too high,
    /// which growth climbs back towards.
    backed_off_at: Option<usize>,
    /// What the next growth at or above `backed_off_at` adds: doubles with
    /// each such growth, up to an eighth of the limit (at least one); one
    /// again after a back-off.
    probe: usize,
    window: Window,
}

#[derive(Debug, Clone, Default)]
struct Window {
    samples: usize,
    rtt_sum: f64,
    /// The writes in flight at each send, summed.
    in_flight_sum: usize,
    overload: bool,
    /// The most writes in flight seen while the window was open.
    peak_in_flight: usize,
}

impl Default for Aimd {
    fn default() -> Self {
        Aimd::new(START)
    }
}

impl Aimd {
    pub fn new(start: usize) -> Aimd {
        Aimd {
            limit: start.clamp(MIN, MAX),
            slow_start: true,
            baseline: None,
            deviation: 0.0,
            rate: None,
            last_rate: 0.0,
            backed_off_at: None,
            probe: 1,
            window: Window::default(),
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    fn back_off(&mut self) {
        self.slow_start = false;
        self.probe = 1;
        // Backing off again before climbing back to the last back-off: the
        // store's capacity fell, so aim lower than where this happened too
        // (BIC's fast convergence); repeated overload drives it down.
        self.backed_off_at = Some(match self.backed_off_at {
            Some(high) if self.limit < high => {
                (self.limit as f64 * (1.0 + DECREASE) / 2.0).floor() as usize
            }
            _ => self.limit,
        });
        self.limit = ((self.limit as f64 * DECREASE).floor() as usize).clamp(MIN, MAX);
    }

    fn grow(&mut self) {
        let step = match self.backed_off_at {
            _ if self.slow_start => self.limit,
            // Half the way back to where it last backed off (a pause of the
            // store, or the knee of its curve): the limit between is known
            // to have worked.
            Some(high) if self.limit < high => ((high - self.limit) / 2).max(1),
            // Past it: probe, slowly at first, faster while it keeps working.
            _ => {
                let step = self.probe;
                self.probe = (self.probe * 2).min((self.limit / 8).max(1));
                step
            }
        };
        self.limit = (self.limit + step).clamp(MIN, MAX);
    }

    /// One write's answer: its round trip, what it says, and how many
    /// writes were in flight when it was sent (itself included). Returns
    /// the limit after it.
    pub fn sample(&mut self, rtt: Duration, outcome: Outcome, in_flight: usize) -> usize {
        let w = &mut self.window;
        w.samples += 1;
        w.rtt_sum += rtt.as_secs_f64();
        w.in_flight_sum += in_flight;
        w.overload |= outcome == Outcome::Overload;
        w.peak_in_flight = w.peak_in_flight.max(in_flight);
        // An overload answer acts at once; otherwise a window is as many
        // answers as the limit.
        if w.overload || w.samples >= self.limit {
            self.close_window();
        }
        self.limit
    }

    fn close_window(&mut self) {
        let w = std::mem::take(&mut self.window);
        let samples = w.samples.max(1) as f64;
        let mean = w.rtt_sum / samples;
        let rate = w.in_flight_sum as f64 / samples / mean.max(1e-6);
        // Only a limit that was used says anything about a larger one, and
        // only a full pipe about what the store can carry.
        let used = w.peak_in_flight >= self.limit;
        let rising = self
            .baseline
            .is_some_and(|b| mean - b > (b * RTT_RISE).max(self.deviation * RTT_DEVIATION_SCALE));
        // Against the usual rate and the last window's, whichever is higher:
        // the usual lags behind a rate that has just risen.
        let paid = self
            .rate
            .is_some_and(|r| rate > r.max(self.last_rate) * (1.0 + RATE_GAIN));
        tracing::trace!(
            limit = self.limit,
            rtt_ms = mean * 1e3,
            baseline_ms = self.baseline.unwrap_or_default() * 1e3,
            in_flight = w.in_flight_sum as f64 / samples,
            rate,
            usual_rate = self.rate.unwrap_or_default(),
            rising,
            paid,
            overload = w.overload,
            "cassandra write window"
        );
        if w.overload || (rising && !paid) {
            self.back_off();
            tracing::debug!(
                limit = self.limit,
                rtt_ms = mean * 1e3,
                baseline_ms = self.baseline.unwrap_or_default() * 1e3,
                "cassandra write limit lowered ({})",
                if w.overload {
                    "an overload answer"
                } else {
                    "the round trip rose"
                }
            );
        } else if used {
            self.grow();
        }
        // A window that did not use its limit (light load) would make the
        // next busy one look faster than usual.
        if !w.overload && used {
            self.last_rate = rate;
            self.rate = Some(self.rate.map_or(rate, |r| r + BASELINE_WEIGHT * (rate - r)));
        }
        // An overload answer's round trip (a timeout's) says nothing about
        // the normal round trip.
        if !w.overload {
            self.baseline = Some(match self.baseline {
                None => mean,
                Some(b) => {
                    self.deviation += BASELINE_WEIGHT * ((mean - b).abs() - self.deviation);
                    b + BASELINE_WEIGHT * (mean - b)
                }
            });
        }
    }
}

/// Writes in flight under a limit, shared by every write of one sink (the
/// processor writes several batches at once; the limit is the sink's).
#[derive(Debug)]
pub struct Limiter {
    state: Mutex<State>,
    freed: Notify,
}

#[derive(Debug)]
struct State {
    /// `None`: the fixed limit.
    aimd: Option<Aimd>,
    fixed: usize,
    in_flight: usize,
}

impl State {
    fn limit(&self) -> usize {
        self.aimd.as_ref().map_or(self.fixed, Aimd::limit)
    }
}

/// A write's place under the limit; [`Slot::done`] gives it back with the
/// write's answer.
pub struct Slot {
    limiter: Arc<Limiter>,
    sent: Instant,
    in_flight: usize,
    /// Set by [`Slot::done`]; a slot dropped without an answer (its write
    /// was abandoned) is given back without teaching the limit anything.
    outcome: Option<Outcome>,
}

impl Limiter {
    /// `Some(n)`: at most `n`, always; `None`: adaptive.
    pub fn new(fixed: Option<usize>) -> Arc<Limiter> {
        Arc::new(Limiter {
            state: Mutex::new(State {
                aimd: fixed.is_none().then(Aimd::default),
                fixed: fixed.unwrap_or(0).max(1),
                in_flight: 0,
            }),
            freed: Notify::new(),
        })
    }

    pub fn limit(&self) -> usize {
        self.lock().limit()
    }

    pub fn adaptive(&self) -> bool {
        self.lock().aimd.is_some()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for a place under the limit.
    pub async fn acquire(self: &Arc<Self>) -> Slot {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            {
                let mut s = self.lock();
                if s.in_flight < s.limit() {
                    s.in_flight += 1;
                    return Slot {
                        limiter: self.clone(),
                        sent: Instant::now(),
                        in_flight: s.in_flight,
                        outcome: None,
                    };
                }
            }
            freed.await;
        }
    }
}

impl Slot {
    /// The write answered: the slot is free, and an adaptive limit learns
    /// from the answer.
    pub fn done(mut self, outcome: Outcome) {
        self.outcome = Some(outcome);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let rtt = self.sent.elapsed();
        {
            let mut s = self.limiter.lock();
            s.in_flight -= 1;
            let in_flight = self.in_flight;
            if let (Some(aimd), Some(outcome)) = (s.aimd.as_mut(), self.outcome) {
                aimd.sample(rtt, outcome, in_flight);
            }
        }
        self.limiter.freed.notify_waiters();
    }
}

#[cfg(test)]
mod tests;
