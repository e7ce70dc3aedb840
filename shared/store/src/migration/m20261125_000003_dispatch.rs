//! Dispatch's tables: the tasks it is placing, every offer it made (one per task and
//! miner, whatever the replicas) and every assignment (likewise).

use sea_orm_migration::prelude::*;

use super::schema::{int, text};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum DispatchTasks {
    Table,
    TaskId,
    TaskProto,
    State,
    Reason,
    DeadlineMs,
    UpdatedAtMs,
}

#[derive(DeriveIden)]
enum DispatchOffers {
    Table,
    TaskId,
    MinerId,
    OfferId,
    Round,
    Outcome,
    Reason,
    EstimatedSeconds,
    SentAtMs,
    AnsweredAtMs,
}

#[derive(DeriveIden)]
enum DispatchAssignments {
    Table,
    TaskId,
    MinerId,
    AssignmentId,
    CreatedAtMs,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(DispatchTasks::Table)
                    .if_not_exists()
                    .col(text(DispatchTasks::TaskId).primary_key())
                    .col(ColumnDef::new(DispatchTasks::TaskProto).blob().not_null())
                    .col(text(DispatchTasks::State))
                    .col(ColumnDef::new(DispatchTasks::Reason).text().not_null())
                    .col(int(DispatchTasks::DeadlineMs))
                    .col(int(DispatchTasks::UpdatedAtMs))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(DispatchOffers::Table)
                    .if_not_exists()
                    .col(text(DispatchOffers::TaskId))
                    .col(text(DispatchOffers::MinerId))
                    .col(text(DispatchOffers::OfferId))
                    .col(ColumnDef::new(DispatchOffers::Round).integer().not_null())
                    .col(text(DispatchOffers::Outcome))
                    .col(ColumnDef::new(DispatchOffers::Reason).text().not_null())
                    .col(ColumnDef::new(DispatchOffers::EstimatedSeconds).double().not_null())
                    .col(int(DispatchOffers::SentAtMs))
                    .col(ColumnDef::new(DispatchOffers::AnsweredAtMs).big_integer().null())
                    .primary_key(Index::create().col(DispatchOffers::TaskId).col(DispatchOffers::MinerId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(DispatchAssignments::Table)
                    .if_not_exists()
                    .col(text(DispatchAssignments::TaskId))
                    .col(text(DispatchAssignments::MinerId))
                    .col(text(DispatchAssignments::AssignmentId))
                    .col(int(DispatchAssignments::CreatedAtMs))
                    .primary_key(Index::create().col(DispatchAssignments::TaskId).col(DispatchAssignments::MinerId))
                    .to_owned(),
            )
            .await
    }
}
