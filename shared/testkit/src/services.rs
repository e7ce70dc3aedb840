//! Services a test runs in-process: each started with a stop token of its own, stopped
//! gracefully, killed mid-work as a crash would, or awaited when it ends by itself (a fault
//! point). Dropping the set stops them all, so a failing test leaves nothing running.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Running instances (replicas, or services of a story) whose `run` returns `Result<(), E>`.
pub struct Services<E> {
    running: Vec<(CancellationToken, JoinHandle<Result<(), E>>)>,
}

impl<E> Default for Services<E> {
    fn default() -> Self {
        Self { running: Vec::new() }
    }
}

impl<E: Send + 'static> Services<E> {
    /// No service yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts `run` with a stop token of its own; returns its index.
    pub fn spawn<Fut>(&mut self, run: impl FnOnce(CancellationToken) -> Fut) -> usize
    where
        Fut: Future<Output = Result<(), E>> + Send + 'static,
    {
        let stop = CancellationToken::new();
        let handle = tokio::spawn(run(stop.clone()));
        self.running.push((stop, handle));
        self.running.len() - 1
    }

    /// How many are held (running or ended but not yet awaited).
    pub fn len(&self) -> usize {
        self.running.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    /// Whether instance `index` has ended (on its own: a failure or a fault point).
    pub fn has_ended(&self, index: usize) -> bool {
        self.running[index].1.is_finished()
    }

    /// Kills instance `index` at once, mid-work, as a crash would (nothing drains).
    pub fn kill(&mut self, index: usize) {
        let (_, handle) = self.running.remove(index);
        handle.abort();
    }

    /// Stops instance `index` gracefully and returns how it ended.
    pub async fn stop(&mut self, index: usize) -> Result<(), E> {
        let (stop, handle) = self.running.remove(index);
        stop.cancel();
        handle.await.expect("the service's task panicked")
    }

    /// Stops every instance gracefully; returns how each ended, in order.
    pub async fn stop_all(&mut self) -> Vec<Result<(), E>> {
        let mut outcomes = Vec::new();
        while !self.running.is_empty() {
            outcomes.push(self.stop(0).await);
        }
        outcomes
    }

    /// Waits up to `limit` for instance `index` to end by itself and returns how it ended.
    pub async fn wait_for_exit(&mut self, index: usize, limit: Duration) -> Result<(), E> {
        let (_, handle) = self.running.remove(index);
        tokio::time::timeout(limit, handle)
            .await
            .unwrap_or_else(|_| panic!("the service did not end within {limit:?}"))
            .expect("the service's task panicked")
    }
}

impl<E> Drop for Services<E> {
    fn drop(&mut self) {
        for (stop, handle) in self.running.drain(..) {
            stop.cancel();
            handle.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stop, kill and a service ending by itself each do what they say.
    #[tokio::test]
    async fn stop_kill_and_exit() {
        let mut services: Services<String> = Services::new();
        services.spawn(|stop| async move {
            stop.cancelled().await;
            Ok(())
        });
        services.spawn(|_| async { Err("fault point".to_owned()) });
        services.spawn(|_| std::future::pending());
        assert_eq!(services.len(), 3);
        services.kill(2);
        assert_eq!(services.wait_for_exit(1, Duration::from_secs(5)).await, Err("fault point".to_owned()));
        assert_eq!(services.stop_all().await, vec![Ok(())]);
        assert!(services.is_empty());
    }
}
