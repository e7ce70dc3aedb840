//! `gradients-evaluator`: the evaluator as its own process. Configuration comes from
//! `--config` files and `GRADIENTS__...` variables; SIGINT or SIGTERM drain it.

use anyhow::Context as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let files: Vec<std::path::PathBuf> =
        std::env::args().skip(1).filter(|a| a != "--config").map(std::path::PathBuf::from).collect();
    let settings = gradients_config::Settings::load(&files).context("loading configuration")?;
    let telemetry = settings.telemetry.clone();
    gradients_telemetry::run_until_signal(gradients_evaluator::SERVICE_NAME, &telemetry, |shutdown| {
        gradients_evaluator::run(settings, shutdown)
    })
    .await
    .map_err(|e| anyhow::anyhow!(e))
}
