//! Causal language models in tch, as plain structs of layers with a `forward`.
//!
//! Variables are created from [`ModelConfig::parameters`], under their Hugging Face names
//! (nested `VarStore` paths joined by `.` are exactly those names), so loading and saving a
//! checkpoint is a matter of matching names. LoRA adapters live in a second `VarStore`:
//! the optimizer of a LoRA run sees only them, which is what keeps the base frozen.

mod gpt2;
pub mod layers;
mod llama;

use std::collections::HashMap;

use gradients_model::{ModelConfig, Weight, Weights};
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

use gpt2::Gpt2;
pub use layers::KvCache;
use layers::{Linear, LoraAdapter};
use llama::Llama;

/// LoRA settings. PEFT's meaning: `scale = alpha / rank`; `targets` are layer-name
/// suffixes (`q_proj`, `c_attn`) or `all-linear`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    pub rank: usize,
    pub alpha: f64,
    pub dropout: f64,
    pub targets: Vec<String>,
}

impl Default for LoraConfig {
    /// AutoTrain's PEFT defaults: r 16, alpha 32, dropout 0.05, all linear layers.
    fn default() -> Self {
        Self { rank: 16, alpha: 32.0, dropout: 0.05, targets: vec!["all-linear".into()] }
    }
}

enum Network {
    Llama(Llama),
    Gpt2(Gpt2),
}

/// A causal LM: `forward(input_ids, attention_mask) → logits [B, T, vocab]`.
pub struct CausalLm {
    pub config: ModelConfig,
    vs: nn::VarStore,
    adapters: Option<nn::VarStore>,
    network: Network,
}

/// Removes a variable created from the parameter list; a miss is a bug in this crate.
pub(crate) fn take(vars: &mut HashMap<String, Tensor>, name: &str) -> Tensor {
    vars.remove(name).unwrap_or_else(|| panic!("parameter {name} was not created from the configuration"))
}

/// The variable under a dotted name, created through nested paths.
fn create_var(root: &nn::Path, name: &str, shape: &[i64], init: nn::Init) -> Tensor {
    let mut parts: Vec<&str> = name.split('.').collect();
    let leaf = parts.pop().expect("a parameter name");
    let path = parts.iter().fold(root.clone(), |path, part| path.sub(*part));
    path.var(leaf, shape, init)
}

/// GPT-2's initialisation, which Llama's follows: N(0, 0.02) weights, unit norms, zero biases.
fn initial_value(name: &str) -> nn::Init {
    let is_norm = name.contains("norm") || name.contains(".ln_") || name.starts_with("transformer.ln_f");
    if name.ends_with(".bias") {
        nn::Init::Const(0.0)
    } else if is_norm {
        nn::Init::Const(1.0)
    } else {
        nn::Init::Randn { mean: 0.0, stdev: 0.02 }
    }
}

impl CausalLm {
    /// A freshly initialised model (for pretraining; fine-tuning loads a checkpoint over it).
    pub fn new(config: &ModelConfig, device: Device, seed: i64) -> Self {
        tch::manual_seed(seed);
        let vs = nn::VarStore::new(device);
        let mut vars: HashMap<String, Tensor> = config
            .parameters()
            .into_iter()
            .map(|spec| {
                let shape: Vec<i64> = spec.shape.iter().map(|&d| d as i64).collect();
                let var = create_var(&vs.root(), &spec.name, &shape, initial_value(&spec.name));
                (spec.name, var)
            })
            .collect();
        let network = match config {
            ModelConfig::Llama(c) => Network::Llama(Llama::new(c.clone(), &mut vars, device)),
            ModelConfig::Gpt2(c) => Network::Gpt2(Gpt2::new(c.clone(), &mut vars)),
        };
        debug_assert!(vars.is_empty(), "unused parameters: {:?}", vars.keys());
        Self { config: config.clone(), vs, adapters: None, network }
    }

    /// An independent copy (adapters merged in), on the same device.
    pub fn duplicate(&self) -> CausalLm {
        let copy = CausalLm::new(&self.config, self.device(), 0);
        let mut merged = self.merged_parameters();
        let _guard = tch::no_grad_guard();
        for (name, var) in copy.vs.variables() {
            var.shallow_clone().copy_(&merged.remove(&name).expect("both models have the same parameters"));
        }
        copy
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// Logits `[B, T, vocab]` (f32) for right-padded `input_ids` and `attention_mask` (i64).
    pub fn forward(&self, input_ids: &Tensor, attention_mask: &Tensor, train: bool) -> Tensor {
        let logits = match &self.network {
            Network::Llama(m) => m.forward(input_ids, attention_mask, train),
            Network::Gpt2(m) => m.forward(input_ids, attention_mask, train),
        };
        logits.to_kind(Kind::Float)
    }

    /// Logits `[B, t, vocab]` (f32) of the new tokens `input_ids` `[B, t]` after the ones
    /// in `cache`, whose keys and values are appended to it. `attention_mask` `[B, past + t]`
    /// covers cached and new tokens, left or right padded: positions are counted from it.
    /// Inference only (no dropout); [`forward`](Self::forward) stays the training path.
    pub fn forward_cached(&self, input_ids: &Tensor, attention_mask: &Tensor, cache: &mut KvCache) -> Tensor {
        assert_eq!(
            attention_mask.size()[1],
            cache.len() + input_ids.size()[1],
            "the attention mask covers the cached tokens and the new ones"
        );
        let logits = match &self.network {
            Network::Llama(m) => m.forward_cached(input_ids, attention_mask, cache),
            Network::Gpt2(m) => m.forward_cached(input_ids, attention_mask, cache),
        };
        logits.to_kind(Kind::Float)
    }

    /// The variables an optimizer should update: the adapters when LoRA is on, else all.
    pub fn trainable(&self) -> &nn::VarStore {
        self.adapters.as_ref().unwrap_or(&self.vs)
    }

    /// The base parameters by HF name.
    pub fn base_variables(&self) -> HashMap<String, Tensor> {
        self.vs.variables()
    }

    pub fn has_lora(&self) -> bool {
        self.adapters.is_some()
    }

    fn linears(&self) -> Vec<&Linear> {
        match &self.network {
            Network::Llama(m) => m.linears(),
            Network::Gpt2(m) => m.linears(),
        }
    }

    fn linears_mut(&mut self) -> Vec<&mut Linear> {
        match &mut self.network {
            Network::Llama(m) => m.linears_mut(),
            Network::Gpt2(m) => m.linears_mut(),
        }
    }

    /// Adds LoRA adapters to the targeted layers and freezes the base. Returns the number
    /// of adapted layers (0 means no layer matched: an error for the caller to report).
    pub fn add_lora(&mut self, lora: &LoraConfig, seed: i64) -> usize {
        tch::manual_seed(seed);
        self.vs.freeze();
        let adapters = nn::VarStore::new(self.vs.device());
        let root = adapters.root();
        let all = lora.targets.iter().any(|t| t == "all-linear");
        let rank = lora.rank as i64;
        let mut adapted = 0;
        for linear in self.linears_mut() {
            let suffix = linear.name.rsplit('.').next().unwrap_or_default();
            if !(all || lora.targets.iter().any(|t| t == suffix)) {
                continue;
            }
            let (inputs, outputs) = linear.features();
            let bound = 1.0 / (inputs as f64).sqrt();
            let a = create_var(
                &root,
                &format!("{}.lora_A", linear.name),
                &[rank, inputs],
                nn::Init::Uniform { lo: -bound, up: bound },
            );
            let b = create_var(&root, &format!("{}.lora_B", linear.name), &[outputs, rank], nn::Init::Const(0.0));
            linear.lora = Some(LoraAdapter { a, b, scale: lora.alpha / lora.rank as f64, dropout: lora.dropout });
            adapted += 1;
        }
        self.adapters = Some(adapters);
        adapted
    }

    /// Folds the adapters into the base weights, removes them and unfreezes the base.
    pub fn merge_lora(&mut self) {
        for linear in self.linears_mut() {
            if linear.lora.is_some() {
                let merged = linear.merged_weight();
                let _guard = tch::no_grad_guard();
                linear.weight.copy_(&merged);
                linear.lora = None;
            }
        }
        self.adapters = None;
        self.vs.unfreeze();
    }

    /// Every parameter as f32 on the CPU, adapters merged in: what is saved and exported.
    pub fn weights(&self) -> Weights {
        let mut merged = self.merged_parameters();
        let mut weights = Weights::default();
        for spec in self.config.parameters() {
            let tensor = merged.remove(&spec.name).expect("every parameter is in the model");
            let data = Vec::<f32>::try_from(tensor.to_kind(Kind::Float).to(Device::Cpu).flatten(0, -1))
                .expect("a float tensor converts to Vec<f32>");
            weights.0.insert(spec.name, Weight::new(spec.shape, data));
        }
        weights
    }

    /// Every parameter by HF name, on the model's device, adapters folded into the weights
    /// they adapt (new tensors for those, shallow clones of the variables otherwise).
    fn merged_parameters(&self) -> HashMap<String, Tensor> {
        let mut parameters = self.vs.variables();
        for linear in self.linears().into_iter().filter(|l| l.lora.is_some()) {
            parameters.insert(format!("{}.weight", linear.name), linear.merged_weight());
        }
        parameters
    }

    /// Copies of the trainable tensors, to restore the best state after early stopping.
    pub fn snapshot(&self) -> Vec<Tensor> {
        let _guard = tch::no_grad_guard();
        self.trainable().trainable_variables().iter().map(|t| t.copy()).collect()
    }

    /// Restores a [`snapshot`](Self::snapshot) taken from this model.
    pub fn restore(&self, snapshot: &[Tensor]) {
        let _guard = tch::no_grad_guard();
        for (var, saved) in self.trainable().trainable_variables().iter_mut().zip(snapshot) {
            var.copy_(saved);
        }
    }

    /// The number of scalars an optimizer updates.
    pub fn trainable_count(&self) -> i64 {
        self.trainable().trainable_variables().iter().map(|t| t.numel() as i64).sum()
    }

    /// Whether the model is on a CUDA device.
    pub fn on_cuda(&self) -> bool {
        self.device().is_cuda()
    }
}
