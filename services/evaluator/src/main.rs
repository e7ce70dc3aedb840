//! `gradients-evaluator`: the evaluator as its own process (`--config FILE`, repeatable, and
//! `GRADIENTS__...` variables; `--help`); SIGINT or SIGTERM drain it.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let about = "The evaluator: checks and scores every submission on the hidden splits with ONNX Runtime.";
    gradients_telemetry::service_main(
        "gradients-evaluator",
        about,
        gradients_evaluator::SERVICE_NAME,
        gradients_evaluator::run,
    )
    .await
}
