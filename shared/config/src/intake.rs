//! The task intake service: its API limits, the data set rules and the split.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::{ms, ConfigError};

/// Settings of the intake service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntakeSettings {
    /// Listen address of `/metrics`, `/healthz` and `/readyz`; port 0 picks a free one.
    pub http_addr: String,
    /// Reward functions a GRPO task may name (each one of `gradients_reward::FUNCTIONS`).
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
    /// How many of those may be submits (which read uploads); kept below
    /// `max_concurrent_requests` so `get`, `list` and `cancel` are always answered.
    pub max_concurrent_submits: usize,
    /// How many submits one customer may have in progress at once in one process.
    pub max_submits_per_customer: usize,
    /// How long a read of an upload may wait for its next piece (metadata or chunk).
    pub upload_stall_ms: u64,
    /// How many bytes of data sets one intake process reads, parses and splits at once
    /// (each submit holds its data set's size until its splits are written; peak memory
    /// is a few times this). A submit waits for its share; one larger than the whole
    /// budget is refused (DATASET_TOO_LARGE).
    pub data_budget_bytes: u64,
    /// The most bytes one customer's uploads bucket holds (abandoned uploads expire after
    /// a day); at least `limits.max_bytes`.
    pub upload_bucket_max_bytes: u64,
    /// The most customer upload buckets intake creates (each is a stream on the server;
    /// in an open market every new key would make one).
    pub max_customer_buckets: usize,
    /// How far a signed request's time may be from intake's clock, either way.
    pub request_max_skew_ms: u64,
    /// Public keys (ed25519, hex) of operators: they see and cancel every task.
    pub operator_keys: Vec<String>,
    /// Public keys (ed25519, hex) of the customers allowed to call intake; empty: any key
    /// (each is its own customer). Operators are always allowed.
    pub customer_keys: Vec<String>,
    /// The key the `gradients task` commands sign requests with (made by
    /// `gradients customer keygen`).
    pub customer_key_file: PathBuf,
    /// Fault points for tests that simulate a crash. Compiled only with the `test-faults`
    /// feature (enabled by the services' own tests), never read from files or the environment.
    #[cfg(feature = "test-faults")]
    #[serde(skip)]
    pub faults: IntakeFaults,
}

impl Default for IntakeSettings {
    fn default() -> Self {
        Self {
            http_addr: "127.0.0.1:9410".to_owned(),
            reward_functions: gradients_reward::FUNCTIONS.iter().map(|&name| name.to_owned()).collect(),
            min_hours: 0.01,
            max_hours: 72.0,
            limits: LimitSettings::default(),
            split: SplitSettings::default(),
            outbox_poll_ms: 1_000,
            max_concurrent_requests: 16,
            max_concurrent_submits: 8,
            max_submits_per_customer: 2,
            upload_stall_ms: 10_000,
            data_budget_bytes: 1024 * 1024 * 1024,
            upload_bucket_max_bytes: 1024 * 1024 * 1024,
            max_customer_buckets: 10_000,
            request_max_skew_ms: 60_000,
            operator_keys: Vec::new(),
            customer_keys: Vec::new(),
            customer_key_file: PathBuf::from("customer.key"),
            #[cfg(feature = "test-faults")]
            faults: IntakeFaults::default(),
        }
    }
}

/// Where a test makes intake stop as if killed (only with the `test-faults` feature).
#[cfg(feature = "test-faults")]
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

    /// See [`IntakeSettings::upload_stall_ms`].
    pub fn upload_stall(&self) -> Duration {
        ms(self.upload_stall_ms)
    }

    /// See [`IntakeSettings::request_max_skew_ms`].
    pub fn request_max_skew(&self) -> Duration {
        ms(self.request_max_skew_ms)
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if !(self.min_hours > 0.0 && self.min_hours <= self.max_hours) {
            return Err(ConfigError::invalid(
                "intake.min_hours",
                self.min_hours,
                "must be positive and at most intake.max_hours",
            ));
        }
        if let Some(unknown) =
            self.reward_functions.iter().find(|name| !gradients_reward::FUNCTIONS.contains(&name.as_str()))
        {
            return Err(ConfigError::invalid(
                "intake.reward_functions",
                unknown,
                "each must be exact_match, contains_answer, length_penalty, valid_json, regex_format or numeric_closeness",
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
        if self.max_concurrent_requests < 2 {
            return Err(ConfigError::invalid(
                "intake.max_concurrent_requests",
                self.max_concurrent_requests,
                "must be at least 2 (submits may take all but one)",
            ));
        }
        if self.max_concurrent_submits == 0 || self.max_concurrent_submits >= self.max_concurrent_requests {
            return Err(ConfigError::invalid(
                "intake.max_concurrent_submits",
                self.max_concurrent_submits,
                "must be at least 1 and below intake.max_concurrent_requests",
            ));
        }
        if self.max_submits_per_customer == 0 {
            return Err(ConfigError::invalid("intake.max_submits_per_customer", 0, "must be at least 1"));
        }
        if self.upload_stall_ms == 0 {
            return Err(ConfigError::invalid("intake.upload_stall_ms", 0, "must be positive"));
        }
        // Counted in KiB permits of a semaphore, whose one acquisition is at most u32::MAX.
        if self.data_budget_bytes == 0 || self.data_budget_bytes > u64::from(u32::MAX) * 1024 {
            return Err(ConfigError::invalid(
                "intake.data_budget_bytes",
                self.data_budget_bytes,
                "must be positive and at most 4 TiB",
            ));
        }
        if self.upload_bucket_max_bytes < limits.max_bytes {
            return Err(ConfigError::invalid(
                "intake.upload_bucket_max_bytes",
                self.upload_bucket_max_bytes,
                "must be at least intake.limits.max_bytes",
            ));
        }
        if self.max_customer_buckets == 0 {
            return Err(ConfigError::invalid("intake.max_customer_buckets", 0, "must be at least 1"));
        }
        if self.request_max_skew_ms == 0 {
            return Err(ConfigError::invalid("intake.request_max_skew_ms", 0, "must be positive"));
        }
        for (key, keys) in
            [("intake.operator_keys", &self.operator_keys), ("intake.customer_keys", &self.customer_keys)]
        {
            if let Some(bad) = keys.iter().find(|k| k.len() != 64 || !k.chars().all(|c| c.is_ascii_hexdigit())) {
                return Err(ConfigError::invalid(key, bad, "each must be a 32-byte ed25519 public key in hex"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::IntakeSettings;

    /// Every reward function the crate defines is offered by default, and a name it does
    /// not define is refused at start-up with the key and the name.
    #[test]
    fn reward_functions_are_checked_against_the_reward_crate() {
        let mut intake = IntakeSettings::default();
        assert_eq!(intake.reward_functions, gradients_reward::FUNCTIONS);
        intake.validate().expect("defaults are valid");
        intake.reward_functions.push("bleu".to_owned());
        let text = intake.validate().unwrap_err().to_string();
        assert!(text.contains("intake.reward_functions") && text.contains("bleu"), "{text}");
    }
}
