//! The audit's own store: its tables, its migrations (tracked in their own migration table,
//! so the audit can share a database with other services or have one to itself) and the
//! connection. SQLite file by default, PostgreSQL by URL.

pub mod entity;
mod migration;

use std::time::Duration;

use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr, TransactionTrait};
use sea_orm_migration::MigratorTrait;

pub use migration::{AuditMigrator, APPEND_ONLY_TABLES};

/// Any number for the advisory lock that serialises the audit's migrations.
const MIGRATION_LOCK: i64 = 0x6175_6469_746d_6967; // "auditmig"

/// Connects to `url`, tunes SQLite and applies the audit's pending migrations.
pub async fn connect(url: &str, max_connections: u32) -> Result<DatabaseConnection, gradients_store::StoreError> {
    let mut options = ConnectOptions::new(url.to_owned());
    options.max_connections(max_connections).connect_timeout(Duration::from_secs(10)).sqlx_logging(false);
    // On every pooled SQLite connection (a PRAGMA run once would reach one of them): WAL lets
    // proof queries run beside the writer, writers wait rather than fail, and every commit is
    // synced before capture acknowledges its messages (an acked message must never be lost).
    options.map_sqlx_sqlite_opts(|sqlite| {
        sqlite
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(30))
            .synchronous(SqliteSynchronous::Full)
    });
    let db = Database::connect(options)
        .await
        .map_err(|source| gradients_store::StoreError::Connect { url: redact(url), source })?;
    migrate(&db).await.map_err(gradients_store::StoreError::Migrate)?;
    Ok(db)
}

/// Replicas starting together on PostgreSQL take turns (transactional DDL under a lock).
async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    if db.get_database_backend() != DbBackend::Postgres {
        return AuditMigrator::up(db, None).await;
    }
    let txn = db.begin().await?;
    txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")).await?;
    AuditMigrator::up(&txn, None).await?;
    txn.commit().await
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => match url[scheme + 3..at].split_once(':') {
            Some((user, _)) => format!("{}{}:***{}", &url[..scheme + 3], user, &url[at..]),
            None => url.to_owned(),
        },
        _ => url.to_owned(),
    }
}
