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

#[cfg(test)]
mod tests {
    use gradients_store::sea_orm::{ConnectionTrait, Database};
    use gradients_testkit::{Backend, ScratchDb};

    use super::*;

    /// A real database failure reaches the client as its code and a reference only: not the
    /// statement, not the table, not the database's own words.
    #[tokio::test]
    async fn a_database_failure_is_sent_as_a_code_and_a_reference() {
        for backend in Backend::ALL {
            let scratch = ScratchDb::new(backend).await.unwrap();
            let db = Database::connect(scratch.url()).await.unwrap();
            let failed = db.execute_unprepared("SELECT secret_column FROM customer_secrets").await.unwrap_err();
            let sent = QueryError::Store(failed).to_api();
            assert_eq!(sent.code, ErrorCode::Internal as i32, "{backend}: a broken query is not worth a retry");
            assert_eq!(sent.reference.len(), 32, "{backend}: {sent:?}");
            assert!(sent.message.contains(&sent.reference), "{backend}: {sent:?}");
            for secret in ["secret_column", "customer_secrets", "SELECT", "relation", "no such"] {
                assert!(!sent.message.contains(secret), "{backend}: leaked {secret:?}: {sent:?}");
            }
        }
    }

    /// A refused query still says why: only failures of the service are reduced to a code.
    #[test]
    fn a_refused_query_keeps_its_reason() {
        let sent = QueryError::TaskNotFound("t-1".into()).to_api();
        assert_eq!(sent.code, ErrorCode::TaskNotFound as i32);
        assert!(sent.message.contains("t-1") && sent.reference.is_empty(), "{sent:?}");
    }
}
