//! `gradients-intake`: the intake service as its own process (`--config FILE`, repeatable, and
//! `GRADIENTS__...` variables; `--help`); SIGINT or SIGTERM drain it.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let about = "Task intake: validates customers' data sets, splits them and announces accepted tasks.";
    gradients_telemetry::service_main("gradients-intake", about, gradients_intake::SERVICE_NAME, gradients_intake::run)
        .await
}
