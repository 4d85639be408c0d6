//! Agent availability as intervals: each heartbeat extends the device's current interval when its state
//! (up, or degraded: reader or VPN failing) is unchanged and it follows within the offline threshold, and
//! opens a new one otherwise. Gaps between intervals are outages. A few rows per device and day instead of
//! one per heartbeat.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261125_000008_device_uptime"
    }
}

#[derive(DeriveIden)]
enum DeviceUptime {
    Table,
    TenantId,
    DeviceId,
    StartedAt,
    EndedAt,
    State,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(DeviceUptime::Table)
                    .col(ColumnDef::new(DeviceUptime::TenantId).uuid().not_null())
                    .col(ColumnDef::new(DeviceUptime::DeviceId).uuid().not_null())
                    .col(ColumnDef::new(DeviceUptime::StartedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(DeviceUptime::EndedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(DeviceUptime::State).string_len(16).not_null())
                    .primary_key(
                        Index::create()
                            .col(DeviceUptime::TenantId)
                            .col(DeviceUptime::DeviceId)
                            .col(DeviceUptime::StartedAt),
                    )
                    .to_owned(),
            )
            .await?;
        crate::secure_tenant_tables(manager, &["device_uptime"]).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(DeviceUptime::Table).to_owned()).await
    }
}
