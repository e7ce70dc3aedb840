//! The transactional `outbox`, for the services whose first migration did not make it
//! (dispatch and the ledger; intake's first migration did). Before the per-service split,
//! intake's migration made it in every database, so here it is created only if missing.

use sea_orm_migration::prelude::*;

use super::schema::index;

#[derive(DeriveMigrationName)]
pub struct Migration;

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
        create_outbox(manager).await
    }
}

/// Creates the outbox table and the relay's index, if missing: intake's first migration
/// and this one make the very same table.
pub(super) async fn create_outbox(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
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
