//! The GPT-2 forward pass as an ONNX graph: learned positions, pre-LayerNorm blocks with a
//! fused QKV projection, the tanh GELU (`gelu_new`), and an output layer tied to `wte`.
//!
//! HF's `Conv1D` weights are already `[in, out]`, so they are stored exactly as given.

use super::blocks::{self, Prelude};
use super::graph::{attr_float, attr_int, GraphBuilder};
use super::ExportError;
use crate::config::Gpt2Config;
use crate::weights::Weights;

/// Adds the whole graph body, ending in the `logits` output.
pub fn build(g: &mut GraphBuilder, c: &Gpt2Config, weights: &Weights) -> Result<(), ExportError> {
    let (nh, d) = (c.n_head, c.head_dim());
    let eps = c.layer_norm_epsilon as f32;
    let Prelude { positions, allowed } = blocks::prelude(g);
    let param = |g: &mut GraphBuilder, name: String| -> Result<String, ExportError> {
        let w = weights.get(&name)?;
        Ok(g.float_initializer(&name, &w.shape, &w.data))
    };

    g.set_scope("embed");
    let wte = param(g, "transformer.wte.weight".into())?;
    let wpe = param(g, "transformer.wpe.weight".into())?;
    let tokens = g.gather(&wte, blocks::INPUT_IDS);
    let places = g.gather(&wpe, &positions);
    let mut x = g.add(&tokens, &places);

    for layer in 0..c.n_layer {
        let p = format!("transformer.h.{layer}");
        g.set_scope(format!("h.{layer}.attn"));
        let ln_w = param(g, format!("{p}.ln_1.weight"))?;
        let ln_b = param(g, format!("{p}.ln_1.bias"))?;
        let hn = layer_norm(g, &x, &ln_w, &ln_b, eps);
        let w_qkv = param(g, format!("{p}.attn.c_attn.weight"))?;
        let b_qkv = param(g, format!("{p}.attn.c_attn.bias"))?;
        let qkv = blocks::linear(g, &hn, &w_qkv, Some(&b_qkv));
        // Without a `split` input, Split cuts the 3E axis into three E-wide parts: q, k, v.
        let parts = g.op_n("Split", &[&qkv], 3, vec![attr_int("axis", -1)]);
        let q = blocks::split_heads(g, &parts[0], nh, d);
        let k = blocks::split_heads(g, &parts[1], nh, d);
        let v = blocks::split_heads(g, &parts[2], nh, d);
        let attended = blocks::attention(g, &q, &k, &v, &allowed, nh, d);
        let w_proj = param(g, format!("{p}.attn.c_proj.weight"))?;
        let b_proj = param(g, format!("{p}.attn.c_proj.bias"))?;
        let out = blocks::linear(g, &attended, &w_proj, Some(&b_proj));
        x = g.add(&x, &out);

        g.set_scope(format!("h.{layer}.mlp"));
        let ln_w = param(g, format!("{p}.ln_2.weight"))?;
        let ln_b = param(g, format!("{p}.ln_2.bias"))?;
        let hn = layer_norm(g, &x, &ln_w, &ln_b, eps);
        let w_fc = param(g, format!("{p}.mlp.c_fc.weight"))?;
        let b_fc = param(g, format!("{p}.mlp.c_fc.bias"))?;
        let w_out = param(g, format!("{p}.mlp.c_proj.weight"))?;
        let b_out = param(g, format!("{p}.mlp.c_proj.bias"))?;
        let hidden = blocks::linear(g, &hn, &w_fc, Some(&b_fc));
        let hidden = gelu_new(g, &hidden);
        let out = blocks::linear(g, &hidden, &w_out, Some(&b_out));
        x = g.add(&x, &out);
    }

    g.set_scope("head");
    let ln_w = param(g, "transformer.ln_f.weight".into())?;
    let ln_b = param(g, "transformer.ln_f.bias".into())?;
    let x = layer_norm(g, &x, &ln_w, &ln_b, eps);
    let head = g.transpose(&wte, &[1, 0]);
    g.node("MatMul", &[&x, &head], &[blocks::LOGITS], vec![]);
    Ok(())
}

/// LayerNorm over the last axis with biased variance (opset 17's LayerNormalization).
fn layer_norm(g: &mut GraphBuilder, x: &str, w: &str, b: &str, eps: f32) -> String {
    g.op("LayerNormalization", &[x, w, b], vec![attr_int("axis", -1), attr_float("epsilon", eps)])
}

/// `0.5·z·(1 + tanh(√(2/π)·(z + 0.044715·z³)))`.
fn gelu_new(g: &mut GraphBuilder, z: &str) -> String {
    let z2 = g.mul(z, z);
    let z3 = g.mul(&z2, z);
    let coef = g.scalar(0.044715);
    let cubic = g.mul(&z3, &coef);
    let inner = g.add(z, &cubic);
    let scale = g.scalar((2.0 / std::f64::consts::PI).sqrt() as f32);
    let inner = g.mul(&inner, &scale);
    let t = g.op("Tanh", &[&inner], vec![]);
    let one = g.scalar(1.0);
    let t = g.add(&t, &one);
    let half = g.scalar(0.5);
    let hz = g.mul(z, &half);
    g.mul(&hz, &t)
}
