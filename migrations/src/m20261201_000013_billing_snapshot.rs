//! A closed billing month keeps what it was closed with: every line (the visit's facts, the clerk's
//! correction, the addons and points decided) and the totals, as JSON with its SHA-256. Later visits,
//! 届出 or 利用率 changes and rule-data changes no longer alter it; reopening (audited, with a reason)
//! removes the close and its snapshot. Months closed before this migration have no snapshot and are
//! recomputed as before until reopened and closed again.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261201_000013_billing_snapshot"
    }
}

#[derive(DeriveIden)]
enum BillingMonths {
    Table,
    Snapshot,
    SnapshotSha256,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(BillingMonths::Table)
                    .add_column(ColumnDef::new(BillingMonths::Snapshot).text().null())
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(BillingMonths::Table)
                    .add_column(ColumnDef::new(BillingMonths::SnapshotSha256).string_len(64).null())
                    .to_owned(),
            )
            .await
    }
}
