//! Waiting for a condition instead of sleeping a fixed time: tests synchronise on what the
//! system did, so they neither flake on a loaded machine nor wait longer than needed.

use std::fmt::Display;
use std::future::Future;
use std::time::{Duration, Instant};

/// How often [`eventually`] checks again.
const POLL: Duration = Duration::from_millis(50);

/// What a check of [`eventually`] may return: `Ok(value)` / `Some(value)` / `true` when the
/// condition holds; otherwise what was seen (the error's text), named in the panic.
pub trait Outcome {
    /// What the wait returns once the condition holds.
    type Value;
    /// The value, or a description of what was seen instead.
    fn into_outcome(self) -> Result<Self::Value, String>;
}

impl<T, E: Display> Outcome for Result<T, E> {
    type Value = T;
    fn into_outcome(self) -> Result<T, String> {
        self.map_err(|e| e.to_string())
    }
}

impl<T> Outcome for Option<T> {
    type Value = T;
    fn into_outcome(self) -> Result<T, String> {
        self.ok_or_else(|| "not yet".to_owned())
    }
}

impl Outcome for bool {
    type Value = ();
    fn into_outcome(self) -> Result<(), String> {
        if self {
            Ok(())
        } else {
            Err("false".to_owned())
        }
    }
}

/// Calls `check` until it reports success, then returns its value; after `limit` it
/// panics with `what` and the last thing seen, so a failing test says what it waited for.
pub async fn eventually<O, F, Fut>(limit: Duration, what: &str, mut check: F) -> O::Value
where
    O: Outcome,
    F: FnMut() -> Fut,
    Fut: Future<Output = O>,
{
    let started = Instant::now();
    loop {
        match check().await.into_outcome() {
            Ok(value) => return value,
            Err(last) if started.elapsed() >= limit => {
                panic!("waited {limit:?} for {what}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// [`eventually`] for a test without an async runtime (one that drives processes): the same
/// contract, polling on the calling thread.
pub fn eventually_blocking<O, F>(limit: Duration, what: &str, mut check: F) -> O::Value
where
    O: Outcome,
    F: FnMut() -> O,
{
    let started = Instant::now();
    loop {
        match check().into_outcome() {
            Ok(value) => return value,
            Err(last) if started.elapsed() >= limit => {
                panic!("waited {limit:?} for {what}; last seen: {last}")
            }
            Err(_) => std::thread::sleep(POLL),
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

    /// `Option` and `bool` checks read as naturally as `Result` ones.
    #[tokio::test]
    async fn options_and_booleans_are_conditions() {
        let mut calls = 0;
        let value = eventually(Duration::from_secs(5), "a value", || {
            calls += 1;
            let n = calls;
            async move { (n >= 2).then_some(n) }
        })
        .await;
        assert_eq!(value, 2);
        eventually(Duration::from_secs(5), "true", || async { true }).await;
    }

    /// The blocking form returns the first success and names what it waited for.
    #[test]
    fn blocking_form_behaves_the_same() {
        let mut calls = 0;
        let value = eventually_blocking(Duration::from_secs(5), "two calls", || {
            calls += 1;
            (calls >= 2).then_some(calls)
        });
        assert_eq!(value, 2);
        let gave_up = std::panic::catch_unwind(|| eventually_blocking(Duration::from_millis(60), "never", || false));
        assert!(gave_up.is_err());
    }

    /// Gives up after the limit, naming what it waited for and what it saw.
    #[tokio::test]
    #[should_panic(expected = "waited 100ms for the impossible; last seen: never")]
    async fn names_what_it_waited_for() {
        eventually(Duration::from_millis(100), "the impossible", || async { Err::<(), _>("never".to_owned()) }).await;
    }
}
