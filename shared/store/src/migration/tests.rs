//! The per-service schemas: each service's database holds only its tables, a database the
//! combined migrator of older releases made still starts (and its rows still read), and a
//! stored label this build does not know reads back as the typed error.

use std::collections::BTreeSet;

use gradients_config::StoreSettings;
use gradients_testkit::{Backend, ScratchDb};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, EntityTrait, Statement};
use sea_orm_migration::prelude::*;

use super::m20261125_000201_history_indexes::{DispatchIndexes, LedgerIndexes};
use super::*;
use crate::entity::{dispatch, ledger};
use crate::{connect, unknown_label};

/// The one migrator every service ran before the split, exactly as it shipped: one list,
/// tracked in `seaql_migrations`.
struct CombinedMigrator;

impl MigratorTrait for CombinedMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_intake::Migration),
            Box::new(m20261125_000002_ledger::Migration),
            Box::new(m20261125_000003_dispatch::Migration),
            Box::new(m20261125_000101_task_customers::Migration),
            Box::new(CombinedHistoryIndexes),
        ]
    }
}

/// The history indexes as one migration over both services' tables, as shipped.
struct CombinedHistoryIndexes;

impl MigrationName for CombinedHistoryIndexes {
    fn name(&self) -> &str {
        "m20261125_000201_history_indexes"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CombinedHistoryIndexes {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        LedgerIndexes.up(manager).await?;
        DispatchIndexes.up(manager).await
    }
}

fn settings(scratch: &ScratchDb) -> StoreSettings {
    StoreSettings { url: scratch.url().to_owned(), max_connections: 2 }
}

/// Every table in the database.
async fn tables(db: &DatabaseConnection) -> BTreeSet<String> {
    let sql = match db.get_database_backend() {
        DbBackend::Postgres => {
            "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = current_schema()"
        }
        _ => "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
    };
    let rows = db.query_all_raw(Statement::from_string(db.get_database_backend(), sql)).await.unwrap();
    rows.iter().map(|row| row.try_get::<String>("", "name").unwrap()).collect()
}

/// The migration names recorded in `table`.
async fn recorded(db: &DatabaseConnection, table: &str) -> Vec<String> {
    let sql = format!("SELECT version FROM {table} ORDER BY version");
    let rows = db.query_all_raw(Statement::from_string(db.get_database_backend(), sql)).await.unwrap();
    rows.iter().map(|row| row.try_get::<String>("", "version").unwrap()).collect()
}

/// A service started on an empty database creates its own tables and no other service's.
#[tokio::test]
async fn each_service_holds_only_its_own_tables() {
    for backend in Backend::ALL {
        for schema in Schema::ALL {
            let scratch = ScratchDb::new(backend).await.unwrap();
            let db = connect(&settings(&scratch), schema).await.unwrap();
            let mut expected: BTreeSet<String> = schema.tables().iter().map(|t| (*t).to_owned()).collect();
            expected.insert(schema.migration_table().to_owned());
            assert_eq!(tables(&db).await, expected, "{backend}: {schema}");
            assert_eq!(recorded(&db, schema.migration_table()).await, schema.migration_names(), "{backend}: {schema}");
            // A second start (a restart, another replica) has nothing to do.
            connect(&settings(&scratch), schema).await.unwrap();
        }
    }
}

/// Services that share one database each keep their own migration history, and together
/// hold exactly the union of their tables.
#[tokio::test]
async fn services_may_share_a_database() {
    for backend in Backend::ALL {
        let scratch = ScratchDb::new(backend).await.unwrap();
        for schema in Schema::ALL {
            connect(&settings(&scratch), schema).await.unwrap();
        }
        let db = connect(&settings(&scratch), Schema::Ledger).await.unwrap();
        let mut expected = BTreeSet::new();
        for schema in Schema::ALL {
            expected.extend(schema.tables().iter().map(|t| (*t).to_owned()));
            expected.insert(schema.migration_table().to_owned());
            assert_eq!(recorded(&db, schema.migration_table()).await, schema.migration_names(), "{backend}: {schema}");
        }
        assert_eq!(tables(&db).await, expected, "{backend}");
    }
}

/// A database the combined migrator made (every table, history in `seaql_migrations`)
/// starts under each service's migrator: the service adopts its own recorded migrations
/// instead of running them again (the ledger's PostgreSQL triggers could not be created
/// twice), and rows stored as plain labels read back as typed values.
#[tokio::test]
async fn a_database_of_the_combined_migrator_still_starts() {
    for backend in Backend::ALL {
        let scratch = ScratchDb::new(backend).await.unwrap();
        let old = Database::connect(scratch.url()).await.unwrap();
        CombinedMigrator::up(&old, None).await.unwrap();
        let db_backend = old.get_database_backend();
        for sql in [
            "INSERT INTO dispatch_tasks (task_id, task_proto, state, reason, deadline_ms, updated_at_ms) \
             VALUES ('t1', X'', 'training', '', 5, 1)",
            "INSERT INTO ledger_task_results (task_id, task_type, winner_miner_id, finalized_because, \
             finalized_at_ms, winner_loss, task_weight) VALUES ('t1', 'grpo', 'm1', 'deadline', 9, 0.5, 1.0)",
        ] {
            let sql = if backend == Backend::Postgres { sql.replace("X''", "'\\x'::bytea") } else { sql.to_owned() };
            old.execute_raw(Statement::from_string(db_backend, sql)).await.unwrap();
        }
        let before = tables(&old).await;
        drop(old);

        for schema in Schema::ALL {
            let db = connect(&settings(&scratch), schema).await.unwrap();
            let history = recorded(&db, schema.migration_table()).await;
            assert_eq!(history, schema.migration_names(), "{backend}: {schema} adopted its history");
            let legacy = recorded(&db, LEGACY_MIGRATION_TABLE).await;
            let new: Vec<&String> = history.iter().filter(|name| !legacy.contains(name)).collect();
            assert!(new.iter().all(|name| name.ends_with("_outbox")), "{backend}: {schema} re-ran {new:?}");
        }
        let db = connect(&settings(&scratch), Schema::Ledger).await.unwrap();
        let mut after = before.clone();
        after.extend(Schema::ALL.iter().map(|s| s.migration_table().to_owned()));
        assert_eq!(tables(&db).await, after, "{backend}: nothing dropped, nothing else made");

        let task = dispatch::task::Entity::find_by_id("t1".to_owned()).one(&db).await.unwrap().unwrap();
        assert_eq!(task.state, dispatch::TaskState::Training, "{backend}");
        let result = ledger::task_result::Entity::find_by_id("t1".to_owned()).one(&db).await.unwrap().unwrap();
        assert_eq!(result.task_type, ledger::TaskType::Grpo, "{backend}");
        assert_eq!(result.finalized_because, ledger::FinalizedBecause::Deadline, "{backend}");
        let refused = db.execute_unprepared("DELETE FROM ledger_task_results").await.unwrap_err();
        assert!(refused.to_string().contains("append-only"), "{backend}: {refused}");
    }
}

/// A label no variant has reads back as [`UnknownLabel`], naming the enum and the label;
/// nothing is defaulted.
#[tokio::test]
async fn an_unknown_stored_label_is_a_typed_error() {
    for backend in Backend::ALL {
        let scratch = ScratchDb::new(backend).await.unwrap();
        let db = connect(&settings(&scratch), Schema::Dispatch).await.unwrap();
        let blob = if backend == Backend::Postgres { "'\\x'::bytea" } else { "X''" };
        let sql = format!(
            "INSERT INTO dispatch_tasks (task_id, task_proto, state, reason, deadline_ms, updated_at_ms) \
             VALUES ('t1', {blob}, 'paused', '', 5, 1)"
        );
        db.execute_unprepared(&sql).await.unwrap();
        let error = dispatch::task::Entity::find_by_id("t1".to_owned()).one(&db).await.unwrap_err();
        let unknown = unknown_label(&error).unwrap_or_else(|| panic!("{backend}: not an unknown label: {error:?}"));
        assert_eq!((unknown.kind, unknown.label.as_str()), ("TaskState", "paused"), "{backend}");
        assert!(error.to_string().contains("paused"), "{backend}: the message names the label: {error}");
        let kind = crate::failure::classify(&error);
        assert_eq!(kind, crate::failure::DbFailure::Internal, "{backend}: a bad row is no reason to retry");
        let all = dispatch::task::Entity::find().all(&db).await.unwrap_err();
        assert!(unknown_label(&all).is_some(), "{backend}: a listing fails too, never skips the row");
    }
}

/// Every label reads back as its value, and every wire value converts both ways.
#[test]
fn labels_and_wire_values_round_trip() {
    use gradients_proto::v1;

    use crate::entity::task::{TaskStatus, TaskType};
    for value in TaskType::ALL {
        assert_eq!(TaskType::from_label(value.label()), Ok(*value));
        assert_eq!(TaskType::from_proto(v1::TaskType::from(*value)), Ok(*value));
        assert_eq!(value.label(), v1::TaskType::from(*value).label(), "the stored label is the wire label");
    }
    assert!(TaskType::from_proto(v1::TaskType::Unspecified).is_err());
    assert!(TaskType::from_wire(99).is_err());
    for value in TaskStatus::ALL {
        assert_eq!(TaskStatus::from_label(value.label()), Ok(*value));
        assert_eq!(TaskStatus::from_proto(v1::TaskStatus::from(*value)), Ok(*value));
        assert_eq!(value.label(), v1::TaskStatus::from(*value).label());
    }
    for value in ledger::EvaluationKind::ALL {
        assert_eq!(ledger::EvaluationKind::from(v1::EvaluationKind::from(*value)), *value);
        assert_eq!(value.label(), v1::EvaluationKind::from(*value).as_str_name().to_ascii_lowercase());
    }
    for value in ledger::EntryKind::ALL {
        assert_eq!(ledger::EntryKind::from_proto(v1::LedgerEntryKind::from(*value)), Ok(*value));
        assert_eq!(value.label(), v1::LedgerEntryKind::from(*value).as_str_name().to_ascii_lowercase());
    }
    assert!(ledger::EntryKind::from_proto(v1::LedgerEntryKind::Unspecified).is_err());
    for value in dispatch::TaskState::ALL {
        assert_eq!(dispatch::TaskState::from_label(value.label()), Ok(*value));
    }
    let unknown = dispatch::OfferOutcome::from_label("Accepted").unwrap_err();
    assert_eq!(unknown.known, dispatch::OfferOutcome::LABELS, "labels are exact, case included");
}
