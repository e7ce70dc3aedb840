//! Intake's tables: `tasks` and the transactional `outbox`.

use sea_orm_migration::prelude::*;

use super::schema::{index, int, text};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tasks {
    Table,
    Id,
    IdempotencyKey,
    RequestSha256,
    Name,
    TaskType,
    BaseModel,
    ColumnsJson,
    HoursToComplete,
    RewardFunctionsJson,
    Status,
    StatusReason,
    DatasetSha256,
    DatasetSize,
    DatasetRows,
    TrainSha256,
    TrainSize,
    TrainRows,
    SynthSha256,
    SynthSize,
    SynthRows,
    TestSha256,
    TestSize,
    TestRows,
    CreatedAtMs,
    DeadlineMs,
    UpdatedAtMs,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Tasks::Table)
                    .if_not_exists()
                    .col(text(Tasks::Id).primary_key())
                    .col(text(Tasks::IdempotencyKey).unique_key())
                    .col(text(Tasks::RequestSha256))
                    .col(text(Tasks::Name))
                    .col(text(Tasks::TaskType))
                    .col(text(Tasks::BaseModel))
                    .col(ColumnDef::new(Tasks::ColumnsJson).text().not_null())
                    .col(ColumnDef::new(Tasks::HoursToComplete).double().not_null())
                    .col(ColumnDef::new(Tasks::RewardFunctionsJson).text().not_null())
                    .col(text(Tasks::Status))
                    .col(ColumnDef::new(Tasks::StatusReason).text().not_null())
                    .col(text(Tasks::DatasetSha256))
                    .col(int(Tasks::DatasetSize))
                    .col(int(Tasks::DatasetRows))
                    .col(text(Tasks::TrainSha256))
                    .col(int(Tasks::TrainSize))
                    .col(int(Tasks::TrainRows))
                    .col(text(Tasks::SynthSha256))
                    .col(int(Tasks::SynthSize))
                    .col(int(Tasks::SynthRows))
                    .col(text(Tasks::TestSha256))
                    .col(int(Tasks::TestSize))
                    .col(int(Tasks::TestRows))
                    .col(int(Tasks::CreatedAtMs))
                    .col(int(Tasks::DeadlineMs))
                    .col(int(Tasks::UpdatedAtMs))
                    .to_owned(),
            )
            .await?;
        // `task list` pages by (created_at_ms, id), optionally within one status.
        index(manager, Tasks::Table, "idx_tasks_status_created", [Tasks::Status, Tasks::CreatedAtMs], false).await?;
        index(manager, Tasks::Table, "idx_tasks_created", [Tasks::CreatedAtMs, Tasks::Id], false).await?;

        // The transactional outbox (one definition, shared with the other services' schemas).
        super::m20261125_000301_outbox::create_outbox(manager).await
    }
}
