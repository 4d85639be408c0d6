//! The expiry radar (onshi_domain::radar): the 資格確認端末's certificate expiry and operating system per
//! clinic, the warnings e-mailed (one per clinic, item and stage: `radar_notices`), and the weekly summary
//! sent per group and ISO week (`weekly_summaries`). Workers list the groups through a SECURITY DEFINER
//! function that returns tenant ids only.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000021_expiry_radar"
    }
}

#[derive(DeriveIden)]
enum Clinics {
    Table,
    TerminalCertExpires,
    TerminalOs,
}

#[derive(DeriveIden)]
enum RadarNotices {
    Table,
    TenantId,
    ClinicId,
    Key,
    SentAt,
}

#[derive(DeriveIden)]
enum WeeklySummaries {
    Table,
    TenantId,
    Week,
    SentAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Clinics::Table)
                    .add_column(ColumnDef::new(Clinics::TerminalCertExpires).date().null())
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Clinics::Table)
                    .add_column(ColumnDef::new(Clinics::TerminalOs).string_len(40).null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RadarNotices::Table)
                    .col(ColumnDef::new(RadarNotices::TenantId).uuid().not_null())
                    .col(ColumnDef::new(RadarNotices::ClinicId).uuid().not_null())
                    .col(ColumnDef::new(RadarNotices::Key).string_len(120).not_null())
                    .col(ColumnDef::new(RadarNotices::SentAt).timestamp_with_time_zone().not_null())
                    .primary_key(Index::create().col(RadarNotices::ClinicId).col(RadarNotices::Key))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(WeeklySummaries::Table)
                    .col(ColumnDef::new(WeeklySummaries::TenantId).uuid().not_null())
                    .col(ColumnDef::new(WeeklySummaries::Week).string_len(8).not_null())
                    .col(ColumnDef::new(WeeklySummaries::SentAt).timestamp_with_time_zone().not_null())
                    .primary_key(Index::create().col(WeeklySummaries::TenantId).col(WeeklySummaries::Week))
                    .to_owned(),
            )
            .await?;
        crate::secure_tenant_tables(manager, &["radar_notices", "weekly_summaries"]).await?;
        if manager.get_database_backend() == sea_orm_migration::sea_orm::DatabaseBackend::Postgres {
            let db = manager.get_connection();
            db.execute_unprepared(
                "CREATE OR REPLACE FUNCTION onshi_radar_tenants() RETURNS SETOF uuid \
                 LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$ \
                   SELECT DISTINCT tenant_id FROM clinics $$",
            )
            .await?;
            db.execute_unprepared("REVOKE ALL ON FUNCTION onshi_radar_tenants() FROM PUBLIC").await?;
            db.execute_unprepared(&format!("GRANT EXECUTE ON FUNCTION onshi_radar_tenants() TO {}", crate::APP_ROLE))
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == sea_orm_migration::sea_orm::DatabaseBackend::Postgres {
            manager.get_connection().execute_unprepared("DROP FUNCTION IF EXISTS onshi_radar_tenants()").await?;
        }
        for table in ["weekly_summaries", "radar_notices"] {
            manager.drop_table(Table::drop().table(Alias::new(table)).to_owned()).await?;
        }
        for column in [Clinics::TerminalOs, Clinics::TerminalCertExpires] {
            manager.alter_table(Table::alter().table(Clinics::Table).drop_column(column).to_owned()).await?;
        }
        Ok(())
    }
}
