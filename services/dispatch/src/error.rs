//! Dispatch's errors.

use gradients_bus::api::{api_error, service_failure};
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
    /// One of the service's loops panicked.
    #[error(transparent)]
    Panicked(#[from] gradients_bus::lifecycle::LoopPanicked),
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
    /// For a failure of dispatch itself: the correlation id its cause was logged under.
    pub reference: String,
}

impl Refusal {
    /// A refusal with `code`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), reference: String::new() }
    }

    /// Dispatch could not do its part (the bus, the registry): the miner may retry. The
    /// cause is logged under a reference; the miner gets the code and that reference only.
    pub fn unavailable(error: impl std::error::Error + 'static) -> Self {
        Self::failed(ErrorCode::Unavailable, &error)
    }

    /// Something dispatch holds is not what it wrote (an undecodable registry entry): a
    /// retry will not help. Logged like [`Refusal::unavailable`].
    pub fn internal(error: impl std::error::Error + 'static) -> Self {
        Self::failed(ErrorCode::Internal, &error)
    }

    fn failed(code: ErrorCode, error: &(dyn std::error::Error + 'static)) -> Self {
        let api = service_failure(code, error);
        Self { code, message: api.message, reference: api.reference }
    }

    /// Whether the miner asked for something wrong, as opposed to dispatch failing.
    pub fn is_rejection(&self) -> bool {
        self.reference.is_empty()
    }

    /// The typed error sent to the miner.
    pub fn to_api(&self) -> ApiError {
        ApiError { reference: self.reference.clone(), ..api_error(self.code, self.message.clone()) }
    }
}
