//! The building blocks both architectures share: linear layers (with an optional LoRA
//! adapter), normalisations, rotary embeddings and masked causal attention.
//!
//! Semantics are fixed by the ONNX exporter in `gradients-model` (`onnx` module docs);
//! the parity test holds the two to the same numbers.

use tch::{Kind, Tensor};

/// A LoRA adapter on a linear layer: `y += scale · B(A(dropout(x)))`.
#[derive(Debug)]
pub struct LoraAdapter {
    /// `[rank, in]`.
    pub a: Tensor,
    /// `[out, rank]`, zero at the start so an adapted model begins equal to its base.
    pub b: Tensor,
    pub scale: f64,
    pub dropout: f64,
}

/// A linear layer. `in_out` layers store their weight `[in, out]` (GPT-2's `Conv1D`),
/// the others `[out, in]` (`nn.Linear`).
#[derive(Debug)]
pub struct Linear {
    pub name: String,
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub in_out: bool,
    pub lora: Option<LoraAdapter>,
}

impl Linear {
    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let y = if self.in_out {
            let y = x.matmul(&self.weight);
            match &self.bias {
                Some(b) => y + b,
                None => y,
            }
        } else {
            x.linear(&self.weight, self.bias.as_ref())
        };
        match &self.lora {
            Some(lora) => y + x.dropout(lora.dropout, train).matmul(&lora.a.tr()).matmul(&lora.b.tr()) * lora.scale,
            None => y,
        }
    }

    /// `(in, out)` features.
    pub fn features(&self) -> (i64, i64) {
        let size = self.weight.size();
        if self.in_out {
            (size[0], size[1])
        } else {
            (size[1], size[0])
        }
    }

    /// The weight with the adapter folded in, in the layer's own orientation.
    pub fn merged_weight(&self) -> Tensor {
        let _guard = tch::no_grad_guard();
        match &self.lora {
            None => self.weight.copy(),
            Some(lora) => {
                let delta = lora.b.matmul(&lora.a) * lora.scale; // [out, in]
                let delta = if self.in_out { delta.tr() } else { delta };
                &self.weight + delta.to_kind(self.weight.kind())
            }
        }
    }
}

/// `x / sqrt(mean(x²) + eps) · w`, over the last axis.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Tensor {
    x * (x.square().mean_dim(-1, true, None) + eps).rsqrt() * weight
}

/// LayerNorm over the last axis with weight and bias.
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Tensor {
    let features = *x.size().last().expect("a tensor with features");
    x.layer_norm([features], Some(weight), Some(bias), eps, false)
}

/// Rotary position tables (HF's `rotate_half` convention): `cos` and `sin` of
/// `position · θ^(-2j/D)`, `[max_positions, D]`, computed in f64 like the exporter's.
pub fn rope_tables(max_positions: usize, head_dim: usize, theta: f64) -> (Vec<f32>, Vec<f32>) {
    let half = head_dim / 2;
    let mut cos = Vec::with_capacity(max_positions * head_dim);
    let mut sin = Vec::with_capacity(max_positions * head_dim);
    for position in 0..max_positions {
        for j in 0..head_dim {
            let inv_freq = 1.0 / theta.powf((2 * (j % half)) as f64 / head_dim as f64);
            let angle = position as f64 * inv_freq;
            cos.push(angle.cos() as f32);
            sin.push(angle.sin() as f32);
        }
    }
    (cos, sin)
}

/// Applies rotary embeddings to `[B, heads, T, D]` with tables narrowed to `[T, D]`.
pub fn apply_rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Tensor {
    let half = x.size()[3] / 2;
    let rotated = Tensor::cat(&[x.narrow(-1, half, half).neg(), x.narrow(-1, 0, half)], -1);
    x * cos + rotated * sin
}

/// Which keys each query may attend to, `[B, 1, T, T]`: earlier-or-same positions that are
/// not padding.
pub fn attention_allowed(attention_mask: &Tensor) -> Tensor {
    let size = attention_mask.size();
    let (batch, len) = (size[0], size[1]);
    let causal = Tensor::ones([len, len], (Kind::Bool, attention_mask.device())).tril(0);
    let keys = attention_mask.ne(0).view([batch, 1, 1, len]);
    causal.view([1, 1, len, len]).logical_and(&keys)
}

/// Scaled dot-product attention of `[B, heads, T, D]` tensors under `allowed`, returned
/// as `[B, T, heads · D]`.
pub fn attend(q: &Tensor, k: &Tensor, v: &Tensor, allowed: &Tensor) -> Tensor {
    let size = q.size();
    let out = Tensor::scaled_dot_product_attention(q, k, v, Some(allowed), 0.0, false, None, false);
    out.transpose(1, 2).contiguous().view([size[0], size[2], size[1] * size[3]])
}

/// `[B, T, heads · D]` → `[B, heads, T, D]`.
pub fn split_heads(x: &Tensor, heads: i64) -> Tensor {
    let size = x.size();
    x.view([size[0], size[1], heads, size[2] / heads]).transpose(1, 2)
}

/// Repeats each key/value head `times` times consecutively (HF's `repeat_kv`).
pub fn repeat_kv(x: &Tensor, times: i64) -> Tensor {
    if times == 1 {
        return x.shallow_clone();
    }
    let s = x.size();
    x.unsqueeze(2).expand([s[0], s[1], times, s[2], s[3]], false).reshape([s[0], s[1] * times, s[2], s[3]])
}
