//! The bus crate's error type.

/// What went wrong talking to NATS.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// Could not connect, or a credentials/TLS file could not be read.
    #[error("connecting to NATS at {urls}: {reason}")]
    Connect { urls: String, reason: String },
    /// A stream, consumer or bucket could not be declared.
    #[error("declaring {what}: {reason}")]
    Declare { what: String, reason: String },
    /// A publish was not acknowledged by JetStream.
    #[error("publishing to {subject}: {reason}")]
    Publish { subject: String, reason: String },
    /// Pulling from a consumer failed.
    #[error("consuming {consumer}: {reason}")]
    Consume { consumer: String, reason: String },
    /// A request/reply API could not be served.
    #[error("service {service}: {reason}")]
    Service { service: String, reason: String },
    /// An object store operation failed for a reason other than the object itself.
    #[error("object store {bucket}: {reason}")]
    Object { bucket: String, reason: String },
}
