//! Polling until something holds: one sync and one async `wait_for`, both
//! returning a [`Timeout`] that says what was awaited, and
//! [`assert_eventually`] for tests that simply fail.

use std::{
    future::Future,
    time::{Duration, Instant},
};

/// The poll interval most callers use: short enough not to slow a test.
pub const DEFAULT_POLL: Duration = Duration::from_millis(20);

/// A condition did not hold within its limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("timed out after {limit:?} waiting for {what}")]
pub struct Timeout {
    /// What was awaited, as the caller described it.
    pub what: String,
    /// How long it was awaited.
    pub limit: Duration,
}

/// Calls `f` every `every` until it returns `Some` (the value is returned)
/// or `limit` has passed. `f` is always called at least once, and once more
/// after the deadline, so a slow `f` is not cut short.
pub fn wait_for<T>(
    what: &str,
    limit: Duration,
    every: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Result<T, Timeout> {
    let deadline = Instant::now() + limit;
    loop {
        let past = Instant::now() >= deadline;
        if let Some(v) = f() {
            return Ok(v);
        }
        if past {
            return Err(Timeout {
                what: what.to_owned(),
                limit,
            });
        }
        std::thread::sleep(every);
    }
}

/// [`wait_for`] for async code: awaits `f()` every `every` (tokio's timer)
/// until it yields `Some` or `limit` has passed.
pub async fn wait_for_async<T, F, Fut>(
    what: &str,
    limit: Duration,
    every: Duration,
    mut f: F,
) -> Result<T, Timeout>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let past = tokio::time::Instant::now() >= deadline;
        if let Some(v) = f().await {
            return Ok(v);
        }
        if past {
            return Err(Timeout {
                what: what.to_owned(),
                limit,
            });
        }
        tokio::time::sleep(every).await;
    }
}

/// Polls `cond` every [`DEFAULT_POLL`] until it holds; panics with the
/// [`Timeout`] message after `limit`. For test assertions.
#[track_caller]
pub fn assert_eventually(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    if let Err(e) = wait_for(what, limit, DEFAULT_POLL, || cond().then_some(())) {
        panic!("{e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_first_value_and_polls_at_the_interval() {
        let mut calls = 0;
        let t = Instant::now();
        let v = wait_for(
            "third call",
            Duration::from_secs(5),
            Duration::from_millis(10),
            || {
                calls += 1;
                (calls == 3).then_some(calls * 10)
            },
        );
        assert_eq!(v, Ok(30));
        assert!(t.elapsed() >= Duration::from_millis(20));
    }

    #[test]
    fn times_out_with_a_description() {
        let t = Instant::now();
        let e = wait_for::<()>(
            "never",
            Duration::from_millis(50),
            Duration::from_millis(5),
            || None,
        )
        .unwrap_err();
        assert!(t.elapsed() >= Duration::from_millis(50));
        assert_eq!(e.to_string(), "timed out after 50ms waiting for never");
    }

    #[test]
    fn a_true_condition_passes_at_once() {
        assert_eventually(Duration::ZERO, "true", || true);
    }

    #[test]
    #[should_panic(expected = "timed out after 30ms waiting for the impossible")]
    fn assert_eventually_panics_with_the_message() {
        assert_eventually(Duration::from_millis(30), "the impossible", || false);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn async_form_awaits_the_future() {
        let mut n = 0;
        let v = wait_for_async(
            "n reaches 2",
            Duration::from_secs(5),
            Duration::from_millis(1),
            || {
                n += 1;
                let now = n;
                async move { (now >= 2).then_some(now) }
            },
        )
        .await;
        assert_eq!(v, Ok(2));
        let e =
            wait_for_async::<(), _, _>("never", Duration::ZERO, Duration::ZERO, || async { None })
                .await
                .unwrap_err();
        assert_eq!(e.what, "never");
    }
}
