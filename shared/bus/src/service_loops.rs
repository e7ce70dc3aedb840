//! The long-running loops of one service process (API, workers, relays, timers) and how
//! they stop together: the caller's shutdown, or any loop failing, stops them all; then
//! they get a bounded time to drain.

use std::future::Future;
#[cfg(feature = "test-faults")]
use std::sync::Mutex;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// A test's way to stop a service as if the process were killed at a named point: the
/// service's code calls [`CrashSwitch::fire`] there, and its `run` returns at once,
/// dropping (aborting) everything in flight. Only the `test-faults` feature (enabled by the
/// services' own tests) compiles it in; otherwise the switch cannot fire.
#[cfg(feature = "test-faults")]
#[derive(Debug, Default)]
pub struct CrashSwitch {
    fired: CancellationToken,
    point: Mutex<Option<&'static str>>,
}

#[cfg(feature = "test-faults")]
impl CrashSwitch {
    /// Fires the switch at `point`.
    pub fn fire(&self, point: &'static str) {
        if let Ok(mut slot) = self.point.lock() {
            *slot = Some(point);
        }
        self.fired.cancel();
    }

    /// Resolves when the switch fires, with the point it fired at.
    pub async fn fired(&self) -> &'static str {
        self.fired.cancelled().await;
        self.point.lock().ok().and_then(|p| *p).unwrap_or("unknown")
    }
}

/// Without the `test-faults` feature a production build has no way to fire the switch:
/// [`CrashSwitch::fired`] never resolves.
#[cfg(not(feature = "test-faults"))]
#[derive(Debug, Default)]
pub struct CrashSwitch {
    /// Nothing to hold: a braced struct, so `CrashSwitch::default()` reads the same in both builds.
    _cannot_fire: (),
}

#[cfg(not(feature = "test-faults"))]
impl CrashSwitch {
    /// Never resolves: nothing can fire the switch in this build.
    pub async fn fired(&self) -> &'static str {
        std::future::pending().await
    }
}

/// A service's loops. `E` is the service's error type.
pub struct ServiceLoops<E> {
    stop: CancellationToken,
    loops: JoinSet<Result<(), E>>,
}

impl<E: Send + 'static> ServiceLoops<E> {
    /// Loops that stop when `shutdown` is cancelled.
    pub fn new(shutdown: &CancellationToken) -> Self {
        Self { stop: shutdown.child_token(), loops: JoinSet::new() }
    }

    /// The token every loop watches; pass it to each loop you spawn.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Runs `task` until it ends; a loop that returns (or fails) stops the others.
    pub fn spawn(&mut self, task: impl Future<Output = Result<(), E>> + Send + 'static) {
        self.loops.spawn(task);
    }

    /// Waits for the shutdown signal or for the first loop to end, then stops every loop
    /// and waits up to `drain_limit` for them. Returns the first failure, if any.
    /// `on_panic` turns a panicked loop into the service's error.
    pub async fn run(mut self, drain_limit: Duration, on_panic: impl Fn(String) -> E) -> Result<(), E> {
        let outcome = tokio::select! {
            _ = self.stop.cancelled() => Ok(()),
            Some(ended) = self.loops.join_next() => match ended {
                Ok(result) => result,
                Err(join) => Err(on_panic(join.to_string())),
            },
        };
        self.stop.cancel();
        let drained =
            tokio::time::timeout(drain_limit, async { while self.loops.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!("loops still running after {drain_limit:?}; abandoning them");
        }
        outcome
    }
}
