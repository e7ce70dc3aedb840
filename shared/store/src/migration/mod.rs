//! Schema migrations, applied in order by [`Migrator`]; never edit one that has shipped.

use sea_orm_migration::{MigrationTrait, MigratorTrait};

mod m20261125_000001_intake;
mod m20261125_000002_ledger;
mod m20261125_000003_dispatch;
mod m20261125_000101_task_customers;
mod m20261125_000201_history_indexes;
mod schema;

pub use m20261125_000002_ledger::APPEND_ONLY_TABLES;

/// Every migration of the Gradients schema.
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_intake::Migration),
            Box::new(m20261125_000002_ledger::Migration),
            Box::new(m20261125_000003_dispatch::Migration),
            Box::new(m20261125_000101_task_customers::Migration),
            Box::new(m20261125_000201_history_indexes::Migration),
        ]
    }
}
