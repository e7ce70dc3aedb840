//! Every key of a `config.json`, checked before it is parsed: read, harmless, required to
//! hold the one value we implement, or refused by name.
//!
//! The list is closed on purpose. A key we do not know may change what the model computes
//! (a new attention variant, quantisation, custom code), and loading such a checkpoint with
//! our forward pass would give numbers nobody trained; refusing it names what to add.

use serde_json::Value;

use crate::config::ConfigError;

/// Keys of any architecture that change nothing the forward pass computes: bookkeeping,
/// storage type (we compute in f32), generation defaults, and dropout rates (training-time
/// noise; evaluation runs without dropout as HF's `eval()` does).
const HARMLESS: &[&str] = &[
    "_name_or_path",
    "architectures",
    "torch_dtype",
    "dtype",
    "transformers_version",
    "use_cache",
    "initializer_range",
    "pad_token_id",
    "id2label",
    "label2id",
    "_num_labels",
    "attention_dropout",
    "attn_pdrop",
    "embd_pdrop",
    "resid_pdrop",
    "task_specific_params",
];

/// Keys of Llama-style configs that the typed config reads.
const LLAMA_READ: &[&str] = &[
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "rms_norm_eps",
    "rope_theta",
    "rope_scaling",
    "max_position_embeddings",
    "tie_word_embeddings",
    "bos_token_id",
    "eos_token_id",
    "hidden_act",
];

/// Keys of GPT-2 configs that the typed config reads.
const GPT2_READ: &[&str] = &[
    "vocab_size",
    "n_positions",
    "n_embd",
    "n_layer",
    "n_head",
    "n_inner",
    "layer_norm_epsilon",
    "activation_function",
    "bos_token_id",
    "eos_token_id",
];

/// GPT-2 keys that only configure the sequence-summary head of `GPT2DoubleHeadsModel`,
/// which a causal LM does not have, or duplicate `n_positions` (`n_ctx`).
const GPT2_HARMLESS: &[&str] = &[
    "n_ctx",
    "summary_activation",
    "summary_first_dropout",
    "summary_proj_to_labels",
    "summary_type",
    "summary_use_proj",
];

#[derive(Clone, Copy, PartialEq)]
enum Family {
    Llama,
    Qwen2,
    Gpt2,
}

fn render(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(80) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

fn unsupported(key: &str, value: &Value, reason: &str) -> ConfigError {
    ConfigError::Unsupported { key: key.to_owned(), value: render(value), reason: reason.to_owned() }
}

/// Checks every key of `config` (a JSON object) and normalises `rope_scaling` (`type` is
/// the older spelling of `rope_type`). Parsing the typed config comes after.
pub(crate) fn check(config: &mut Value) -> Result<(), ConfigError> {
    let Some(object) = config.as_object_mut() else {
        // Not an object: serde's error says so.
        return Ok(());
    };
    let model_type = object.get("model_type").cloned().unwrap_or(Value::Null);
    let family = match model_type.as_str() {
        Some("llama") => Family::Llama,
        Some("qwen2") => Family::Qwen2,
        Some("gpt2") => Family::Gpt2,
        _ => return Err(unsupported("model_type", &model_type, "supported model types: llama, qwen2, gpt2")),
    };
    let mut keys: Vec<String> = object.keys().cloned().collect();
    keys.sort();
    for key in keys {
        let value = &object[&key];
        let require = |ok: bool, reason: &str| if ok { Ok(()) } else { Err(unsupported(&key, value, reason)) };
        match (family, key.as_str()) {
            (_, "model_type") => Ok(()),
            (_, k) if HARMLESS.contains(&k) => Ok(()),
            (Family::Gpt2, k) if GPT2_READ.contains(&k) || GPT2_HARMLESS.contains(&k) => Ok(()),
            (Family::Gpt2, "tie_word_embeddings") => {
                require(value.as_bool() != Some(false), "GPT-2's output layer is always tied to wte")
            }
            (Family::Gpt2, "scale_attn_weights") => {
                require(value.as_bool() != Some(false), "attention scores are always scaled by 1/sqrt(head size)")
            }
            (Family::Gpt2, "scale_attn_by_inverse_layer_idx" | "reorder_and_upcast_attn" | "add_cross_attention") => {
                require(value.as_bool() != Some(true), "not implemented (only plain GPT-2 attention is)")
            }
            (Family::Gpt2, _) => {
                Err(unsupported(&key, value, "not a GPT-2 key we know; it may change the computation"))
            }
            (_, k) if LLAMA_READ.contains(&k) => Ok(()),
            (Family::Llama, "attention_bias") => Ok(()),
            (_, "mlp_bias") => require(value.as_bool() != Some(true), "MLP biases are not implemented"),
            (_, "pretraining_tp") => Ok(()), // HF computes the same product in slices.
            (_, "head_dim") => {
                let derived = match (object.get("hidden_size"), object.get("num_attention_heads")) {
                    (Some(Value::Number(h)), Some(Value::Number(n))) if n.as_u64().unwrap_or(0) > 0 => {
                        h.as_u64().map(|h| h / n.as_u64().unwrap_or(1))
                    }
                    _ => None,
                };
                require(
                    value.is_null() || value.as_u64() == derived,
                    "only head_dim = hidden_size / num_attention_heads is implemented",
                )
            }
            (Family::Llama, "is_llama_config") => Ok(()),
            (Family::Llama, "rope_interleaved") => {
                require(value.as_bool() != Some(true), "interleaved RoPE is not implemented")
            }
            (Family::Qwen2, "use_sliding_window") => {
                require(value.as_bool() != Some(true), "sliding-window attention is not implemented")
            }
            // Only read by HF when use_sliding_window is true, which is refused above.
            (Family::Qwen2, "sliding_window" | "max_window_layers") => Ok(()),
            (Family::Qwen2, "use_mrope") => {
                require(value.as_bool() != Some(true), "multimodal RoPE is not implemented")
            }
            (Family::Qwen2, "layer_types") => require(
                value.as_array().is_some_and(|layers| layers.iter().all(|l| l == "full_attention")),
                "only full attention in every layer is implemented",
            ),
            _ => Err(unsupported(&key, value, "not a key we know for this model type; it may change the computation")),
        }?;
    }
    if let Some(scaling) = object.get_mut("rope_scaling") {
        normalise_rope_scaling(scaling)?;
    }
    Ok(())
}

/// `rope_scaling`: null, or Llama 3's scaling with exactly its four numbers.
fn normalise_rope_scaling(scaling: &mut Value) -> Result<(), ConfigError> {
    let Some(object) = scaling.as_object_mut() else {
        return match scaling {
            Value::Null => Ok(()),
            other => Err(unsupported("rope_scaling", other, "must be null or an object")),
        };
    };
    if let Some(old) = object.remove("type") {
        match object.get("rope_type") {
            Some(new) if *new != old => {
                return Err(unsupported("rope_scaling.type", &old, "differs from rope_scaling.rope_type"));
            }
            _ => {
                object.insert("rope_type".into(), old);
            }
        }
    }
    let rope_type = object.get("rope_type").cloned().unwrap_or(Value::Null);
    if rope_type != "llama3" {
        return Err(unsupported("rope_scaling.rope_type", &rope_type, "only llama3 RoPE scaling is implemented"));
    }
    const LLAMA3: [&str; 5] =
        ["rope_type", "factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"];
    if let Some((key, value)) = object.iter().find(|(key, _)| !LLAMA3.contains(&key.as_str())) {
        return Err(unsupported(&format!("rope_scaling.{key}"), value, "not a key of llama3 RoPE scaling"));
    }
    if let Some(missing) = LLAMA3.iter().find(|key| !object.contains_key(**key)) {
        return Err(unsupported(&format!("rope_scaling.{missing}"), &Value::Null, "llama3 RoPE scaling needs it"));
    }
    Ok(())
}
