//! One scheduled run: attempts with a per-attempt timeout, retried after a
//! delay up to the configured number of times. Generic over what an attempt
//! does, so the policy is tested on a paused clock.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::warn;

/// How a job's runs are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts after the first, at most.
    pub retries: u32,
    pub retry_delay: Duration,
    /// An attempt still going after this fails (and may be retried).
    pub timeout: Option<Duration>,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome<T> {
    /// Attempts made, 1-based.
    pub attempts: u32,
    pub result: Result<T, String>,
}

/// What a run with retries is at, told as it happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Attempt n starts.
    Starts(u32),
    /// Attempt n failed with this error; the next starts after the delay.
    Failed(u32, String, Duration),
}

/// Runs `attempt(n)` (n from `first`, 1 for a new run) until it succeeds or
/// the retries are spent: attempt `retries + 1` is the last, so a run that
/// goes on from an interrupted one (first > 1) has the attempts left.
/// `on_step` is awaited (outside an attempt's timeout) before each attempt
/// starts, and as soon as one fails that will be retried, before the
/// delay. `stop` cuts a retry delay short: the last error is returned and
/// no further attempt made (an attempt itself watches for `stop`).
pub async fn run_with_retries<T, F, Fut, A, AFut>(
    policy: RetryPolicy,
    first: u32,
    stop: &CancellationToken,
    mut on_step: A,
    mut attempt: F,
) -> Outcome<T>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, String>>,
    A: FnMut(Step) -> AFut,
    AFut: Future<Output = ()>,
{
    let mut n = first.max(1) - 1;
    loop {
        n += 1;
        on_step(Step::Starts(n)).await;
        let result = match policy.timeout {
            Some(t) => match tokio::time::timeout(t, attempt(n)).await {
                Ok(r) => r,
                Err(_) => Err(format!("timed out after {}", humantime::format_duration(t))),
            },
            None => attempt(n).await,
        };
        match result {
            Ok(v) => {
                return Outcome {
                    attempts: n,
                    result: Ok(v),
                };
            }
            Err(e) if n <= policy.retries && !stop.is_cancelled() => {
                warn!(attempt = n, error = %e, delay_ms = policy.retry_delay.as_millis() as u64, "run failed, retrying");
                on_step(Step::Failed(n, e.clone(), policy.retry_delay)).await;
                tokio::select! {
                    _ = stop.cancelled() => {
                        return Outcome {
                            attempts: n,
                            result: Err(e),
                        };
                    }
                    _ = tokio::time::sleep(policy.retry_delay) => {}
                }
            }
            Err(e) => {
                return Outcome {
                    attempts: n,
                    result: Err(e),
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    #[tokio::test(start_paused = true)]
    async fn retries_the_configured_number_of_times_with_the_delay() {
        let started = Instant::now();
        let mut starts = Vec::new();
        let mut failed = Vec::new();
        let policy = RetryPolicy {
            retries: 3,
            retry_delay: Duration::from_secs(30),
            timeout: None,
        };
        let out: Outcome<()> = run_with_retries(
            policy,
            1,
            &CancellationToken::new(),
            |step| {
                match step {
                    Step::Starts(_) => starts.push(started.elapsed()),
                    Step::Failed(n, e, _) => failed.push((started.elapsed(), n, e)),
                }
                std::future::ready(())
            },
            |n| async move { Err(format!("attempt {n} failed")) },
        )
        .await;
        assert_eq!(out.attempts, 4);
        assert_eq!(out.result, Err("attempt 4 failed".into()));
        let secs: Vec<u64> = starts.iter().map(|d| d.as_secs()).collect();
        assert_eq!(secs, [0, 30, 60, 90]);
        // A failure that is retried is told when it happens, not after
        // the delay; the last one is the outcome.
        let failed: Vec<(u64, u32, &str)> = failed
            .iter()
            .map(|(at, n, e)| (at.as_secs(), *n, e.as_str()))
            .collect();
        assert_eq!(
            failed,
            [
                (0, 1, "attempt 1 failed"),
                (30, 2, "attempt 2 failed"),
                (60, 3, "attempt 3 failed")
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_going_on_from_an_interrupted_one_has_only_the_attempts_left() {
        let policy = RetryPolicy {
            retries: 2,
            retry_delay: Duration::from_secs(1),
            timeout: None,
        };
        let mut seen = Vec::new();
        let out: Outcome<()> = run_with_retries(
            policy,
            2,
            &CancellationToken::new(),
            |step| {
                if let Step::Starts(n) = step {
                    seen.push(n);
                }
                std::future::ready(())
            },
            |n| async move { Err(format!("attempt {n} failed")) },
        )
        .await;
        assert_eq!(seen, [2, 3]);
        assert_eq!(out.attempts, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_during_the_retry_delay_ends_the_run_at_once() {
        let policy = RetryPolicy {
            retries: 3,
            retry_delay: Duration::from_secs(30),
            timeout: None,
        };
        let stop = CancellationToken::new();
        let started = Instant::now();
        let stopper = {
            let stop = stop.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(5)).await;
                stop.cancel();
            })
        };
        let out: Outcome<()> = run_with_retries(
            policy,
            1,
            &stop,
            |_| std::future::ready(()),
            |n| async move { Err(format!("attempt {n} failed")) },
        )
        .await;
        stopper.await.unwrap();
        assert_eq!(out.attempts, 1);
        assert_eq!(out.result, Err("attempt 1 failed".into()));
        assert_eq!(started.elapsed().as_secs(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn stops_retrying_once_an_attempt_succeeds() {
        let policy = RetryPolicy {
            retries: 5,
            retry_delay: Duration::from_secs(1),
            timeout: None,
        };
        let out = run_with_retries(
            policy,
            1,
            &CancellationToken::new(),
            |_| std::future::ready(()),
            |n| async move {
                if n < 3 {
                    Err("not yet".to_string())
                } else {
                    Ok(n * 10)
                }
            },
        )
        .await;
        assert_eq!(
            out,
            Outcome {
                attempts: 3,
                result: Ok(30)
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_attempt_times_out_and_counts_as_failed() {
        let policy = RetryPolicy {
            retries: 1,
            retry_delay: Duration::from_secs(1),
            timeout: Some(Duration::from_secs(10)),
        };
        let out: Outcome<()> = run_with_retries(
            policy,
            1,
            &CancellationToken::new(),
            |_| std::future::ready(()),
            |_| async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok(())
            },
        )
        .await;
        assert_eq!(out.attempts, 2);
        assert!(out.result.unwrap_err().contains("timed out after 10s"));
    }
}
