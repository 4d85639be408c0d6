//! Per clinic and month, the estimate's numerator and denominator as counters (`monthly_usage`), so the
//! usage dashboard reads one row per clinic-month instead of counting `monthly_patients`. The worker
//! increments them when a patient is first seen in a month and when a patient's month turns マイナ保険証.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseBackend};

use crate::APP_ROLE;

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
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            let db = manager.get_connection();
            let table = "monthly_usage";
            db.execute_unprepared(&format!("GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {APP_ROLE}")).await?;
            db.execute_unprepared(&format!("ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")).await?;
            db.execute_unprepared(&format!("ALTER TABLE {table} FORCE ROW LEVEL SECURITY")).await?;
            db.execute_unprepared(&format!(
                "CREATE POLICY tenant_isolation ON {table} USING (tenant_id = onshi_current_tenant()) \
                 WITH CHECK (tenant_id = onshi_current_tenant())"
            ))
            .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(MonthlyUsage::Table).to_owned()).await?;
        Ok(())
    }
}
