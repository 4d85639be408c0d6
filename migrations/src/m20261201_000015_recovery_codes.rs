//! One-time recovery codes for the second factor: the SHA-256 of each (see onshi_identity::recovery),
//! when it was used. A new set replaces the old one whole.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261201_000015_recovery_codes"
    }
}

#[derive(DeriveIden)]
enum RecoveryCodes {
    Table,
    TenantId,
    UserId,
    CodeHash,
    CreatedAt,
    UsedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(RecoveryCodes::Table)
                    .col(ColumnDef::new(RecoveryCodes::TenantId).uuid().not_null())
                    .col(ColumnDef::new(RecoveryCodes::UserId).uuid().not_null())
                    .col(ColumnDef::new(RecoveryCodes::CodeHash).string_len(64).not_null())
                    .col(ColumnDef::new(RecoveryCodes::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(RecoveryCodes::UsedAt).timestamp_with_time_zone().null())
                    .primary_key(
                        Index::create()
                            .col(RecoveryCodes::TenantId)
                            .col(RecoveryCodes::UserId)
                            .col(RecoveryCodes::CodeHash),
                    )
                    .to_owned(),
            )
            .await?;
        crate::secure_tenant_tables(manager, &["recovery_codes"]).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(RecoveryCodes::Table).to_owned()).await
    }
}
