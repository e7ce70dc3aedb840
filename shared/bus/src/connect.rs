//! Connecting to NATS with the options an enterprise deployment needs.

use async_nats::jetstream;
use gradients_config::NatsSettings;

use crate::BusError;

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
        let urls = settings.url.join(",");
        let fail = |reason: String| BusError::Connect { urls: urls.clone(), reason };
        let mut options = async_nats::ConnectOptions::new()
            .name(settings.client_name.as_deref().unwrap_or(client_name))
            .connection_timeout(settings.connect_timeout())
            .require_tls(settings.tls.required);

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
                .map_err(|e| fail(format!("reading creds file {}: {e}", path.display())))?;
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
            .map(|u| u.parse().map_err(|e| fail(format!("bad URL {u:?}: {e}"))))
            .collect::<Result<_, _>>()?;
        let client = options.connect(addrs).await.map_err(|e| fail(e.to_string()))?;
        let jetstream = jetstream::new(client.clone());
        Ok(Self { client, jetstream })
    }
}
