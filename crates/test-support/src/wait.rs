//! Bounded waits on the tokio clock. On a paused clock (`start_paused = true`) the bounds cost
//! no real time and a test that would hang fails at once with its context; on the real clock
//! the awaited event or condition, not a duration, ends the wait.

use std::future::Future;
use std::time::Duration;

/// How long a test waits for anything, unless it names its own bound.
pub const WAIT: Duration = Duration::from_secs(10);

/// How often [`eventually`] checks its condition.
const POLL_EVERY: Duration = Duration::from_millis(1);

/// `fut`, or a panic naming `what` after [`WAIT`].
pub async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    within_for(what, WAIT, fut).await
}

/// `fut`, or a panic naming `what` after `limit`.
pub async fn within_for<F: Future>(what: &str, limit: Duration, fut: F) -> F::Output {
    match tokio::time::timeout(limit, fut).await {
        Ok(output) => output,
        Err(_) => panic!("{what}: nothing within {limit:?}"),
    }
}

/// Waits until `condition` holds, for up to [`WAIT`], checking it every millisecond of the
/// tokio clock. For conditions with no event to wait on, such as a gauge going back down.
pub async fn eventually(what: &str, condition: impl FnMut() -> bool) {
    eventually_within(what, WAIT, POLL_EVERY, condition).await;
}

/// Waits until `condition` holds, for up to `limit`, checking it every `every` of the tokio
/// clock; panics naming `what` after `limit`.
pub async fn eventually_within(
    what: &str,
    limit: Duration,
    every: Duration,
    mut condition: impl FnMut() -> bool,
) {
    within_for(what, limit, async {
        while !condition() {
            tokio::time::sleep(every).await;
        }
    })
    .await;
}
