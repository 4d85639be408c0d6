//! Counts for "is it us or everyone?" (onshi_domain::outage): agents heard from recently whose オン資
//! gateway / VPN probe fails, per prefecture, across all groups. A SECURITY DEFINER function returns counts
//! only, never a row of any tenant; the application role cannot read across tenants otherwise.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000019_outage_signal"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != sea_orm_migration::sea_orm::DatabaseBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE OR REPLACE FUNCTION onshi_network_failures(p_window_secs integer) \
             RETURNS TABLE (prefecture integer, groups_failing bigint, agents_failing bigint, agents_reporting bigint) \
             LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$ \
               SELECT substr(c.institution_code, 1, 2)::integer, \
                      count(DISTINCT d.tenant_id) FILTER (WHERE d.last_heartbeat->>'network_ok' = 'false'), \
                      count(*) FILTER (WHERE d.last_heartbeat->>'network_ok' = 'false'), \
                      count(*) \
               FROM devices d JOIN clinics c ON c.id = d.clinic_id AND c.tenant_id = d.tenant_id \
               WHERE d.status = 'active' AND d.last_heartbeat IS NOT NULL \
                 AND d.last_seen_at >= now() - make_interval(secs => p_window_secs) \
               GROUP BY 1 $$",
        )
        .await?;
        db.execute_unprepared("REVOKE ALL ON FUNCTION onshi_network_failures(integer) FROM PUBLIC").await?;
        db.execute_unprepared(&format!(
            "GRANT EXECUTE ON FUNCTION onshi_network_failures(integer) TO {}",
            crate::APP_ROLE
        ))
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == sea_orm_migration::sea_orm::DatabaseBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared("DROP FUNCTION IF EXISTS onshi_network_failures(integer)")
                .await?;
        }
        Ok(())
    }
}
