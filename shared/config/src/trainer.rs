//! The reference miner (`gradients-trainer`): its key, its base models, its strategy and
//! the capacity it offers the market.

use std::path::PathBuf;

use serde::Deserialize;

use crate::ConfigError;

/// Settings of a trainer (a miner).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainerSettings {
    /// The miner's ed25519 key; made there when missing.
    pub key_file: PathBuf,
    /// Dispatch's public key (hex), to verify assignments. Empty: read the key at
    /// `dispatch.key_file` (a trainer on the same machine as dispatch, as in the demo).
    pub dispatch_public_key: String,
    /// Folder of base models: `<models_dir>/<name>/` in the Hugging Face layout.
    pub models_dir: PathBuf,
    /// `fixed`, `random`, `lr-range-test`, `successive-halving`, `sweep-decay` or `pbt`.
    pub strategy: String,
    /// `auto` (CUDA when usable) or `cpu`.
    pub device: String,
    /// Tasks trained at once (offers beyond it are declined).
    pub max_concurrent_tasks: u32,
    /// Largest base model accepted, in parameters.
    pub max_model_params: u64,
    /// Time kept back from the deadline for export, upload and submission.
    pub submit_margin_ms: u64,
    /// Offers whose deadline leaves less training time than this are declined.
    pub min_training_ms: u64,
    /// Where each task's model, report and plot are kept (`<work_dir>/<task id>/`).
    pub work_dir: PathBuf,
    /// Seeds every task's training, mixed with the miner's id (so miners left at one
    /// setting still train different models).
    pub seed: u64,
    /// Caps the optimizer steps of a task (0: the deadline alone decides). For tests and
    /// reproducible benchmarks; a competing miner leaves it at 0.
    pub max_steps: u64,
}

impl Default for TrainerSettings {
    fn default() -> Self {
        Self {
            key_file: PathBuf::from("miner.key"),
            dispatch_public_key: String::new(),
            models_dir: PathBuf::from("models"),
            strategy: "lr-range-test".to_owned(),
            device: "auto".to_owned(),
            max_concurrent_tasks: 1,
            max_model_params: 20_000_000,
            submit_margin_ms: 15_000,
            min_training_ms: 5_000,
            work_dir: PathBuf::from("trainer-runs"),
            seed: 7,
            max_steps: 0,
        }
    }
}

impl TrainerSettings {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if !["auto", "cpu"].contains(&self.device.as_str()) {
            return Err(ConfigError::invalid("trainer.device", &self.device, "must be auto or cpu"));
        }
        if self.max_concurrent_tasks == 0 {
            return Err(ConfigError::invalid("trainer.max_concurrent_tasks", 0, "must be at least 1"));
        }
        let key = &self.dispatch_public_key;
        if !key.is_empty() && (key.len() != 64 || !key.chars().all(|c| c.is_ascii_hexdigit())) {
            return Err(ConfigError::invalid("trainer.dispatch_public_key", key, "must be a 32-byte key in hex"));
        }
        Ok(())
    }
}
