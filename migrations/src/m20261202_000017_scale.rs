//! For national scale (issue 16):
//! - `reception_daily`: the hourly rollup summed per JST day and method, kept by the worker in the same
//!   transaction as `reception_hourly`, so a year-long clinic page sums ~1,500 rows instead of ~30,000.
//!   Filled here from `reception_hourly`.
//! - `onshi_event_hashes(...)` (PostgreSQL): the ingest handler's look-up of resent event ids in one round
//!   trip instead of four (begin, set the tenant, select, commit); every single reception pays for it. The
//!   function sets the tenant for its own statement's transaction, so the row-level policy applies as in
//!   any tenant transaction. It looks each id up by equality on the primary key (tenant, clinic, event id,
//!   time), one statement per id: as one join over `unnest(ids)` the planner, on a fresh month's partition
//!   whose statistics still say "empty", chose to read the clinic's whole time range instead (2.5 ms a
//!   call at 2,700 events, and growing).

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
        let postgres = manager.get_database_backend() == sea_orm_migration::sea_orm::DatabaseBackend::Postgres;
        if postgres {
            manager
                .get_connection()
                .execute_unprepared(
                    "CREATE OR REPLACE FUNCTION onshi_event_hashes(p_tenant uuid, p_clinic uuid, p_ids uuid[], \
                     p_from timestamptz, p_to timestamptz) RETURNS TABLE (event_id uuid, content_hash text) \
                     LANGUAGE plpgsql VOLATILE SECURITY INVOKER AS $$ \
                     DECLARE v_id uuid; \
                     BEGIN \
                       PERFORM set_config('app.tenant_id', p_tenant::text, true); \
                       FOREACH v_id IN ARRAY p_ids LOOP \
                         RETURN QUERY SELECT e.event_id, e.content_hash::text FROM raw_events e \
                           WHERE e.tenant_id = p_tenant AND e.clinic_id = p_clinic AND e.event_id = v_id \
                           AND e.occurred_at BETWEEN p_from AND p_to; \
                       END LOOP; \
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
        manager.drop_table(Table::drop().table(ReceptionDaily::Table).to_owned()).await?;
        Ok(())
    }
}
