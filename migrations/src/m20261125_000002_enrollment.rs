//! Agent enrollment: one-time codes, device secrets (stored as SHA-256, never in clear) and the per-tenant
//! key agents use to pseudonymise insurance identifiers.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261125_000002_enrollment"
    }
}

#[derive(DeriveIden)]
enum EnrollmentCodes {
    Table,
    CodeHash,
    TenantId,
    ClinicId,
    ExpiresAt,
    UsedAt,
    DeviceId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Devices {
    Table,
    SecretHash,
}

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
    PseudonymKey,
}

#[derive(DeriveIden)]
enum Clinics {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(EnrollmentCodes::Table)
                    .col(ColumnDef::new(EnrollmentCodes::CodeHash).string_len(64).not_null().primary_key())
                    .col(ColumnDef::new(EnrollmentCodes::TenantId).uuid().not_null())
                    .col(ColumnDef::new(EnrollmentCodes::ClinicId).uuid().not_null())
                    .col(ColumnDef::new(EnrollmentCodes::ExpiresAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(EnrollmentCodes::UsedAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(EnrollmentCodes::DeviceId).uuid().null())
                    .col(ColumnDef::new(EnrollmentCodes::CreatedAt).timestamp_with_time_zone().not_null())
                    .foreign_key(
                        ForeignKey::create()
                            .from(EnrollmentCodes::Table, EnrollmentCodes::TenantId)
                            .to(Tenants::Table, Tenants::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(EnrollmentCodes::Table, EnrollmentCodes::ClinicId)
                            .to(Clinics::Table, Clinics::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        // SQLite adds one column per ALTER TABLE.
        manager
            .alter_table(
                Table::alter()
                    .table(Devices::Table)
                    .add_column(ColumnDef::new(Devices::SecretHash).string_len(64).null())
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Tenants::Table)
                    .add_column(ColumnDef::new(Tenants::PseudonymKey).string_len(64).null())
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.alter_table(Table::alter().table(Tenants::Table).drop_column(Tenants::PseudonymKey).to_owned()).await?;
        manager.alter_table(Table::alter().table(Devices::Table).drop_column(Devices::SecretHash).to_owned()).await?;
        manager.drop_table(Table::drop().table(EnrollmentCodes::Table).to_owned()).await?;
        Ok(())
    }
}
