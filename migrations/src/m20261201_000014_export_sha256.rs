//! Every billing export keeps the SHA-256 of the file as stored, so a clerk (or an auditor) can show that a
//! closed month's export is the file it was, and that exporting it again gives the same bytes.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261201_000014_export_sha256"
    }
}

#[derive(DeriveIden)]
enum BillingExports {
    Table,
    Sha256,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(BillingExports::Table)
                    .add_column(ColumnDef::new(BillingExports::Sha256).string_len(64).null())
                    .to_owned(),
            )
            .await
    }
}
