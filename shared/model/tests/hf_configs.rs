//! The published `config.json` of real checkpoints (fixtures, copied from the Hugging Face
//! Hub) load with their published parameter counts, or are refused with the key at fault;
//! every refusal names its key.

use gradients_model::{CheckpointName, ConfigError, LlamaFamily, ModelConfig};

macro_rules! fixture {
    ($name:literal) => {
        ($name, include_str!(concat!("fixtures/hf-configs/", $name, ".json")))
    };
}

/// A fixture's name and contents.
type Fixture = (&'static str, &'static str);

/// Each supported fixture, its model type, its published parameter count (as the model
/// cards and `num_parameters()` give it) and its end-of-text ids.
const SUPPORTED: [(Fixture, &str, u64, &[u32]); 10] = [
    (fixture!("meta-llama--Llama-3.2-1B"), "llama", 1_235_814_400, &[128001]),
    (fixture!("meta-llama--Llama-3.2-1B-Instruct"), "llama", 1_235_814_400, &[128001, 128008, 128009]),
    (fixture!("meta-llama--Llama-3.1-8B-Instruct"), "llama", 8_030_261_248, &[128001, 128008, 128009]),
    (fixture!("HuggingFaceTB--SmolLM2-135M"), "llama", 134_515_008, &[0]),
    (fixture!("TinyLlama--TinyLlama-1.1B-Chat-v1.0"), "llama", 1_100_048_384, &[2]),
    (fixture!("Qwen--Qwen2-0.5B"), "qwen2", 494_032_768, &[151643]),
    (fixture!("Qwen--Qwen2.5-0.5B"), "qwen2", 494_032_768, &[151643]),
    (fixture!("Qwen--Qwen2.5-0.5B-Instruct"), "qwen2", 494_032_768, &[151645]),
    (fixture!("Qwen--Qwen2.5-7B-Instruct"), "qwen2", 7_615_616_512, &[151645]),
    (fixture!("openai-community--gpt2"), "gpt2", 124_439_808, &[50256]),
];

fn unsupported_key(json: &str) -> String {
    match ModelConfig::from_json(json.as_bytes()) {
        Err(ConfigError::Unsupported { key, .. }) => key,
        Err(ConfigError::Invalid { key, .. }) => key.to_owned(),
        other => panic!("expected a refusal naming a key, got {other:?}"),
    }
}

#[test]
fn published_configs_load_with_their_published_sizes() {
    for ((name, json), model_type, parameters, eos) in SUPPORTED {
        let config = ModelConfig::from_json(json.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(config.architecture(), model_type, "{name}");
        assert_eq!(config.parameter_count(), parameters, "{name}");
        assert_eq!(config.eos_token_ids(), eos, "{name}");
        // What we write reads back the same, and names the HF class.
        let again = ModelConfig::from_json(&config.to_json()).unwrap_or_else(|e| panic!("{name} again: {e}"));
        assert_eq!(again, config, "{name}");
        let written: serde_json::Value = serde_json::from_slice(&config.to_json()).expect("json");
        assert_eq!(written["model_type"], model_type, "{name}");
        let original: serde_json::Value = serde_json::from_str(json).expect("json");
        assert_eq!(written["architectures"], original["architectures"], "{name}");
        assert_eq!(written["eos_token_id"], original["eos_token_id"], "{name}");
    }
}

#[test]
fn llama3_rope_scaling_follows_hf() {
    let (_, json) = fixture!("meta-llama--Llama-3.2-1B");
    let ModelConfig::Llama(c) = ModelConfig::from_json(json.as_bytes()).expect("llama 3.2") else { unreachable!() };
    let scaling = c.rope_scaling.clone().expect("llama3 scaling");
    assert_eq!((scaling.rope_type.as_str(), scaling.factor), ("llama3", 32.0));
    let plain: Vec<f64> = (0..32).map(|j| 1.0 / 500_000f64.powf(2.0 * j as f64 / 64.0)).collect();
    let scaled = c.inv_freq();
    // Wavelengths under 8192/4 = 2048 positions are kept, over 8192 divided by 32, and
    // the band between is interpolated (HF's _compute_llama3_parameters).
    for (p, s) in plain.iter().zip(&scaled) {
        let wavelen = 2.0 * std::f64::consts::PI / p;
        if wavelen < 2048.0 {
            assert_eq!(s, p);
        } else if wavelen > 8192.0 {
            assert!((s - p / 32.0).abs() <= 1e-18, "{s} vs {}", p / 32.0);
        } else {
            assert!(*s < *p && *s > p / 32.0, "{s} between {p} and {}", p / 32.0);
        }
    }
    assert!(plain.iter().zip(&scaled).filter(|(p, s)| p != s).count() > 10);
}

#[test]
fn qwen2_has_query_key_value_biases_and_writes_its_own_model_type() {
    let (_, json) = fixture!("Qwen--Qwen2.5-0.5B-Instruct");
    let config = ModelConfig::from_json(json.as_bytes()).expect("qwen");
    let ModelConfig::Llama(c) = &config else { unreachable!() };
    assert_eq!(c.family, LlamaFamily::Qwen2);
    assert!(c.qkv_bias() && !c.o_bias() && c.tie_word_embeddings);
    let names: Vec<String> = config.parameters().into_iter().map(|p| p.name).collect();
    for bias in ["q_proj.bias", "k_proj.bias", "v_proj.bias"] {
        assert!(names.contains(&format!("model.layers.0.self_attn.{bias}")), "{bias}");
    }
    assert!(!names.iter().any(|n| n.contains("o_proj.bias")));
    assert!(String::from_utf8(config.to_json()).expect("utf-8").contains("Qwen2ForCausalLM"));
    // Llama's attention_bias puts biases on all four projections.
    let (_, tiny) = fixture!("TinyLlama--TinyLlama-1.1B-Chat-v1.0");
    let biased =
        ModelConfig::from_json(tiny.replace("\"attention_bias\": false", "\"attention_bias\": true").as_bytes())
            .expect("biased llama");
    assert_eq!(
        biased.parameter_count(),
        ModelConfig::from_json(tiny.as_bytes()).expect("tinyllama").parameter_count() + 22 * (2048 + 256 + 256 + 2048)
    );
}

#[test]
fn configs_we_cannot_run_exactly_are_refused_naming_the_key() {
    let (_, mistral) = fixture!("mistralai--Mistral-7B-v0.1");
    assert_eq!(unsupported_key(mistral), "model_type");
    let (_, llama) = fixture!("meta-llama--Llama-3.2-1B");
    let (_, qwen) = fixture!("Qwen--Qwen2.5-7B-Instruct");
    let (_, gpt2) = fixture!("openai-community--gpt2");
    let (_, smol) = fixture!("HuggingFaceTB--SmolLM2-135M");
    let cases: Vec<(String, &str)> = vec![
        (llama.replace("\"llama3\"", "\"yarn\""), "rope_scaling.rope_type"),
        (llama.replace("\"rope_type\": \"llama3\"", "\"type\": \"dynamic\""), "rope_scaling.rope_type"),
        (llama.replace("\"factor\": 32.0,", "\"factor\": 32.0, \"beta_fast\": 32,"), "rope_scaling.beta_fast"),
        (llama.replace("\"low_freq_factor\": 1.0,", ""), "rope_scaling.low_freq_factor"),
        (llama.replace("\"mlp_bias\": false", "\"mlp_bias\": true"), "mlp_bias"),
        (llama.replace("\"head_dim\": 64", "\"head_dim\": 128"), "head_dim"),
        (llama.replace("\"hidden_act\": \"silu\"", "\"hidden_act\": \"gelu\""), "hidden_act"),
        (llama.replace("\"use_cache\": true", "\"quantization_config\": {\"bits\": 4}"), "quantization_config"),
        (qwen.replace("\"use_sliding_window\": false", "\"use_sliding_window\": true"), "use_sliding_window"),
        (qwen.replace("\"use_cache\": true", "\"use_mrope\": true"), "use_mrope"),
        (qwen.replace("\"use_cache\": true", "\"attention_bias\": true"), "attention_bias"),
        (qwen.replace("\"use_cache\": true", "\"layer_types\": [\"sliding_attention\"]"), "layer_types"),
        (smol.replace("\"rope_interleaved\": false", "\"rope_interleaved\": true"), "rope_interleaved"),
        (
            gpt2.replace("\"n_ctx\": 1024", "\"scale_attn_by_inverse_layer_idx\": true"),
            "scale_attn_by_inverse_layer_idx",
        ),
        (gpt2.replace("\"n_ctx\": 1024", "\"tie_word_embeddings\": false"), "tie_word_embeddings"),
        (gpt2.replace("gelu_new", "relu"), "activation_function"),
        (gpt2.replace("\"model_type\": \"gpt2\",", ""), "model_type"),
    ];
    for (json, key) in cases {
        let err = ModelConfig::from_json(json.as_bytes()).expect_err(key);
        assert_eq!(unsupported_key(&json), key, "{err}");
        assert!(err.to_string().contains(key), "{err}");
    }
}

#[test]
fn bad_sizes_name_the_key() {
    let (_, tiny) = fixture!("TinyLlama--TinyLlama-1.1B-Chat-v1.0");
    let bad = tiny.replace("\"num_key_value_heads\": 4", "\"num_key_value_heads\": 5");
    let err = ModelConfig::from_json(bad.as_bytes()).expect_err("5 does not divide 32");
    assert!(err.to_string().contains("num_key_value_heads = 5"), "{err}");
    let err = ModelConfig::from_json(b"{not json").expect_err("garbage");
    assert!(matches!(err, ConfigError::Parse(_)));
    let err = ModelConfig::from_json(br#"{"model_type": "bert", "vocab_size": 3}"#).expect_err("bert");
    assert!(err.to_string().contains("llama, qwen2, gpt2"), "{err}");
}

#[test]
fn checkpoint_names_are_canonicalised() {
    let (_, gpt2) = fixture!("openai-community--gpt2");
    let gpt2 = ModelConfig::from_json(gpt2.as_bytes()).expect("gpt2");
    assert_eq!(
        gpt2.checkpoint_name("h.0.ln_1.weight"),
        CheckpointName::Parameter("transformer.h.0.ln_1.weight".into())
    );
    assert_eq!(gpt2.checkpoint_name("h.0.attn.bias"), CheckpointName::Ignored);
    assert_eq!(gpt2.checkpoint_name("lm_head.weight"), CheckpointName::Ignored);
    let (_, tiny) = fixture!("TinyLlama--TinyLlama-1.1B-Chat-v1.0");
    let llama = ModelConfig::from_json(tiny.as_bytes()).expect("llama");
    assert_eq!(llama.checkpoint_name("lm_head.weight"), CheckpointName::Parameter("lm_head.weight".into()));
}
