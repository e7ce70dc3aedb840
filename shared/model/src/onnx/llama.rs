//! The Llama forward pass as an ONNX graph: RMSNorm, rotary position embeddings (HF's
//! `rotate_half` convention), grouped-query attention and a SwiGLU MLP.
//!
//! Projection weights are stored transposed (`[in, out]`, under their HF names) so every
//! projection is a plain `MatMul` without a run-time `Transpose`. A tied output layer
//! reads the embedding through a `Transpose` node instead, as one tensor cannot be stored
//! in both layouts under the one name.

use super::blocks::{self, Prelude};
use super::graph::{attr_int, attr_ints, GraphBuilder};
use super::ExportError;
use crate::config::LlamaConfig;
use crate::weights::Weights;

/// The names of the RoPE tables, outside the HF parameter namespace on purpose so that
/// they are not counted as parameters.
pub const ROPE_COS: &str = "rope.cos";
pub const ROPE_SIN: &str = "rope.sin";

/// The `cos` and `sin` tables, `[max_position_embeddings, head_dim]` each, row-major
/// ([`LlamaConfig::rope_tables`], which the trainer uses too, RoPE scaling included).
pub fn rope_tables(c: &LlamaConfig) -> (Vec<f32>, Vec<f32>) {
    c.rope_tables()
}

/// Adds the whole graph body, ending in the `logits` output.
pub fn build(g: &mut GraphBuilder, c: &LlamaConfig, weights: &Weights) -> Result<(), ExportError> {
    let (nh, nkv, d) = (c.num_attention_heads, c.kv_heads(), c.head_dim());
    let eps = c.rms_norm_eps as f32;
    let Prelude { positions, allowed } = blocks::prelude(g);

    // Every parameter becomes an initializer under its HF name; 2-D projections transposed.
    let plain = |g: &mut GraphBuilder, name: String| -> Result<String, ExportError> {
        let w = weights.get(&name)?;
        Ok(g.float_initializer(&name, &w.shape, &w.data))
    };
    let projection = |g: &mut GraphBuilder, name: String| -> Result<String, ExportError> {
        let (shape, data) = blocks::transposed(weights.get(&name)?);
        Ok(g.float_initializer(&name, &shape, &data))
    };

    // Qwen2's query/key/value biases, and all four with Llama's attention_bias.
    let bias = |g: &mut GraphBuilder, present: bool, name: String| -> Result<Option<String>, ExportError> {
        if present {
            plain(g, name).map(Some)
        } else {
            Ok(None)
        }
    };

    g.set_scope("embed");
    let embed = plain(g, "model.embed_tokens.weight".into())?;
    let mut x = g.gather(&embed, blocks::INPUT_IDS);
    let (cos_table, sin_table) = rope_tables(c);
    let rope_shape = [c.max_position_embeddings, d];
    let cos_table = g.float_initializer(ROPE_COS, &rope_shape, &cos_table);
    let sin_table = g.float_initializer(ROPE_SIN, &rope_shape, &sin_table);
    // [T, D], broadcast over batch and heads.
    let cos = g.gather(&cos_table, &positions);
    let sin = g.gather(&sin_table, &positions);

    for layer in 0..c.num_hidden_layers {
        let p = format!("model.layers.{layer}");
        g.set_scope(format!("layers.{layer}.attn"));
        let norm = plain(g, format!("{p}.input_layernorm.weight"))?;
        let hn = rms_norm(g, &x, &norm, eps);
        let wq = projection(g, format!("{p}.self_attn.q_proj.weight"))?;
        let wk = projection(g, format!("{p}.self_attn.k_proj.weight"))?;
        let wv = projection(g, format!("{p}.self_attn.v_proj.weight"))?;
        let wo = projection(g, format!("{p}.self_attn.o_proj.weight"))?;
        let bq = bias(g, c.qkv_bias(), format!("{p}.self_attn.q_proj.bias"))?;
        let bk = bias(g, c.qkv_bias(), format!("{p}.self_attn.k_proj.bias"))?;
        let bv = bias(g, c.qkv_bias(), format!("{p}.self_attn.v_proj.bias"))?;
        let bo = bias(g, c.o_bias(), format!("{p}.self_attn.o_proj.bias"))?;
        let q = blocks::linear(g, &hn, &wq, bq.as_deref());
        let k = blocks::linear(g, &hn, &wk, bk.as_deref());
        let v = blocks::linear(g, &hn, &wv, bv.as_deref());
        let q = blocks::split_heads(g, &q, nh, d);
        let k = blocks::split_heads(g, &k, nkv, d);
        let v = blocks::split_heads(g, &v, nkv, d);
        let q = rotate(g, &q, &cos, &sin);
        let k = rotate(g, &k, &cos, &sin);
        let k = repeat_kv(g, &k, nkv, nh / nkv, d);
        let v = repeat_kv(g, &v, nkv, nh / nkv, d);
        let attended = blocks::attention(g, &q, &k, &v, &allowed, nh, d);
        let out = blocks::linear(g, &attended, &wo, bo.as_deref());
        x = g.add(&x, &out);

        g.set_scope(format!("layers.{layer}.mlp"));
        let norm = plain(g, format!("{p}.post_attention_layernorm.weight"))?;
        let hn = rms_norm(g, &x, &norm, eps);
        let w_gate = projection(g, format!("{p}.mlp.gate_proj.weight"))?;
        let w_up = projection(g, format!("{p}.mlp.up_proj.weight"))?;
        let w_down = projection(g, format!("{p}.mlp.down_proj.weight"))?;
        let gate = blocks::linear(g, &hn, &w_gate, None);
        let up = blocks::linear(g, &hn, &w_up, None);
        let sigmoid = g.op("Sigmoid", &[&gate], vec![]);
        let silu = g.mul(&gate, &sigmoid);
        let gated = g.mul(&silu, &up);
        let out = blocks::linear(g, &gated, &w_down, None);
        x = g.add(&x, &out);
    }

    g.set_scope("head");
    let norm = plain(g, "model.norm.weight".into())?;
    let x = rms_norm(g, &x, &norm, eps);
    let head =
        if c.tie_word_embeddings { g.transpose(&embed, &[1, 0]) } else { projection(g, "lm_head.weight".into())? };
    g.node("MatMul", &[&x, &head], &[blocks::LOGITS], vec![]);
    Ok(())
}

/// `x · (1 / sqrt(mean(x²) + eps)) · w` over the last axis. Built from primitives because
/// opset 17 has no RMS normalization operator.
fn rms_norm(g: &mut GraphBuilder, x: &str, w: &str, eps: f32) -> String {
    let sq = g.mul(x, x);
    // Opset 17's ReduceMean still takes its axes as an attribute (an input from opset 18).
    let mean = g.op("ReduceMean", &[&sq], vec![attr_ints("axes", &[-1]), attr_int("keepdims", 1)]);
    let eps = g.scalar(eps);
    let var = g.add(&mean, &eps);
    let rms = g.op("Sqrt", &[&var], vec![]);
    let inv = g.op("Reciprocal", &[&rms], vec![]);
    let normed = g.mul(x, &inv);
    g.mul(&normed, w)
}

/// `x·cos + rotate_half(x)·sin` with `rotate_half(x) = [-x₂, x₁]` over the last axis.
fn rotate(g: &mut GraphBuilder, x: &str, cos: &str, sin: &str) -> String {
    // Without a `split` input, Split cuts the axis into equal parts (D is even).
    let halves = g.op_n("Split", &[x], 2, vec![attr_int("axis", -1)]);
    let neg = g.op("Neg", &[&halves[1]], vec![]);
    let rotated = g.op("Concat", &[&neg, &halves[0]], vec![attr_int("axis", -1)]);
    let a = g.mul(x, cos);
    let b = g.mul(&rotated, sin);
    g.add(&a, &b)
}

/// `[B, kv_heads, T, D]` → `[B, kv_heads·repeats, T, D]`, each key/value head repeated
/// `repeats` times in a row (HF's `repeat_kv`), so query head `i` meets kv head
/// `i / repeats`.
fn repeat_kv(g: &mut GraphBuilder, x: &str, kv_heads: usize, repeats: usize, head_dim: usize) -> String {
    if repeats == 1 {
        return x.to_owned();
    }
    let x = g.unsqueeze(x, &[2]);
    let times = g.ints(&[1, 1, repeats as i64, 1, 1]);
    let x = g.op("Expand", &[&x, &times], vec![]);
    g.reshape(&x, &[0, (kv_heads * repeats) as i64, -1, head_dim as i64])
}
