//! Database migrations, run on PostgreSQL and SQLite alike (`onshi migrate`, and at start-up of the
//! embedded mode). Each migration is a file of its own and is never edited once released: a schema change
//! is a new migration.

pub use sea_orm_migration::prelude::*;

mod m20261125_000001_foundation;
mod m20261125_000002_enrollment;
mod m20261125_000003_accounts;

pub use m20261125_000003_accounts::{APP_ROLE, TENANT_TABLES};

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_foundation::Migration),
            Box::new(m20261125_000002_enrollment::Migration),
            Box::new(m20261125_000003_accounts::Migration),
        ]
    }
}
