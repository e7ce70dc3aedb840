//! The pieces both architectures share: the graph inputs and outputs, positions and the
//! attention mask derived from them at run time, linear layers, and masked scaled
//! dot-product attention.
//!
//! Batch size and sequence length are never baked in: every shape that depends on them is
//! read from `input_ids` with `Shape`, or expressed with `Reshape`'s `0` (copy this
//! dimension) and `-1` (infer it).

use gradients_proto::onnx::ValueInfoProto;

use super::graph::{attr_int, tensor_info, Dim, GraphBuilder, FLOAT, INT64};
use crate::weights::Weight;

pub const INPUT_IDS: &str = "input_ids";
pub const ATTENTION_MASK: &str = "attention_mask";
pub const LOGITS: &str = "logits";

/// What a masked-out attention score is replaced by (the trainer uses the same value, so
/// fully padded rows behave identically in both).
const MASKED_SCORE: f32 = -1e9;

/// The graph's declared inputs: token ids and the padding mask, both `[batch, sequence]`.
pub fn graph_inputs() -> Vec<ValueInfoProto> {
    let dims = [Dim::Symbolic("batch"), Dim::Symbolic("sequence")];
    vec![tensor_info(INPUT_IDS, INT64, &dims), tensor_info(ATTENTION_MASK, INT64, &dims)]
}

/// The graph's declared output: `logits`, `[batch, sequence, vocab]`.
pub fn graph_outputs(vocab_size: usize) -> Vec<ValueInfoProto> {
    let dims = [Dim::Symbolic("batch"), Dim::Symbolic("sequence"), Dim::Fixed(vocab_size as i64)];
    vec![tensor_info(LOGITS, FLOAT, &dims)]
}

/// Values every layer reads, computed once from the inputs.
pub struct Prelude {
    /// `0..T` as i64 `[T]`; the same for every row because padding is on the right.
    pub positions: String,
    /// Bool `[B, 1, T, T]`: query `i` may attend to key `j` (causal and not padding).
    pub allowed: String,
}

pub fn prelude(g: &mut GraphBuilder) -> Prelude {
    g.set_scope("prelude");
    let shape = g.op("Shape", &[INPUT_IDS], vec![]);
    let one_index = g.const_i64(&[], &[1]);
    let seq_len = g.op("Gather", &[&shape, &one_index], vec![attr_int("axis", 0)]);
    let zero = g.const_i64(&[], &[0]);
    let one = g.const_i64(&[], &[1]);
    let positions = g.op("Range", &[&zero, &seq_len, &one], vec![]);

    let query_pos = g.unsqueeze(&positions, &[1]);
    let key_pos = g.unsqueeze(&positions, &[0]);
    let causal = g.op("LessOrEqual", &[&key_pos, &query_pos], vec![]);
    let zero_mask = g.const_i64(&[], &[0]);
    let is_pad = g.op("Equal", &[ATTENTION_MASK, &zero_mask], vec![]);
    let is_key = g.op("Not", &[&is_pad], vec![]);
    let is_key = g.unsqueeze(&is_key, &[1, 2]);
    let allowed = g.op("And", &[&causal, &is_key], vec![]);
    Prelude { positions, allowed }
}

/// Transposes a row-major `[rows, cols]` matrix.
pub fn transposed(weight: &Weight) -> (Vec<usize>, Vec<f32>) {
    let (rows, cols) = (weight.shape[0], weight.shape[1]);
    let mut out = vec![0.0; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = weight.data[r * cols + c];
        }
    }
    (vec![cols, rows], out)
}

/// `x @ w (+ b)` with `w` stored `[in, out]`.
pub fn linear(g: &mut GraphBuilder, x: &str, w: &str, b: Option<&str>) -> String {
    let y = g.matmul(x, w);
    match b {
        Some(b) => g.add(&y, b),
        None => y,
    }
}

/// `[B, T, heads·D]` → `[B, heads, T, D]`.
pub fn split_heads(g: &mut GraphBuilder, x: &str, heads: usize, head_dim: usize) -> String {
    let x = g.reshape(x, &[0, 0, heads as i64, head_dim as i64]);
    g.transpose(&x, &[0, 2, 1, 3])
}

/// Masked scaled dot-product attention over `[B, heads, T, D]` inputs, returning
/// `[B, T, heads·D]`.
pub fn attention(
    g: &mut GraphBuilder,
    q: &str,
    k: &str,
    v: &str,
    allowed: &str,
    heads: usize,
    head_dim: usize,
) -> String {
    let k_t = g.transpose(k, &[0, 1, 3, 2]);
    let scores = g.matmul(q, &k_t);
    let scale = g.scalar((1.0 / (head_dim as f64).sqrt()) as f32);
    let scores = g.mul(&scores, &scale);
    // Replacing rather than adding a large negative keeps masked scores exactly equal, as
    // the trainer's masked_fill does.
    let masked = g.scalar(MASKED_SCORE);
    let scores = g.op("Where", &[allowed, &scores, &masked], vec![]);
    let probs = g.op("Softmax", &[&scores], vec![attr_int("axis", -1)]);
    let out = g.matmul(&probs, v);
    let out = g.transpose(&out, &[0, 2, 1, 3]);
    g.reshape(&out, &[0, 0, (heads * head_dim) as i64])
}
