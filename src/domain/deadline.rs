//! Waiting for a condition with a deadline: the polling loop that pgrepl's
//! waits go through, so none sleeps to synchronise and each caller says, in
//! its own words, what did not happen in time.

use std::future::Future;
use std::time::Duration;

/// The condition did not hold before the deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Elapsed;

/// Ask `check` every `every` until it returns a value, for at most
/// `timeout`: it is always asked once, and never slept past the deadline.
pub(crate) async fn poll<T, F, Fut>(timeout: Duration, every: Duration, mut check: F) -> Result<T, Elapsed>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Err(Elapsed);
        }
        tokio::time::sleep(every.min(deadline - now)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap()
    }

    #[test]
    fn returns_the_first_value_the_condition_yields() {
        let asked = AtomicU32::new(0);
        let v = rt().block_on(poll(Duration::from_secs(5), Duration::from_millis(1), || async {
            (asked.fetch_add(1, Ordering::SeqCst) == 2).then_some("ready")
        }));
        assert_eq!(v, Ok("ready"));
        assert_eq!(asked.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn gives_up_at_the_deadline_having_asked_at_least_once() {
        let asked = AtomicU32::new(0);
        let t = std::time::Instant::now();
        let v: Result<(), _> = rt().block_on(poll(Duration::from_millis(30), Duration::from_millis(10), || async {
            asked.fetch_add(1, Ordering::SeqCst);
            None
        }));
        assert_eq!(v, Err(Elapsed));
        assert!(asked.load(Ordering::SeqCst) >= 2, "asked at the start and again at the deadline");
        assert!(t.elapsed() >= Duration::from_millis(30));
    }
}
