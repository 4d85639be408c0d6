//! Per clinic and month, the estimate's numerator and denominator as counters (`monthly_usage`), so the
//! usage dashboard reads one row per clinic-month instead of counting `monthly_patients`. The worker
//! increments them when a patient is first seen in a month and when a patient's month turns マイナ保険証.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261125_000006_monthly_usage"
    }
}

#[derive(DeriveIden)]
enum MonthlyUsage {
    Table,
    TenantId,
    Month,
    ClinicId,
    Patients,
    MynaPatients,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(MonthlyUsage::Table)
                    .col(ColumnDef::new(MonthlyUsage::TenantId).uuid().not_null())
                    .col(ColumnDef::new(MonthlyUsage::Month).string_len(7).not_null())
                    .col(ColumnDef::new(MonthlyUsage::ClinicId).uuid().not_null())
                    .col(ColumnDef::new(MonthlyUsage::Patients).integer().not_null())
                    .col(ColumnDef::new(MonthlyUsage::MynaPatients).integer().not_null())
                    .primary_key(
                        Index::create()
                            .col(MonthlyUsage::TenantId)
                            .col(MonthlyUsage::Month)
                            .col(MonthlyUsage::ClinicId),
                    )
                    .to_owned(),
            )
            .await?;
        crate::secure_tenant_tables(manager, &["monthly_usage"]).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(MonthlyUsage::Table).to_owned()).await?;
        Ok(())
    }
}
