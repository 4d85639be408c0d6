//! For national scale (issue 16):
//! - `reception_daily`: the hourly rollup summed per JST day and method, kept by the worker in the same
//!   transaction as `reception_hourly`, so a year-long clinic page sums ~1,500 rows instead of ~30,000.
//!   Filled here from `reception_hourly`.
//! - `raw_events (tenant_id, clinic_id, event_id)`: the ingest handler looks resent event ids up by
//!   clinic; the primary key starts with the device, so without this each look-up scanned the clinic's
//!   rows of the time range.
//! - `onshi_event_hashes(...)` (PostgreSQL): that look-up in one round trip instead of four (begin, set
//!   the tenant, select, commit); every single reception pays for it. The function sets the tenant for
//!   its own statement's transaction, so the row-level policy applies as in any tenant transaction. Each
//!   id is looked up by equality (a lateral join): PostgreSQL 15 does not use `= ANY (array)` on the
//!   index's third column and would read all of the clinic's events of the time range instead.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::ConnectionTrait;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000017_scale"
    }
}

#[derive(DeriveIden)]
enum ReceptionDaily {
    Table,
    TenantId,
    ClinicId,
    Day,
    Method,
    Receptions,
    Myna,
    ConsentMedication,
    ConsentDiagnosis,
    ConsentCheckup,
    Invalid,
    Face,
    Pin,
    Visual,
}

const COUNTERS: &str =
    "receptions, myna, consent_medication, consent_diagnosis, consent_checkup, invalid, face, pin, visual";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use ReceptionDaily as D;
        let mut table = Table::create();
        table
            .table(D::Table)
            .col(ColumnDef::new(D::TenantId).uuid().not_null())
            .col(ColumnDef::new(D::ClinicId).uuid().not_null())
            .col(ColumnDef::new(D::Day).date().not_null())
            .col(ColumnDef::new(D::Method).string_len(32).not_null());
        for counter in [
            D::Receptions,
            D::Myna,
            D::ConsentMedication,
            D::ConsentDiagnosis,
            D::ConsentCheckup,
            D::Invalid,
            D::Face,
            D::Pin,
            D::Visual,
        ] {
            table.col(ColumnDef::new(counter).integer().not_null().default(0));
        }
        table.primary_key(Index::create().col(D::TenantId).col(D::ClinicId).col(D::Day).col(D::Method));
        manager.create_table(table.to_owned()).await?;
        let sums = COUNTERS.split(", ").map(|c| format!("SUM({c})")).collect::<Vec<_>>().join(", ");
        manager
            .get_connection()
            .execute_unprepared(&format!(
                "INSERT INTO reception_daily (tenant_id, clinic_id, day, method, {COUNTERS}) \
                 SELECT tenant_id, clinic_id, day, method, {sums} FROM reception_hourly \
                 GROUP BY tenant_id, clinic_id, day, method"
            ))
            .await?;
        crate::secure_tenant_tables(manager, &["reception_daily"]).await?;
        // Equality on the first three columns and the time range on the fourth: the planner prefers it to
        // the (tenant, clinic, time) index, which would read every event of the clinic in the range.
        let postgres = manager.get_database_backend() == sea_orm_migration::sea_orm::DatabaseBackend::Postgres;
        manager
            .get_connection()
            .execute_unprepared(if postgres {
                "CREATE INDEX IF NOT EXISTS raw_events_tenant_clinic_event ON raw_events \
                 (tenant_id, clinic_id, event_id, occurred_at) INCLUDE (content_hash)"
            } else {
                "CREATE INDEX IF NOT EXISTS raw_events_tenant_clinic_event ON raw_events \
                 (tenant_id, clinic_id, event_id, occurred_at)"
            })
            .await?;
        if postgres {
            manager
                .get_connection()
                .execute_unprepared(
                    "CREATE OR REPLACE FUNCTION onshi_event_hashes(p_tenant uuid, p_clinic uuid, p_ids uuid[], \
                     p_from timestamptz, p_to timestamptz) RETURNS TABLE (event_id uuid, content_hash text) \
                     LANGUAGE plpgsql VOLATILE SECURITY INVOKER AS $$ \
                     BEGIN \
                       PERFORM set_config('app.tenant_id', p_tenant::text, true); \
                       RETURN QUERY SELECT r.event_id, r.content_hash::text FROM unnest(p_ids) AS i(id) \
                         CROSS JOIN LATERAL (SELECT e.event_id, e.content_hash FROM raw_events e \
                           WHERE e.tenant_id = p_tenant AND e.clinic_id = p_clinic AND e.event_id = i.id \
                           AND e.occurred_at BETWEEN p_from AND p_to) AS r; \
                     END $$",
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == sea_orm_migration::sea_orm::DatabaseBackend::Postgres {
            manager.get_connection().execute_unprepared("DROP FUNCTION IF EXISTS onshi_event_hashes").await?;
        }
        manager.get_connection().execute_unprepared("DROP INDEX IF EXISTS raw_events_tenant_clinic_event").await?;
        manager.drop_table(Table::drop().table(ReceptionDaily::Table).to_owned()).await?;
        Ok(())
    }
}
