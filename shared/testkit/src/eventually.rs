//! Waiting for a condition instead of sleeping a fixed time: tests synchronise on what the
//! system did, so they neither flake on a loaded machine nor wait longer than needed.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often [`eventually`] checks again.
const POLL: Duration = Duration::from_millis(50);

/// Calls `check` until it returns `Some`, then returns that value; after `limit` it
/// panics with `what` and the last value seen, so a failing test says what it waited for.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let started = Instant::now();
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) if started.elapsed() >= limit => {
                panic!("waited {limit:?} for {what}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Returns as soon as the condition holds, with its value.
    #[tokio::test]
    async fn returns_the_first_success() {
        let mut calls = 0;
        let value = eventually(Duration::from_secs(5), "three calls", || {
            calls += 1;
            let n = calls;
            async move {
                if n >= 3 {
                    Ok(n)
                } else {
                    Err(format!("{n} calls"))
                }
            }
        })
        .await;
        assert_eq!(value, 3);
    }

    /// Gives up after the limit, naming what it waited for and what it saw.
    #[tokio::test]
    #[should_panic(expected = "waited 100ms for the impossible; last seen: never")]
    async fn names_what_it_waited_for() {
        eventually(Duration::from_millis(100), "the impossible", || async { Err::<(), _>("never".to_owned()) }).await;
    }
}
