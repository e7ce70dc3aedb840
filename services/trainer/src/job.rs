//! One fine-tuning job from base model and rows to artifact: what `gradients-trainer
//! train` runs alone and what the miner runs for each assignment.

use std::path::{Path, PathBuf};
use std::time::Instant;

use gradients_data::{Row, TaskType};
use gradients_model::onnx::ExportError;
use indicatif::ProgressBar;
use tch::Device;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::{self, CheckpointError};
use crate::export::{export, Artifact, BaseModel};
use crate::report::TrainingReport;
use crate::strategy::{self, Budget, Context, StrategyKind};
use crate::train::{prepare, TrainError};

pub use gradients_text::MAX_EXAMPLE_TOKENS;

/// A fine-tuning job.
pub struct Job<'a> {
    /// The base model's folder (HF layout) and the name the market knows it by.
    pub base_dir: &'a Path,
    pub base_name: &'a str,
    pub task_type: TaskType,
    pub rows: &'a [Row],
    pub strategy: StrategyKind,
    pub budget: Budget,
    pub seed: u64,
    pub device: Device,
    /// Where the model folder, ONNX artifact, manifest and report go.
    pub out_dir: &'a Path,
    pub bar: ProgressBar,
    /// Stops the job between two optimizer steps, before anything is exported.
    pub cancel: CancellationToken,
}

/// What a job produced (also written to `out_dir`).
pub struct JobOutput {
    pub artifact: Artifact,
    pub report: TrainingReport,
}

/// Why a job failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("base model: {0}")]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error("ONNX export: {0}")]
    Export(#[from] ExportError),
    #[error("writing {path}: {reason}")]
    Write { path: PathBuf, reason: String },
}

/// Runs the job: load, prepare, strategy, report, export, write.
pub fn run(job: Job<'_>) -> Result<JobOutput, JobError> {
    let started = Instant::now();
    let base = checkpoint::load(job.base_dir, job.device)?;
    let max_len = base.model.config.max_positions().min(MAX_EXAMPLE_TOKENS);
    let data = prepare(job.rows, job.task_type, &base.tokenizer, max_len, job.seed)?;
    let ctx = Context {
        base: &base.model,
        data: &data,
        pad_id: base.tokenizer.pad_id(),
        max_len,
        budget: job.budget,
        seed: job.seed,
        bar: job.bar.clone(),
        cancel: job.cancel.clone(),
    };
    let outcome = strategy::run(job.strategy, &ctx)?;
    // Cancelled while the strategy chose its model (between runs): export nothing.
    if job.cancel.is_cancelled() {
        return Err(TrainError::Cancelled.into());
    }
    job.bar.finish_and_clear();
    let report = TrainingReport {
        strategy: job.strategy,
        base_model: job.base_name.to_owned(),
        task_type: job.task_type.to_string(),
        device: format!("{:?}", job.device),
        train_rows: data.train.len(),
        validation_rows: data.validation.len(),
        tokens_per_second: outcome.record.tokens as f64 / outcome.record.seconds.max(1e-9),
        run: outcome.record,
        trials: outcome.trials,
        seconds: started.elapsed().as_secs_f64(),
    };
    let base_info = BaseModel {
        name: job.base_name.to_owned(),
        weights_sha256: base.weights_sha256,
        tokenizer_sha256: base.tokenizer_sha256,
    };
    let training = serde_json::json!({
        "strategy": job.strategy.as_str(),
        "hyperparameters": report.run.hyperparameters,
        "steps": report.run.steps,
        "best_validation_loss": finite_or_null(report.run.best_validation_loss),
        "trials": report.trials.len(),
        "seconds": report.seconds,
    });
    let mut artifact = export(&outcome.model, &base_info, training)?;
    let write_error = |path: &Path| {
        let path = path.to_owned();
        move |e: &dyn std::fmt::Display| JobError::Write { path, reason: e.to_string() }
    };
    checkpoint::save(&outcome.model, &base.tokenizer, &job.out_dir.join(crate::export::MODEL_FOLDER))?;
    report.write(job.out_dir).map_err(|e| write_error(job.out_dir)(&e))?;
    // The HF folder and the report travel with the model, pinned in its manifest.
    artifact.manifest.files =
        crate::export::describe_delivered(job.out_dir).map_err(|e| write_error(job.out_dir)(&e))?;
    artifact.write(job.out_dir).map_err(|e| write_error(job.out_dir)(&e))?;
    Ok(JobOutput { artifact, report })
}

fn finite_or_null(value: f64) -> serde_json::Value {
    if value.is_finite() {
        serde_json::json!(value)
    } else {
        serde_json::Value::Null
    }
}
