//! Scoring a GRPO task: the model writes, the task's reward functions judge.
//!
//! For every prompt of the test and synthetic splits the model generates greedily through
//! ONNX Runtime ([`crate::generation`]) from the prompt the trainer samples from
//! (`gradients_text::grpo_prompt_ids`); each completion (up to its end-of-text) is decoded
//! and scored by the task's weighted reward functions (`gradients_reward::RewardSet`, the
//! code the trainer optimises) against the raw prompt and the row's columns. A split's
//! score is the mean reward over its rows, in [0, 1], higher is better: the ledger ranks
//! GRPO results that way round and mixes test and synth as G.O.D. does.
//!
//! The per-row evidence carries each row's reward and, for the ledger's paired bootstrap
//! (which compares per-row losses, lower is better), `loss` = the negated reward.
//!
//! Bounds: every prompt gets the same new-token limit, the smaller of
//! `grpo_max_new_tokens` and `grpo_max_generated_tokens` shared out over the task's
//! prompts, so one evaluation never generates more than the budget whatever the model
//! does, and every model of a task is scored under the same limit.

use std::sync::Arc;

use gradients_config::EvaluatorSettings;
use gradients_data::Row;
use gradients_proto::v1::ErrorCode;
use gradients_reward::RewardSet;
use gradients_text::Tokenizer;
use serde::Serialize;

use crate::base_model::BaseModel;
use crate::error::Refusal;
use crate::evaluate::refusal;
use crate::generation::{Generated, GenerationStats, Generator};
use crate::runtime::{create_session, SessionLimits, Watchdog};

/// One split's prompts, ready to generate from.
#[derive(Debug, Clone)]
pub struct GrpoSplit {
    pub name: &'static str,
    pub rows: Vec<Row>,
    /// Each row's templated prompt, tokenized and cut to leave room for the completion.
    pub prompt_ids: Vec<Vec<u32>>,
}

/// A GRPO task ready to score models on.
#[derive(Debug, Clone)]
pub struct GrpoTask {
    pub splits: Vec<GrpoSplit>,
    pub rewards: RewardSet,
    /// New tokens each prompt may get (the same for every model of the task).
    pub max_new_tokens: usize,
}

/// A split's mean reward and the rows behind it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RewardScore {
    /// Mean reward over the rows, in [0, 1]; higher is better.
    pub reward: f64,
    /// New tokens generated over the split (end-of-text tokens excluded).
    pub tokens: u64,
    /// Share of completions the model ended itself (the rest hit the new-token limit).
    pub stopped_share: f64,
    pub rows: Vec<RewardRow>,
}

/// One row's evidence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RewardRow {
    pub reward: f64,
    /// The negated reward: what the ledger's paired comparison of per-row losses reads.
    pub loss: f64,
    pub tokens: u64,
    pub stopped: bool,
}

/// The new-token limit of a task with `prompts` prompts.
pub fn max_new_tokens(settings: &EvaluatorSettings, prompts: usize) -> usize {
    let share = settings.grpo_max_generated_tokens / prompts.max(1) as u64;
    settings.grpo_max_new_tokens.min(usize::try_from(share).unwrap_or(usize::MAX)).max(1)
}

/// The context a prompt and its completion share: the model's, within the market's
/// example length (the trainer's rule).
pub fn context_len(base: &BaseModel) -> usize {
    crate::scoring::max_len(&base.config)
}

/// Tokenizes every split's prompts and checks every row has the columns the rewards read.
/// A row that cannot be scored is the task's fault, not a miner's.
pub fn prepare(
    base: &BaseModel,
    rewards: RewardSet,
    splits: &[(&'static str, &[Row])],
    settings: &EvaluatorSettings,
) -> Result<GrpoTask, Refusal> {
    let prompts: usize = splits.iter().map(|(_, rows)| rows.len()).sum();
    let max_new_tokens = max_new_tokens(settings, prompts);
    let context = context_len(base);
    if context <= max_new_tokens {
        return Err(Refusal::failed(
            ErrorCode::Internal,
            format!("the model's context of {context} tokens leaves no room for a prompt and {max_new_tokens} new"),
        ));
    }
    let mut out = Vec::with_capacity(splits.len());
    for (name, rows) in splits {
        let cannot = |code: ErrorCode, row: usize, reason: String| {
            Refusal::failed(code, format!("the {name} split cannot be scored: row {row}: {reason}"))
        };
        let mut prompt_ids = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            rewards.check_row(row.as_map()).map_err(|e| {
                let code = match e {
                    gradients_reward::ColumnError::Missing { .. } => ErrorCode::MissingColumn,
                    gradients_reward::ColumnError::WrongType { .. } => ErrorCode::WrongType,
                };
                cannot(code, i + 1, e.to_string())
            })?;
            let ids = gradients_text::grpo_prompt_ids(&base.tokenizer, i + 1, row, context - max_new_tokens)
                .map_err(|e| cannot(ErrorCode::MissingColumn, i + 1, e.to_string()))?;
            prompt_ids.push(ids);
        }
        out.push(GrpoSplit { name, rows: rows.to_vec(), prompt_ids });
    }
    Ok(GrpoTask { splits: out, rewards, max_new_tokens })
}

/// Generates with `onnx` for every prompt and scores the completions, split by split,
/// under the session, run and token limits.
pub fn score_model(
    onnx: Arc<[u8]>,
    base: &BaseModel,
    task: &GrpoTask,
    settings: &EvaluatorSettings,
) -> Result<(Vec<RewardScore>, GenerationStats), Refusal> {
    let (completions, stats) = completions(onnx, base, task, settings)?;
    let scores = task
        .splits
        .iter()
        .zip(&completions)
        .map(|(split, completions)| {
            let rows = split
                .rows
                .iter()
                .zip(completions)
                .map(|(row, completion)| {
                    let reward = reward_of(&task.rewards, &base.tokenizer, row, &completion.ids);
                    RewardRow {
                        reward,
                        loss: -reward,
                        tokens: completion.ids.len() as u64,
                        stopped: completion.stopped,
                    }
                })
                .collect();
            summarise(split.name, rows)
        })
        .collect::<Result<_, _>>()?;
    Ok((scores, stats))
}

/// The greedy completion of every prompt of every split by `onnx`, and what it cost.
pub fn completions(
    onnx: Arc<[u8]>,
    base: &BaseModel,
    task: &GrpoTask,
    settings: &EvaluatorSettings,
) -> Result<(Vec<Vec<Generated>>, GenerationStats), Refusal> {
    let mut session = create_session(onnx, SessionLimits::from_settings(settings)).map_err(refusal)?;
    let watchdog = Watchdog::start(settings.run_timeout()).map_err(refusal)?;
    let vocab = base.config.vocab_size();
    // Logits are the largest tensor of a run: keep them within half the memory limit.
    let by_memory = (settings.max_session_memory_bytes / 2 / (vocab as u64 * 4)).max(1) as usize;
    let mut generator = Generator {
        session: &mut session,
        watchdog: &watchdog,
        vocab,
        pad_id: base.tokenizer.pad_id(),
        stop_ids: stop_ids(&base.tokenizer),
        max_len: context_len(base),
        batch_tokens: settings.batch_tokens.min(by_memory),
    };
    let mut stats = GenerationStats::default();
    let mut out = Vec::with_capacity(task.splits.len());
    for split in &task.splits {
        let prompts: Vec<&[u32]> = split.prompt_ids.iter().map(Vec::as_slice).collect();
        let (completions, cost) = generator.greedy(&prompts, task.max_new_tokens).map_err(refusal)?;
        stats.add(cost);
        out.push(completions);
    }
    Ok((out, stats))
}

/// The ids that end a completion: the tokenizer's end-of-text (what the trainer stops at).
pub fn stop_ids(tokenizer: &Tokenizer) -> Vec<u32> {
    vec![tokenizer.eos_id()]
}

/// The reward of a completion's ids for `row`: decoded (special tokens skipped; ids the
/// tokenizer cannot decode give an empty completion, which is the model's doing) and
/// judged against the row's raw prompt and columns.
pub fn reward_of(rewards: &RewardSet, tokenizer: &Tokenizer, row: &Row, ids: &[u32]) -> f64 {
    let text = tokenizer.decode(ids).unwrap_or_default();
    rewards.score(row.get_str("prompt").unwrap_or_default(), text.as_bytes(), row.as_map())
}

/// A split's mean reward; a split without rows, or a reward that is not a number, cannot be
/// scored.
pub fn summarise(name: &str, rows: Vec<RewardRow>) -> Result<RewardScore, Refusal> {
    if rows.is_empty() {
        return Err(Refusal::failed(ErrorCode::Internal, format!("the {name} split has no rows")));
    }
    let n = rows.len() as f64;
    let reward = rows.iter().map(|r| r.reward).sum::<f64>() / n;
    if !reward.is_finite() {
        return Err(Refusal::failed(
            ErrorCode::NonFiniteLoss,
            format!("the mean reward on the {name} split is {reward}"),
        ));
    }
    Ok(RewardScore {
        reward,
        tokens: rows.iter().map(|r| r.tokens).sum(),
        stopped_share: rows.iter().filter(|r| r.stopped).count() as f64 / n,
        rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(reward: f64, stopped: bool) -> RewardRow {
        RewardRow { reward, loss: -reward, tokens: 3, stopped }
    }

    /// The split's reward is the plain mean over rows; the share of ended texts is counted.
    #[test]
    fn a_split_scores_its_mean_reward() {
        let score = summarise("test", vec![row(1.0, true), row(0.0, false), row(0.5, true), row(0.5, true)]).unwrap();
        assert_eq!((score.reward, score.tokens, score.stopped_share), (0.5, 12, 0.75));
        assert_eq!(score.rows[1].loss, -0.0);
        assert_eq!(summarise("test", Vec::new()).unwrap_err().code, ErrorCode::Internal);
        assert_eq!(summarise("synth", vec![row(f64::NAN, true)]).unwrap_err().code, ErrorCode::NonFiniteLoss);
    }

    /// The budget is shared out over the prompts and never goes below one token.
    #[test]
    fn the_token_budget_limits_each_prompt() {
        let settings =
            EvaluatorSettings { grpo_max_new_tokens: 64, grpo_max_generated_tokens: 1000, ..Default::default() };
        assert_eq!(max_new_tokens(&settings, 10), 64);
        assert_eq!(max_new_tokens(&settings, 100), 10);
        assert_eq!(max_new_tokens(&settings, 5000), 1);
        assert_eq!(max_new_tokens(&settings, 0), 64);
    }

    /// A row the rewards cannot read is the task's fault: a typed failure naming split and row.
    #[test]
    fn rows_without_the_rewards_columns_are_refused() {
        let base = crate::base_model::BaseModel::from_files("tiny", tiny_files()).unwrap();
        let rewards = RewardSet::new(vec![gradients_reward::RewardSpec::named("exact_match")]).unwrap();
        let good = Row::from_map(serde_json::json!({"prompt": "2+2", "answer": "4"}).as_object().unwrap().clone());
        let bad = Row::from_map(serde_json::json!({"prompt": "2+3"}).as_object().unwrap().clone());
        let settings = EvaluatorSettings::default();
        let rows = [good.clone(), bad];
        let refusal = prepare(&base, rewards.clone(), &[("test", &rows)], &settings).unwrap_err();
        assert_eq!(refusal.code, ErrorCode::MissingColumn);
        assert!(refusal.message.contains("test split") && refusal.message.contains("row 2"), "{refusal}");
        let task = prepare(&base, rewards, &[("test", &[good])], &settings).unwrap();
        assert_eq!(task.max_new_tokens, 64);
        assert_eq!(
            base.tokenizer.decode(&task.splits[0].prompt_ids[0]).unwrap(),
            "### Instruction:\n2+2\n### Response:\n"
        );
    }

    /// A small model folder's files, as the store hands them over.
    fn tiny_files() -> crate::base_model::ModelFiles {
        let config = gradients_model::ModelConfig::from_json(
            serde_json::json!({
                "model_type": "llama", "vocab_size": 258, "hidden_size": 16, "intermediate_size": 32,
                "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2, "rms_norm_eps": 1e-5,
                "rope_theta": 10000.0, "max_position_embeddings": 128, "tie_word_embeddings": true,
                "eos_token_id": 256, "hidden_act": "silu"
            })
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        let mut weights = gradients_model::Weights::default();
        for spec in config.parameters() {
            let n: usize = spec.shape.iter().product();
            weights.0.insert(spec.name.clone(), gradients_model::Weight::new(spec.shape.clone(), vec![0.01; n]));
        }
        crate::base_model::ModelFiles {
            config: config.to_json(),
            tokenizer: Tokenizer::byte_level().to_json().into_bytes(),
            onnx: Some(gradients_model::onnx::export(&config, &weights).unwrap()),
            safetensors: None,
        }
    }

    /// Completions are judged by the task's functions on the decoded text and raw prompt.
    #[test]
    fn completions_are_decoded_and_judged() {
        let tokenizer = Tokenizer::byte_level();
        let rewards = RewardSet::new(vec![gradients_reward::RewardSpec::named("exact_match")]).unwrap();
        let row = Row::from_map(serde_json::json!({"prompt": "2+2", "answer": "4"}).as_object().unwrap().clone());
        let ids = |s: &str| tokenizer.encode(s).unwrap();
        assert_eq!(reward_of(&rewards, &tokenizer, &row, &ids("4")), 1.0);
        assert_eq!(reward_of(&rewards, &tokenizer, &row, &ids("5")), 0.0);
        // The end-of-text id never reaches the functions (it is a special token).
        let mut with_eos = ids("4");
        with_eos.push(tokenizer.eos_id());
        assert_eq!(reward_of(&rewards, &tokenizer, &row, &with_eos), 1.0);
        // Bytes that are not UTF-8 are a completion like any other, not a crash.
        assert_eq!(reward_of(&rewards, &tokenizer, &row, &[0xff, 0xfe]), 0.0);
    }
}
