//! The evaluator (the validator): its key, where base models come from, the limits a
//! submitted ONNX file must stay within, and how ONNX Runtime runs it.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::{ms, ConfigError};

/// Settings of the evaluator service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvaluatorSettings {
    /// Listen address of `/metrics`, `/healthz` and `/readyz`; port 0 picks a free one.
    pub http_addr: String,
    /// The evaluator's ed25519 key (signs every evaluation); made there when missing.
    /// Every replica must use the same key.
    pub key_file: PathBuf,
    /// The evaluator's public key (hex), for those who verify evaluations (the ledger).
    /// Empty: read the key at `key_file` (a ledger on the same machine, as in the demo).
    pub public_key: String,
    /// Dispatch's public key (hex), to verify the assignments the evaluator projects.
    /// Empty: read the key at `dispatch.key_file`.
    pub dispatch_public_key: String,
    /// Local base models (`<models_dir>/<name>/` in the Hugging Face layout), used when a
    /// model is not in the `gradients-models` store.
    pub models_dir: PathBuf,
    /// Largest artifact accepted, in bytes (checked before a byte is read).
    pub max_artifact_bytes: u64,
    /// Most nodes an ONNX graph may have (subgraphs included).
    pub max_nodes: usize,
    /// Most bytes of initializers an ONNX graph may hold.
    pub max_initializer_bytes: u64,
    /// Largest dimension a graph may declare anywhere (inputs, outputs, value infos,
    /// initializers).
    pub max_dimension: i64,
    /// How long creating an ONNX Runtime session may take before the file is refused.
    pub session_timeout_ms: u64,
    /// How long scoring one submission on both splits may take before it is refused.
    pub run_timeout_ms: u64,
    /// Most memory ONNX Runtime's arena may take for one session, in bytes.
    pub max_session_memory_bytes: u64,
    /// ONNX Runtime threads inside one operator.
    pub intra_op_threads: usize,
    /// ONNX Runtime threads across operators.
    pub inter_op_threads: usize,
    /// Most tokens (batch x padded length) per ONNX Runtime run.
    pub batch_tokens: usize,
    /// Submissions evaluated at once by one process.
    pub concurrency: usize,
    /// β of the DPO loss when the task does not set one.
    pub dpo_beta: f64,
    /// GRPO: most new tokens generated for one prompt (greedy, until end-of-text).
    pub grpo_max_new_tokens: usize,
    /// GRPO: most new tokens generated in one evaluation, all prompts of both splits
    /// together; a task with many prompts gets fewer new tokens per prompt (the same for
    /// every model), so a model that never ends its text cannot hold the evaluator.
    pub grpo_max_generated_tokens: u64,
}

impl Default for EvaluatorSettings {
    fn default() -> Self {
        Self {
            http_addr: "127.0.0.1:9450".to_owned(),
            key_file: PathBuf::from("evaluator.key"),
            public_key: String::new(),
            dispatch_public_key: String::new(),
            models_dir: PathBuf::from("models"),
            max_artifact_bytes: 1 << 30,
            max_nodes: 20_000,
            max_initializer_bytes: 1 << 30,
            max_dimension: 1 << 20,
            session_timeout_ms: 30_000,
            run_timeout_ms: 600_000,
            max_session_memory_bytes: 4 << 30,
            intra_op_threads: 1,
            inter_op_threads: 1,
            batch_tokens: 4096,
            concurrency: 1,
            dpo_beta: 0.1,
            grpo_max_new_tokens: 64,
            grpo_max_generated_tokens: 200_000,
        }
    }
}

impl EvaluatorSettings {
    /// See [`EvaluatorSettings::session_timeout_ms`].
    pub fn session_timeout(&self) -> Duration {
        ms(self.session_timeout_ms)
    }
    /// See [`EvaluatorSettings::run_timeout_ms`].
    pub fn run_timeout(&self) -> Duration {
        ms(self.run_timeout_ms)
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        for (key, value) in
            [("evaluator.public_key", &self.public_key), ("evaluator.dispatch_public_key", &self.dispatch_public_key)]
        {
            if !value.is_empty() && (value.len() != 64 || !value.chars().all(|c| c.is_ascii_hexdigit())) {
                return Err(ConfigError::invalid(key, value, "must be empty or a 32-byte key in hex"));
            }
        }
        if self.max_artifact_bytes == 0 {
            return Err(ConfigError::invalid("evaluator.max_artifact_bytes", 0, "must be positive"));
        }
        if self.max_dimension < 1 {
            return Err(ConfigError::invalid("evaluator.max_dimension", self.max_dimension, "must be positive"));
        }
        if self.intra_op_threads == 0 || self.inter_op_threads == 0 {
            return Err(ConfigError::invalid(
                "evaluator.intra_op_threads",
                format!("{}/{}", self.intra_op_threads, self.inter_op_threads),
                "intra- and inter-op threads must be at least 1",
            ));
        }
        if self.batch_tokens < 16 {
            return Err(ConfigError::invalid("evaluator.batch_tokens", self.batch_tokens, "must be at least 16"));
        }
        if self.concurrency == 0 {
            return Err(ConfigError::invalid("evaluator.concurrency", 0, "must be at least 1"));
        }
        if !(self.dpo_beta > 0.0 && self.dpo_beta.is_finite()) {
            return Err(ConfigError::invalid("evaluator.dpo_beta", self.dpo_beta, "must be positive"));
        }
        if self.grpo_max_new_tokens == 0 || self.grpo_max_generated_tokens == 0 {
            return Err(ConfigError::invalid(
                "evaluator.grpo_max_new_tokens",
                format!("{}/{}", self.grpo_max_new_tokens, self.grpo_max_generated_tokens),
                "the GRPO new-token limits must be at least 1",
            ));
        }
        if self.session_timeout_ms == 0 || self.run_timeout_ms == 0 {
            return Err(ConfigError::invalid(
                "evaluator.run_timeout_ms",
                format!("{}/{}", self.session_timeout_ms, self.run_timeout_ms),
                "session and run time limits must be positive",
            ));
        }
        Ok(())
    }
}
