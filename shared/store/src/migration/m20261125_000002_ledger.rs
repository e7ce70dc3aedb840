//! The reward ledger's tables. Every one is append-only: the database refuses UPDATE and
//! DELETE (triggers on both PostgreSQL and SQLite, TRUNCATE too on PostgreSQL), so a
//! correction can only be a new entry that references the one it corrects.

use sea_orm_migration::prelude::*;

use super::schema::{index, int, optional_real, real, text};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The tables the triggers guard.
pub const APPEND_ONLY_TABLES: [&str; 5] =
    ["ledger_tasks", "ledger_assignments", "ledger_evaluations", "ledger_entries", "ledger_task_results"];

#[derive(DeriveIden)]
enum LedgerTasks {
    Table,
    TaskId,
    TaskType,
    BaseModel,
    HoursToComplete,
    DeadlineMs,
    RecordedAtMs,
}

#[derive(DeriveIden)]
enum LedgerAssignments {
    Table,
    TaskId,
    MinerId,
    AssignmentId,
    CohortSize,
    RecordedAtMs,
}

#[derive(DeriveIden)]
enum LedgerEvaluations {
    Table,
    EvaluationId,
    TaskId,
    MinerId,
    Kind,
    Payload,
    PayloadSha256,
    ReceivedAtMs,
}

#[derive(DeriveIden)]
enum LedgerEntries {
    Table,
    EntryId,
    TaskId,
    MinerId,
    Kind,
    Score,
    TaskWeight,
    Rank,
    RankingLoss,
    Reason,
    SourceEventIds,
    SourceSha256,
    CorrectsEntryId,
    RecordedAtMs,
}

#[derive(DeriveIden)]
enum LedgerTaskResults {
    Table,
    TaskId,
    TaskType,
    WinnerMinerId,
    FinalizedBecause,
    FinalizedAtMs,
    WinnerLoss,
    TaskWeight,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(LedgerTasks::Table)
                    .if_not_exists()
                    .col(text(LedgerTasks::TaskId).primary_key())
                    .col(text(LedgerTasks::TaskType))
                    .col(text(LedgerTasks::BaseModel))
                    .col(real(LedgerTasks::HoursToComplete))
                    .col(int(LedgerTasks::DeadlineMs))
                    .col(int(LedgerTasks::RecordedAtMs))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(LedgerAssignments::Table)
                    .if_not_exists()
                    .col(text(LedgerAssignments::TaskId))
                    .col(text(LedgerAssignments::MinerId))
                    .col(text(LedgerAssignments::AssignmentId))
                    .col(int(LedgerAssignments::CohortSize))
                    .col(int(LedgerAssignments::RecordedAtMs))
                    .primary_key(Index::create().col(LedgerAssignments::TaskId).col(LedgerAssignments::MinerId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(LedgerEvaluations::Table)
                    .if_not_exists()
                    .col(text(LedgerEvaluations::EvaluationId).primary_key())
                    .col(text(LedgerEvaluations::TaskId))
                    .col(text(LedgerEvaluations::MinerId))
                    .col(text(LedgerEvaluations::Kind))
                    .col(ColumnDef::new(LedgerEvaluations::Payload).blob().not_null())
                    .col(text(LedgerEvaluations::PayloadSha256))
                    .col(int(LedgerEvaluations::ReceivedAtMs))
                    .to_owned(),
            )
            .await?;
        // One evaluation per (task, miner, kind): a second, different one is refused.
        let evaluation_key = [LedgerEvaluations::TaskId, LedgerEvaluations::MinerId, LedgerEvaluations::Kind];
        index(manager, LedgerEvaluations::Table, "uq_ledger_evaluations_task_miner_kind", evaluation_key, true).await?;
        manager
            .create_table(
                Table::create()
                    .table(LedgerEntries::Table)
                    .if_not_exists()
                    .col(text(LedgerEntries::EntryId).primary_key())
                    .col(text(LedgerEntries::TaskId))
                    .col(text(LedgerEntries::MinerId))
                    .col(text(LedgerEntries::Kind))
                    .col(real(LedgerEntries::Score))
                    .col(real(LedgerEntries::TaskWeight))
                    .col(ColumnDef::new(LedgerEntries::Rank).integer().null())
                    .col(optional_real(LedgerEntries::RankingLoss))
                    .col(text(LedgerEntries::Reason))
                    .col(ColumnDef::new(LedgerEntries::SourceEventIds).text().not_null())
                    .col(ColumnDef::new(LedgerEntries::SourceSha256).text().not_null())
                    // '' when it corrects nothing: NULLs would not collide in the unique key.
                    .col(text(LedgerEntries::CorrectsEntryId))
                    .col(int(LedgerEntries::RecordedAtMs))
                    .to_owned(),
            )
            .await?;
        let entry_key =
            [LedgerEntries::TaskId, LedgerEntries::MinerId, LedgerEntries::Kind, LedgerEntries::CorrectsEntryId];
        index(manager, LedgerEntries::Table, "uq_ledger_entries_task_miner_kind", entry_key, true).await?;
        let by_miner = [LedgerEntries::MinerId, LedgerEntries::RecordedAtMs];
        index(manager, LedgerEntries::Table, "idx_ledger_entries_miner_time", by_miner, false).await?;
        let by_time = [LedgerEntries::RecordedAtMs, LedgerEntries::EntryId];
        index(manager, LedgerEntries::Table, "idx_ledger_entries_time", by_time, false).await?;
        manager
            .create_table(
                Table::create()
                    .table(LedgerTaskResults::Table)
                    .if_not_exists()
                    .col(text(LedgerTaskResults::TaskId).primary_key())
                    .col(text(LedgerTaskResults::TaskType))
                    .col(text(LedgerTaskResults::WinnerMinerId))
                    .col(text(LedgerTaskResults::FinalizedBecause))
                    .col(int(LedgerTaskResults::FinalizedAtMs))
                    .col(optional_real(LedgerTaskResults::WinnerLoss))
                    .col(real(LedgerTaskResults::TaskWeight))
                    .to_owned(),
            )
            .await?;
        crate::append_only::install(manager.get_connection(), "gradients_append_only", &APPEND_ONLY_TABLES).await
    }
}
