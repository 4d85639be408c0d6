//! Rollups the dashboards read instead of scanning visits. The worker keeps them in the same transaction
//! that changes visits (so they are exactly as current as the visits), and `onshi rollups rebuild`
//! recomputes them from the visits.
//!
//! - `reception_hourly`: per clinic, JST date, JST hour and confirmation method: receptions, those by
//!   マイナ保険証, consents given, invalid or unconfirmed results.
//! - `monthly_patients`: per clinic and month, one row per patient seen (pseudonym), with whether any of
//!   their visits that month used マイナ保険証: the estimate's numerator and denominator as distinct patients.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261125_000005_rollups"
    }
}

#[derive(DeriveIden)]
enum ReceptionHourly {
    Table,
    TenantId,
    ClinicId,
    Day,
    Hour,
    Method,
    Receptions,
    Myna,
    ConsentMedication,
    ConsentDiagnosis,
    ConsentCheckup,
    Invalid,
}

#[derive(DeriveIden)]
enum MonthlyPatients {
    Table,
    TenantId,
    ClinicId,
    Month,
    Patient,
    Myna,
}

const TABLES: &[&str] = &["reception_hourly", "monthly_patients"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ReceptionHourly::Table)
                    .col(ColumnDef::new(ReceptionHourly::TenantId).uuid().not_null())
                    .col(ColumnDef::new(ReceptionHourly::ClinicId).uuid().not_null())
                    .col(ColumnDef::new(ReceptionHourly::Day).date().not_null())
                    .col(ColumnDef::new(ReceptionHourly::Hour).small_integer().not_null())
                    .col(ColumnDef::new(ReceptionHourly::Method).string_len(32).not_null())
                    .col(ColumnDef::new(ReceptionHourly::Receptions).integer().not_null())
                    .col(ColumnDef::new(ReceptionHourly::Myna).integer().not_null())
                    .col(ColumnDef::new(ReceptionHourly::ConsentMedication).integer().not_null())
                    .col(ColumnDef::new(ReceptionHourly::ConsentDiagnosis).integer().not_null())
                    .col(ColumnDef::new(ReceptionHourly::ConsentCheckup).integer().not_null())
                    .col(ColumnDef::new(ReceptionHourly::Invalid).integer().not_null())
                    .primary_key(
                        Index::create()
                            .col(ReceptionHourly::TenantId)
                            .col(ReceptionHourly::ClinicId)
                            .col(ReceptionHourly::Day)
                            .col(ReceptionHourly::Hour)
                            .col(ReceptionHourly::Method),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(MonthlyPatients::Table)
                    .col(ColumnDef::new(MonthlyPatients::TenantId).uuid().not_null())
                    .col(ColumnDef::new(MonthlyPatients::ClinicId).uuid().not_null())
                    .col(ColumnDef::new(MonthlyPatients::Month).string_len(7).not_null())
                    .col(ColumnDef::new(MonthlyPatients::Patient).string_len(64).not_null())
                    .col(ColumnDef::new(MonthlyPatients::Myna).boolean().not_null())
                    .primary_key(
                        Index::create()
                            .col(MonthlyPatients::TenantId)
                            .col(MonthlyPatients::ClinicId)
                            .col(MonthlyPatients::Month)
                            .col(MonthlyPatients::Patient),
                    )
                    .to_owned(),
            )
            .await?;
        crate::secure_tenant_tables(manager, TABLES).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(MonthlyPatients::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(ReceptionHourly::Table).to_owned()).await?;
        Ok(())
    }
}
