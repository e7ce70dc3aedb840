//! The reward ledger: when tasks are finalized and how they are scored.

use std::time::Duration;

use gradients_scoring::ScoringConfig;
use serde::Deserialize;

use crate::{ms, ConfigError};

/// Settings of the ledger service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerSettings {
    /// Listen address of `/metrics`, `/healthz` and `/readyz`; port 0 picks a free one.
    pub http_addr: String,
    /// After a task's deadline, how long evaluations may still arrive before the task is
    /// finalized with whatever was evaluated (late submissions are the evaluator's to refuse).
    pub evaluation_grace_ms: u64,
    /// How often to look for tasks whose deadline and grace have passed.
    pub sweep_interval_ms: u64,
    /// How often the outbox relay publishes what a crash left behind.
    pub outbox_poll_ms: u64,
    /// How often miner weights are published (when a task was finalized since).
    pub weights_interval_ms: u64,
    /// How many API requests one ledger process answers at once.
    pub max_concurrent_requests: usize,
    /// Dispatch's public key (hex): the ledger records only assignments it signed. Empty:
    /// read the key at `dispatch.key_file` (the ledger beside dispatch, as in the demo).
    pub dispatch_public_key: String,
    /// Ranks, rewards and period weights; every constant of the scoring is here.
    pub scoring: ScoringConfig,
    /// Miner ids of the market's baseline: the miners the operator runs with the fixed
    /// recipe (`gradients-trainer --strategy fixed`). A task result names the one assigned to
    /// the task and states the winner's improvement over it and the confidence it is beaten.
    pub baseline_miners: Vec<String>,
}

impl Default for LedgerSettings {
    fn default() -> Self {
        Self {
            http_addr: "127.0.0.1:9440".to_owned(),
            evaluation_grace_ms: 10 * 60 * 1000,
            sweep_interval_ms: 5_000,
            outbox_poll_ms: 1_000,
            weights_interval_ms: 60_000,
            max_concurrent_requests: 16,
            dispatch_public_key: String::new(),
            scoring: ScoringConfig::default(),
            baseline_miners: Vec::new(),
        }
    }
}

impl LedgerSettings {
    /// See [`LedgerSettings::sweep_interval_ms`].
    pub fn sweep_interval(&self) -> Duration {
        ms(self.sweep_interval_ms)
    }
    /// See [`LedgerSettings::outbox_poll_ms`].
    pub fn outbox_poll(&self) -> Duration {
        ms(self.outbox_poll_ms)
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.sweep_interval_ms == 0 {
            return Err(ConfigError::invalid("ledger.sweep_interval_ms", 0, "must be positive"));
        }
        if self.max_concurrent_requests == 0 {
            return Err(ConfigError::invalid("ledger.max_concurrent_requests", 0, "must be at least 1"));
        }
        let key = &self.dispatch_public_key;
        if !key.is_empty() && (key.len() != 64 || !key.chars().all(|c| c.is_ascii_hexdigit())) {
            return Err(ConfigError::invalid("ledger.dispatch_public_key", key, "must be a 32-byte key in hex"));
        }
        self.scoring.validate().map_err(|e| ConfigError::Invalid {
            key: "ledger.scoring",
            value: e.to_string(),
            reason: "out of bounds",
        })
    }
}
