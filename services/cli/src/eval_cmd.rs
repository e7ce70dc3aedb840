//! `gradients eval run|inspect`: score a local ONNX file with the evaluator's own code and
//! checks, or print what the checks see in it. For miners (what will my model score?) and
//! auditors (does the published number hold?).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Subcommand, ValueEnum};
use gradients_config::Settings;
use gradients_data::TaskType;
use gradients_evaluator::base_model::BaseModel;
use gradients_evaluator::checks::{Limits, ModelFacts};
use gradients_evaluator::evaluate::{check_and_score, prepare};
use gradients_evaluator::Refusal;
use serde_json::json;

/// Exit status of a refused file (the usage error of clap is 2, a failure 1).
const REFUSED: u8 = 3;

#[derive(Subcommand)]
pub enum EvalCommand {
    /// Score an ONNX file on rows with the market's loss, after the evaluator's checks.
    Run {
        /// The submitted model.
        #[arg(long, value_name = "FILE.onnx")]
        artifact: PathBuf,
        /// Rows in the task's canonical JSONL (instruction/input/output, messages, or
        /// prompt/chosen/rejected).
        #[arg(long, value_name = "ROWS.jsonl")]
        data: PathBuf,
        #[arg(long = "type", value_enum)]
        task_type: EvalType,
        /// The base model: a folder in the Hugging Face layout, or a name published in
        /// `gradients-models` (else looked up in `evaluator.models_dir`).
        #[arg(long, value_name = "NAME|DIR")]
        base_model: String,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Print what the evaluator's checks see in an ONNX file.
    Inspect {
        #[arg(value_name = "FILE.onnx")]
        artifact: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum EvalType {
    Instruct,
    Chat,
    Dpo,
}

impl From<EvalType> for TaskType {
    fn from(value: EvalType) -> Self {
        match value {
            EvalType::Instruct => TaskType::Instruct,
            EvalType::Chat => TaskType::Chat,
            EvalType::Dpo => TaskType::Dpo,
        }
    }
}

pub async fn run(settings: &Settings, command: EvalCommand) -> anyhow::Result<ExitCode> {
    match command {
        EvalCommand::Run { artifact, data, task_type, base_model, json } => {
            let bytes = std::fs::read(&artifact).with_context(|| format!("reading {}", artifact.display()))?;
            let rows = std::fs::read(&data).with_context(|| format!("reading {}", data.display()))?;
            let rows = gradients_data::from_jsonl(&rows).map_err(|e| anyhow::anyhow!("{}: {e}", data.display()))?;
            let base = load_base(settings, &base_model).await?;
            let settings = settings.evaluator.clone();
            let task_type = TaskType::from(task_type);
            let outcome = tokio::task::spawn_blocking(move || {
                let splits = prepare(&base, task_type, &[("rows", &rows)])?;
                check_and_score(bytes, &base, task_type, &splits, &settings)
            })
            .await?;
            match outcome {
                Ok((_, scores)) => {
                    let score = &scores[0];
                    if json {
                        println!(
                            "{}",
                            json!({"loss": score.loss, "tokens": score.tokens, "rows": score.rows.len(),
                                   "preference_accuracy": score.preference_accuracy})
                        );
                    } else {
                        println!(
                            "loss {:.6} over {} answer tokens in {} rows",
                            score.loss,
                            score.tokens,
                            score.rows.len()
                        );
                        if let Some(accuracy) = score.preference_accuracy {
                            println!("preference accuracy {accuracy:.4}");
                        }
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(refusal) => Ok(refused(&refusal, json)),
            }
        }
        EvalCommand::Inspect { artifact, json } => {
            let bytes = std::fs::read(&artifact).with_context(|| format!("reading {}", artifact.display()))?;
            match ModelFacts::read(&bytes, &Limits::from_settings(&settings.evaluator)) {
                Ok(facts) => {
                    if json {
                        println!("{}", serde_json::to_string_pretty(&facts)?);
                    } else {
                        println!("IR {} opset {} domains {:?}", facts.ir_version, facts.opset, facts.domains);
                        for input in &facts.inputs {
                            println!("input  {} type {} {:?}", input.name, input.elem_type, input.dims);
                        }
                        for output in &facts.outputs {
                            println!("output {} type {} {:?}", output.name, output.elem_type, output.dims);
                        }
                        println!(
                            "{} nodes: {}",
                            facts.node_count,
                            facts.op_types.iter().cloned().collect::<Vec<_>>().join(" ")
                        );
                        println!(
                            "{} parameters in {} tensors; {} other constant elements; {} bytes of initializers",
                            facts.parameter_count,
                            facts.parameters.len(),
                            facts.constant_elements,
                            facts.initializer_bytes
                        );
                        println!("parameter digest {}", facts.parameter_digest);
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(refusal) => Ok(refused(&refusal, json)),
            }
        }
    }
}

/// Prints why a file is refused and returns the refusal's exit status.
fn refused(refusal: &Refusal, json: bool) -> ExitCode {
    if json {
        println!(
            "{}",
            json!({"status": refusal.status.as_str_name(), "code": refusal.code.as_str_name(), "reason": refusal.message})
        );
    } else {
        println!("refused: {} ({}): {}", refusal.status.as_str_name(), refusal.code.as_str_name(), refusal.message);
    }
    ExitCode::from(REFUSED)
}

/// A base model from a folder, the `gradients-models` store, or `evaluator.models_dir`.
async fn load_base(settings: &Settings, name_or_dir: &str) -> anyhow::Result<BaseModel> {
    let dir = PathBuf::from(name_or_dir);
    if dir.is_dir() {
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        return tokio::task::spawn_blocking(move || BaseModel::from_dir(&name, &dir)).await?.map_err(Into::into);
    }
    let local = settings.evaluator.models_dir.join(name_or_dir);
    if let Ok(bus) = gradients_bus::Bus::connect(&settings.nats, "gradients-cli").await {
        if let Some(files) = gradients_evaluator::models_store::fetch_files(&bus, name_or_dir).await? {
            let name = name_or_dir.to_owned();
            return tokio::task::spawn_blocking(move || BaseModel::from_files(&name, files)).await?.map_err(Into::into);
        }
    }
    if local.is_dir() {
        let name = name_or_dir.to_owned();
        return tokio::task::spawn_blocking(move || BaseModel::from_dir(&name, &local)).await?.map_err(Into::into);
    }
    anyhow::bail!(
        "base model {name_or_dir}: not a folder, not published in gradients-models, not in {}",
        local.display()
    )
}
