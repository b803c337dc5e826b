//! The adaptive controller fed simulated answers: no clock, no sleeps.

use std::time::Duration;

use super::*;

const MS: Duration = Duration::from_millis(1);

/// Feeds full windows of answers taking `rtt`, with the limit used.
fn windows(a: &mut Aimd, n: usize, rtt: Duration, outcome: Outcome) {
    for _ in 0..n {
        let limit = a.limit();
        for _ in 0..limit {
            a.sample(rtt, outcome, limit);
        }
    }
}

#[test]
fn slow_start_doubles_then_stops_at_the_maximum() {
    let mut a = Aimd::new(START);
    windows(&mut a, 1, 2 * MS, Outcome::Done);
    assert_eq!(a.limit(), 2 * START);
    windows(&mut a, 20, 2 * MS, Outcome::Done);
    assert_eq!(a.limit(), MAX);
}

#[test]
fn an_overload_answer_cuts_the_limit_at_once_and_ends_slow_start() {
    let mut a = Aimd::new(100);
    a.sample(2 * MS, Outcome::Done, 100);
    assert_eq!(a.sample(2 * MS, Outcome::Overload, 100), 90);
    // After slow start, clean full windows climb half the way back to
    // where it backed off each...
    windows(&mut a, 1, 2 * MS, Outcome::Done);
    assert_eq!(a.limit(), 95);
    windows(&mut a, 3, 2 * MS, Outcome::Done);
    assert_eq!(a.limit(), 99);
    // ...then probe past it by 1, 2, 4, … a window.
    windows(&mut a, 1, 2 * MS, Outcome::Done);
    assert_eq!(a.limit(), 100);
    windows(&mut a, 4, 2 * MS, Outcome::Done);
    assert_eq!(a.limit(), 100 + 1 + 2 + 4 + 8);
}

#[test]
fn the_probe_is_at_most_an_eighth_of_the_limit_and_starts_over_after_a_back_off() {
    let mut a = Aimd::new(40);
    a.sample(MS, Outcome::Overload, 40); // 36, backed off at 40
    windows(&mut a, 3, MS, Outcome::Done); // 38, 39, 40
    assert_eq!(a.limit(), 40);
    // Probes of 1, 2, 4, then an eighth of the limit: 5 (of 43 and 47).
    windows(&mut a, 5, MS, Outcome::Done);
    assert_eq!(a.limit(), 40 + 1 + 2 + 4 + 5 + 5);
    let high = a.limit();
    a.sample(MS, Outcome::Overload, high); // 51
    windows(&mut a, 4, MS, Outcome::Done); // 54, 55, 56, 57
    let back = a.limit();
    windows(&mut a, 1, MS, Outcome::Done);
    assert_eq!(back, high, "climbed back to where it backed off");
    assert_eq!(a.limit(), high + 1, "the probe starts at one again");
}

#[test]
fn a_round_trip_well_above_the_baseline_backs_off_and_a_steady_one_grows() {
    let mut a = Aimd::new(64);
    a.sample(MS, Outcome::Overload, 64); // leave slow start: 57
    windows(&mut a, 5, 2 * MS, Outcome::Done);
    let settled = a.limit();
    assert!(settled > 64, "{settled}");
    // The store slows down (queueing): the round trip triples and the
    // writes in flight carry no more than before.
    windows(&mut a, 1, 6 * MS, Outcome::Done);
    assert_eq!(a.limit(), (settled as f64 * DECREASE) as usize);
    // Above the baseline (3.6 ms now) but not well above it: it grows.
    let before = a.limit();
    windows(&mut a, 1, 5 * MS, Outcome::Done);
    assert!(a.limit() > before);
}

#[test]
fn a_longer_round_trip_that_carries_more_writes_per_second_is_not_queueing() {
    // A saturated cluster: twice the writes in flight take a round trip
    // 1.6 times as long (well above the baseline), yet carry a quarter
    // more per second. Slow start goes on.
    let mut a = Aimd::new(64);
    windows(&mut a, 1, 10 * MS, Outcome::Done);
    assert_eq!(a.limit(), 128);
    windows(&mut a, 1, 16 * MS, Outcome::Done);
    assert_eq!(a.limit(), 256, "backed off though throughput rose");
    // Twice the writes for twice the round trip (no more per second): a
    // queue, and it backs off.
    windows(&mut a, 1, 32 * MS, Outcome::Done);
    assert_eq!(a.limit(), (256.0 * DECREASE) as usize);
}

#[test]
fn light_load_does_not_lower_the_usual_rate() {
    let mut a = Aimd::new(64);
    a.sample(MS, Outcome::Overload, 64); // leave slow start
    // Full windows at 10 ms: about 6,000 writes/s.
    windows(&mut a, 3, 10 * MS, Outcome::Done);
    let limit = a.limit();
    // Light load: two in flight at 2 ms (1,000 writes/s), the limit unused.
    for _ in 0..10 * limit {
        a.sample(2 * MS, Outcome::Done, 2);
    }
    assert_eq!(a.limit(), limit);
    // Then the pipe fills and the round trip goes to 20 ms: three times
    // what the light windows carried, but half what the store carries. A
    // queue: it backs off.
    windows(&mut a, 1, 20 * MS, Outcome::Done);
    assert_eq!(a.limit(), (limit as f64 * DECREASE) as usize);
}

#[test]
fn backing_off_again_before_climbing_back_aims_lower() {
    let mut a = Aimd::new(100);
    a.sample(MS, Outcome::Overload, 100); // 90, backed off at 100
    a.sample(MS, Outcome::Overload, 90); // 81; aims at 85, not 100
    windows(&mut a, 3, MS, Outcome::Done); // 83, 84, 85
    assert_eq!(a.limit(), 85);
    windows(&mut a, 1, MS, Outcome::Done);
    assert_eq!(a.limit(), 86, "probing from 85");
}

#[test]
fn a_noisy_round_trip_is_not_read_as_queueing_but_a_lasting_rise_is() {
    let mut a = Aimd::new(64);
    a.sample(MS, Outcome::Overload, 64); // leave slow start: 57
    // Round trips that swing between 2 and 5 ms, window by window (a busy
    // machine). Once the swings are learnt (a few windows), each 5 ms
    // window, 2.5 times the 2 ms ones, no longer backs off: the limit only
    // grows (up to the maximum).
    for _ in 0..5 {
        windows(&mut a, 1, 2 * MS, Outcome::Done);
        windows(&mut a, 1, 5 * MS, Outcome::Done);
    }
    for _ in 0..10 {
        let before = a.limit();
        windows(&mut a, 1, 2 * MS, Outcome::Done);
        windows(&mut a, 1, 5 * MS, Outcome::Done);
        assert!(
            a.limit() > before || a.limit() == MAX,
            "backed off on noise: {a:?}"
        );
    }
    // A rise far beyond the swings backs off.
    let before = a.limit();
    windows(&mut a, 1, 40 * MS, Outcome::Done);
    assert_eq!(a.limit(), (before as f64 * DECREASE) as usize);
}

#[test]
fn repeated_overload_drives_it_to_the_minimum_and_no_lower() {
    let mut a = Aimd::new(MAX);
    for _ in 0..200 {
        a.sample(100 * MS, Outcome::Overload, 1);
    }
    assert_eq!(a.limit(), MIN);
    // It recovers once the store answers again, probing by 1, 1, 1 (an
    // eighth of so small a limit is less than one).
    windows(&mut a, 3, 2 * MS, Outcome::Done);
    assert_eq!(a.limit(), MIN + 3);
    // Past 16 the probe grows with the limit: 20 windows more add more
    // than 20.
    windows(&mut a, 20, 2 * MS, Outcome::Done);
    assert!(a.limit() > MIN + 3 + 20, "{}", a.limit());
}

#[test]
fn a_limit_that_is_not_used_does_not_grow() {
    let mut a = Aimd::new(32);
    // Light load: only 4 writes in flight, answers fast.
    for _ in 0..1000 {
        a.sample(MS, Outcome::Done, 4);
    }
    assert_eq!(a.limit(), 32);
}

#[tokio::test]
async fn a_fixed_limiter_never_exceeds_its_limit_and_never_adapts() {
    let l = Limiter::new(Some(2));
    assert!(!l.adaptive());
    let first = l.acquire().await;
    let second = l.acquire().await;
    let third = l.acquire();
    tokio::pin!(third);
    assert!(
        futures::poll!(third.as_mut()).is_pending(),
        "a third slot under a limit of 2"
    );
    first.done(Outcome::Overload);
    let third = third.await;
    assert_eq!(l.limit(), 2);
    drop((second, third));
    assert_eq!(l.lock().in_flight, 0);
}

#[tokio::test]
async fn an_adaptive_limiter_starts_at_the_start_and_learns_from_answers() {
    let l = Limiter::new(None);
    assert!(l.adaptive());
    assert_eq!(l.limit(), START);
    l.acquire().await.done(Outcome::Overload);
    assert_eq!(l.limit(), (START as f64 * DECREASE) as usize);
    // A slot dropped without an answer is given back and teaches nothing.
    drop(l.acquire().await);
    assert_eq!(l.limit(), (START as f64 * DECREASE) as usize);
    assert_eq!(l.lock().in_flight, 0);
}
