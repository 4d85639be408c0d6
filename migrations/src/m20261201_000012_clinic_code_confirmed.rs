//! A clinic's 医療機関コード is confirmed when a result file carrying it arrives from an agent enrolled
//! for the clinic (`code_confirmed_at`). Registering a code does not prove that the group runs that
//! clinic, and two groups may register the same code; until a terminal's own result file confirms it,
//! the clinic shows 未確認 to its group, and operators see codes registered by more than one group in
//! `onshi_clinic_codes_shared` (a count only: the function returns no row of any tenant).
//!
//! Clinics that already received results are confirmed as of this migration.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseBackend};

use crate::APP_ROLE;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261201_000012_clinic_code_confirmed"
    }
}

#[derive(DeriveIden)]
enum Clinics {
    Table,
    CodeConfirmedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Clinics::Table)
                    .add_column(ColumnDef::new(Clinics::CodeConfirmedAt).timestamp_with_time_zone().null())
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        db.execute_unprepared(
            "UPDATE clinics SET code_confirmed_at = created_at \
             WHERE EXISTS (SELECT 1 FROM raw_events r WHERE r.tenant_id = clinics.tenant_id AND r.clinic_id = clinics.id)",
        )
        .await?;
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            db.execute_unprepared(
                "CREATE OR REPLACE FUNCTION onshi_clinic_codes_shared() RETURNS bigint LANGUAGE sql STABLE \
                 SECURITY DEFINER SET search_path = public AS $$ \
                   SELECT count(*) FROM (SELECT institution_code FROM clinics GROUP BY institution_code \
                                         HAVING count(DISTINCT tenant_id) > 1) shared $$",
            )
            .await?;
            db.execute_unprepared("REVOKE ALL ON FUNCTION onshi_clinic_codes_shared() FROM PUBLIC").await?;
            db.execute_unprepared(&format!("GRANT EXECUTE ON FUNCTION onshi_clinic_codes_shared() TO {APP_ROLE}"))
                .await?;
        }
        Ok(())
    }
}
