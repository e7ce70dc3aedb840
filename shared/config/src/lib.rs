//! Typed configuration shared by every Gradients service.
//!
//! Precedence, lowest first: the defaults written in this crate, then each TOML file
//! passed to [`Settings::load`] in order, then environment variables named
//! `GRADIENTS__SECTION__KEY` (for example `GRADIENTS__NATS__URL`, `GRADIENTS__STORE__URL`).
//! Unknown keys are an error, not ignored, and [`Settings::validate`] names the field and
//! the value it refused. The list of every key lives in `config/gradients.example.toml`.

mod audit;
mod dispatch;
mod evaluator;
mod intake;
mod ledger;
mod nats;
mod telemetry;
mod trainer;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

pub use audit::AuditSettings;
#[cfg(feature = "test-faults")]
pub use dispatch::DispatchFaults;
pub use dispatch::DispatchSettings;
pub use evaluator::EvaluatorSettings;
#[cfg(feature = "test-faults")]
pub use intake::IntakeFaults;
pub use intake::{IntakeSettings, LimitSettings, SplitSettings};
pub use ledger::LedgerSettings;
pub use nats::{NatsAuth, NatsSettings, TlsSettings};
pub use telemetry::{LogFormat, TelemetrySettings};
pub use trainer::TrainerSettings;

/// The prefix of every environment variable this crate reads.
pub const ENV_PREFIX: &str = "GRADIENTS";
/// The separator between prefix, section and key in environment variable names.
pub const ENV_SEPARATOR: &str = "__";

/// Everything a Gradients process can be configured with; each service reads its sections.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// How to reach the NATS cluster and how streams are declared on it.
    pub nats: NatsSettings,
    /// Where services keep their records.
    pub store: StoreSettings,
    /// Logs, traces and the metrics/health endpoint.
    pub telemetry: TelemetrySettings,
    /// The task intake service.
    pub intake: IntakeSettings,
    /// The reward ledger service.
    pub ledger: LedgerSettings,
    /// The miner dispatch service.
    pub dispatch: DispatchSettings,
    /// The reference miner.
    pub trainer: TrainerSettings,
    /// The evaluator (the validator).
    pub evaluator: EvaluatorSettings,
    /// The audit log.
    pub audit: AuditSettings,
    /// The base models a task may name, with their parameter counts: intake accepts only
    /// these, dispatch matches them against miners' capacity, the ledger weighs work by them.
    pub models: BTreeMap<String, u64>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            nats: NatsSettings::default(),
            store: StoreSettings::default(),
            telemetry: TelemetrySettings::default(),
            intake: IntakeSettings::default(),
            ledger: LedgerSettings::default(),
            dispatch: DispatchSettings::default(),
            trainer: TrainerSettings::default(),
            evaluator: EvaluatorSettings::default(),
            audit: AuditSettings::default(),
            models: BTreeMap::from([("tiny-1m".to_owned(), 1_000_000), ("tiny-10m".to_owned(), 10_000_000)]),
        }
    }
}

/// Where a service keeps its records: a SQLite file by default, PostgreSQL by URL.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// `sqlite://path?mode=rwc` or `postgres://user@host:port/db`.
    pub url: String,
    /// Upper bound of the connection pool.
    pub max_connections: u32,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self { url: "sqlite://gradients.db?mode=rwc".to_owned(), max_connections: 8 }
    }
}

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file could not be read or parsed, or a key is unknown or has the wrong type.
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    /// A value was read but is out of bounds.
    #[error("configuration key `{key}` = {value}: {reason}")]
    Invalid { key: &'static str, value: String, reason: &'static str },
}

impl ConfigError {
    pub(crate) fn invalid(key: &'static str, value: impl std::fmt::Display, reason: &'static str) -> Self {
        Self::Invalid { key, value: value.to_string(), reason }
    }
}

impl Settings {
    /// Reads defaults, then `files` in order, then the `GRADIENTS__...` environment,
    /// and validates the result.
    pub fn load<P: AsRef<Path>>(files: &[P]) -> Result<Self, ConfigError> {
        Self::load_with_env(files, None)
    }

    /// Like [`Settings::load`], with the environment given explicitly (tests use this so
    /// that they do not depend on, or change, the process environment).
    pub fn load_with_env<P: AsRef<Path>>(
        files: &[P],
        env: Option<std::collections::HashMap<String, String>>,
    ) -> Result<Self, ConfigError> {
        let mut builder = config::Config::builder();
        for file in files {
            builder = builder.add_source(config::File::from(file.as_ref()).required(true));
        }
        let environment = config::Environment::with_prefix(ENV_PREFIX)
            .prefix_separator(ENV_SEPARATOR)
            .separator(ENV_SEPARATOR)
            .try_parsing(true)
            .list_separator(",")
            .with_list_parse_key("nats.url")
            .with_list_parse_key("intake.reward_functions")
            .with_list_parse_key("dispatch.allowed_miner_keys")
            .with_list_parse_key("ledger.baseline_miners")
            .source(env);
        let settings: Settings = builder.add_source(environment).build()?.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks every bound that a type cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.nats.validate()?;
        if self.store.url.is_empty() {
            return Err(ConfigError::invalid("store.url", "\"\"", "must not be empty"));
        }
        if !(self.store.url.starts_with("sqlite:") || self.store.url.starts_with("postgres")) {
            return Err(ConfigError::invalid("store.url", &self.store.url, "must start with sqlite: or postgres://"));
        }
        if self.store.max_connections == 0 {
            return Err(ConfigError::invalid("store.max_connections", 0, "must be at least 1"));
        }
        if self.models.is_empty() {
            return Err(ConfigError::invalid("models", "{}", "list at least one base model"));
        }
        self.intake.validate()?;
        self.ledger.validate()?;
        self.dispatch.validate()?;
        self.trainer.validate()?;
        self.evaluator.validate()?;
        self.audit.validate()?;
        if i64::from(self.dispatch.offer_rounds) > self.nats.max_deliver {
            return Err(ConfigError::invalid(
                "dispatch.offer_rounds",
                self.dispatch.offer_rounds,
                "must be at most nats.max_deliver (each round is one delivery of the task)",
            ));
        }
        Ok(())
    }
}

/// Durations in configuration are written in whole milliseconds (`*_ms` keys).
pub(crate) fn ms(value: u64) -> std::time::Duration {
    std::time::Duration::from_millis(value)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::io::Write;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Option<HashMap<String, String>> {
        Some(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    /// With nothing given, the defaults are valid and point at the embedded choices.
    #[test]
    fn defaults_are_valid() {
        let settings = Settings::load_with_env::<&str>(&[], env(&[])).unwrap();
        assert!(settings.store.url.starts_with("sqlite:"));
        assert_eq!(settings.nats.url, vec!["nats://127.0.0.1:4222".to_owned()]);
    }

    /// A file overrides a default and the environment overrides the file.
    #[test]
    fn file_then_environment_override_defaults() {
        let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        writeln!(
            file,
            "[store]\nurl = \"postgres://file@localhost/db\"\n[nats]\nurl = [\"nats://a:1\", \"nats://b:2\"]"
        )
        .unwrap();
        let from_file = Settings::load_with_env(&[file.path()], env(&[])).unwrap();
        assert_eq!(from_file.store.url, "postgres://file@localhost/db");
        assert_eq!(from_file.nats.url.len(), 2);

        let from_env = Settings::load_with_env(
            &[file.path()],
            env(&[
                ("GRADIENTS__STORE__URL", "sqlite://env.db"),
                ("GRADIENTS__NATS__URL", "nats://x:1,nats://y:2,nats://z:3"),
            ]),
        )
        .unwrap();
        assert_eq!(from_env.store.url, "sqlite://env.db");
        assert_eq!(from_env.nats.url, vec!["nats://x:1", "nats://y:2", "nats://z:3"]);
    }

    /// An unknown key in a file is refused with its name.
    #[test]
    fn unknown_key_is_an_error() {
        let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        writeln!(file, "[store]\nurll = \"x\"").unwrap();
        let err = Settings::load_with_env(&[file.path()], env(&[])).unwrap_err();
        assert!(err.to_string().contains("urll"), "{err}");
    }

    /// An out-of-bounds value names the key and the value.
    #[test]
    fn invalid_value_names_key_and_value() {
        let err = Settings::load_with_env::<&str>(&[], env(&[("GRADIENTS__INTAKE__SPLIT__TEST_FRACTION", "1.5")]))
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("intake.split.test_fraction") && text.contains("1.5"), "{text}");
    }
}

#[cfg(test)]
mod example_file {
    use super::*;

    /// The documented example file loads and equals the defaults it claims to list.
    #[test]
    fn example_file_matches_defaults() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/gradients.example.toml");
        let example = Settings::load_with_env(&[path], Some(Default::default())).unwrap();
        let defaults = Settings::load_with_env::<&str>(&[], Some(Default::default())).unwrap();
        assert_eq!(format!("{example:?}"), format!("{defaults:?}"));
    }
}
