//! The audit's schema. Its own migrator with its own migration table, so it never mixes
//! with the services' `seaql_migrations` when a database is shared.

use sea_orm::{ConnectionTrait, DbBackend};
use sea_orm_migration::prelude::*;

/// Every migration of the audit schema.
pub struct AuditMigrator;

#[async_trait::async_trait]
impl MigratorTrait for AuditMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(Initial)]
    }

    fn migration_table_name() -> DynIden {
        Alias::new("audit_seaql_migrations").into_iden()
    }
}

/// The tables the database guards against UPDATE, DELETE and TRUNCATE.
pub const APPEND_ONLY_TABLES: [&str; 3] = ["audit_records", "audit_nodes", "audit_checkpoints"];

#[derive(DeriveMigrationName)]
struct Initial;

#[async_trait::async_trait]
impl MigrationTrait for Initial {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let postgres = manager.get_database_backend() == DbBackend::Postgres;
        let blob = if postgres { "BYTEA" } else { "BLOB" };
        for statement in [
            format!(
                "CREATE TABLE IF NOT EXISTS audit_records (
                   leaf_index BIGINT PRIMARY KEY,
                   stream TEXT NOT NULL,
                   first_sequence BIGINT NOT NULL,
                   last_sequence BIGINT NOT NULL,
                   kind TEXT NOT NULL,
                   subject TEXT NOT NULL,
                   msg_id TEXT NOT NULL,
                   traceparent TEXT NOT NULL,
                   published_at_ms BIGINT NOT NULL,
                   captured_at_ms BIGINT NOT NULL,
                   note TEXT NOT NULL,
                   payload {blob} NOT NULL,
                   leaf_hash {blob} NOT NULL)"
            ),
            // One record per stream position: the key that makes capture exactly-once.
            "CREATE UNIQUE INDEX IF NOT EXISTS uq_audit_records_stream_sequence
               ON audit_records (stream, first_sequence)"
                .to_owned(),
            "CREATE INDEX IF NOT EXISTS idx_audit_records_msg_id ON audit_records (msg_id)".to_owned(),
            "CREATE INDEX IF NOT EXISTS idx_audit_records_captured ON audit_records (captured_at_ms, leaf_index)"
                .to_owned(),
            format!(
                "CREATE TABLE IF NOT EXISTS audit_nodes (
                   level INTEGER NOT NULL,
                   node_index BIGINT NOT NULL,
                   hash {blob} NOT NULL,
                   PRIMARY KEY (level, node_index))"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS audit_head (
                   id INTEGER PRIMARY KEY,
                   tree_size BIGINT NOT NULL,
                   peaks {blob} NOT NULL,
                   root_hash {blob} NOT NULL,
                   updated_at_ms BIGINT NOT NULL)"
            ),
            "CREATE TABLE IF NOT EXISTS audit_checkpoints (
               tree_size BIGINT PRIMARY KEY,
               root_hash TEXT NOT NULL,
               timestamp_ms BIGINT NOT NULL,
               public_key TEXT NOT NULL,
               signature TEXT NOT NULL)"
                .to_owned(),
        ] {
            db.execute_unprepared(&statement).await?;
        }
        // The empty tree: size 0, no peaks, root H().
        let empty_root = hex_literal(postgres, &crate::merkle::empty_root());
        let empty = if postgres { "'\\x'::bytea" } else { "X''" };
        db.execute_unprepared(&format!(
            "INSERT INTO audit_head (id, tree_size, peaks, root_hash, updated_at_ms)
             VALUES ({}, 0, {empty}, {empty_root}, 0)",
            super::entity::HEAD_ID
        ))
        .await?;
        gradients_store::append_only::install(db, "gradients_audit_append_only", &APPEND_ONLY_TABLES).await
    }
}

/// A byte-string literal in the backend's syntax.
fn hex_literal(postgres: bool, bytes: &[u8]) -> String {
    if postgres {
        format!("'\\x{}'::bytea", hex::encode(bytes))
    } else {
        format!("X'{}'", hex::encode(bytes))
    }
}
