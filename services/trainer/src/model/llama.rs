//! A Llama-style decoder (`LlamaForCausalLM`): RMSNorm, RoPE, SwiGLU, grouped-query
//! attention, tied or untied output layer.

use std::collections::HashMap;

use gradients_model::LlamaConfig;
use tch::{Device, Tensor};

use super::layers::{
    apply_rope, attend, attention_allowed, cached_attention_allowed, positions_from_mask, repeat_kv, rms_norm, rope_at,
    split_heads, KvCache, Linear,
};
use super::take;

#[derive(Debug)]
pub struct LlamaLayer {
    pub input_norm: Tensor,
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub o: Linear,
    pub post_norm: Tensor,
    pub gate: Linear,
    pub up: Linear,
    pub down: Linear,
}

#[derive(Debug)]
pub struct Llama {
    pub config: LlamaConfig,
    pub embed: Tensor,
    pub layers: Vec<LlamaLayer>,
    pub norm: Tensor,
    /// `None` when the output layer is tied to the embeddings.
    pub lm_head: Option<Linear>,
    cos: Tensor,
    sin: Tensor,
}

impl Llama {
    /// Assembles the network from variables named as in `ModelConfig::parameters`.
    pub fn new(config: LlamaConfig, vars: &mut HashMap<String, Tensor>, device: Device) -> Self {
        // Biases exist where the configuration lists them (Qwen2's q/k/v, attention_bias).
        let linear = |vars: &mut HashMap<String, Tensor>, name: String| Linear {
            weight: take(vars, &format!("{name}.weight")),
            bias: vars.remove(&format!("{name}.bias")),
            name,
            in_out: false,
            lora: None,
        };
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                let p = format!("model.layers.{i}");
                LlamaLayer {
                    input_norm: take(vars, &format!("{p}.input_layernorm.weight")),
                    q: linear(vars, format!("{p}.self_attn.q_proj")),
                    k: linear(vars, format!("{p}.self_attn.k_proj")),
                    v: linear(vars, format!("{p}.self_attn.v_proj")),
                    o: linear(vars, format!("{p}.self_attn.o_proj")),
                    post_norm: take(vars, &format!("{p}.post_attention_layernorm.weight")),
                    gate: linear(vars, format!("{p}.mlp.gate_proj")),
                    up: linear(vars, format!("{p}.mlp.up_proj")),
                    down: linear(vars, format!("{p}.mlp.down_proj")),
                }
            })
            .collect();
        let lm_head = (!config.tie_word_embeddings).then(|| linear(vars, "lm_head".into()));
        let (cos, sin) = config.rope_tables();
        let table = |values: Vec<f32>| {
            Tensor::from_slice(&values)
                .view([config.max_position_embeddings as i64, config.head_dim() as i64])
                .to(device)
        };
        Self {
            embed: take(vars, "model.embed_tokens.weight"),
            layers,
            norm: take(vars, "model.norm.weight"),
            lm_head,
            cos: table(cos),
            sin: table(sin),
            config,
        }
    }

    // `x += y` on a Tensor is an in-place add, which would overwrite values autograd saved.
    #[allow(clippy::assign_op_pattern)]
    pub fn forward(&self, input_ids: &Tensor, attention_mask: &Tensor, train: bool) -> Tensor {
        let c = &self.config;
        let (heads, kv_heads, eps) = (c.num_attention_heads as i64, c.kv_heads() as i64, c.rms_norm_eps);
        let len = input_ids.size()[1];
        let allowed = attention_allowed(attention_mask);
        let (cos, sin) = (self.cos.narrow(0, 0, len), self.sin.narrow(0, 0, len));
        let mut x = Tensor::embedding(&self.embed, input_ids, -1, false, false);
        for layer in &self.layers {
            let h = rms_norm(&x, &layer.input_norm, eps);
            let q = apply_rope(&split_heads(&layer.q.forward(&h, train), heads), &cos, &sin);
            let k = apply_rope(&split_heads(&layer.k.forward(&h, train), kv_heads), &cos, &sin);
            let v = split_heads(&layer.v.forward(&h, train), kv_heads);
            let (k, v) = (repeat_kv(&k, heads / kv_heads), repeat_kv(&v, heads / kv_heads));
            x = x + layer.o.forward(&attend(&q, &k, &v, &allowed), train);
            let h = rms_norm(&x, &layer.post_norm, eps);
            let gated = layer.gate.forward(&h, train).silu() * layer.up.forward(&h, train);
            x = x + layer.down.forward(&gated, train);
        }
        let x = rms_norm(&x, &self.norm, eps);
        match &self.lm_head {
            Some(head) => head.forward(&x, train),
            None => x.matmul(&self.embed.tr()),
        }
    }

    /// Logits of the new tokens `input_ids` `[B, t]` given `cache` (the keys and values of
    /// the tokens before them), appending theirs. `attention_mask` `[B, past + t]` covers
    /// the cached tokens and the new ones; positions come from it, so left padding works.
    /// Inference only (no dropout); the same arithmetic as [`forward`](Self::forward) except
    /// that a padding query also attends to itself.
    #[allow(clippy::assign_op_pattern)]
    pub fn forward_cached(&self, input_ids: &Tensor, attention_mask: &Tensor, cache: &mut KvCache) -> Tensor {
        let c = &self.config;
        let (heads, kv_heads, eps) = (c.num_attention_heads as i64, c.kv_heads() as i64, c.rms_norm_eps);
        let new = input_ids.size()[1];
        let allowed = cached_attention_allowed(attention_mask, new);
        let positions = positions_from_mask(attention_mask, new);
        let (cos, sin) = (rope_at(&self.cos, &positions), rope_at(&self.sin, &positions));
        let mut x = Tensor::embedding(&self.embed, input_ids, -1, false, false);
        for (i, layer) in self.layers.iter().enumerate() {
            let h = rms_norm(&x, &layer.input_norm, eps);
            let q = apply_rope(&split_heads(&layer.q.forward(&h, false), heads), &cos, &sin);
            let k = apply_rope(&split_heads(&layer.k.forward(&h, false), kv_heads), &cos, &sin);
            let v = split_heads(&layer.v.forward(&h, false), kv_heads);
            let (k, v) = cache.append(i, k, v);
            let (k, v) = (repeat_kv(&k, heads / kv_heads), repeat_kv(&v, heads / kv_heads));
            x = x + layer.o.forward(&attend(&q, &k, &v, &allowed), false);
            let h = rms_norm(&x, &layer.post_norm, eps);
            let gated = layer.gate.forward(&h, false).silu() * layer.up.forward(&h, false);
            x = x + layer.down.forward(&gated, false);
        }
        let x = rms_norm(&x, &self.norm, eps);
        match &self.lm_head {
            Some(head) => head.forward(&x, false),
            None => x.matmul(&self.embed.tr()),
        }
    }

    pub fn linears_mut(&mut self) -> Vec<&mut Linear> {
        let mut out = Vec::new();
        for l in &mut self.layers {
            out.extend([&mut l.q, &mut l.k, &mut l.v, &mut l.o, &mut l.gate, &mut l.up, &mut l.down]);
        }
        out
    }

    pub fn linears(&self) -> Vec<&Linear> {
        let mut out: Vec<&Linear> = Vec::new();
        for l in &self.layers {
            out.extend([&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down]);
        }
        out.extend(self.lm_head.as_ref());
        out
    }
}
