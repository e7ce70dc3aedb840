//! How to reach NATS and how the streams this system owns are declared.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::{ms, ConfigError};

/// Connection and JetStream settings. Point `url` at your cluster; the demo and the tests
/// start a private `nats-server` and set it for you.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsSettings {
    /// Seed servers; the client discovers the rest of the cluster from them.
    /// One URL, or a list (`GRADIENTS__NATS__URL=nats://a:4222,nats://b:4222`).
    pub url: Vec<String>,
    /// The connection name shown by `nats server report connections`; defaults to the service name.
    pub client_name: Option<String>,
    /// How the client authenticates.
    pub auth: NatsAuth,
    /// TLS towards the server.
    pub tls: TlsSettings,
    /// How long to wait for the first connection before giving up.
    pub connect_timeout_ms: u64,
    /// Replicas of every stream and bucket this system declares (3 on a production cluster).
    pub replicas: usize,
    /// How long JetStream remembers a `Nats-Msg-Id` to drop a re-published event.
    pub duplicate_window_ms: u64,
    /// How long a consumer waits for an ack before redelivering.
    pub ack_wait_ms: u64,
    /// Deliveries of one message before it goes to the dead-letter subject.
    pub max_deliver: i64,
    /// First delay of a transient failure's redelivery; doubles on each attempt.
    pub retry_backoff_ms: u64,
    /// Upper bound of that delay.
    pub retry_backoff_max_ms: u64,
    /// Time limit of a request sent by a client (the CLI) to a service API.
    pub request_timeout_ms: u64,
    /// Messages one worker handles at once (handlers are idempotent and order-tolerant).
    pub worker_concurrency: usize,
    /// The prefix of this connection's reply subjects (`_INBOX` when unset). A party whose
    /// NATS user may subscribe only to its own prefix (deploy/nats: a miner to
    /// `_INBOX_<miner id>.>`) can read no reply meant for anyone else.
    pub inbox_prefix: Option<String>,
}

impl Default for NatsSettings {
    fn default() -> Self {
        Self {
            url: vec!["nats://127.0.0.1:4222".to_owned()],
            client_name: None,
            auth: NatsAuth::default(),
            tls: TlsSettings::default(),
            connect_timeout_ms: 5_000,
            replicas: 1,
            duplicate_window_ms: 20 * 60 * 1000,
            ack_wait_ms: 30_000,
            max_deliver: 5,
            retry_backoff_ms: 500,
            retry_backoff_max_ms: 30_000,
            request_timeout_ms: 30_000,
            worker_concurrency: 8,
            inbox_prefix: None,
        }
    }
}

/// Credentials. At most one method may be set; none means an open server.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsAuth {
    /// A bearer token.
    pub token: Option<String>,
    /// A user name; requires `password`.
    pub user: Option<String>,
    /// The password of `user`.
    pub password: Option<String>,
    /// An nkey seed (`SU...`).
    pub nkey_seed: Option<String>,
    /// A `.creds` file (JWT + nkey seed) as issued by `nsc`.
    pub creds_file: Option<PathBuf>,
}

/// TLS towards the NATS servers.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    /// Refuse a connection that is not TLS.
    pub required: bool,
    /// A PEM file of root certificates to trust instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// A client certificate (PEM) for mutual TLS; requires `key_file`.
    pub cert_file: Option<PathBuf>,
    /// The key of `cert_file` (PEM).
    pub key_file: Option<PathBuf>,
}

impl NatsSettings {
    /// See [`NatsSettings::connect_timeout_ms`].
    pub fn connect_timeout(&self) -> Duration {
        ms(self.connect_timeout_ms)
    }
    /// See [`NatsSettings::duplicate_window_ms`].
    pub fn duplicate_window(&self) -> Duration {
        ms(self.duplicate_window_ms)
    }
    /// See [`NatsSettings::ack_wait_ms`].
    pub fn ack_wait(&self) -> Duration {
        ms(self.ack_wait_ms)
    }
    /// See [`NatsSettings::request_timeout_ms`].
    pub fn request_timeout(&self) -> Duration {
        ms(self.request_timeout_ms)
    }
    /// The redelivery delay after `attempt` transient failures (1-based), doubling up to the cap.
    pub fn retry_backoff(&self, attempt: u64) -> Duration {
        let exponent = attempt.saturating_sub(1).min(20) as u32;
        ms(self.retry_backoff_ms.saturating_mul(1 << exponent).min(self.retry_backoff_max_ms))
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.url.is_empty() {
            return Err(ConfigError::invalid("nats.url", "[]", "give at least one server URL"));
        }
        let auth = &self.auth;
        let methods = [auth.token.is_some(), auth.user.is_some(), auth.nkey_seed.is_some(), auth.creds_file.is_some()];
        if methods.iter().filter(|set| **set).count() > 1 {
            return Err(ConfigError::invalid(
                "nats.auth",
                "several methods",
                "set only one of token, user, nkey_seed, creds_file",
            ));
        }
        if auth.user.is_some() != auth.password.is_some() {
            return Err(ConfigError::invalid(
                "nats.auth.password",
                "missing or orphaned",
                "user and password go together",
            ));
        }
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            return Err(ConfigError::invalid(
                "nats.tls.key_file",
                "missing or orphaned",
                "cert_file and key_file go together",
            ));
        }
        if !(1..=5).contains(&self.replicas) {
            return Err(ConfigError::invalid("nats.replicas", self.replicas, "must be between 1 and 5"));
        }
        if self.max_deliver < 1 {
            return Err(ConfigError::invalid("nats.max_deliver", self.max_deliver, "must be at least 1"));
        }
        if let Some(prefix) = &self.inbox_prefix {
            let bad = |c: char| c == '.' || c == '*' || c == '>' || c.is_whitespace();
            if prefix.is_empty() || prefix.chars().any(bad) {
                return Err(ConfigError::invalid("nats.inbox_prefix", prefix, "must be one subject token"));
            }
        }
        if self.worker_concurrency == 0 {
            return Err(ConfigError::invalid("nats.worker_concurrency", 0, "must be at least 1"));
        }
        if self.duplicate_window_ms == 0 {
            return Err(ConfigError::invalid(
                "nats.duplicate_window_ms",
                0,
                "must be positive: de-duplication depends on it",
            ));
        }
        Ok(())
    }
}
