//! `/readyz` tells the truth: intake is ready while it can answer a request, that is while
//! its NATS connection is up, its database answers within a second, and not every one of
//! its request slots has stayed taken for a second (requests stuck on a slow upload or a
//! slow database would otherwise leave a "ready" process that answers nobody; a burst that
//! fills them for an instant is not that). Checked every second.

use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::connection::State;
use gradients_telemetry::Readiness;
use tokio_util::sync::CancellationToken;

use crate::Context;

/// How often readiness is re-evaluated.
const INTERVAL: Duration = Duration::from_secs(1);
/// How long the database may take to answer a ping.
const DATABASE_LIMIT: Duration = Duration::from_secs(1);

/// Keeps `readiness` up to date until `stop`, then marks the process not ready.
pub async fn watch(ctx: &Context, readiness: &Readiness, stop: CancellationToken) {
    let mut ready = None;
    let mut was_saturated = false;
    loop {
        // A burst fills every slot for a moment; only slots taken at two checks in a row
        // (a second or more) mean requests are waiting for an answer that does not come.
        let saturated = ctx.in_flight.load(Ordering::SeqCst) >= ctx.settings.intake.max_concurrent_requests;
        let problem = match check(ctx).await {
            None if saturated && was_saturated => Some("every request slot has been taken for a second"),
            other => other,
        };
        was_saturated = saturated;
        let now_ready = problem.is_none();
        if ready != Some(now_ready) {
            match &problem {
                None => tracing::info!("intake ready"),
                Some(why) => tracing::warn!(why, "intake not ready"),
            }
            readiness.set_ready(now_ready);
            ready = Some(now_ready);
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(INTERVAL) => {}
        }
    }
    readiness.set_ready(false);
}

/// Why intake cannot answer now, if it cannot.
async fn check(ctx: &Context) -> Option<&'static str> {
    if ctx.bus.client.connection_state() != State::Connected {
        return Some("not connected to NATS");
    }
    if !matches!(tokio::time::timeout(DATABASE_LIMIT, ctx.db.ping()).await, Ok(Ok(()))) {
        return Some("the database does not answer");
    }
    None
}
