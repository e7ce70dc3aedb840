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
    /// Publish a model folder (config.json, tokenizer.json, model.safetensors) to the
    /// `gradients-models` store under a name, with its ONNX export and their sha256s.
    Publish {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        #[arg(long)]
        name: String,
    },
    /// The base models published in `gradients-models`.
    List {
        #[arg(long)]
        json: bool,
    },
}

/// `model publish` and `model list`: the `gradients-models` store.
pub async fn run_store(settings: &gradients_config::Settings, command: ModelCommand) -> anyhow::Result<ExitCode> {
    let bus = gradients_bus::Bus::connect(&settings.nats, "gradients-cli").await?;
    match command {
        ModelCommand::Publish { dir, name } => {
            // The bucket exists once any service has started; an operator may publish first.
            gradients_bus::topology::declare(&bus, &settings.nats).await?;
            let index = gradients_evaluator::models_store::publish(&bus, &dir, &name).await?;
            println!("published {} ({}, {} parameters)", index.name, index.architecture, index.parameter_count);
            for (file, entry) in &index.files {
                println!("  {file:<18} {:>12} bytes  sha256 {}", entry.size, entry.sha256);
            }
        }
        ModelCommand::List { json } => {
            let models = gradients_model::store::list(&bus).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&models)?);
            } else {
                for model in &models {
                    let onnx = model.files.get("model.onnx").map(|f| f.sha256.as_str()).unwrap_or("-");
                    println!(
                        "{:<16} {:<6} {:>12} parameters  onnx sha256 {onnx}",
                        model.name, model.architecture, model.parameter_count
                    );
                }
            }
        }
        ModelCommand::Pretrain { .. } => unreachable!("pretrain runs gradients-trainer"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `gradients-trainer` beside the running executable, else on the PATH.
fn trainer_binary() -> PathBuf {
    let beside = std::env::current_exe().ok().and_then(|exe| exe.parent().map(|d| d.join("gradients-trainer")));
    beside.filter(|p| p.is_file()).unwrap_or_else(|| PathBuf::from("gradients-trainer"))
}

pub fn run(config: &[PathBuf], command: ModelCommand) -> anyhow::Result<ExitCode> {
    let ModelCommand::Pretrain { args } = command else {
        unreachable!("only pretrain runs gradients-trainer");
    };
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
