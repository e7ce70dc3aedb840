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

#[derive(DeriveIden)]
enum Outbox {
    Table,
    Id,
    Subject,
    Payload,
    Traceparent,
    CreatedAtMs,
    PublishedAtMs,
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

        manager
            .create_table(
                Table::create()
                    .table(Outbox::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(Outbox::Id).string().not_null().primary_key())
                    .col(ColumnDef::new(Outbox::Subject).string().not_null())
                    .col(ColumnDef::new(Outbox::Payload).blob().not_null())
                    .col(ColumnDef::new(Outbox::Traceparent).string().null())
                    .col(ColumnDef::new(Outbox::CreatedAtMs).big_integer().not_null())
                    .col(ColumnDef::new(Outbox::PublishedAtMs).big_integer().null())
                    .to_owned(),
            )
            .await?;
        // The relay's query: unpublished rows, oldest first.
        index(manager, Outbox::Table, "idx_outbox_pending", [Outbox::PublishedAtMs, Outbox::CreatedAtMs], false).await
    }
}
