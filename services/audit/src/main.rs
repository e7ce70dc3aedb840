//! `gradients-audit`: the audit service as its own process (`--config FILE`, repeatable, and
//! `GRADIENTS__...` variables; `--help`); SIGINT or SIGTERM drain it.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let about = "The audit log: captures every stream, signs checkpoints and serves proofs.";
    gradients_telemetry::service_main("gradients-audit", about, gradients_audit::SERVICE_NAME, gradients_audit::run)
        .await
}
