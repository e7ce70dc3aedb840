//! `gradients model ...`: base models. Training links libtorch, which only the
//! `gradients-trainer` binary does (so the services stay small and start anywhere); these
//! commands run it, installed beside `gradients`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum ModelCommand {
    /// Pretrain one of the project's small base models (tiny-1m, tiny-10m) on the generated
    /// corpus: `gradients model pretrain --preset tiny-1m --out models/tiny-1m`.
    /// Arguments are those of `gradients-trainer pretrain --help`.
    Pretrain {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// `gradients-trainer` beside the running executable, else on the PATH.
fn trainer_binary() -> PathBuf {
    let beside = std::env::current_exe().ok().and_then(|exe| exe.parent().map(|d| d.join("gradients-trainer")));
    beside.filter(|p| p.is_file()).unwrap_or_else(|| PathBuf::from("gradients-trainer"))
}

pub fn run(config: &[PathBuf], command: ModelCommand) -> anyhow::Result<ExitCode> {
    let ModelCommand::Pretrain { args } = command;
    let binary = trainer_binary();
    let mut child = std::process::Command::new(&binary);
    for file in config {
        child.arg("--config").arg(file);
    }
    let status =
        child.arg("pretrain").args(&args).status().with_context(|| {
            format!("running {} (build it with `cargo build -p gradients-trainer`)", binary.display())
        })?;
    Ok(if status.success() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
