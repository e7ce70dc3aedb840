//! The market's loss: mean negative log-likelihood of answer tokens, in nats.
//!
//! A data set's loss is the sum over all its answer tokens divided by their number (token
//! weighted, so long answers count for their length). The trainer computes it with tensors
//! and is tested against this function; the evaluator calls it on ONNX Runtime's logits.

use crate::Example;

/// A running sum of answer-token negative log-likelihoods.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LossSum {
    pub nll: f64,
    pub tokens: u64,
}

impl LossSum {
    /// The mean loss per answer token (NaN when there were none).
    pub fn mean(&self) -> f64 {
        if self.tokens == 0 {
            f64::NAN
        } else {
            self.nll / self.tokens as f64
        }
    }

    pub fn add(&mut self, other: LossSum) {
        self.nll += other.nll;
        self.tokens += other.tokens;
    }
}

/// The answer-token NLL of one example given its logits (`[len, vocab]`, row-major, the
/// row at position `t` predicting token `t + 1`). Only the example's own positions are
/// read, so logits of a right-padded batch row can be passed as they are.
pub fn answer_nll(logits: &[f32], vocab: usize, example: &Example) -> LossSum {
    let mut sum = LossSum::default();
    for target in 1..example.len() {
        if !example.is_answer[target] {
            continue;
        }
        let row = &logits[(target - 1) * vocab..target * vocab];
        let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
        let log_sum_exp = max + row.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln();
        sum.nll += log_sum_exp - row[example.ids[target] as usize] as f64;
        sum.tokens += 1;
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_logits_cost_log_vocab_per_answer_token() {
        let example = Example { ids: vec![0, 1, 2, 3], is_answer: vec![false, false, true, true] };
        let sum = answer_nll(&[0.0; 4 * 5], 5, &example);
        assert_eq!(sum.tokens, 2);
        assert!((sum.mean() - 5f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn a_confident_right_answer_costs_almost_nothing_and_a_wrong_one_a_lot() {
        let example = Example { ids: vec![0, 1], is_answer: vec![false, true] };
        let right = answer_nll(&[0.0, 30.0, 0.0], 3, &example);
        let wrong = answer_nll(&[30.0, 0.0, 0.0], 3, &example);
        assert!(right.mean() < 1e-9);
        assert!((wrong.mean() - 30.0).abs() < 1e-6);
        assert!(LossSum::default().mean().is_nan());
    }
}
