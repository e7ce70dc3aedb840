//! Append-only tables, enforced by the database itself: triggers refuse UPDATE and DELETE
//! (and on PostgreSQL TRUNCATE) whoever connects, so history can only grow. The ledger's
//! tables and the audit log use the same triggers, made here.

use sea_orm::{ConnectionTrait, DbBackend, DbErr};

/// Makes every table in `tables` append-only. On PostgreSQL the triggers call the function
/// `function` (created or replaced here); trigger names are `<table>_append_only` and
/// `<table>_no_truncate` there, `<table>_no_update` and `<table>_no_delete` on SQLite. The
/// refusal's message always says "append-only".
pub async fn install(db: &impl ConnectionTrait, function: &str, tables: &[&str]) -> Result<(), DbErr> {
    match db.get_database_backend() {
        DbBackend::Postgres => {
            db.execute_unprepared(&format!(
                "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger AS $$
                 BEGIN
                   RAISE EXCEPTION 'table % is append-only: % is not allowed', TG_TABLE_NAME, TG_OP
                     USING ERRCODE = 'insufficient_privilege';
                 END $$ LANGUAGE plpgsql"
            ))
            .await?;
            for table in tables {
                db.execute_unprepared(&format!(
                    "CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
                     FOR EACH ROW EXECUTE FUNCTION {function}()"
                ))
                .await?;
                db.execute_unprepared(&format!(
                    "CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
                     FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
                ))
                .await?;
            }
        }
        DbBackend::Sqlite => {
            for table in tables {
                for operation in ["UPDATE", "DELETE"] {
                    db.execute_unprepared(&format!(
                        "CREATE TRIGGER IF NOT EXISTS {table}_no_{op} BEFORE {operation} ON {table}
                         BEGIN SELECT RAISE(ABORT, 'table {table} is append-only: {operation} is not allowed'); END",
                        op = operation.to_lowercase()
                    ))
                    .await?;
                }
            }
        }
        other => return Err(DbErr::Migration(format!("unsupported database backend {other:?}"))),
    }
    Ok(())
}
