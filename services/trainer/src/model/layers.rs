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

/// Position of every column of a left- or right-padded `attention_mask` `[B, S]`: the
/// number of real tokens before it (padding gets 0, never read), narrowed to the last
/// `new` columns. HF's `generate` numbers positions the same way.
pub fn positions_from_mask(attention_mask: &Tensor, new: i64) -> Tensor {
    let total = attention_mask.size()[1];
    (attention_mask.ne(0).to_kind(Kind::Int64).cumsum(1, Kind::Int64) - 1).clamp_min(0).narrow(1, total - new, new)
}

/// Which keys each of the last `new` queries may attend to, `[B, 1, new, S]`, for a cached
/// forward over `attention_mask` `[B, S]`: earlier-or-same real tokens, and always the query
/// itself, so a padding query (left padding) has one key and yields numbers, not NaN that
/// would reach real tokens through later layers' values.
pub fn cached_attention_allowed(attention_mask: &Tensor, new: i64) -> Tensor {
    let size = attention_mask.size();
    let (batch, total) = (size[0], size[1]);
    let device = attention_mask.device();
    let queries = Tensor::arange_start(total - new, total, (Kind::Int64, device)).view([new, 1]);
    let keys = Tensor::arange(total, (Kind::Int64, device)).view([1, total]);
    let causal = keys.le_tensor(&queries).view([1, 1, new, total]);
    let itself = keys.eq_tensor(&queries).view([1, 1, new, total]);
    let real = attention_mask.ne(0).view([batch, 1, 1, total]);
    causal.logical_and(&real).logical_or(&itself)
}

/// Rotary tables `[max_positions, D]` gathered at `positions` `[B, T]`, as `[B, 1, T, D]`.
pub fn rope_at(table: &Tensor, positions: &Tensor) -> Tensor {
    let (batch, len) = (positions.size()[0], positions.size()[1]);
    table.index_select(0, &positions.reshape([-1])).view([batch, 1, len, -1])
}

/// The keys and values of every layer for the tokens seen so far, `[B, kv_heads, S, D]`
/// each (before grouped-query repetition), so decoding one token costs one token's work.
#[derive(Debug, Default)]
pub struct KvCache {
    layers: Vec<(Tensor, Tensor)>,
}

impl KvCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Tokens cached so far.
    pub fn len(&self) -> i64 {
        self.layers.first().map_or(0, |(k, _)| k.size()[2])
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends `k`, `v` `[B, kv_heads, t, D]` to layer `layer`'s cache and returns the whole.
    pub fn append(&mut self, layer: usize, k: Tensor, v: Tensor) -> (Tensor, Tensor) {
        if layer == self.layers.len() {
            self.layers.push((k, v));
        } else {
            let (old_k, old_v) = &self.layers[layer];
            self.layers[layer] = (Tensor::cat(&[old_k, &k], 2), Tensor::cat(&[old_v, &v], 2));
        }
        let (k, v) = &self.layers[layer];
        (k.shallow_clone(), v.shallow_clone())
    }

    /// Keeps only the batch rows `rows` (i64 indices), e.g. when some sequences finished.
    pub fn retain(&mut self, rows: &Tensor) {
        for (k, v) in &mut self.layers {
            *k = k.index_select(0, rows);
            *v = v.index_select(0, rows);
        }
    }
}
