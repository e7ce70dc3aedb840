//! Runs exported models in the real ONNX Runtime (through `ort`) and compares them with the
//! naive reference in `reference.rs`; checks `inspect` and the typed errors.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::Session;
use ort::value::Tensor;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::reference::{forward, random_weights};
use super::*;
use crate::config::{Gpt2Config, LlamaConfig, LlamaFamily, RopeScaling};
use crate::weights::Weight;

const VOCAB: usize = 50;
const BATCH: usize = 2;
const SEQ: usize = 7;
/// Real tokens of the second (right-padded) row.
const SECOND_ROW_LEN: usize = 4;
const TOLERANCE: f64 = 1e-4;

fn llama(tied: bool) -> ModelConfig {
    ModelConfig::Llama(LlamaConfig {
        vocab_size: VOCAB,
        hidden_size: 16,
        intermediate_size: 24,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: Some(2),
        rms_norm_eps: 1e-5,
        rope_theta: 10_000.0,
        max_position_embeddings: 32,
        tie_word_embeddings: tied,
        bos_token_id: None,
        eos_token_id: vec![],
        hidden_act: "silu".into(),
        ..Default::default()
    })
}

fn gpt2() -> ModelConfig {
    ModelConfig::Gpt2(Gpt2Config {
        vocab_size: VOCAB,
        n_positions: 32,
        n_embd: 16,
        n_layer: 2,
        n_head: 2,
        n_inner: None,
        layer_norm_epsilon: 1e-5,
        activation_function: "gelu_new".into(),
        bos_token_id: None,
        eos_token_id: None,
    })
}

/// Qwen2: biases on the query, key and value projections.
fn qwen2() -> ModelConfig {
    let ModelConfig::Llama(c) = llama(true) else { unreachable!() };
    ModelConfig::Llama(LlamaConfig { family: LlamaFamily::Qwen2, rope_theta: 1e6, ..c })
}

/// Llama 3's RoPE scaling, with numbers that put one of the two frequencies of a head of
/// 4 in the interpolated band, and Llama's `attention_bias` (all four projections).
fn llama3_biased() -> ModelConfig {
    let ModelConfig::Llama(c) = llama(false) else { unreachable!() };
    let rope_scaling = Some(RopeScaling {
        rope_type: "llama3".into(),
        factor: 8.0,
        low_freq_factor: 1.0,
        high_freq_factor: 4.0,
        original_max_position_embeddings: 1024,
    });
    ModelConfig::Llama(LlamaConfig { rope_scaling, attention_bias: true, ..c })
}

fn all_configs() -> [(&'static str, ModelConfig); 5] {
    [
        ("llama untied", llama(false)),
        ("llama tied", llama(true)),
        ("qwen2", qwen2()),
        ("llama3 scaled, biased", llama3_biased()),
        ("gpt2", gpt2()),
    ]
}

/// ONNX Runtime allows one environment per process, so the tests share it.
fn environment() -> &'static Environment {
    static ENV: OnceLock<Environment> = OnceLock::new();
    ENV.get_or_init(|| ort::init().with_name("gradients-model-tests").build().expect("ONNX Runtime loads"))
}

/// Logits `[B, T, V]`, flattened, of `bytes` run by ONNX Runtime.
fn run(bytes: &[u8], ids: &[i64], mask: &[i64], batch: usize) -> Vec<f32> {
    let seq = ids.len() / batch;
    let mut session = Session::builder(environment())
        .expect("session builder")
        .commit_from_memory(bytes)
        .expect("ONNX Runtime accepts the model");
    let ids = Tensor::from_array(([batch, seq], ids.to_vec())).expect("ids tensor");
    let mask = Tensor::from_array(([batch, seq], mask.to_vec())).expect("mask tensor");
    let outputs = session.run(ort::inputs!["input_ids" => ids, "attention_mask" => mask]).expect("inference");
    let (shape, data) = outputs["logits"].try_extract_tensor::<f32>().expect("f32 logits");
    assert_eq!(&shape[..], &[batch as i64, seq as i64, VOCAB as i64]);
    data.to_vec()
}

/// A batch of two: the first row full, the second right-padded.
fn batch(seed: u64) -> (Vec<i64>, Vec<i64>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let ids = (0..BATCH * SEQ).map(|_| rng.random_range(0..VOCAB as i64)).collect();
    let mask = (0..BATCH * SEQ).map(|i| i64::from(i < SEQ || i % SEQ < SECOND_ROW_LEN)).collect();
    (ids, mask)
}

/// The logits of position `t` of row `b`.
fn at(logits: &[f32], seq: usize, b: usize, t: usize) -> &[f32] {
    let start = (b * seq + t) * VOCAB;
    &logits[start..start + VOCAB]
}

fn max_diff(a: impl IntoIterator<Item = f64>, b: impl IntoIterator<Item = f64>) -> f64 {
    a.into_iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

/// The largest difference between ONNX Runtime's and the reference's logits over the
/// positions `keep(b, t)` selects.
fn worst_diff(got: &[f32], want: &[f64], batch: usize, keep: impl Fn(usize, usize) -> bool) -> f64 {
    let seq = got.len() / (batch * VOCAB);
    let mut worst = 0.0f64;
    for b in 0..batch {
        for t in (0..seq).filter(|&t| keep(b, t)) {
            let start = (b * seq + t) * VOCAB;
            worst = worst.max(max_diff(f64s(at(got, seq, b, t)), want[start..start + VOCAB].iter().copied()));
        }
    }
    worst
}

fn f64s(values: &[f32]) -> impl Iterator<Item = f64> + '_ {
    values.iter().map(|&v| f64::from(v))
}

#[test]
fn exported_models_match_the_reference_forward_pass() {
    for (i, (label, config)) in all_configs().into_iter().enumerate() {
        let weights = random_weights(&config, 7 + i as u64);
        let bytes = export(&config, &weights).expect("export");
        let (ids, mask) = batch(100 + i as u64);
        let got = run(&bytes, &ids, &mask, BATCH);
        let want = forward(&config, &weights, &ids, &mask, BATCH);
        assert!(got.iter().all(|v| v.is_finite()), "{label}: non-finite logits");
        let real = worst_diff(&got, &want, BATCH, |b, t| mask[b * SEQ + t] != 0);
        assert!(real < TOLERANCE, "{label}: max abs diff {real:e} against the reference");
        // Padded positions are defined too (they attend to the real tokens before them).
        let padded = worst_diff(&got, &want, BATCH, |b, t| mask[b * SEQ + t] == 0);
        assert!(padded < TOLERANCE, "{label}: max abs diff {padded:e} at padded positions");
        // Logits that do not depend on the input would pass trivially. (Two positions
        // holding the same token as the first two would have the same logits.)
        let other = (1..SEQ).find(|&t| ids[t] != ids[0]).expect("a second token");
        let spread = max_diff(f64s(at(&got, SEQ, 0, 0)), f64s(at(&got, SEQ, 0, other)));
        assert!(spread > 1e-3, "{label}: logits barely vary ({spread:e})");
    }
}

/// With right padding a real position never sees a padded one, so a hole in the mask is
/// what proves the padding mask is applied (and is applied per row).
#[test]
fn masked_keys_are_ignored_wherever_they_are() {
    for (i, (label, config)) in all_configs().into_iter().enumerate() {
        let weights = random_weights(&config, 11 + i as u64);
        let bytes = export(&config, &weights).expect("export");
        let (ids, mut mask) = batch(300 + i as u64);
        mask[2] = 0;
        let got = run(&bytes, &ids, &mask, BATCH);
        let want = forward(&config, &weights, &ids, &mask, BATCH);
        let worst = worst_diff(&got, &want, BATCH, |_, _| true);
        assert!(worst < TOLERANCE, "{label}: max abs diff {worst:e} with a masked key");
        let unmasked = forward(&config, &weights, &ids, &batch(0).1, BATCH);
        let effect = worst_diff(&got, &unmasked, BATCH, |b, t| b == 0 && t > 2);
        assert!(effect > 1e-3, "{label}: masking a key changed nothing ({effect:e})");
    }
}

#[test]
fn the_future_and_other_rows_do_not_leak() {
    for (i, (label, config)) in all_configs().into_iter().enumerate() {
        let weights = random_weights(&config, 21 + i as u64);
        let bytes = export(&config, &weights).expect("export");
        let (ids, mask) = batch(200 + i as u64);
        let base = run(&bytes, &ids, &mask, BATCH);

        // A different last token of row 0 changes nothing before it, nor row 1.
        let mut changed = ids.clone();
        changed[SEQ - 1] = (changed[SEQ - 1] + 1) % VOCAB as i64;
        let other = run(&bytes, &changed, &mask, BATCH);
        for t in 0..SEQ - 1 {
            let diff = max_diff(f64s(at(&base, SEQ, 0, t)), f64s(at(&other, SEQ, 0, t)));
            assert!(diff < 1e-6, "{label}: position {t} saw a later token ({diff:e})");
        }
        let last = max_diff(f64s(at(&base, SEQ, 0, SEQ - 1)), f64s(at(&other, SEQ, 0, SEQ - 1)));
        assert!(last > 1e-4, "{label}: the changed token had no effect");
        for t in 0..SEQ {
            let diff = max_diff(f64s(at(&base, SEQ, 1, t)), f64s(at(&other, SEQ, 1, t)));
            assert!(diff < 1e-6, "{label}: row 1 position {t} saw row 0 ({diff:e})");
        }

        // Row 1 alone, as a batch of one and unpadded to its real length, gives the same
        // logits: batch size and sequence length are dynamic, and padding is invisible.
        let alone_len = SECOND_ROW_LEN;
        let alone = run(&bytes, &ids[SEQ..SEQ + alone_len], &vec![1; alone_len], 1);
        for t in 0..alone_len {
            let diff = max_diff(f64s(at(&base, SEQ, 1, t)), f64s(at(&alone, alone_len, 0, t)));
            assert!(diff < 1e-5, "{label}: row 1 position {t} differs alone ({diff:e})");
        }
    }
}

#[test]
fn inspect_reports_what_was_exported() {
    let expected_ops = |extra: &[&str]| -> BTreeSet<String> {
        let common = [
            "Shape",
            "Gather",
            "Range",
            "Unsqueeze",
            "LessOrEqual",
            "Equal",
            "Not",
            "And",
            "MatMul",
            "Add",
            "Mul",
            "Reshape",
            "Transpose",
            "Where",
            "Softmax",
            "Split",
        ];
        common.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    let llama_ops = ["ReduceMean", "Sqrt", "Reciprocal", "Neg", "Concat", "Sigmoid", "Expand"];
    for (label, config) in all_configs() {
        let bytes = export(&config, &random_weights(&config, 3)).expect("export");
        let summary = inspect(&bytes).expect("inspect");
        assert_eq!(summary.ir_version, IR_VERSION, "{label}");
        assert_eq!(summary.opset, OPSET, "{label}");
        let int64 = graph::INT64;
        assert_eq!(summary.inputs, vec![("input_ids".into(), int64), ("attention_mask".into(), int64)], "{label}");
        assert_eq!(summary.outputs, vec![("logits".into(), graph::FLOAT)], "{label}");
        assert_eq!(summary.parameter_count, config.parameter_count(), "{label}");
        let ops = match config {
            ModelConfig::Llama(_) => expected_ops(&llama_ops),
            ModelConfig::Gpt2(_) => expected_ops(&["LayerNormalization", "Tanh"]),
        };
        assert_eq!(summary.op_types, ops, "{label}");
    }
}

#[test]
fn the_model_proto_is_well_formed() {
    let config = llama(false);
    let model = build(&config, &random_weights(&config, 4)).expect("build");
    assert_eq!(model.ir_version, Some(IR_VERSION));
    assert_eq!(model.producer_name.as_deref(), Some(PRODUCER));
    assert_eq!(model.opset_import.len(), 1);
    assert_eq!(model.opset_import[0].domain.as_deref(), Some(""));
    let graph = model.graph.expect("graph");
    assert_eq!(graph.name.as_deref(), Some(GRAPH_NAME));
    let dims = |v: &gradients_proto::onnx::ValueInfoProto| -> Vec<String> {
        use gradients_proto::onnx::{tensor_shape_proto::dimension::Value, type_proto};
        let Some(type_proto::Value::TensorType(t)) = v.r#type.as_ref().and_then(|t| t.value.clone()) else {
            panic!("not a tensor")
        };
        t.shape
            .expect("shape")
            .dim
            .into_iter()
            .map(|d| match d.value.expect("dim") {
                Value::DimParam(p) => p,
                Value::DimValue(v) => v.to_string(),
            })
            .collect()
    };
    assert_eq!(dims(&graph.input[0]), ["batch", "sequence"]);
    assert_eq!(dims(&graph.input[1]), ["batch", "sequence"]);
    assert_eq!(dims(&graph.output[0]), ["batch", "sequence", "50"]);
    // Weights as raw little-endian f32 under their HF names; projections transposed.
    let k = graph.initializer.iter().find(|t| t.name.as_deref() == Some("model.layers.0.self_attn.k_proj.weight"));
    let k = k.expect("k_proj initializer");
    assert_eq!(k.data_type, Some(graph::FLOAT));
    assert_eq!(k.dims, [16, 8]);
    assert_eq!(k.raw_data.as_ref().map(Vec::len), Some(16 * 8 * 4));
    // The RoPE tables and constants are not counted as parameters.
    for t in &graph.initializer {
        let name = t.name.as_deref().unwrap_or_default();
        let is_param = config.parameters().iter().any(|p| p.name == name);
        assert_eq!(is_parameter_name(name), is_param, "{name}");
    }
}

#[test]
fn bad_weights_are_refused_with_a_typed_error() {
    let config = llama(false);
    let good = random_weights(&config, 5);

    let mut missing = good.clone();
    missing.0.remove("model.layers.1.mlp.up_proj.weight");
    let err = export(&config, &missing).expect_err("missing");
    assert!(
        matches!(err, ExportError::Weights(WeightError::Missing { ref name }) if name == "model.layers.1.mlp.up_proj.weight"),
        "{err}"
    );

    let mut wrong_shape = good.clone();
    wrong_shape.0.insert("model.norm.weight".into(), Weight::new(vec![17], vec![1.0; 17]));
    let err = export(&config, &wrong_shape).expect_err("shape");
    assert!(matches!(err, ExportError::Weights(WeightError::Shape { .. })), "{err}");

    let mut nan = good.clone();
    nan.0.get_mut("lm_head.weight").expect("untied head").data[3] = f32::NAN;
    let err = build(&config, &nan).expect_err("nan");
    assert!(matches!(err, ExportError::Weights(WeightError::NonFinite { .. })), "{err}");

    // A tied model has no lm_head.weight; passing one anyway is a mistake, not ignored.
    let tied = llama(true);
    let err = export(&tied, &good).expect_err("lm_head in a tied model");
    assert!(matches!(err, ExportError::Weights(WeightError::Unexpected { .. })), "{err}");
}

#[test]
fn garbage_is_not_an_onnx_model() {
    let err = inspect(b"\xff\xff\xff\xff not protobuf").expect_err("garbage");
    assert!(matches!(err, ExportError::Decode(_)), "{err}");
    // Empty bytes decode to an empty message, which has no graph.
    let err = inspect(&[]).expect_err("empty");
    assert!(matches!(err, ExportError::Invalid(_)), "{err}");
}

#[test]
fn models_over_two_gib_are_refused() {
    // TinyLlama (1.1B parameters, 4.4 GB in f32) cannot be one protobuf message.
    let config = ModelConfig::Llama(LlamaConfig {
        vocab_size: 32_000,
        hidden_size: 2048,
        intermediate_size: 5632,
        num_hidden_layers: 22,
        num_attention_heads: 32,
        num_key_value_heads: Some(4),
        max_position_embeddings: 2048,
        ..match llama(false) {
            ModelConfig::Llama(c) => c,
            ModelConfig::Gpt2(_) => unreachable!(),
        }
    });
    let err = check_size(estimated_bytes(&config)).expect_err("4.4 GB");
    assert!(matches!(err, ExportError::TooLarge { bytes } if bytes > 4_000_000_000), "{err}");
    assert!(check_size(estimated_bytes(&gpt2())).is_ok());
}
