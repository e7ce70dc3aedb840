//! `gradients-dispatch`: dispatch as its own process. Configuration comes from `--config`
//! files and `GRADIENTS__...` variables; SIGINT or SIGTERM drain it.

use std::path::PathBuf;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let files: Vec<PathBuf> = std::env::args().skip(1).filter(|a| a != "--config").map(PathBuf::from).collect();
    let settings = gradients_config::Settings::load(&files).context("loading configuration")?;
    let _telemetry = gradients_telemetry::init(gradients_dispatch::SERVICE_NAME, &settings.telemetry)?;
    let shutdown = CancellationToken::new();
    tokio::spawn(gradients_telemetry::cancel_on_signal(shutdown.clone()));
    gradients_dispatch::run(settings, shutdown).await?;
    Ok(())
}
