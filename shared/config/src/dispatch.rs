//! Miner dispatch: the registry's liveness, offers, assignments, grants and deadlines.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::{ms, ConfigError};

/// Settings of the dispatch service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DispatchSettings {
    /// Listen address of `/metrics`, `/healthz` and `/readyz`; port 0 picks a free one.
    pub http_addr: String,
    /// Dispatch's own ed25519 key (signs assignments and grants); made there when missing.
    /// Every replica must use the same key.
    pub key_file: PathBuf,
    /// A miner not heard from for this long is no longer live (its registry entry expires).
    pub heartbeat_ttl_ms: u64,
    /// How long a registration challenge may be answered.
    pub challenge_ttl_ms: u64,
    /// Challenges handed out per second by one dispatch process, on average; anonymous
    /// callers beyond it are refused (`RATE_LIMITED`, retry later). Challenges are stateless,
    /// so this bounds CPU and bandwidth, not storage.
    pub challenge_rate_per_s: u32,
    /// Challenges one process may hand out in a burst above the rate.
    pub challenge_burst: u32,
    /// How far the time (`at`) of a signed miner message may be from dispatch's clock, on
    /// either side; older or later messages are refused as replays or forgeries.
    pub max_clock_skew_ms: u64,
    /// Most bytes a miner's own artifacts bucket may hold. JetStream reserves this much of
    /// its storage for each miner ever assigned a task, so size the server for them.
    pub artifacts_max_bytes: i64,
    /// Hex public keys allowed to register; empty admits any key (an open market).
    pub allowed_miner_keys: Vec<String>,
    /// Most miners offered one task.
    pub max_miners_per_task: usize,
    /// Fewest acceptances a task needs; fewer after `offer_rounds` rounds fails the task.
    pub min_miners_per_task: usize,
    /// How long a miner has to answer an offer.
    pub offer_timeout_ms: u64,
    /// Rounds of offers (with back-off between them) before a task fails for want of miners.
    pub offer_rounds: u32,
    /// How often to close tasks whose deadline has passed.
    pub deadline_sweep_ms: u64,
    /// Largest chunk of granted train data per request.
    pub data_chunk_bytes: u32,
    /// How many API requests one dispatch process answers at once.
    pub max_concurrent_requests: usize,
    /// How often the outbox relay publishes what a crash left behind.
    pub outbox_poll_ms: u64,
    /// Fault points for tests that simulate a crash. Compiled only with the `test-faults`
    /// feature (enabled by the services' own tests), never read from files or the environment.
    #[cfg(feature = "test-faults")]
    #[serde(skip)]
    pub faults: DispatchFaults,
}

/// Where a test makes dispatch stop as if killed (only with the `test-faults` feature).
#[cfg(feature = "test-faults")]
#[derive(Debug, Clone, Default)]
pub struct DispatchFaults {
    /// Stop after a round of offers is answered and recorded, before assigning.
    pub crash_after_offers: bool,
}

impl Default for DispatchSettings {
    fn default() -> Self {
        Self {
            http_addr: "127.0.0.1:9420".to_owned(),
            key_file: PathBuf::from("dispatch.key"),
            heartbeat_ttl_ms: 30_000,
            challenge_ttl_ms: 60_000,
            challenge_rate_per_s: 50,
            challenge_burst: 200,
            max_clock_skew_ms: 10_000,
            artifacts_max_bytes: 1024 * 1024 * 1024,
            allowed_miner_keys: Vec::new(),
            max_miners_per_task: 4,
            min_miners_per_task: 1,
            offer_timeout_ms: 5_000,
            offer_rounds: 3,
            deadline_sweep_ms: 5_000,
            data_chunk_bytes: 512 * 1024,
            max_concurrent_requests: 32,
            outbox_poll_ms: 1_000,
            #[cfg(feature = "test-faults")]
            faults: DispatchFaults::default(),
        }
    }
}

impl DispatchSettings {
    /// See [`DispatchSettings::heartbeat_ttl_ms`].
    pub fn heartbeat_ttl(&self) -> Duration {
        ms(self.heartbeat_ttl_ms)
    }
    /// See [`DispatchSettings::challenge_ttl_ms`].
    pub fn challenge_ttl(&self) -> Duration {
        ms(self.challenge_ttl_ms)
    }
    /// See [`DispatchSettings::offer_timeout_ms`].
    pub fn offer_timeout(&self) -> Duration {
        ms(self.offer_timeout_ms)
    }
    /// See [`DispatchSettings::deadline_sweep_ms`].
    pub fn deadline_sweep(&self) -> Duration {
        ms(self.deadline_sweep_ms)
    }
    /// See [`DispatchSettings::outbox_poll_ms`].
    pub fn outbox_poll(&self) -> Duration {
        ms(self.outbox_poll_ms)
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.heartbeat_ttl_ms < 100 {
            return Err(ConfigError::invalid(
                "dispatch.heartbeat_ttl_ms",
                self.heartbeat_ttl_ms,
                "must be at least 100",
            ));
        }
        if self.min_miners_per_task == 0 || self.min_miners_per_task > self.max_miners_per_task {
            return Err(ConfigError::invalid(
                "dispatch.min_miners_per_task",
                self.min_miners_per_task,
                "must be at least 1 and at most dispatch.max_miners_per_task",
            ));
        }
        if self.challenge_rate_per_s == 0 || self.challenge_burst == 0 {
            return Err(ConfigError::invalid(
                "dispatch.challenge_rate_per_s",
                self.challenge_rate_per_s,
                "the rate and dispatch.challenge_burst must be at least 1",
            ));
        }
        if self.max_clock_skew_ms == 0 || self.max_clock_skew_ms >= self.heartbeat_ttl_ms {
            return Err(ConfigError::invalid(
                "dispatch.max_clock_skew_ms",
                self.max_clock_skew_ms,
                "must be positive and less than dispatch.heartbeat_ttl_ms",
            ));
        }
        if self.artifacts_max_bytes <= 0 {
            return Err(ConfigError::invalid(
                "dispatch.artifacts_max_bytes",
                self.artifacts_max_bytes,
                "must be positive",
            ));
        }
        if self.offer_rounds == 0 {
            return Err(ConfigError::invalid("dispatch.offer_rounds", 0, "must be at least 1"));
        }
        if let Some(bad) = self.allowed_miner_keys.iter().find(|k| k.len() != 64 || hex_invalid(k)) {
            return Err(ConfigError::invalid("dispatch.allowed_miner_keys", bad, "each must be a 32-byte key in hex"));
        }
        if self.data_chunk_bytes == 0 || self.data_chunk_bytes > 900 * 1024 {
            return Err(ConfigError::invalid(
                "dispatch.data_chunk_bytes",
                self.data_chunk_bytes,
                "must be 1 to 921600 (NATS payload limit)",
            ));
        }
        Ok(())
    }
}

fn hex_invalid(text: &str) -> bool {
    !text.chars().all(|c| c.is_ascii_hexdigit())
}
