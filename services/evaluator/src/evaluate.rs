//! Checking and scoring one ONNX file against its base model: the blocking work, the same
//! for the service and for `gradients eval run`. Callers run it off the async runtime.

use std::sync::Arc;

use gradients_config::EvaluatorSettings;
use gradients_data::{Row, TaskType};
use gradients_proto::v1::ErrorCode;
use gradients_text::LossSum;

use crate::base_model::BaseModel;
use crate::checks::{check_against_base, Limits, ModelFacts};
use crate::error::Refusal;
use crate::runtime::{create_session, RunError, SessionLimits, Watchdog};
use crate::scoring::{dpo_score, max_len, supervised_score, Examples, Runner, SplitScore};

/// A split's rows, tokenized for the base model.
#[derive(Debug, Clone)]
pub struct PreparedSplit {
    pub name: &'static str,
    pub examples: Examples,
}

/// Tokenizes the rows of each split with the base model's tokenizer and the trainer's
/// truncation. A row the templates cannot read is the task's fault, not the miner's.
pub fn prepare(
    base: &BaseModel,
    task_type: TaskType,
    splits: &[(&'static str, &[Row])],
) -> Result<Vec<PreparedSplit>, Refusal> {
    let max_len = max_len(&base.config);
    splits
        .iter()
        .map(|(name, rows)| {
            Examples::build(task_type, rows, &base.tokenizer, max_len)
                .map(|examples| PreparedSplit { name, examples })
                .map_err(|e| Refusal::failed(ErrorCode::Internal, format!("the {name} split cannot be scored: {e}")))
        })
        .collect()
}

/// Every check of a submitted file against its base model, in the order a reader would
/// look: size, structure and limits, signature, architecture, change, memory.
pub fn check_artifact(bytes: &[u8], base: &BaseModel, settings: &EvaluatorSettings) -> Result<ModelFacts, Refusal> {
    if bytes.len() as u64 > settings.max_artifact_bytes {
        return Err(Refusal::invalid(
            ErrorCode::OnnxLimitExceeded,
            format!("the artifact is {} bytes, more than the limit of {}", bytes.len(), settings.max_artifact_bytes),
        ));
    }
    let facts = ModelFacts::read(bytes, &Limits::from_settings(settings))?;
    check_against_base(&facts, &base.facts)?;
    if facts.initializer_bytes > settings.max_session_memory_bytes / 2 {
        return Err(Refusal::invalid(
            ErrorCode::OnnxLimitExceeded,
            format!(
                "{} bytes of weights leave no room in the session memory limit of {}",
                facts.initializer_bytes, settings.max_session_memory_bytes
            ),
        ));
    }
    Ok(facts)
}

/// The answer-token NLL sums of `onnx` on every sequence of every split (DPO: chosen,
/// rejected, ...), under the session and run limits.
pub fn run_model(
    onnx: Arc<[u8]>,
    base: &BaseModel,
    splits: &[PreparedSplit],
    settings: &EvaluatorSettings,
) -> Result<Vec<Vec<LossSum>>, Refusal> {
    let mut session = create_session(onnx, SessionLimits::from_settings(settings)).map_err(refusal)?;
    let watchdog = Watchdog::start(settings.run_timeout()).map_err(refusal)?;
    let vocab = base.config.vocab_size();
    // Logits are the largest tensor of a run: keep them within half the memory limit.
    let by_memory = (settings.max_session_memory_bytes / 2 / (vocab as u64 * 4)).max(1) as usize;
    let mut runner = Runner {
        session: &mut session,
        watchdog: &watchdog,
        vocab,
        pad_id: base.tokenizer.pad_id(),
        batch_tokens: settings.batch_tokens.min(by_memory),
    };
    splits.iter().map(|split| runner.nll(&split.examples.sequences()).map_err(refusal)).collect()
}

/// Scores from the sums of [`run_model`]; DPO splits need the base model's sums as reference.
pub fn scores(
    splits: &[PreparedSplit],
    sums: &[Vec<LossSum>],
    reference: Option<&[Vec<LossSum>]>,
    beta: f64,
) -> Result<Vec<SplitScore>, Refusal> {
    let mut out = Vec::new();
    for (i, split) in splits.iter().enumerate() {
        let score = match &split.examples {
            Examples::Supervised(_) => supervised_score(&sums[i]),
            Examples::Pairs(_) => {
                let reference = reference.ok_or_else(|| {
                    Refusal::failed(ErrorCode::Internal, "a DPO split needs the base model's scores".to_owned())
                })?;
                dpo_score(&sums[i], &reference[i], beta)
            }
        };
        if !score.loss.is_finite() {
            return Err(Refusal::failed(
                ErrorCode::NonFiniteLoss,
                format!("the loss on the {} split is {} ({} answer tokens)", split.name, score.loss, score.tokens),
            ));
        }
        out.push(score);
    }
    Ok(out)
}

/// The refusal for a model that could not be run.
pub(crate) fn refusal(error: RunError) -> Refusal {
    match error {
        RunError::Refused(reason) => Refusal::invalid(ErrorCode::SessionRefused, reason),
        e @ (RunError::SessionTimeout(_) | RunError::RunTimeout(_)) => {
            Refusal::invalid(ErrorCode::RunLimitExceeded, e.to_string())
        }
        e @ RunError::MemoryLimit { .. } => Refusal::invalid(ErrorCode::MemoryLimitExceeded, e.to_string()),
        RunError::Failed(reason) => Refusal::failed(ErrorCode::SessionRefused, reason),
    }
}

/// Checks and scores a file in one go (what `gradients eval run` does); the base model's
/// own sums are computed for DPO.
pub fn check_and_score(
    bytes: Vec<u8>,
    base: &BaseModel,
    task_type: TaskType,
    splits: &[PreparedSplit],
    settings: &EvaluatorSettings,
) -> Result<(ModelFacts, Vec<SplitScore>), Refusal> {
    let facts = check_artifact(&bytes, base, settings)?;
    let sums = run_model(bytes.into(), base, splits, settings)?;
    let reference = if task_type == TaskType::Dpo {
        Some(
            run_model(base.onnx.clone(), base, splits, settings)
                .map_err(|r| Refusal::failed(ErrorCode::Internal, format!("the base model: {}", r.message)))?,
        )
    } else {
        None
    };
    Ok((facts, scores(splits, &sums, reference.as_deref(), settings.dpo_beta)?))
}
