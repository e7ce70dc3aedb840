//! `gradients-ledger`: the ledger as its own process (`--config FILE`, repeatable, and
//! `GRADIENTS__...` variables; `--help`); SIGINT or SIGTERM drain it.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let about = "The reward ledger: ranks, rewards and records every task, append-only and exactly once.";
    gradients_telemetry::service_main("gradients-ledger", about, gradients_ledger::SERVICE_NAME, gradients_ledger::run)
        .await
}
