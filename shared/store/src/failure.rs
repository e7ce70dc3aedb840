//! What a database error means to the code that met it: a row that is already there, a
//! write the schema refuses, a database that is briefly out of reach, or a bug.
//!
//! Services decide by this kind, never by an error's text: whether to retry a message,
//! what code to send a client (`UNAVAILABLE` only when a retry can succeed), and whether an
//! idempotent insert met its own earlier write. Both backends (PostgreSQL's SQLSTATEs,
//! SQLite's result codes) map to the same kinds.

use sea_orm::{DbErr, RuntimeErr};

/// The kind of a database failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbFailure {
    /// A unique key already holds this row: an idempotent insert met its earlier self.
    Duplicate,
    /// A foreign key, check, not-null constraint or trigger refused the write: the data (or
    /// the code writing it) is wrong, not the database.
    Constraint,
    /// The database could not be reached or was too busy: no connection in time, a lost
    /// connection, a lock or serialization conflict, a server shutting down. A retry may
    /// succeed.
    Unavailable,
    /// Anything else: a statement the schema refuses, a value that does not decode. A bug or
    /// a schema mismatch; retrying will not help.
    Internal,
}

impl DbFailure {
    /// Whether trying the same thing again later may succeed.
    pub fn is_retryable(self) -> bool {
        self == Self::Unavailable
    }
}

/// The kind of `error`.
pub fn classify(error: &DbErr) -> DbFailure {
    match error {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => DbFailure::Unavailable,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => classify_sqlx(e),
        _ => DbFailure::Internal,
    }
}

fn classify_sqlx(error: &sea_orm::sqlx::Error) -> DbFailure {
    use sea_orm::sqlx::error::ErrorKind;
    use sea_orm::sqlx::Error;
    match error {
        Error::PoolTimedOut | Error::PoolClosed | Error::Io(_) | Error::Tls(_) | Error::WorkerCrashed => {
            DbFailure::Unavailable
        }
        Error::Database(db) => match db.kind() {
            ErrorKind::UniqueViolation => DbFailure::Duplicate,
            ErrorKind::ForeignKeyViolation
            | ErrorKind::NotNullViolation
            | ErrorKind::CheckViolation
            | ErrorKind::ExclusionViolation => DbFailure::Constraint,
            _ => classify_code(db.code().as_deref().unwrap_or_default()),
        },
        _ => DbFailure::Internal,
    }
}

/// By the backend's own code: a PostgreSQL SQLSTATE (five characters) or a SQLite
/// (extended) result code (a number).
fn classify_code(code: &str) -> DbFailure {
    if let Ok(sqlite) = code.parse::<u32>() {
        return match sqlite & 0xff {
            // BUSY, LOCKED: another connection holds the lock past the busy timeout.
            5 | 6 => DbFailure::Unavailable,
            // IOERR, FULL, CANTOPEN: the disk under the database.
            10 | 13 | 14 => DbFailure::Unavailable,
            // CONSTRAINT (a trigger's RAISE, a check): the write is refused.
            19 => DbFailure::Constraint,
            _ => DbFailure::Internal,
        };
    }
    match code {
        // Serialization failure, deadlock, lock not available.
        "40001" | "40P01" | "55P03" => DbFailure::Unavailable,
        // Admin or crash shutdown, cannot connect now, too many connections.
        "57P01" | "57P02" | "57P03" | "53300" => DbFailure::Unavailable,
        // Integrity constraint violations; a trigger's RAISE EXCEPTION.
        _ if code.starts_with("23") || code == "P0001" => DbFailure::Constraint,
        // Connection exceptions; insufficient resources.
        _ if code.starts_with("08") || code.starts_with("53") => DbFailure::Unavailable,
        _ => DbFailure::Internal,
    }
}

#[cfg(test)]
mod tests {
    use gradients_testkit::{Backend, ScratchDb};
    use sea_orm::{ConnectionTrait, Database};

    use super::*;

    /// Each kind as both backends really report it, not as a hand-made error.
    #[tokio::test]
    async fn real_errors_of_both_backends_are_classified_by_kind() {
        for backend in Backend::ALL {
            let scratch = ScratchDb::new(backend).await.unwrap();
            let db = Database::connect(scratch.url()).await.unwrap();
            let run = |sql: &'static str| {
                let db = &db;
                async move { db.execute_unprepared(sql).await.map(|_| ()) }
            };
            run("CREATE TABLE kinds (id INTEGER PRIMARY KEY, positive INTEGER CHECK (positive > 0))").await.unwrap();
            run("INSERT INTO kinds VALUES (1, 1)").await.unwrap();
            let duplicate = run("INSERT INTO kinds VALUES (1, 1)").await.unwrap_err();
            assert_eq!(classify(&duplicate), DbFailure::Duplicate, "{backend}: {duplicate}");
            let refused = run("INSERT INTO kinds VALUES (2, -1)").await.unwrap_err();
            assert_eq!(classify(&refused), DbFailure::Constraint, "{backend}: {refused}");
            let broken = run("SELECT no_such_column FROM kinds").await.unwrap_err();
            assert_eq!(classify(&broken), DbFailure::Internal, "{backend}: {broken}");
            assert!(!classify(&broken).is_retryable());
        }
    }

    /// A pool that cannot hand out a connection in time is unavailable, worth a retry.
    #[tokio::test]
    async fn an_exhausted_pool_is_unavailable() {
        let scratch = ScratchDb::new(Backend::Postgres).await.unwrap();
        let mut options = sea_orm::ConnectOptions::new(scratch.url().to_owned());
        options.max_connections(1).acquire_timeout(std::time::Duration::from_millis(200));
        let db = Database::connect(options).await.unwrap();
        let held = sea_orm::TransactionTrait::begin(&db).await.unwrap();
        let starved = db.execute_unprepared("SELECT 1").await.unwrap_err();
        assert_eq!(classify(&starved), DbFailure::Unavailable, "{starved:?}");
        assert!(classify(&starved).is_retryable());
        drop(held);
    }
}
