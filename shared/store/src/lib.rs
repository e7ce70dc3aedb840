//! Storage for the Gradients services: sea-orm entities, migrations and the connection.
//!
//! The embedded default is a SQLite file; a `postgres://` URL switches to PostgreSQL.
//! [`connect`] brings the calling service's [`Schema`] (and only it) up to date before
//! returning, so a service never runs against an older schema and its database holds only
//! its own tables. Enum columns are typed ([`label`]): a stored label this build does not
//! know fails the read with [`UnknownLabel`], never a default. Times are stored as Unix
//! milliseconds (`i64`) and structured
//! values as JSON text, so both backends hold the same bytes. [`outbox`] publishes the
//! events a transaction stored, after it commits.

pub mod append_only;
pub mod entity;
pub mod failure;
pub mod label;
mod migration;
pub mod outbox;
pub mod paging;

use std::time::Duration;

use gradients_config::StoreSettings;
use sea_orm::sqlx::sqlite::SqliteJournalMode;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr, TransactionTrait};

pub use label::{unknown_label, UnknownLabel, Unspecified};
pub use migration::{
    DispatchMigrator, IntakeMigrator, LedgerMigrator, Schema, APPEND_ONLY_TABLES, LEGACY_MIGRATION_TABLE,
};
pub use sea_orm;

/// Why storage failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or opened.
    #[error("connecting to the database at {url}: {source}")]
    Connect { url: String, source: DbErr },
    /// The schema could not be brought up to date.
    #[error("migrating the database: {0}")]
    Migrate(#[source] DbErr),
}

/// How long a pooled connection may sit idle before it is pinged on checkout.
const IDLE_BEFORE_PING: Duration = Duration::from_secs(30);

/// Connects, tunes the backend and applies `schema`'s pending migrations (no other
/// service's).
pub async fn connect(settings: &StoreSettings, schema: Schema) -> Result<DatabaseConnection, StoreError> {
    let mut options = ConnectOptions::new(settings.url.clone());
    options
        .max_connections(settings.max_connections)
        .connect_timeout(Duration::from_secs(10))
        // A round trip per checkout was most of a small transaction's cost: only a connection
        // idle long enough to have been dropped by the server (or a proxy) is pinged first.
        .test_before_acquire_if_idle_for(IDLE_BEFORE_PING)
        .sqlx_logging(false);
    // On every pooled SQLite connection (a PRAGMA run once reaches only one of them): WAL
    // lets readers run beside the writer; the busy timeout makes concurrent writers from
    // several tasks wait instead of failing at once.
    options.map_sqlx_sqlite_opts(|sqlite| {
        sqlite.journal_mode(SqliteJournalMode::Wal).busy_timeout(Duration::from_secs(10)).foreign_keys(true)
    });
    let db = Database::connect(options)
        .await
        .map_err(|source| StoreError::Connect { url: redact(&settings.url), source })?;
    migrate(&db, schema).await.map_err(StoreError::Migrate)?;
    Ok(db)
}

/// Any number for the advisory lock that serialises migrations; the same in every process.
const MIGRATION_LOCK: i64 = 0x6772_6164_6965_6e74; // "gradient"

/// Applies `schema`'s pending migrations. On PostgreSQL, replicas (and services sharing the
/// database) starting together take turns: the migration runs in one transaction holding an
/// advisory lock (DDL is transactional there).
async fn migrate(db: &DatabaseConnection, schema: Schema) -> Result<(), DbErr> {
    if db.get_database_backend() != DbBackend::Postgres {
        return schema.up(db).await;
    }
    let txn = db.begin().await?;
    txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")).await?;
    schema.up(&txn).await?;
    txn.commit().await
}

/// Whether `error` is a unique-key violation: the signal that an idempotent insert
/// found its row already there.
pub fn is_unique_violation(error: &DbErr) -> bool {
    matches!(error.sql_err(), Some(sea_orm::SqlErr::UniqueConstraintViolation(_)))
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..scheme + 3], user, &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use gradients_testkit::{Backend, ScratchDb};
    use sea_orm::{ActiveModelTrait, EntityTrait, Set};

    use super::*;
    use crate::entity::outbox;

    /// A password never appears in an error message.
    #[test]
    fn urls_are_redacted() {
        assert_eq!(redact("postgres://u:secret@h:5432/d"), "postgres://u:***@h:5432/d");
        assert_eq!(redact("sqlite://x.db"), "sqlite://x.db");
    }

    /// Both backends migrate (twice, idempotently) and enforce the outbox's primary key.
    #[tokio::test]
    async fn migrates_both_backends_and_enforces_keys() {
        for backend in Backend::ALL {
            let scratch = ScratchDb::new(backend).await.unwrap();
            let settings = StoreSettings { url: scratch.url().to_owned(), max_connections: 2 };
            let db = connect(&settings, Schema::Intake).await.unwrap();
            let again = connect(&settings, Schema::Intake).await.unwrap();
            let row = outbox::ActiveModel {
                id: Set("e1".into()),
                subject: Set("s".into()),
                payload: Set(vec![1, 2, 3]),
                traceparent: Set(None),
                created_at_ms: Set(1),
                published_at_ms: Set(None),
            };
            row.clone().insert(&db).await.unwrap();
            let duplicate = row.insert(&again).await.unwrap_err();
            assert!(is_unique_violation(&duplicate), "{backend}: {duplicate:?}");
            assert_eq!(outbox::Entity::find().all(&db).await.unwrap().len(), 1);
        }
    }

    /// Replicas starting together on a fresh PostgreSQL database all come up: the
    /// migration runs once, the others wait for it.
    #[tokio::test]
    async fn replicas_migrate_a_fresh_database_together() {
        let scratch = ScratchDb::new(Backend::Postgres).await.unwrap();
        let settings = StoreSettings { url: scratch.url().to_owned(), max_connections: 2 };
        let start = || async { connect(&settings, Schema::Intake).await.map(|_| ()).map_err(|e| e.to_string()) };
        let started = tokio::join!(start(), start(), start(), start());
        let started = [started.0, started.1, started.2, started.3];
        assert!(started.iter().all(|r| r.is_ok()), "{started:?}");
    }

    /// The database itself refuses UPDATE, DELETE (and on PostgreSQL TRUNCATE) on every
    /// ledger table, whoever connects; inserts still work.
    #[tokio::test]
    async fn ledger_tables_are_append_only_in_the_database() {
        use crate::entity::ledger::{entry, EntryKind};
        for backend in Backend::ALL {
            let scratch = ScratchDb::new(backend).await.unwrap();
            let settings = StoreSettings { url: scratch.url().to_owned(), max_connections: 2 };
            let db = connect(&settings, Schema::Ledger).await.unwrap();
            entry::ActiveModel {
                entry_id: Set("e1".into()),
                task_id: Set("t".into()),
                miner_id: Set("m".into()),
                kind: Set(EntryKind::TaskScore),
                score: Set(3.0),
                task_weight: Set(1.0),
                rank: Set(Some(1)),
                ranking_loss: Set(Some(0.5)),
                reason: Set("first".into()),
                source_event_ids: Set("[]".into()),
                source_sha256: Set("[]".into()),
                corrects_entry_id: Set(String::new()),
                recorded_at_ms: Set(1),
            }
            .insert(&db)
            .await
            .unwrap();
            let mut refused = vec![
                "UPDATE ledger_entries SET score = 100 WHERE entry_id = 'e1'".to_owned(),
                "DELETE FROM ledger_entries".to_owned(),
            ];
            if backend == Backend::Postgres {
                refused.push("TRUNCATE ledger_entries".to_owned());
            }
            for statement in refused {
                let error =
                    db.execute_unprepared(&statement).await.expect_err(&format!("{backend}: {statement} must fail"));
                assert!(error.to_string().contains("append-only"), "{backend}: {error}");
            }
            let kept = entry::Entity::find().all(&db).await.unwrap();
            assert_eq!(kept.len(), 1);
            assert_eq!(kept[0].score, 3.0, "{backend}: the score is unchanged");
        }
    }
}
