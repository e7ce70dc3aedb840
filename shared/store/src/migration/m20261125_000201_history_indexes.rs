//! Indexes that keep the periodic queries bounded as history grows: the ledger's deadline
//! sweep walks tasks by deadline (an anti-join against the results, a page at a time), the
//! ledger's weights read the results finalized within the longest scoring period, and
//! dispatch's deadline sweep reads the open tasks (offering, training) past their deadline.

use sea_orm_migration::prelude::*;

use super::schema::index;

#[derive(DeriveMigrationName)]
pub struct Migration;

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
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        index(manager, LedgerTasks::Table, "idx_ledger_tasks_deadline", [LedgerTasks::DeadlineMs], false).await?;
        let by_time = [LedgerTaskResults::FinalizedAtMs];
        index(manager, LedgerTaskResults::Table, "idx_ledger_task_results_finalized", by_time, false).await?;
        let open_by_deadline = [DispatchTasks::State, DispatchTasks::DeadlineMs];
        index(manager, DispatchTasks::Table, "idx_dispatch_tasks_state_deadline", open_by_deadline, false).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, table) in [
            ("idx_ledger_tasks_deadline", LedgerTasks::Table.into_iden()),
            ("idx_ledger_task_results_finalized", LedgerTaskResults::Table.into_iden()),
            ("idx_dispatch_tasks_state_deadline", DispatchTasks::Table.into_iden()),
        ] {
            manager.drop_index(Index::drop().if_exists().name(name).table(table).to_owned()).await?;
        }
        Ok(())
    }
}
