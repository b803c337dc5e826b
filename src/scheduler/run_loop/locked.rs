//! History calls of the loop and its runs that wait out a lock another
//! process holds: tried again with back-off, a warning now and then, and
//! the scheduler not ready meanwhile.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use crate::clock::now_ms;
use crate::scheduler::health::Health;
use crate::scheduler::history::{History, HistoryError};

/// Back-off between tries of a call that found the history locked:
/// doubling from the first to the last.
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// While the history stays locked, a warning at most this often.
const WARN_EVERY: Duration = Duration::from_secs(30);

/// Runs `f` on the history from the blocking pool. A call that finds the
/// history locked by another connection is tried again with back-off (a
/// warning, and `health` not ready) until it goes through, or until
/// `give_up` completes (`Ok(None)`). Any other error is returned.
pub(super) async fn call<T: Send + 'static>(
    history: &History,
    health: &Health,
    what: &'static str,
    give_up: impl Future<Output = ()>,
    f: impl Fn(&History) -> Result<T, HistoryError> + Send + Sync + 'static,
) -> Result<Option<T>, HistoryError> {
    tokio::pin!(give_up);
    let f = Arc::new(f);
    let mut delay = RETRY_FIRST;
    let mut warned: Option<Instant> = None;
    loop {
        let (h, g) = (history.clone(), f.clone());
        let result = tokio::task::spawn_blocking(move || g(&h))
            .await
            .expect("history task panicked");
        match result {
            Ok(v) => {
                if let Some(since) = health.recovered() {
                    info!(
                        locked_for_ms = now_ms() - since,
                        "run history usable again; scheduling goes on"
                    );
                }
                return Ok(Some(v));
            }
            Err(e) if e.is_busy() => {
                let first = health.retrying(e.to_string());
                if first || warned.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                    warn!(
                        error = %e,
                        what,
                        retry_in_ms = delay.as_millis() as u64,
                        "run history locked by another process; not ready until it can be written, retrying"
                    );
                    warned = Some(Instant::now());
                } else {
                    debug!(error = %e, what, "run history still locked");
                }
                tokio::select! {
                    _ = &mut give_up => return Ok(None),
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(RETRY_MAX);
            }
            Err(e) => return Err(e),
        }
    }
}
