//! Schema migrations, one migrator per service: each service creates and tracks only its
//! own tables, in its own migration table, so a service's database holds only its tables
//! and services may still share one database. Never edit a migration that has shipped;
//! their names are the ids existing databases recorded.
//!
//! Databases migrated before the split recorded every service's migrations in the one
//! `seaql_migrations` table; [`adopt_legacy_history`] copies a service's own rows from it
//! into the service's table, so nothing that already ran runs again.

use sea_orm::{ConnectionTrait, DbErr, Statement};
use sea_orm_migration::prelude::*;
use sea_orm_migration::IntoSchemaManagerConnection;

mod m20261125_000001_intake;
mod m20261125_000002_ledger;
mod m20261125_000003_dispatch;
mod m20261125_000101_task_customers;
mod m20261125_000201_history_indexes;
mod m20261125_000301_outbox;
mod schema;

pub use m20261125_000002_ledger::APPEND_ONLY_TABLES;

/// The table the one migrator of every service used before the split.
pub const LEGACY_MIGRATION_TABLE: &str = "seaql_migrations";

/// Whose tables a connection brings up to date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Schema {
    /// `tasks` and the outbox.
    Intake,
    /// `dispatch_tasks`, `dispatch_offers`, `dispatch_assignments` and the outbox.
    Dispatch,
    /// The append-only `ledger_*` tables and the outbox.
    Ledger,
}

impl Schema {
    /// Every service schema.
    pub const ALL: [Schema; 3] = [Schema::Intake, Schema::Dispatch, Schema::Ledger];

    /// The tables this schema creates (besides its migration table).
    pub fn tables(self) -> &'static [&'static str] {
        match self {
            Schema::Intake => &["tasks", "outbox"],
            Schema::Dispatch => &["dispatch_tasks", "dispatch_offers", "dispatch_assignments", "outbox"],
            Schema::Ledger => &[
                "ledger_tasks",
                "ledger_assignments",
                "ledger_evaluations",
                "ledger_entries",
                "ledger_task_results",
                "outbox",
            ],
        }
    }

    /// The table that records which of this schema's migrations ran.
    pub fn migration_table(self) -> &'static str {
        match self {
            Schema::Intake => "intake_seaql_migrations",
            Schema::Dispatch => "dispatch_seaql_migrations",
            Schema::Ledger => "ledger_seaql_migrations",
        }
    }

    /// The names of this schema's migrations, in order.
    pub fn migration_names(self) -> Vec<String> {
        let migrations = match self {
            Schema::Intake => IntakeMigrator::migrations(),
            Schema::Dispatch => DispatchMigrator::migrations(),
            Schema::Ledger => LedgerMigrator::migrations(),
        };
        migrations.iter().map(|m| m.name().to_owned()).collect()
    }

    /// Applies this schema's pending migrations, after adopting what the combined migrator
    /// of older releases already applied.
    pub async fn up<'c, C>(self, db: &'c C) -> Result<(), DbErr>
    where
        C: ConnectionTrait,
        &'c C: IntoSchemaManagerConnection<'c>,
    {
        match self {
            Schema::Intake => IntakeMigrator::install(db).await?,
            Schema::Dispatch => DispatchMigrator::install(db).await?,
            Schema::Ledger => LedgerMigrator::install(db).await?,
        }
        adopt_legacy_history(db, self).await?;
        match self {
            Schema::Intake => IntakeMigrator::up(db, None).await,
            Schema::Dispatch => DispatchMigrator::up(db, None).await,
            Schema::Ledger => LedgerMigrator::up(db, None).await,
        }
    }
}

impl std::fmt::Display for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Schema::Intake => "intake",
            Schema::Dispatch => "dispatch",
            Schema::Ledger => "ledger",
        })
    }
}

/// Intake's migrations.
pub struct IntakeMigrator;

impl MigratorTrait for IntakeMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(m20261125_000001_intake::Migration), Box::new(m20261125_000101_task_customers::Migration)]
    }

    fn migration_table_name() -> DynIden {
        Alias::new(Schema::Intake.migration_table()).into_iden()
    }
}

/// Dispatch's migrations.
pub struct DispatchMigrator;

impl MigratorTrait for DispatchMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000003_dispatch::Migration),
            Box::new(m20261125_000201_history_indexes::DispatchIndexes),
            Box::new(m20261125_000301_outbox::Migration),
        ]
    }

    fn migration_table_name() -> DynIden {
        Alias::new(Schema::Dispatch.migration_table()).into_iden()
    }
}

/// The ledger's migrations.
pub struct LedgerMigrator;

impl MigratorTrait for LedgerMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000002_ledger::Migration),
            Box::new(m20261125_000201_history_indexes::LedgerIndexes),
            Box::new(m20261125_000301_outbox::Migration),
        ]
    }

    fn migration_table_name() -> DynIden {
        Alias::new(Schema::Ledger.migration_table()).into_iden()
    }
}

/// Copies `schema`'s rows from the combined migration table of older releases (if this
/// database has one) into the schema's own table, keeping their names and times. Run
/// before every migration, it is a no-op once copied.
async fn adopt_legacy_history<C: ConnectionTrait>(db: &C, schema: Schema) -> Result<(), DbErr> {
    let backend = db.get_database_backend();
    let postgres = backend == sea_orm::DbBackend::Postgres;
    let placeholder = |n: usize| if postgres { format!("${n}") } else { "?".to_owned() };
    let legacy_exists = if postgres {
        "SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = $1"
    } else {
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
    };
    let legacy = Statement::from_sql_and_values(backend, legacy_exists, [LEGACY_MIGRATION_TABLE.into()]);
    if db.query_one_raw(legacy).await?.is_none() {
        return Ok(());
    }
    let names = schema.migration_names();
    let placeholders: Vec<String> = (1..=names.len()).map(placeholder).collect();
    let own = schema.migration_table();
    let copy = format!(
        "INSERT INTO {own} (version, applied_at) \
         SELECT l.version, l.applied_at FROM {LEGACY_MIGRATION_TABLE} l \
         WHERE l.version IN ({}) AND NOT EXISTS (SELECT 1 FROM {own} o WHERE o.version = l.version)",
        placeholders.join(", ")
    );
    let values: Vec<sea_orm::Value> = names.into_iter().map(Into::into).collect();
    let copied = db.execute_raw(Statement::from_sql_and_values(backend, copy, values)).await?;
    if copied.rows_affected() > 0 {
        tracing::info!(%schema, adopted = copied.rows_affected(), "adopted migrations applied before the per-service split");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
