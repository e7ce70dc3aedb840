//! The ledger's errors.

use gradients_bus::BusError;
use gradients_proto::v1::{Error as ApiError, ErrorCode};
use gradients_store::sea_orm::DbErr;

/// Why the ledger service stopped.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// NATS could not be reached or set up.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// The database could not be reached or migrated.
    #[error(transparent)]
    Store(#[from] gradients_store::StoreError),
    /// The metrics and health endpoint could not start.
    #[error(transparent)]
    Telemetry(#[from] gradients_telemetry::TelemetryError),
    /// One of the service's loops panicked.
    #[error(transparent)]
    Panicked(#[from] gradients_bus::lifecycle::LoopPanicked),
    /// The evaluator's public key (to verify evaluations) is not configured or unreadable.
    #[error("the evaluator's key: {0}")]
    EvaluatorKey(String),
    /// Dispatch's public key (to verify assignments) is not configured or unreadable.
    #[error("dispatch's key: {0}")]
    DispatchKey(String),
}

/// Why a query was refused.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// No finalized task has this id.
    #[error("no finalized task with id {0:?} in the ledger")]
    TaskNotFound(String),
    /// A parameter is out of bounds.
    #[error("{0}")]
    Invalid(String),
    /// The database failed. Its text is logged under a reference, never sent: it can quote
    /// the query or the schema.
    #[error("storage: {0}")]
    Store(#[from] DbErr),
}

impl QueryError {
    /// The typed error sent to the client: for a refused query, its code and why; for a
    /// failed database, `UNAVAILABLE` (when a retry may help) or `INTERNAL`, and the
    /// reference its cause was logged under.
    pub fn to_api(&self) -> ApiError {
        let code = match self {
            Self::TaskNotFound(_) => ErrorCode::TaskNotFound,
            Self::Invalid(_) => ErrorCode::InvalidArgument,
            Self::Store(e) if gradients_store::failure::classify(e).is_retryable() => ErrorCode::Unavailable,
            Self::Store(_) => ErrorCode::Internal,
        };
        match self {
            Self::Store(_) => gradients_bus::api::service_failure(code, self),
            _ => gradients_bus::api::api_error(code, self.to_string()),
        }
    }
}
