//! A task made ready to score models on, and one model scored on it, whatever the task
//! type: by the market's loss on the answers (instruct, chat, DPO: [`crate::evaluate`]) or
//! by the reward of what the model writes (GRPO: [`crate::grpo`]). The service's handlers,
//! for the base model and for every submission, go through here, so both are scored alike.
//!
//! Both kinds fill the same fields of an evaluation: `test_loss` / `synth_loss` hold the
//! split's loss (lower is better) or, for GRPO, its mean reward (higher is better), which is
//! how the ledger's scoring reads them per task type; `test_tokens` / `synth_tokens` count
//! answer tokens scored or, for GRPO, tokens generated.

use std::sync::Arc;

use gradients_config::EvaluatorSettings;
use gradients_data::{Row, TaskType};
use gradients_proto::v1::{ErrorCode, EvaluationKind, EvaluationResult};
use gradients_reward::{RewardSet, RewardSpec};
use gradients_text::LossSum;
use serde_json::json;

use crate::base_model::BaseModel;
use crate::error::Refusal;
use crate::evaluate::{prepare, run_model, scores, PreparedSplit};
use crate::generation::GenerationStats;
use crate::grpo::{GrpoTask, RewardScore};
use crate::scoring::SplitScore;

/// A task's splits ready to score.
pub struct Prepared {
    pub base: Arc<BaseModel>,
    pub work: Work,
}

/// What scoring a model on the task takes.
pub enum Work {
    /// The splits tokenized; for DPO with the base model's sums as reference.
    Loss { splits: Vec<PreparedSplit>, reference: Option<Vec<Vec<LossSum>>> },
    /// The prompts and the reward functions.
    Reward(GrpoTask),
}

/// A model's scores, split by split (test first, then synth).
pub enum Scores {
    Loss(Vec<(&'static str, SplitScore)>),
    Reward(Vec<(&'static str, RewardScore)>, GenerationStats),
}

/// The data crate's type of a task type the evaluator scores.
pub fn scored_type(task_type: gradients_proto::v1::TaskType) -> Option<TaskType> {
    use gradients_proto::v1::TaskType as Wire;
    match task_type {
        Wire::Instruct => Some(TaskType::Instruct),
        Wire::Chat => Some(TaskType::Chat),
        Wire::Dpo => Some(TaskType::Dpo),
        Wire::Grpo => Some(TaskType::Grpo),
        _ => None,
    }
}

impl Prepared {
    /// Tokenizes the splits' rows (and, for DPO, scores the base model as reference; for
    /// GRPO, checks the reward functions and the columns they read). Blocking.
    pub fn build(
        base: Arc<BaseModel>,
        task_type: TaskType,
        rewards: &[RewardSpec],
        rows: &[(&'static str, &[Row])],
        settings: &EvaluatorSettings,
    ) -> Result<Self, Refusal> {
        let work = match task_type {
            TaskType::Grpo => {
                let rewards = RewardSet::new(rewards.to_vec()).map_err(|e| {
                    Refusal::failed(
                        ErrorCode::InvalidRewardFunction,
                        format!("the task's reward functions cannot be used: {e}"),
                    )
                })?;
                Work::Reward(crate::grpo::prepare(&base, rewards, rows, settings)?)
            }
            _ => {
                let splits = prepare(&base, task_type, rows)?;
                let reference = if task_type == TaskType::Dpo {
                    Some(run_model(base.onnx.clone(), &base, &splits, settings)?)
                } else {
                    None
                };
                Work::Loss { splits, reference }
            }
        };
        Ok(Self { base, work })
    }

    /// Scores `onnx` (the base model's own file, or a checked submission). Blocking.
    pub fn score(&self, onnx: Arc<[u8]>, settings: &EvaluatorSettings) -> Result<Scores, Refusal> {
        match &self.work {
            Work::Loss { splits, reference } => {
                // The base model's own sums are the DPO reference already computed.
                let sums = match reference {
                    Some(reference) if Arc::ptr_eq(&onnx, &self.base.onnx) => reference.clone(),
                    _ => run_model(onnx, &self.base, splits, settings)?,
                };
                let scores = scores(splits, &sums, reference.as_deref(), settings.dpo_beta)?;
                Ok(Scores::Loss(splits.iter().map(|s| s.name).zip(scores).collect()))
            }
            Work::Reward(task) => {
                let (scores, stats) = crate::grpo::score_model(onnx, &self.base, task, settings)?;
                Ok(Scores::Reward(task.splits.iter().map(|s| s.name).zip(scores).collect(), stats))
            }
        }
    }
}

impl Scores {
    /// Fills a result's per-split values (loss, or GRPO's mean reward) and token counts.
    pub fn fill(&self, result: &mut EvaluationResult) {
        let mut put = |name: &str, value: f64, tokens: u64| {
            if name == "test" {
                result.test_loss = Some(value);
                result.test_tokens = tokens;
            } else {
                result.synth_loss = Some(value);
                result.synth_tokens = tokens;
            }
        };
        match self {
            Scores::Loss(splits) => {
                for (name, score) in splits {
                    put(name, score.loss, score.tokens);
                }
                if let Some((_, test)) = splits.iter().find(|(n, _)| *n == "test") {
                    result.preference_accuracy = test.preference_accuracy;
                }
            }
            Scores::Reward(splits, _) => {
                for (name, score) in splits {
                    put(name, score.reward, score.tokens);
                }
            }
        }
    }

    /// The evidence object behind `result`: every split's per-row scores (and, for GRPO,
    /// what generating cost).
    pub fn evidence(&self, result: &EvaluationResult) -> serde_json::Value {
        let (splits, generation): (serde_json::Map<String, serde_json::Value>, _) = match self {
            Scores::Loss(splits) => (splits.iter().map(|(n, s)| ((*n).to_owned(), json!(s))).collect(), None),
            Scores::Reward(splits, stats) => (
                splits.iter().map(|(n, s)| ((*n).to_owned(), json!(s))).collect(),
                Some(json!({"new_tokens": stats.new_tokens, "positions": stats.positions, "runs": stats.runs})),
            ),
        };
        let mut evidence = json!({
            "evaluation_id": result.evaluation_id,
            "task_id": result.task_id,
            "miner_id": result.miner_id,
            "submission_id": result.submission_id,
            "kind": EvaluationKind::try_from(result.kind).unwrap_or_default().as_str_name(),
            "artifact_sha256": result.artifact_sha256,
            "splits": splits,
        });
        if let Some(generation) = generation {
            evidence["generation"] = generation;
        }
        evidence
    }
}
