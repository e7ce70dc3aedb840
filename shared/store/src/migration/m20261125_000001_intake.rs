//! Intake's tables: `tasks` and the transactional `outbox`.

use sea_orm_migration::prelude::*;

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
        let text = |c: Tasks| ColumnDef::new(c).string().not_null().to_owned();
        let int = |c: Tasks| ColumnDef::new(c).big_integer().not_null().to_owned();
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
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("idx_tasks_status_created")
                    .table(Tasks::Table)
                    .col(Tasks::Status)
                    .col(Tasks::CreatedAtMs)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("idx_tasks_created")
                    .table(Tasks::Table)
                    .col(Tasks::CreatedAtMs)
                    .col(Tasks::Id)
                    .to_owned(),
            )
            .await?;

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
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("idx_outbox_pending")
                    .table(Outbox::Table)
                    .col(Outbox::PublishedAtMs)
                    .col(Outbox::CreatedAtMs)
                    .to_owned(),
            )
            .await
    }
}
