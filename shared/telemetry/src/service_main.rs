//! The `main` every service binary shares: one command line (`--config FILE`, repeatable;
//! `--help`; `--version`), configuration loaded from those files and the environment, then
//! the service run until SIGINT or SIGTERM ([`crate::run_until_signal`]). A failure is
//! printed with its causes and ends the process with a non-zero status.

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser};
use gradients_config::Settings;
use tokio_util::sync::CancellationToken;

/// The arguments of a service binary.
#[derive(Debug, Parser)]
struct ServiceArgs {
    /// A TOML configuration file; repeat to layer several (later ones win). The environment
    /// (`GRADIENTS__SECTION__KEY`) wins over every file.
    #[arg(long = "config", value_name = "FILE")]
    config: Vec<PathBuf>,
}

/// Parses the command line of `binary` (described by `about`), loads the settings and runs
/// `run` as `service_name` until a signal drains it.
pub async fn service_main<F, Fut, E>(binary: &'static str, about: &'static str, service_name: &str, run: F) -> ExitCode
where
    F: FnOnce(Settings, CancellationToken) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::error::Error + Send + Sync + 'static,
{
    let command = ServiceArgs::command().name(binary).about(about).version(env!("CARGO_PKG_VERSION"));
    let args = match ServiceArgs::from_arg_matches(&command.get_matches()) {
        Ok(args) => args,
        Err(e) => e.exit(),
    };
    let settings = match Settings::load(&args.config) {
        Ok(settings) => settings,
        Err(e) => return failed(binary, "loading configuration", &e),
    };
    let telemetry = settings.telemetry.clone();
    match crate::run_until_signal(service_name, &telemetry, |shutdown| run(settings, shutdown)).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => failed(binary, "stopped", e.as_ref()),
    }
}

/// Prints `error` and its causes, one a line, and returns the failure status. A cause whose
/// text its parent's message already quotes (our errors say their cause) is not repeated.
fn failed(binary: &str, what: &str, error: &(dyn std::error::Error + 'static)) -> ExitCode {
    let mut said = error.to_string();
    eprintln!("{binary}: {what}: {said}");
    let mut cause = error.source();
    while let Some(e) = cause {
        let line = e.to_string();
        if !said.contains(&line) {
            eprintln!("  caused by: {line}");
        }
        said = line;
        cause = e.source();
    }
    ExitCode::FAILURE
}
