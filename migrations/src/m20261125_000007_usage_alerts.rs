//! The usage watch's memory: one row per clinic and month for which managers were warned that the
//! clinic is projected below the マイナ保険証利用率 requirement, so each warning is sent once.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261125_000007_usage_alerts"
    }
}

#[derive(DeriveIden)]
enum UsageAlerts {
    Table,
    TenantId,
    ClinicId,
    Month,
    SentAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(UsageAlerts::Table)
                    .col(ColumnDef::new(UsageAlerts::TenantId).uuid().not_null())
                    .col(ColumnDef::new(UsageAlerts::ClinicId).uuid().not_null())
                    .col(ColumnDef::new(UsageAlerts::Month).string_len(7).not_null())
                    .col(ColumnDef::new(UsageAlerts::SentAt).timestamp_with_time_zone().not_null())
                    .primary_key(
                        Index::create().col(UsageAlerts::TenantId).col(UsageAlerts::ClinicId).col(UsageAlerts::Month),
                    )
                    .to_owned(),
            )
            .await?;
        crate::secure_tenant_tables(manager, &["usage_alerts"]).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(UsageAlerts::Table).to_owned()).await
    }
}
