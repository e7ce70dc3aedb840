//! The training objectives on tensors: answer-token NLL (supervised) and DPO.
//!
//! [`answer_nll`] is the tensor form of `gradients_text::loss::answer_nll`, the market's
//! loss; a test holds them equal.

use gradients_text::{Batch, Example, LossSum};
use tch::{Device, Kind, Tensor};

use crate::model::CausalLm;

/// A padded batch on a device.
pub struct DeviceBatch {
    pub input_ids: Tensor,
    pub attention_mask: Tensor,
    pub answer_mask: Tensor,
    /// Real (non-padding) tokens.
    pub tokens: i64,
}

impl DeviceBatch {
    pub fn new(examples: &[&Example], pad_id: u32, device: Device) -> Self {
        let batch = Batch::pad(examples, pad_id);
        let shape = [batch.batch as i64, batch.len as i64];
        let tensor = |values: &[i64]| Tensor::from_slice(values).view(shape).to(device);
        Self {
            input_ids: tensor(&batch.input_ids),
            attention_mask: tensor(&batch.attention_mask),
            answer_mask: tensor(&batch.answer_mask),
            tokens: batch.attention_mask.iter().sum(),
        }
    }

    pub fn logits(&self, model: &CausalLm, train: bool) -> Tensor {
        if model.on_cuda() {
            // bf16 autocast on CUDA; the model returns f32 logits either way.
            tch::autocast(true, || model.forward(&self.input_ids, &self.attention_mask, train))
        } else {
            model.forward(&self.input_ids, &self.attention_mask, train)
        }
    }
}

/// Per-position NLL of the next token, `[B, T-1]`, and the answer mask aligned with it.
fn token_nll(logits: &Tensor, batch: &DeviceBatch) -> (Tensor, Tensor) {
    let len = logits.size()[1];
    let log_probs = logits.narrow(1, 0, len - 1).log_softmax(-1, Kind::Float);
    let targets = batch.input_ids.narrow(1, 1, len - 1).unsqueeze(-1);
    let nll = log_probs.gather(-1, &targets, false).squeeze_dim(-1).neg();
    (nll, batch.answer_mask.narrow(1, 1, len - 1).to_kind(Kind::Float))
}

/// Sum of answer-token NLL over the batch (a scalar tensor) and the number of answer tokens.
pub fn answer_nll(logits: &Tensor, batch: &DeviceBatch) -> (Tensor, i64) {
    let (nll, mask) = token_nll(logits, batch);
    let tokens = mask.sum(Kind::Float).double_value(&[]) as i64;
    ((nll * mask).sum(Kind::Float), tokens)
}

/// Log-probability of each sequence's answer tokens, `[B]`.
pub fn answer_log_prob(logits: &Tensor, batch: &DeviceBatch) -> Tensor {
    let (nll, mask) = token_nll(logits, batch);
    (nll * mask).sum_dim_intlist(1, false, Kind::Float).neg()
}

/// DPO's loss (Rafailov et al. 2023): `-log σ(β((π_c − ref_c) − (π_r − ref_r)))`, mean
/// over the batch; the reference log-probabilities are constants.
pub fn dpo_loss(
    policy_chosen: &Tensor,
    policy_rejected: &Tensor,
    ref_chosen: &Tensor,
    ref_rejected: &Tensor,
    beta: f64,
) -> Tensor {
    let margin = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected);
    (margin * beta).log_sigmoid().neg().mean(Kind::Float)
}

/// The market's loss of `model` on supervised examples, batched, without gradients.
pub fn evaluate_nll(model: &CausalLm, examples: &[&Example], pad_id: u32, batch_size: usize) -> LossSum {
    let _guard = tch::no_grad_guard();
    let mut sum = LossSum::default();
    for chunk in examples.chunks(batch_size.max(1)) {
        let batch = DeviceBatch::new(chunk, pad_id, model.device());
        let (nll, tokens) = answer_nll(&batch.logits(model, false), &batch);
        sum.add(LossSum { nll: nll.double_value(&[]), tokens: tokens as u64 });
    }
    sum
}
