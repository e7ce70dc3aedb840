//! Column and index shorthands the migrations share, so each table reads as a list of
//! its columns. Types are chosen to mean the same on PostgreSQL and SQLite.

use sea_orm_migration::prelude::*;

/// A required text column.
pub fn text(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column).string().not_null().to_owned()
}

/// A required 64-bit integer column (counts, sizes, Unix milliseconds).
pub fn int(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column).big_integer().not_null().to_owned()
}

/// A required floating-point column.
pub fn real(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column).double().not_null().to_owned()
}

/// An optional floating-point column.
pub fn optional_real(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column).double().null().to_owned()
}

/// Creates index `name` on `table` over `columns` (unique when asked), if missing.
pub async fn index<T: IntoIden, C: IntoIden>(
    manager: &SchemaManager<'_>,
    table: T,
    name: &str,
    columns: impl IntoIterator<Item = C>,
    unique: bool,
) -> Result<(), DbErr> {
    let mut index = Index::create().if_not_exists().name(name).table(table).to_owned();
    for column in columns {
        index.col(column);
    }
    if unique {
        index.unique();
    }
    manager.create_index(index).await
}
