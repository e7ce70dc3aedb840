//! `gradients-dispatch`: dispatch as its own process (`--config FILE`, repeatable, and
//! `GRADIENTS__...` variables; `--help`); SIGINT or SIGTERM drain it.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let about = "Miner dispatch: the miner registry, offers, assignments, data grants and deadlines.";
    gradients_telemetry::service_main(
        "gradients-dispatch",
        about,
        gradients_dispatch::SERVICE_NAME,
        gradients_dispatch::run,
    )
    .await
}
