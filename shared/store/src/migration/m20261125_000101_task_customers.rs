//! Tasks belong to the customer that submitted them: `tasks.customer_id`, and the
//! idempotency key becomes unique per customer instead of across the market (two customers
//! may both use the key "retry-1", and neither learns that the other did).
//!
//! SQLite cannot drop the column's inline UNIQUE constraint, so there the table is rebuilt
//! (create, copy, drop, rename, indexes again) in the migration's transaction. Tasks stored
//! before this migration have the empty customer id: only operators see them.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

use super::schema::{index, int, text};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tasks {
    Table,
    Id,
    CustomerId,
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

/// Every column the first intake migration made, in its order.
const OLD_COLUMNS: &str = "id, idempotency_key, request_sha256, name, task_type, base_model, columns_json, \
     hours_to_complete, reward_functions_json, status, status_reason, dataset_sha256, dataset_size, dataset_rows, \
     train_sha256, train_size, train_rows, synth_sha256, synth_size, synth_rows, test_sha256, test_size, test_rows, \
     created_at_ms, deadline_ms, updated_at_ms";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        match db.get_database_backend() {
            DbBackend::Postgres => {
                db.execute_unprepared(
                    "ALTER TABLE tasks ADD COLUMN IF NOT EXISTS customer_id varchar NOT NULL DEFAULT ''",
                )
                .await?;
                db.execute_unprepared("ALTER TABLE tasks DROP CONSTRAINT IF EXISTS tasks_idempotency_key_key").await?;
            }
            _ => rebuild_sqlite(manager).await?,
        }
        // A retry finds its task by (customer, key); `list` pages one customer's tasks.
        index(manager, Tasks::Table, "idx_tasks_customer_key", [Tasks::CustomerId, Tasks::IdempotencyKey], true)
            .await?;
        index(
            manager,
            Tasks::Table,
            "idx_tasks_customer_created",
            [Tasks::CustomerId, Tasks::CreatedAtMs, Tasks::Id],
            false,
        )
        .await
    }
}

/// The tasks table again, with `customer_id` and without the market-wide unique key.
/// One script, so that every statement runs on one pooled connection, in one transaction.
async fn rebuild_sqlite(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let create = Table::create()
        .table(Alias::new("tasks_rebuilt"))
        .col(text(Tasks::Id).primary_key())
        .col(ColumnDef::new(Tasks::CustomerId).string().not_null().default(""))
        .col(text(Tasks::IdempotencyKey))
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
        .to_string(SqliteQueryBuilder);
    let script = format!(
        "BEGIN IMMEDIATE; {create}; \
         INSERT INTO tasks_rebuilt ({OLD_COLUMNS}) SELECT {OLD_COLUMNS} FROM tasks; \
         DROP TABLE tasks; \
         ALTER TABLE tasks_rebuilt RENAME TO tasks; \
         CREATE INDEX idx_tasks_status_created ON tasks (status, created_at_ms); \
         CREATE INDEX idx_tasks_created ON tasks (created_at_ms, id); \
         COMMIT;"
    );
    manager.get_connection().execute_unprepared(&script).await.map(|_| ())
}
