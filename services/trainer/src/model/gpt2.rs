//! GPT-2 (`GPT2LMHeadModel`): learned positions, pre-LayerNorm blocks, fused QKV `Conv1D`
//! layers stored `[in, out]`, GELU (tanh approximation), output tied to the embeddings.

use std::collections::HashMap;

use gradients_model::Gpt2Config;
use tch::{Kind, Tensor};

use super::layers::{
    attend, attention_allowed, cached_attention_allowed, layer_norm, positions_from_mask, split_heads, KvCache, Linear,
};
use super::take;

#[derive(Debug)]
pub struct Gpt2Layer {
    pub ln_1: (Tensor, Tensor),
    pub c_attn: Linear,
    pub attn_proj: Linear,
    pub ln_2: (Tensor, Tensor),
    pub c_fc: Linear,
    pub mlp_proj: Linear,
}

#[derive(Debug)]
pub struct Gpt2 {
    pub config: Gpt2Config,
    pub wte: Tensor,
    pub wpe: Tensor,
    pub layers: Vec<Gpt2Layer>,
    pub ln_f: (Tensor, Tensor),
}

impl Gpt2 {
    pub fn new(config: Gpt2Config, vars: &mut HashMap<String, Tensor>) -> Self {
        let conv1d = |vars: &mut HashMap<String, Tensor>, name: String| Linear {
            weight: take(vars, &format!("{name}.weight")),
            bias: Some(take(vars, &format!("{name}.bias"))),
            name,
            in_out: true,
            lora: None,
        };
        let norm = |vars: &mut HashMap<String, Tensor>, name: &str| {
            (take(vars, &format!("{name}.weight")), take(vars, &format!("{name}.bias")))
        };
        let layers = (0..config.n_layer)
            .map(|i| {
                let p = format!("transformer.h.{i}");
                Gpt2Layer {
                    ln_1: norm(vars, &format!("{p}.ln_1")),
                    c_attn: conv1d(vars, format!("{p}.attn.c_attn")),
                    attn_proj: conv1d(vars, format!("{p}.attn.c_proj")),
                    ln_2: norm(vars, &format!("{p}.ln_2")),
                    c_fc: conv1d(vars, format!("{p}.mlp.c_fc")),
                    mlp_proj: conv1d(vars, format!("{p}.mlp.c_proj")),
                }
            })
            .collect();
        Self {
            wte: take(vars, "transformer.wte.weight"),
            wpe: take(vars, "transformer.wpe.weight"),
            layers,
            ln_f: norm(vars, "transformer.ln_f"),
            config,
        }
    }

    // `x += y` on a Tensor is an in-place add, which would overwrite values autograd saved.
    #[allow(clippy::assign_op_pattern)]
    pub fn forward(&self, input_ids: &Tensor, attention_mask: &Tensor, train: bool) -> Tensor {
        let (heads, embd, eps) = (self.config.n_head as i64, self.config.n_embd as i64, self.config.layer_norm_epsilon);
        let len = input_ids.size()[1];
        let allowed = attention_allowed(attention_mask);
        let positions = Tensor::arange(len, (Kind::Int64, input_ids.device()));
        let mut x = Tensor::embedding(&self.wte, input_ids, -1, false, false) + self.wpe.index_select(0, &positions);
        for layer in &self.layers {
            let h = layer_norm(&x, &layer.ln_1.0, &layer.ln_1.1, eps);
            let qkv = layer.c_attn.forward(&h, train).split(embd, -1);
            let (q, k, v) = (split_heads(&qkv[0], heads), split_heads(&qkv[1], heads), split_heads(&qkv[2], heads));
            x = x + layer.attn_proj.forward(&attend(&q, &k, &v, &allowed), train);
            let h = layer_norm(&x, &layer.ln_2.0, &layer.ln_2.1, eps);
            x = x + layer.mlp_proj.forward(&layer.c_fc.forward(&h, train).gelu("tanh"), train);
        }
        layer_norm(&x, &self.ln_f.0, &self.ln_f.1, eps).matmul(&self.wte.tr())
    }

    /// Logits of the new tokens given `cache`; see `Llama::forward_cached` (positions from
    /// `attention_mask` `[B, past + t]`, a padding query attends to itself).
    #[allow(clippy::assign_op_pattern)]
    pub fn forward_cached(&self, input_ids: &Tensor, attention_mask: &Tensor, cache: &mut KvCache) -> Tensor {
        let (heads, embd, eps) = (self.config.n_head as i64, self.config.n_embd as i64, self.config.layer_norm_epsilon);
        let size = input_ids.size();
        let (batch, new) = (size[0], size[1]);
        let allowed = cached_attention_allowed(attention_mask, new);
        let positions = positions_from_mask(attention_mask, new).reshape([-1]);
        let mut x = Tensor::embedding(&self.wte, input_ids, -1, false, false)
            + self.wpe.index_select(0, &positions).view([batch, new, embd]);
        for (i, layer) in self.layers.iter().enumerate() {
            let h = layer_norm(&x, &layer.ln_1.0, &layer.ln_1.1, eps);
            let qkv = layer.c_attn.forward(&h, false).split(embd, -1);
            let (q, k, v) = (split_heads(&qkv[0], heads), split_heads(&qkv[1], heads), split_heads(&qkv[2], heads));
            let (k, v) = cache.append(i, k, v);
            x = x + layer.attn_proj.forward(&attend(&q, &k, &v, &allowed), false);
            let h = layer_norm(&x, &layer.ln_2.0, &layer.ln_2.1, eps);
            x = x + layer.mlp_proj.forward(&layer.c_fc.forward(&h, false).gelu("tanh"), false);
        }
        layer_norm(&x, &self.ln_f.0, &self.ln_f.1, eps).matmul(&self.wte.tr())
    }

    pub fn linears_mut(&mut self) -> Vec<&mut Linear> {
        let mut out = Vec::new();
        for l in &mut self.layers {
            out.extend([&mut l.c_attn, &mut l.attn_proj, &mut l.c_fc, &mut l.mlp_proj]);
        }
        out
    }

    pub fn linears(&self) -> Vec<&Linear> {
        let mut out = Vec::new();
        for l in &self.layers {
            out.extend([&l.c_attn, &l.attn_proj, &l.c_fc, &l.mlp_proj]);
        }
        out
    }
}
