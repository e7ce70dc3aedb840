//! Connecting to NATS with the options an enterprise deployment needs.

use std::time::Duration;

use async_nats::jetstream;
use gradients_config::NatsSettings;
use tokio_util::sync::CancellationToken;

use crate::error::During;
use crate::{BusError, Cause};

/// A connection and its JetStream context. Cheap to clone; clones share the connection.
#[derive(Clone, Debug)]
pub struct Bus {
    /// The core NATS client (request/reply, micro services).
    pub client: async_nats::Client,
    /// JetStream on that connection (streams, consumers, object stores).
    pub jetstream: jetstream::Context,
}

impl Bus {
    /// Sends what is buffered before the process exits, giving up after `limit`: flushing
    /// waits for the server's answer, which never comes when the server is gone, and a
    /// service asked to stop must stop.
    pub async fn flush_before_exit(&self, limit: std::time::Duration) {
        match tokio::time::timeout(limit, self.client.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "flushing the NATS connection"),
            Err(_) => tracing::warn!("NATS did not answer the final flush within {limit:?}; exiting anyway"),
        }
    }

    /// Connects to the servers in `settings.url`, authenticating as configured.
    /// `client_name` names the connection when the settings do not.
    pub async fn connect(settings: &NatsSettings, client_name: &str) -> Result<Self, BusError> {
        Self::attempt(settings, client_name).await.map_err(|failure| failure.error)
    }

    /// Connects like [`Bus::connect`], but waits for the servers: while none can be reached
    /// it retries with back-off (doubling from [`FIRST_RETRY`] to [`LAST_RETRY`]), so services
    /// start in any order and survive a NATS node that comes up late. Returns `Ok(None)` when
    /// `stop` is cancelled first. What waiting cannot fix (a bad URL, an unreadable creds file,
    /// refused credentials, a TLS mistake) fails at once.
    pub async fn connect_patiently(
        settings: &NatsSettings,
        client_name: &str,
        stop: &CancellationToken,
    ) -> Result<Option<Self>, BusError> {
        let mut delay = FIRST_RETRY;
        loop {
            match Self::attempt(settings, client_name).await {
                Ok(bus) => return Ok(Some(bus)),
                Err(failure) if !failure.retryable => return Err(failure.error),
                Err(failure) => {
                    tracing::warn!(error = %failure.error, retry_in = ?delay, "NATS unreachable; waiting for it");
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return Ok(None),
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(LAST_RETRY);
        }
    }

    /// One connection attempt, saying whether a failure is worth retrying.
    async fn attempt(settings: &NatsSettings, client_name: &str) -> Result<Self, ConnectFailure> {
        let urls = settings.url.join(",");
        let fail = |source: Cause| ConnectFailure {
            error: BusError::Connect { urls: urls.clone(), source },
            retryable: false,
        };
        let mut options = async_nats::ConnectOptions::new()
            .name(settings.client_name.as_deref().unwrap_or(client_name))
            .connection_timeout(settings.connect_timeout())
            .require_tls(settings.tls.required);
        if let Some(prefix) = &settings.inbox_prefix {
            options = options.custom_inbox_prefix(prefix);
        }

        let auth = &settings.auth;
        if let Some(token) = &auth.token {
            options = options.token(token.clone());
        }
        if let (Some(user), Some(password)) = (&auth.user, &auth.password) {
            options = options.user_and_password(user.clone(), password.clone());
        }
        if let Some(seed) = &auth.nkey_seed {
            options = options.nkey(seed.clone());
        }
        if let Some(path) = &auth.creds_file {
            options = options
                .credentials_file(path)
                .await
                .map_err(|e| fail(During::new(format!("reading creds file {}", path.display()), e).into()))?;
        }
        if let Some(ca) = &settings.tls.ca_file {
            options = options.add_root_certificates(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&settings.tls.cert_file, &settings.tls.key_file) {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }

        let addrs: Vec<async_nats::ServerAddr> = settings
            .url
            .iter()
            .map(|u| u.parse().map_err(|e| fail(During::new(format!("bad URL {u:?}"), e).into())))
            .collect::<Result<_, _>>()?;
        let client = options.connect(addrs).await.map_err(|e| {
            use async_nats::ConnectErrorKind as Kind;
            let retryable = matches!(e.kind(), Kind::Io | Kind::TimedOut | Kind::Dns | Kind::MaxReconnects);
            ConnectFailure { retryable, ..fail(e.into()) }
        })?;
        let jetstream = jetstream::new(client.clone());
        Ok(Self { client, jetstream })
    }
}

/// The first wait of [`Bus::connect_patiently`] after a failed attempt.
pub const FIRST_RETRY: Duration = Duration::from_millis(250);
/// The longest wait of [`Bus::connect_patiently`] between attempts.
pub const LAST_RETRY: Duration = Duration::from_secs(10);

/// A failed connection attempt and whether trying again may succeed.
struct ConnectFailure {
    error: BusError,
    retryable: bool,
}
