//! One fine-tuning job from base model and rows to artifact: what `gradients-trainer
//! train` runs alone and what the miner runs for each assignment. Instruct, chat and DPO
//! tasks go through [`crate::strategy`]; GRPO tasks through [`crate::grpo`], with the
//! task's reward functions. Either way the model is exported and delivered alike.

use std::path::{Path, PathBuf};
use std::time::Instant;

use gradients_data::{Row, TaskType};
use gradients_model::onnx::ExportError;
use gradients_reward::RewardSet;
use indicatif::ProgressBar;
use tch::Device;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::{self, Checkpoint, CheckpointError};
use crate::export::{export, Artifact, BaseModel};
use crate::grpo::{self, GrpoContext, GrpoError, GrpoReport, GrpoStrategy};
use crate::model::CausalLm;
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
    /// The reward functions of a GRPO task (required for GRPO, unused otherwise).
    pub rewards: Option<&'a RewardSet>,
    /// For GRPO tasks: `fixed` runs G.O.D.'s GRPO recipe, any other strategy the GRPO
    /// probe ([`GrpoStrategy::for_kind`]).
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
    pub report: JobReport,
}

/// The training report of either kind of job.
pub enum JobReport {
    Supervised(TrainingReport),
    Grpo(GrpoReport),
}

impl JobReport {
    /// A short human summary.
    pub fn summary(&self) -> String {
        match self {
            JobReport::Supervised(report) => report.summary(),
            JobReport::Grpo(report) => report.summary(),
        }
    }

    fn write(&self, dir: &Path) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        match self {
            JobReport::Supervised(report) => report.write(dir),
            JobReport::Grpo(report) => report.write(dir),
        }
    }
}

/// Why a job failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("base model: {0}")]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error(transparent)]
    Grpo(#[from] GrpoError),
    #[error("a GRPO task needs reward functions and this one names none")]
    NoRewards,
    #[error("ONNX export: {0}")]
    Export(#[from] ExportError),
    #[error("writing {path}: {reason}")]
    Write { path: PathBuf, reason: String },
}

/// Runs the job: load, prepare, strategy, report, export, write.
pub fn run(job: Job<'_>) -> Result<JobOutput, JobError> {
    let started = Instant::now();
    let base = checkpoint::load(job.base_dir, job.device)?;
    let (model, report, training) = match job.task_type {
        TaskType::Grpo => train_grpo(&job, &base, started)?,
        _ => train_supervised(&job, &base, started)?,
    };
    // Cancelled while the strategy chose its model (between runs): export nothing.
    if job.cancel.is_cancelled() {
        return Err(TrainError::Cancelled.into());
    }
    job.bar.finish_and_clear();
    let base_info = BaseModel {
        name: job.base_name.to_owned(),
        weights_sha256: base.weights_sha256.clone(),
        tokenizer_sha256: base.tokenizer_sha256.clone(),
    };
    let mut artifact = export(&model, &base_info, training)?;
    let write_error = |path: &Path| {
        let path = path.to_owned();
        move |e: &dyn std::fmt::Display| JobError::Write { path, reason: e.to_string() }
    };
    checkpoint::save(&model, &base.tokenizer, &job.out_dir.join(crate::export::MODEL_FOLDER))?;
    report.write(job.out_dir).map_err(|e| write_error(job.out_dir)(&e))?;
    // The HF folder and the report travel with the model, pinned in its manifest.
    artifact.manifest.files =
        crate::export::describe_delivered(job.out_dir).map_err(|e| write_error(job.out_dir)(&e))?;
    artifact.write(job.out_dir).map_err(|e| write_error(job.out_dir)(&e))?;
    Ok(JobOutput { artifact, report })
}

/// Instruct, chat and DPO: the strategy's supervised runs; the manifest's training record.
fn train_supervised(
    job: &Job<'_>,
    base: &Checkpoint,
    started: Instant,
) -> Result<(CausalLm, JobReport, serde_json::Value), JobError> {
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
    let training = serde_json::json!({
        "strategy": job.strategy.as_str(),
        "hyperparameters": report.run.hyperparameters,
        "steps": report.run.steps,
        "best_validation_loss": finite_or_null(report.run.best_validation_loss),
        "trials": report.trials.len(),
        "seconds": report.seconds,
    });
    Ok((outcome.model, JobReport::Supervised(report), training))
}

/// GRPO: prompts from the rows, completions as long as the evaluator allows (and at most
/// half the context, the prompt keeping the other half), the GRPO strategy.
fn train_grpo(
    job: &Job<'_>,
    base: &Checkpoint,
    started: Instant,
) -> Result<(CausalLm, JobReport, serde_json::Value), JobError> {
    let rewards = job.rewards.ok_or(JobError::NoRewards)?;
    let max_len = base.model.config.max_positions().min(MAX_EXAMPLE_TOKENS);
    let max_new_tokens = grpo::default_max_new_tokens().min(max_len / 2).max(1);
    let data = grpo::prepare(job.rows, rewards, &base.tokenizer, max_len - max_new_tokens, job.seed)?;
    let ctx = GrpoContext {
        base: &base.model,
        data: &data,
        generator: grpo::Generator {
            tokenizer: &base.tokenizer,
            rewards,
            eos_ids: vec![base.tokenizer.eos_id()],
            pad_id: base.tokenizer.pad_id(),
        },
        pad_id: base.tokenizer.pad_id(),
        max_new_tokens,
        budget: job.budget,
        seed: job.seed,
        bar: job.bar.clone(),
        cancel: job.cancel.clone(),
    };
    let strategy = GrpoStrategy::for_kind(job.strategy);
    let outcome = grpo::run_strategy(strategy, &ctx)?;
    let report = GrpoReport {
        strategy,
        base_model: job.base_name.to_owned(),
        device: format!("{:?}", job.device),
        rewards: rewards.specs().to_vec(),
        train_prompts: data.train.len(),
        validation_prompts: data.validation.len(),
        start_reward: outcome.start_reward,
        final_reward: outcome.record.best_validation_reward,
        run: outcome.record,
        trials: outcome.trials,
        seconds: started.elapsed().as_secs_f64(),
    };
    let training = serde_json::json!({
        "strategy": strategy.as_str(),
        "hyperparameters": report.run.hyperparameters,
        "steps": report.run.steps,
        "start_validation_reward": finite_or_null(report.start_reward),
        "best_validation_reward": finite_or_null(report.final_reward),
        "trials": report.trials.len(),
        "seconds": report.seconds,
    });
    Ok((outcome.model, JobReport::Grpo(report), training))
}

fn finite_or_null(value: f64) -> serde_json::Value {
    if value.is_finite() {
        serde_json::json!(value)
    } else {
        serde_json::Value::Null
    }
}
