//! Indexes that keep the periodic queries bounded as history grows: the ledger's deadline
//! sweep walks tasks by deadline (an anti-join against the results, a page at a time), the
//! ledger's weights read the results finalized within the longest scoring period, and
//! dispatch's deadline sweep reads the open tasks (offering, training) past their deadline.
//!
//! Shipped as one migration over both services' tables; since the per-service split, each
//! service's migrator runs its half under the same name, so a database that ran the whole
//! migration counts as having run both halves.

use sea_orm_migration::prelude::*;

use super::schema::index;

/// The name both halves are recorded under.
const NAME: &str = "m20261125_000201_history_indexes";

/// The ledger's half.
pub struct LedgerIndexes;

/// Dispatch's half.
pub struct DispatchIndexes;

impl MigrationName for LedgerIndexes {
    fn name(&self) -> &str {
        NAME
    }
}

impl MigrationName for DispatchIndexes {
    fn name(&self) -> &str {
        NAME
    }
}

#[derive(DeriveIden)]
enum LedgerTasks {
    Table,
    DeadlineMs,
}

#[derive(DeriveIden)]
enum LedgerTaskResults {
    Table,
    FinalizedAtMs,
}

#[derive(DeriveIden)]
enum DispatchTasks {
    Table,
    State,
    DeadlineMs,
}

#[async_trait::async_trait]
impl MigrationTrait for LedgerIndexes {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        index(manager, LedgerTasks::Table, "idx_ledger_tasks_deadline", [LedgerTasks::DeadlineMs], false).await?;
        let by_time = [LedgerTaskResults::FinalizedAtMs];
        index(manager, LedgerTaskResults::Table, "idx_ledger_task_results_finalized", by_time, false).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, table) in [
            ("idx_ledger_tasks_deadline", LedgerTasks::Table.into_iden()),
            ("idx_ledger_task_results_finalized", LedgerTaskResults::Table.into_iden()),
        ] {
            manager.drop_index(Index::drop().if_exists().name(name).table(table).to_owned()).await?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl MigrationTrait for DispatchIndexes {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let open_by_deadline = [DispatchTasks::State, DispatchTasks::DeadlineMs];
        index(manager, DispatchTasks::Table, "idx_dispatch_tasks_state_deadline", open_by_deadline, false).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let name = "idx_dispatch_tasks_state_deadline";
        manager.drop_index(Index::drop().if_exists().name(name).table(DispatchTasks::Table).to_owned()).await
    }
}
