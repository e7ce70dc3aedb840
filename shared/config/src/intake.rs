//! The task intake service: its API limits, the data set rules and the split.

use std::time::Duration;

use serde::Deserialize;

use crate::{ms, ConfigError};

/// Settings of the intake service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntakeSettings {
    /// Listen address of `/metrics`, `/healthz` and `/readyz`; port 0 picks a free one.
    pub http_addr: String,
    /// Reward functions a GRPO task may name.
    pub reward_functions: Vec<String>,
    /// The smallest `hours_to_complete` a task may ask for.
    pub min_hours: f64,
    /// The largest `hours_to_complete` a task may ask for.
    pub max_hours: f64,
    /// Data set limits.
    pub limits: LimitSettings,
    /// How an accepted data set is split.
    pub split: SplitSettings,
    /// How often the outbox relay looks for events that were stored but not yet published.
    pub outbox_poll_ms: u64,
    /// How many API requests one intake process handles at once.
    pub max_concurrent_requests: usize,
    /// Fault points for tests that simulate a crash. Never read from files or the environment.
    #[serde(skip)]
    pub faults: IntakeFaults,
}

impl Default for IntakeSettings {
    fn default() -> Self {
        Self {
            http_addr: "127.0.0.1:9410".to_owned(),
            reward_functions: vec![
                "exact_match".to_owned(),
                "contains_answer".to_owned(),
                "length_penalty".to_owned(),
                "valid_json".to_owned(),
            ],
            min_hours: 0.01,
            max_hours: 72.0,
            limits: LimitSettings::default(),
            split: SplitSettings::default(),
            outbox_poll_ms: 1_000,
            max_concurrent_requests: 16,
            faults: IntakeFaults::default(),
        }
    }
}

/// Where a test makes intake stop as if killed.
#[derive(Debug, Clone, Default)]
pub struct IntakeFaults {
    /// Stop after a task and its events are stored, before anything is published.
    pub crash_after_store: bool,
}

/// What a data set may be.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitSettings {
    /// Largest upload in bytes.
    pub max_bytes: u64,
    /// Largest single row (one JSONL line) in bytes.
    pub max_row_bytes: u64,
    /// Most rows.
    pub max_rows: u64,
    /// Fewest rows: each of train, synthetic and test must get some.
    pub min_rows: u64,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self { max_bytes: 256 * 1024 * 1024, max_row_bytes: 1024 * 1024, max_rows: 1_000_000, min_rows: 20 }
    }
}

/// How an accepted data set is divided. After G.O.D.'s validator: test is 10% of the data,
/// at most 1000 rows; the synthetic part is held back for validators only.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SplitSettings {
    /// Fraction of rows that become the hidden test split.
    pub test_fraction: f64,
    /// Cap on the test split.
    pub test_max_rows: u64,
    /// Fraction of rows held back as the validators' synthetic split.
    pub synth_fraction: f64,
    /// Cap on the synthetic split.
    pub synth_max_rows: u64,
}

impl Default for SplitSettings {
    fn default() -> Self {
        Self { test_fraction: 0.1, test_max_rows: 1000, synth_fraction: 0.05, synth_max_rows: 500 }
    }
}

impl IntakeSettings {
    /// See [`IntakeSettings::outbox_poll_ms`].
    pub fn outbox_poll(&self) -> Duration {
        ms(self.outbox_poll_ms)
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if !(self.min_hours > 0.0 && self.min_hours <= self.max_hours) {
            return Err(ConfigError::invalid(
                "intake.min_hours",
                self.min_hours,
                "must be positive and at most intake.max_hours",
            ));
        }
        let limits = &self.limits;
        if limits.max_row_bytes == 0 || limits.max_row_bytes > limits.max_bytes {
            return Err(ConfigError::invalid(
                "intake.limits.max_row_bytes",
                limits.max_row_bytes,
                "must be positive and at most intake.limits.max_bytes",
            ));
        }
        if limits.min_rows < 3 || limits.min_rows > limits.max_rows {
            return Err(ConfigError::invalid(
                "intake.limits.min_rows",
                limits.min_rows,
                "must be at least 3 (train, synthetic, test) and at most max_rows",
            ));
        }
        let split = &self.split;
        for (key, fraction) in
            [("intake.split.test_fraction", split.test_fraction), ("intake.split.synth_fraction", split.synth_fraction)]
        {
            if !(fraction > 0.0 && fraction < 1.0) {
                return Err(ConfigError::invalid(key, fraction, "must be between 0 and 1, exclusive"));
            }
        }
        if split.test_fraction + split.synth_fraction >= 1.0 {
            return Err(ConfigError::invalid(
                "intake.split.synth_fraction",
                split.synth_fraction,
                "test_fraction + synth_fraction must leave rows to train on",
            ));
        }
        if self.max_concurrent_requests == 0 {
            return Err(ConfigError::invalid("intake.max_concurrent_requests", 0, "must be at least 1"));
        }
        Ok(())
    }
}
