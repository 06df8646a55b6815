//! What the workspace's tests share, and nothing else: polling for a condition with a
//! deadline ([`eventually`]) instead of sleeping for a guessed time; with the `alloc`
//! feature, counting allocations per request under dhat (`alloc::none_per_request`); the
//! loopback peers HTTP tests use ([`peers`]).
//!
//! Only ever a dev-dependency, so none of it reaches a production build and no crate grows a
//! test-only public API. It may touch tokio's timer and loopback sockets ([`peers`], `alloc`).

#[cfg(feature = "alloc")]
pub mod alloc;
pub mod peers;

use std::future::Future;
use std::time::{Duration, Instant};

/// How long a condition may take in a test before the test fails. Generous: machines running
/// the tests are shared, and a test that waits for a condition ends as soon as it holds.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// How often [`eventually`] asks again.
const POLL: Duration = Duration::from_millis(20);

/// Polls `check` until it returns `Some`, and returns that value; panics naming `what` once
/// `deadline` has passed without it. `check` is always asked at least once.
pub async fn eventually<T, F, Fut>(deadline: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for: {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[tokio::test]
    async fn returns_the_first_value_once_the_condition_holds() {
        let asked = Cell::new(0);
        let v = eventually(DEADLINE, "the third ask", || async {
            asked.set(asked.get() + 1);
            (asked.get() == 3).then_some("ready")
        })
        .await;
        assert_eq!((v, asked.get()), ("ready", 3));
    }

    #[tokio::test]
    #[should_panic(expected = "waiting for: something that never holds")]
    async fn panics_naming_what_it_waited_for_after_the_deadline() {
        eventually(
            Duration::from_millis(50),
            "something that never holds",
            || async { None::<()> },
        )
        .await;
    }
}
