//! What the cross-service stories share: settings for services in one test process, and
//! waiting for a service that is still starting.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use gradients_config::Settings;
use gradients_testkit::NatsServer;

/// Settings for every service of a test: the private `nats` with fast retries, health
/// endpoints on free ports, dispatch's key in `dir`.
pub fn sandbox_settings(nats: &NatsServer, dir: &Path) -> Settings {
    let mut settings = Settings::default();
    settings.nats.url = vec![nats.url()];
    settings.nats.retry_backoff_ms = 50;
    settings.intake.http_addr = "127.0.0.1:0".into();
    settings.dispatch.http_addr = "127.0.0.1:0".into();
    settings.dispatch.key_file = dir.join("dispatch.key");
    settings.ledger.http_addr = "127.0.0.1:0".into();
    settings
}

/// Calls `call` until it succeeds, for up to ten seconds (services spawned in the test may
/// not answer yet); returns the last result.
pub async fn until_ok<T, E, F, Fut>(mut call: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut result = call().await;
    for _ in 0..100 {
        if result.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        result = call().await;
    }
    result
}
