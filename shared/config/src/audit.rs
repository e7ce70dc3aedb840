//! The audit service: its own store, its signing key, how often it signs the tree.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::{ms, ConfigError};

/// Settings of the audit service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// Listen address of `/metrics`, `/healthz` and `/readyz`; port 0 picks a free one.
    pub http_addr: String,
    /// The audit's own store (`sqlite://...` or `postgres://...`), apart from the services'
    /// so that nobody who can write the ledger can rewrite the log unseen.
    pub store_url: String,
    /// Upper bound of the audit store's connection pool.
    pub max_connections: u32,
    /// The audit's ed25519 key (signs checkpoints); made there when missing. Every
    /// replica must use the same key; auditors verify with its public half.
    pub key_file: PathBuf,
    /// How often a checkpoint is signed (when the log grew since the last one).
    pub checkpoint_interval_ms: u64,
    /// Most messages appended in one transaction.
    pub batch_size: usize,
    /// How long a message that arrived ahead of its predecessor waits before redelivery.
    pub reorder_delay_ms: u64,
    /// How many API requests one audit process answers at once.
    pub max_concurrent_requests: usize,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            http_addr: "127.0.0.1:9460".to_owned(),
            store_url: "sqlite://gradients-audit.db?mode=rwc".to_owned(),
            max_connections: 8,
            key_file: PathBuf::from("audit.key"),
            checkpoint_interval_ms: 60_000,
            batch_size: 256,
            reorder_delay_ms: 200,
            max_concurrent_requests: 16,
        }
    }
}

impl AuditSettings {
    /// See [`AuditSettings::checkpoint_interval_ms`].
    pub fn checkpoint_interval(&self) -> Duration {
        ms(self.checkpoint_interval_ms)
    }
    /// See [`AuditSettings::reorder_delay_ms`].
    pub fn reorder_delay(&self) -> Duration {
        ms(self.reorder_delay_ms)
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if !(self.store_url.starts_with("sqlite:") || self.store_url.starts_with("postgres")) {
            return Err(ConfigError::invalid(
                "audit.store_url",
                &self.store_url,
                "must start with sqlite: or postgres://",
            ));
        }
        if self.max_connections == 0 {
            return Err(ConfigError::invalid("audit.max_connections", 0, "must be at least 1"));
        }
        if self.checkpoint_interval_ms == 0 {
            return Err(ConfigError::invalid("audit.checkpoint_interval_ms", 0, "must be positive"));
        }
        if self.batch_size == 0 || self.batch_size > 10_000 {
            return Err(ConfigError::invalid("audit.batch_size", self.batch_size, "must be between 1 and 10000"));
        }
        if self.max_concurrent_requests == 0 {
            return Err(ConfigError::invalid("audit.max_concurrent_requests", 0, "must be at least 1"));
        }
        Ok(())
    }
}
