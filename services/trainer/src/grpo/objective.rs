//! GRPO's objective (DeepSeekMath, Shao et al. 2024, arXiv 2402.03300, §4.1, eq. 3), on
//! tensors:
//!
//! ```text
//! J(θ) = mean over the G completions o_i of a prompt q of
//!        1/|o_i| Σ_t [ min(ρ_it Â_it, clip(ρ_it, 1 − ε, 1 + ε) Â_it) − β D_KL(π_θ ‖ π_ref)_it ]
//! ρ_it  = π_θ(o_it | q, o_i<t) / π_θold(o_it | q, o_i<t)
//! Â_it  = (r_i − mean(r)) / std(r)                       (outcome supervision, §4.1.2)
//! D_KL  = π_ref / π_θ − log(π_ref / π_θ) − 1             (eq. 4: Schulman's k3, ≥ 0, unbiased)
//! ```
//!
//! The loss minimised is −J, averaged over every prompt of a rollout. Probabilities are
//! of the tempered policy the completions were sampled from (logits / temperature), for
//! the policy, the sampling policy and the reference alike, as TRL computes them.

use tch::{Kind, Tensor};

/// Added to the group's standard deviation (TRL's value): a group whose rewards are all
/// equal gets advantages of exactly zero instead of a division by zero.
pub const ADVANTAGE_EPS: f64 = 1e-4;

/// Group-relative advantages: `rewards` holds consecutive groups of `group_size`
/// completions of one prompt each; every reward becomes `(r − mean) / (std + eps)` within
/// its group, std with Bessel's correction (as `torch.std`, which TRL uses).
pub fn group_advantages(rewards: &[f64], group_size: usize) -> Vec<f64> {
    assert!(group_size >= 2 && rewards.len().is_multiple_of(group_size), "whole groups of at least 2");
    rewards
        .chunks(group_size)
        .flat_map(|group| {
            let n = group.len() as f64;
            let mean = group.iter().sum::<f64>() / n;
            let std = (group.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
            group.iter().map(move |r| (r - mean) / (std + ADVANTAGE_EPS))
        })
        .collect()
}

/// Log-probability of every next token under the tempered policy: `[B, T − 1]`, where
/// entry `t` is `log π(ids[t + 1] | ids[..=t])`, from logits `[B, T, V]` and ids `[B, T]`.
pub fn token_log_probs(logits: &Tensor, input_ids: &Tensor, temperature: f64) -> Tensor {
    let len = logits.size()[1];
    let log_probs = (logits.narrow(1, 0, len - 1) / temperature).log_softmax(-1, Kind::Float);
    let targets = input_ids.narrow(1, 1, len - 1).unsqueeze(-1);
    log_probs.gather(-1, &targets, false).squeeze_dim(-1)
}

/// Schulman's k3 estimator of KL(π_θ ‖ π_ref) per token: `exp(ref − logp) − (ref − logp) − 1`.
/// Never negative, zero exactly where the two policies agree on the token.
pub fn kl_k3(log_probs: &Tensor, reference_log_probs: &Tensor) -> Tensor {
    let delta = reference_log_probs - log_probs;
    delta.exp() - &delta - 1.0
}

/// The clipped surrogate per token, `min(ρ Â, clip(ρ, 1 − ε, 1 + ε) Â)`, with `ρ` from
/// log-probabilities `[B, T']` and one advantage per sequence `[B]`.
pub fn clipped_surrogate(log_probs: &Tensor, old_log_probs: &Tensor, advantages: &Tensor, epsilon: f64) -> Tensor {
    let ratio = (log_probs - old_log_probs).exp();
    let advantages = advantages.unsqueeze(-1);
    let unclipped = &ratio * &advantages;
    let clipped = ratio.clamp(1.0 - epsilon, 1.0 + epsilon) * &advantages;
    unclipped.minimum(&clipped)
}

/// The loss of one batch and what it is made of.
pub struct GrpoLoss {
    /// −J: the scalar to minimise.
    pub loss: Tensor,
    /// Mean k3 KL per completion token (0 without a reference).
    pub kl: f64,
    /// Fraction of completion tokens whose ratio lies outside `[1 − ε, 1 + ε]`.
    pub clipped_fraction: f64,
}

/// The inputs of [`grpo_loss`], all aligned `[B, T − 1]` except `advantages` (`[B]`).
pub struct LossInputs<'a> {
    pub log_probs: &'a Tensor,
    /// The sampling policy's log-probabilities (constants).
    pub old_log_probs: &'a Tensor,
    /// The frozen start model's (constants); `None` when β is 0.
    pub reference_log_probs: Option<&'a Tensor>,
    pub advantages: &'a Tensor,
    /// 1 on completion tokens (the end-of-text token included when it was generated).
    pub completion_mask: &'a Tensor,
}

/// −J(θ) of eq. 3: each completion's token terms averaged over its own length, then the
/// completions averaged.
pub fn grpo_loss(inputs: &LossInputs<'_>, epsilon: f64, beta: f64) -> GrpoLoss {
    let mask = inputs.completion_mask;
    let surrogate = clipped_surrogate(inputs.log_probs, inputs.old_log_probs, inputs.advantages, epsilon);
    let tokens = mask.sum(Kind::Float).double_value(&[]).max(1.0);
    let (per_token, kl) = match inputs.reference_log_probs {
        Some(reference) if beta > 0.0 => {
            let kl = kl_k3(inputs.log_probs, reference);
            let mean_kl = tch::no_grad(|| (&kl * mask).sum(Kind::Float).double_value(&[])) / tokens;
            (surrogate - kl * beta, mean_kl)
        }
        _ => (surrogate, 0.0),
    };
    let lengths = mask.sum_dim_intlist(1, false, Kind::Float).clamp_min(1.0);
    let per_sequence = (per_token * mask).sum_dim_intlist(1, false, Kind::Float) / lengths;
    let clipped_fraction = tch::no_grad(|| {
        let ratio = (inputs.log_probs - inputs.old_log_probs).exp();
        let outside = ratio.lt(1.0 - epsilon).logical_or(&ratio.gt(1.0 + epsilon)).to_kind(Kind::Float);
        (outside * mask).sum(Kind::Float).double_value(&[]) / tokens
    });
    GrpoLoss { loss: per_sequence.mean(Kind::Float).neg(), kl, clipped_fraction }
}
