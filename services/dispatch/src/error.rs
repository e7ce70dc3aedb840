//! Dispatch's errors.

use gradients_bus::api::api_error;
use gradients_bus::BusError;
use gradients_proto::v1::{Error as ApiError, ErrorCode};

/// Why the dispatch service stopped.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// NATS could not be reached or set up.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// The database could not be reached or migrated.
    #[error(transparent)]
    Store(#[from] gradients_store::StoreError),
    /// The metrics and health endpoint could not start.
    #[error(transparent)]
    Telemetry(#[from] gradients_telemetry::TelemetryError),
    /// Dispatch's own key could not be read or made.
    #[error(transparent)]
    Identity(#[from] gradients_miner::IdentityError),
    /// A test's fault point fired: the service stopped as if killed.
    #[error("stopped by the fault point `{0}`")]
    FaultInjected(&'static str),
}

/// Why a miner's request was refused.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    /// The stable code.
    pub code: ErrorCode,
    /// For people.
    pub message: String,
}

impl Refusal {
    /// A refusal with `code`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    /// The service could not do its part (bus, database): the miner may retry.
    pub fn unavailable(error: impl std::fmt::Display) -> Self {
        Self::new(ErrorCode::Unavailable, error.to_string())
    }

    /// The typed error sent to the miner.
    pub fn to_api(&self) -> ApiError {
        api_error(self.code, self.message.clone())
    }
}
