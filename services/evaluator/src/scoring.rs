//! The market's loss of an ONNX model on rows: the same template, tokenizer, truncation and
//! `gradients_text::loss::answer_nll` the trainer uses, run by ONNX Runtime.
//!
//! Examples are sorted by length and packed into batches of at most `batch_tokens`
//! (batch x padded length), so padding stays small; every example's loss is kept (the
//! per-row evidence) and summed in row order, so the mean does not depend on batching.
//! DPO rows are scored as in the trainer's validation: `-log σ(β((π_c − ref_c) − (π_r −
//! ref_r)))` per pair, the base model as reference, and the share of pairs whose margin is
//! positive (preference accuracy).

use gradients_data::{Row, TaskType};
use gradients_text::loss::answer_nll;
use gradients_text::{dpo_pair, sft_example, Batch, Example, LossSum, Tokenizer};
use ort::session::Session;
use ort::value::Tensor;
use serde::Serialize;

use crate::runtime::{RunError, Watchdog};

/// The truncation length for a base model: the trainer's rule.
pub fn max_len(config: &gradients_model::ModelConfig) -> usize {
    config.max_positions().min(gradients_text::MAX_EXAMPLE_TOKENS)
}

/// What to score: tokenized rows of one split.
#[derive(Debug, Clone)]
pub enum Examples {
    /// One example per row (instruct, chat).
    Supervised(Vec<Example>),
    /// Chosen and rejected per row (DPO).
    Pairs(Vec<(Example, Example)>),
}

impl Examples {
    /// Tokenizes `rows` for `task_type` with the market's templates.
    pub fn build(
        task_type: TaskType,
        rows: &[Row],
        tokenizer: &Tokenizer,
        max_len: usize,
    ) -> Result<Self, gradients_text::TextError> {
        match task_type {
            TaskType::Dpo => Ok(Self::Pairs(
                rows.iter()
                    .enumerate()
                    .map(|(i, r)| dpo_pair(tokenizer, i + 1, r, max_len))
                    .collect::<Result<_, _>>()?,
            )),
            _ => Ok(Self::Supervised(
                rows.iter()
                    .enumerate()
                    .map(|(i, r)| sft_example(tokenizer, task_type, i + 1, r, max_len))
                    .collect::<Result<_, _>>()?,
            )),
        }
    }

    /// Every sequence to run through a model, in row order (pairs: chosen then rejected).
    pub fn sequences(&self) -> Vec<&Example> {
        match self {
            Self::Supervised(examples) => examples.iter().collect(),
            Self::Pairs(pairs) => pairs.iter().flat_map(|(c, r)| [c, r]).collect(),
        }
    }

    pub fn rows(&self) -> usize {
        match self {
            Self::Supervised(examples) => examples.len(),
            Self::Pairs(pairs) => pairs.len(),
        }
    }
}

/// One row's part of a split's score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RowScore {
    /// Supervised: the summed answer-token NLL; DPO: the pair's DPO loss.
    pub loss: f64,
    /// Answer tokens scored (DPO: of chosen and rejected together).
    pub tokens: u64,
    /// DPO: whether the model prefers chosen more than the base model does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preferred: Option<bool>,
}

/// A split's score and the rows behind it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SplitScore {
    /// Supervised: token-weighted mean NLL; DPO: mean DPO loss over pairs.
    pub loss: f64,
    pub tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preference_accuracy: Option<f64>,
    pub rows: Vec<RowScore>,
}

/// Runs a model on batches of examples.
pub struct Runner<'a> {
    pub session: &'a mut Session,
    pub watchdog: &'a Watchdog,
    pub vocab: usize,
    pub pad_id: u32,
    pub batch_tokens: usize,
}

impl Runner<'_> {
    /// The answer-token NLL of every sequence, in the order given.
    pub fn nll(&mut self, sequences: &[&Example]) -> Result<Vec<LossSum>, RunError> {
        let mut out = vec![LossSum::default(); sequences.len()];
        for batch in batches(sequences, self.batch_tokens) {
            let chunk: Vec<&Example> = batch.iter().map(|&i| sequences[i]).collect();
            let sums = self.run_batch(&chunk)?;
            for (k, &i) in batch.iter().enumerate() {
                out[i] = sums[k];
            }
        }
        Ok(out)
    }

    fn run_batch(&mut self, chunk: &[&Example]) -> Result<Vec<LossSum>, RunError> {
        let batch = Batch::pad(chunk, self.pad_id);
        let shape = [batch.batch, batch.len];
        let ids = Tensor::from_array((shape, batch.input_ids)).map_err(|e| RunError::Failed(e.to_string()))?;
        let mask = Tensor::from_array((shape, batch.attention_mask)).map_err(|e| RunError::Failed(e.to_string()))?;
        let outputs = self
            .session
            .run_with_options(ort::inputs!["input_ids" => ids, "attention_mask" => mask], &self.watchdog.options)
            .map_err(|e| self.watchdog.run_error(e))?;
        let logits = outputs.get("logits").ok_or_else(|| RunError::Failed("no logits output".into()))?;
        let (dims, data) = logits.try_extract_tensor::<f32>().map_err(|e| RunError::Failed(e.to_string()))?;
        let expected = [batch.batch as i64, batch.len as i64, self.vocab as i64];
        if dims[..] != expected {
            return Err(RunError::Failed(format!("logits have shape {:?}, expected {expected:?}", &dims[..])));
        }
        let per_row = batch.len * self.vocab;
        Ok(chunk
            .iter()
            .enumerate()
            .map(|(b, e)| answer_nll(&data[b * per_row..(b + 1) * per_row], self.vocab, e))
            .collect())
    }
}

/// How sequences are run: indices sorted by length (then position), packed into batches
/// whose rows times longest length stays within `batch_tokens` (a longer sequence runs alone).
pub fn batches(sequences: &[&Example], batch_tokens: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..sequences.len()).collect();
    order.sort_by_key(|&i| (sequences[i].len(), i));
    let mut out = Vec::new();
    let mut start = 0;
    while start < order.len() {
        // Sorted ascending: the last example of a batch is its longest.
        let mut end = start + 1;
        while end < order.len() && (end + 1 - start) * sequences[order[end]].len() <= batch_tokens {
            end += 1;
        }
        out.push(order[start..end].to_vec());
        start = end;
    }
    out
}

/// A supervised split's score from its per-example sums.
pub fn supervised_score(sums: &[LossSum]) -> SplitScore {
    let mut total = LossSum::default();
    for sum in sums {
        total.add(*sum);
    }
    SplitScore {
        loss: total.mean(),
        tokens: total.tokens,
        preference_accuracy: None,
        rows: sums.iter().map(|s| RowScore { loss: s.nll, tokens: s.tokens, preferred: None }).collect(),
    }
}

/// A DPO split's score from the model's and the reference's per-sequence sums (chosen,
/// rejected, chosen, rejected, ...).
pub fn dpo_score(policy: &[LossSum], reference: &[LossSum], beta: f64) -> SplitScore {
    let mut rows = Vec::with_capacity(policy.len() / 2);
    for (p, r) in policy.chunks(2).zip(reference.chunks(2)) {
        // log p = -nll; margin = (π_c − ref_c) − (π_r − ref_r).
        let margin = (-p[0].nll + r[0].nll) - (-p[1].nll + r[1].nll);
        rows.push(RowScore {
            loss: softplus(-beta * margin),
            tokens: p[0].tokens + p[1].tokens,
            preferred: Some(margin > 0.0),
        });
    }
    let n = rows.len().max(1) as f64;
    let loss = if rows.is_empty() { f64::NAN } else { rows.iter().map(|r| r.loss).sum::<f64>() / n };
    SplitScore {
        loss,
        tokens: rows.iter().map(|r| r.tokens).sum(),
        preference_accuracy: Some(rows.iter().filter(|r| r.preferred == Some(true)).count() as f64 / n),
        rows,
    }
}

/// `-log σ(-x)` = `log(1 + e^x)`, stable for large |x|.
fn softplus(x: f64) -> f64 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pair the model prefers exactly as the reference does costs log 2, and accuracy
    /// counts only a strictly better margin.
    #[test]
    fn dpo_of_an_unchanged_model_is_log_two() {
        let s = |nll| LossSum { nll, tokens: 3 };
        let score = dpo_score(&[s(1.0), s(2.0)], &[s(1.0), s(2.0)], 0.1);
        assert!((score.loss - std::f64::consts::LN_2).abs() < 1e-12);
        assert_eq!(score.preference_accuracy, Some(0.0));
        let better = dpo_score(&[s(0.5), s(3.0)], &[s(1.0), s(2.0)], 0.1);
        assert!(better.loss < std::f64::consts::LN_2);
        assert_eq!(better.preference_accuracy, Some(1.0));
        assert_eq!(better.tokens, 6);
    }

    /// The supervised mean is token-weighted over rows.
    #[test]
    fn supervised_mean_is_token_weighted() {
        let score = supervised_score(&[LossSum { nll: 3.0, tokens: 1 }, LossSum { nll: 1.0, tokens: 3 }]);
        assert_eq!((score.loss, score.tokens, score.rows.len()), (1.0, 4, 2));
    }

    /// Batches follow length order, keep within the token budget, and cover every sequence once.
    #[test]
    fn batches_are_sorted_and_bounded() {
        let example = |n: usize| Example { ids: vec![1; n], is_answer: vec![false; n] };
        let examples: Vec<Example> = [5, 1, 9, 3, 3, 20].into_iter().map(example).collect();
        let refs: Vec<&Example> = examples.iter().collect();
        let packed = batches(&refs, 10);
        assert_eq!(packed, vec![vec![1, 3, 4], vec![0], vec![2], vec![5]]);
        for batch in &packed {
            let longest = batch.iter().map(|&i| refs[i].len()).max().unwrap();
            assert!(batch.len() == 1 || batch.len() * longest <= 10);
        }
    }

    #[test]
    fn softplus_is_stable() {
        assert!((softplus(0.0) - std::f64::consts::LN_2).abs() < 1e-12);
        assert!((softplus(800.0) - 800.0).abs() < 1e-9);
        assert!(softplus(-800.0) >= 0.0);
    }
}
