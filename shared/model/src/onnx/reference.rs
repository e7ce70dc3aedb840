//! A naive forward pass of both architectures in plain Rust (f64, explicit loops), written
//! straight from the semantics the exporter must reproduce, to check the ONNX graphs
//! against. It shares no code with the exporter on purpose: not the RoPE tables, not the
//! weight layouts.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::config::{Gpt2Config, LlamaConfig, ModelConfig};
use crate::weights::{Weight, Weights};

/// Random weights for `config`: norm scales near 1, everything else small and centred.
pub fn random_weights(config: &ModelConfig, seed: u64) -> Weights {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut weights = Weights::default();
    for spec in config.parameters() {
        let n: usize = spec.shape.iter().product();
        let is_scale = spec.shape.len() == 1 && spec.name.ends_with(".weight");
        let data = (0..n)
            .map(|_| {
                let u: f32 = rng.random_range(-1.0..1.0);
                if is_scale {
                    1.0 + 0.2 * u
                } else {
                    0.2 * u
                }
            })
            .collect();
        weights.0.insert(spec.name, Weight::new(spec.shape, data));
    }
    weights
}

/// Logits `[B, T, V]` (flattened) for a right-padded batch.
pub fn forward(config: &ModelConfig, weights: &Weights, ids: &[i64], mask: &[i64], batch: usize) -> Vec<f64> {
    let t = ids.len() / batch;
    let mut out = Vec::new();
    for b in 0..batch {
        let (ids, mask) = (&ids[b * t..(b + 1) * t], &mask[b * t..(b + 1) * t]);
        let rows = match config {
            ModelConfig::Llama(c) => llama(c, weights, ids, mask),
            ModelConfig::Gpt2(c) => gpt2(c, weights, ids, mask),
        };
        out.extend(rows.into_iter().flatten());
    }
    out
}

type Rows = Vec<Vec<f64>>;

fn w<'a>(weights: &'a Weights, name: &str) -> &'a Weight {
    weights.get(name).expect("reference weights are complete")
}

/// `x · Wᵀ` with `W` stored `[out, in]` (nn.Linear).
fn linear_t(x: &Rows, w: &Weight) -> Rows {
    let (out, inp) = (w.shape[0], w.shape[1]);
    x.iter()
        .map(|row| (0..out).map(|o| (0..inp).map(|i| row[i] * w.data[o * inp + i] as f64).sum()).collect())
        .collect()
}

/// `x · W + b` with `W` stored `[in, out]` (Conv1D).
fn conv1d(x: &Rows, w: &Weight, b: &Weight) -> Rows {
    let (inp, out) = (w.shape[0], w.shape[1]);
    x.iter()
        .map(|row| {
            (0..out)
                .map(|o| b.data[o] as f64 + (0..inp).map(|i| row[i] * w.data[i * out + o] as f64).sum::<f64>())
                .collect()
        })
        .collect()
}

fn add(x: &mut Rows, y: &Rows) {
    for (a, b) in x.iter_mut().zip(y) {
        for (a, b) in a.iter_mut().zip(b) {
            *a += b;
        }
    }
}

fn rms_norm(x: &Rows, w: &Weight, eps: f64) -> Rows {
    x.iter()
        .map(|row| {
            let mean = row.iter().map(|v| v * v).sum::<f64>() / row.len() as f64;
            let inv = 1.0 / (mean + eps).sqrt();
            row.iter().zip(&w.data).map(|(v, s)| v * inv * *s as f64).collect()
        })
        .collect()
}

fn layer_norm(x: &Rows, w: &Weight, b: &Weight, eps: f64) -> Rows {
    x.iter()
        .map(|row| {
            let n = row.len() as f64;
            let mean = row.iter().sum::<f64>() / n;
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
            let inv = 1.0 / (var + eps).sqrt();
            (0..row.len()).map(|i| (row[i] - mean) * inv * w.data[i] as f64 + b.data[i] as f64).collect()
        })
        .collect()
}

/// Causal, padding-masked attention. `q` is `T × (heads·D)`, `k`/`v` are
/// `T × (kv_heads·D)`; query head `h` reads kv head `h / (heads / kv_heads)`.
fn attention(q: &Rows, k: &Rows, v: &Rows, heads: usize, kv_heads: usize, d: usize, mask: &[i64]) -> Rows {
    let t = q.len();
    let group = heads / kv_heads;
    let mut out = vec![vec![0.0; heads * d]; t];
    for h in 0..heads {
        let kvh = h / group;
        for i in 0..t {
            let scores: Vec<f64> = (0..t)
                .map(|j| {
                    if j <= i && mask[j] != 0 {
                        let dot: f64 = (0..d).map(|e| q[i][h * d + e] * k[j][kvh * d + e]).sum();
                        dot / (d as f64).sqrt()
                    } else {
                        -1e9
                    }
                })
                .collect();
            let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let total: f64 = exps.iter().sum();
            for j in 0..t {
                let p = exps[j] / total;
                for e in 0..d {
                    out[i][h * d + e] += p * v[j][kvh * d + e];
                }
            }
        }
    }
    out
}

/// The rotation frequency of pair `j` of a head of size `d`, with Llama 3's scaling when
/// configured (written from HF's `_compute_llama3_parameters`, not shared with the
/// exporter's tables).
fn frequency(c: &LlamaConfig, j: usize, d: usize) -> f64 {
    let base = c.rope_theta.powf(-((2 * j) as f64) / d as f64);
    let Some(s) = &c.rope_scaling else { return base };
    let old = s.original_max_position_embeddings as f64;
    let wavelength = std::f64::consts::TAU / base;
    if wavelength < old / s.high_freq_factor {
        base
    } else if wavelength > old / s.low_freq_factor {
        base / s.factor
    } else {
        let t = (old / wavelength - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        base * (t + (1.0 - t) / s.factor)
    }
}

/// `x + b` for every row, when the layer has a bias.
fn with_bias(mut x: Rows, b: Option<&Weight>) -> Rows {
    if let Some(b) = b {
        for row in &mut x {
            for (v, b) in row.iter_mut().zip(&b.data) {
                *v += *b as f64;
            }
        }
    }
    x
}

/// HF rotary embedding with `rotate_half`, applied to every head of every row in place.
fn rope(x: &mut Rows, heads: usize, d: usize, c: &LlamaConfig) {
    let half = d / 2;
    for (p, row) in x.iter_mut().enumerate() {
        for h in 0..heads {
            let head = row[h * d..(h + 1) * d].to_vec();
            for i in 0..d {
                let angle = p as f64 * frequency(c, i % half, d);
                let rotated = if i < half { -head[i + half] } else { head[i - half] };
                row[h * d + i] = head[i] * angle.cos() + rotated * angle.sin();
            }
        }
    }
}

fn llama(c: &LlamaConfig, weights: &Weights, ids: &[i64], mask: &[i64]) -> Rows {
    let (h, nh, nkv, d, eps) = (c.hidden_size, c.num_attention_heads, c.kv_heads(), c.head_dim(), c.rms_norm_eps);
    let embed = w(weights, "model.embed_tokens.weight");
    let mut x: Rows = ids
        .iter()
        .map(|&id| embed.data[id as usize * h..(id as usize + 1) * h].iter().map(|&v| v as f64).collect())
        .collect();
    for layer in 0..c.num_hidden_layers {
        let p = format!("model.layers.{layer}");
        let hn = rms_norm(&x, w(weights, &format!("{p}.input_layernorm.weight")), eps);
        // Biases are used wherever the weights hold them (the parameter list decides).
        let project = |x: &Rows, name: &str| {
            let y = linear_t(x, w(weights, &format!("{p}.self_attn.{name}.weight")));
            with_bias(y, weights.get(&format!("{p}.self_attn.{name}.bias")).ok())
        };
        let mut q = project(&hn, "q_proj");
        let mut k = project(&hn, "k_proj");
        let v = project(&hn, "v_proj");
        rope(&mut q, nh, d, c);
        rope(&mut k, nkv, d, c);
        let a = attention(&q, &k, &v, nh, nkv, d, mask);
        add(&mut x, &project(&a, "o_proj"));
        let hn = rms_norm(&x, w(weights, &format!("{p}.post_attention_layernorm.weight")), eps);
        let gate = linear_t(&hn, w(weights, &format!("{p}.mlp.gate_proj.weight")));
        let up = linear_t(&hn, w(weights, &format!("{p}.mlp.up_proj.weight")));
        let act: Rows = gate
            .iter()
            .zip(&up)
            .map(|(g, u)| g.iter().zip(u).map(|(g, u)| g / (1.0 + (-g).exp()) * u).collect())
            .collect();
        add(&mut x, &linear_t(&act, w(weights, &format!("{p}.mlp.down_proj.weight"))));
    }
    let x = rms_norm(&x, w(weights, "model.norm.weight"), eps);
    let head = if c.tie_word_embeddings { embed } else { w(weights, "lm_head.weight") };
    linear_t(&x, head)
}

fn gpt2(c: &Gpt2Config, weights: &Weights, ids: &[i64], mask: &[i64]) -> Rows {
    let (e, nh, d, eps) = (c.n_embd, c.n_head, c.head_dim(), c.layer_norm_epsilon);
    let (wte, wpe) = (w(weights, "transformer.wte.weight"), w(weights, "transformer.wpe.weight"));
    let mut x: Rows = ids
        .iter()
        .enumerate()
        .map(|(p, &id)| (0..e).map(|i| wte.data[id as usize * e + i] as f64 + wpe.data[p * e + i] as f64).collect())
        .collect();
    for layer in 0..c.n_layer {
        let p = format!("transformer.h.{layer}");
        let wb = |name: &str| (w(weights, &format!("{p}.{name}.weight")), w(weights, &format!("{p}.{name}.bias")));
        let (lw, lb) = wb("ln_1");
        let hn = layer_norm(&x, lw, lb, eps);
        let (cw, cb) = wb("attn.c_attn");
        let qkv = conv1d(&hn, cw, cb);
        let part = |n: usize| -> Rows { qkv.iter().map(|r| r[n * e..(n + 1) * e].to_vec()).collect() };
        let a = attention(&part(0), &part(1), &part(2), nh, nh, d, mask);
        let (pw, pb) = wb("attn.c_proj");
        add(&mut x, &conv1d(&a, pw, pb));
        let (lw, lb) = wb("ln_2");
        let hn = layer_norm(&x, lw, lb, eps);
        let (fw, fb) = wb("mlp.c_fc");
        let hidden: Rows = conv1d(&hn, fw, fb)
            .iter()
            .map(|r| {
                r.iter()
                    .map(|z| {
                        0.5 * z * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (z + 0.044715 * z * z * z)).tanh())
                    })
                    .collect()
            })
            .collect();
        let (ow, ob) = wb("mlp.c_proj");
        add(&mut x, &conv1d(&hidden, ow, ob));
    }
    let x = layer_norm(&x, w(weights, "transformer.ln_f.weight"), w(weights, "transformer.ln_f.bias"), eps);
    linear_t(&x, wte)
}
