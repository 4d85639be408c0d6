//! Alerts that know opening hours (onshi_domain::device_alert): each clinic's 診療時間 and how many
//! minutes of them a fault must last before the managers are told, and one row per agent and fault kind
//! from when the fault is first seen until it is over (`raised_at` once the managers were told). A partial
//! unique index keeps one open row per agent and kind. Workers find the tenants to look at through a
//! SECURITY DEFINER function that returns tenant ids only.
//!
//! "Is it us or everyone?" (migration 19) also gets when the failures became wide: when the fifth group's
//! open `network` fault began, per prefecture (a time to the minute, never one group's own).

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000020_device_alerts"
    }
}

#[derive(DeriveIden)]
enum DeviceAlerts {
    Table,
    Id,
    TenantId,
    ClinicId,
    DeviceId,
    Kind,
    Since,
    RaisedAt,
    ResolvedAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Clinics {
    Table,
    OpeningHours,
    AlertAfterMinutes,
}

/// Tenants with an agent in trouble now (silent past the offline limit, reader or line failing, a file
/// quarantined in the last hour) or with a fault still open.
const TENANTS: &str = "CREATE OR REPLACE FUNCTION onshi_alert_tenants(p_offline_secs integer) \
    RETURNS SETOF uuid LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$ \
      SELECT tenant_id FROM devices WHERE status = 'active' AND last_seen_at IS NOT NULL \
        AND (last_seen_at < now() - make_interval(secs => p_offline_secs) \
          OR last_heartbeat->>'reader_ok' = 'false' OR last_heartbeat->>'network_ok' = 'false' \
          OR (last_heartbeat->'last_quarantine'->>'at')::timestamptz >= now() - interval '1 hour') \
      UNION SELECT tenant_id FROM device_alerts WHERE resolved_at IS NULL $$";

/// Migration 19's counts, with when the failures became wide: the time the fifth group's line fault began
/// (`p_min_groups`, faults of the last 24 hours, to the minute), and only where that many groups fail. One
/// agent broken for days cannot set it, and no group's own time is returned.
const NETWORK_FAILURES: &str = "CREATE FUNCTION onshi_network_failures(p_window_secs integer, p_min_groups integer) \
    RETURNS TABLE (prefecture integer, groups_failing bigint, agents_failing bigint, agents_reporting bigint, \
                   failing_since timestamptz) \
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$ \
      WITH agents AS ( \
        SELECT substr(c.institution_code, 1, 2)::integer AS prefecture, d.tenant_id, d.id, \
               coalesce(d.last_heartbeat->>'network_ok' = 'false', false) AS failing \
        FROM devices d JOIN clinics c ON c.id = d.clinic_id AND c.tenant_id = d.tenant_id \
        WHERE d.status = 'active' AND d.last_heartbeat IS NOT NULL \
          AND d.last_seen_at >= now() - make_interval(secs => p_window_secs)), \
      group_since AS ( \
        SELECT a.prefecture, a.tenant_id, min(f.since) AS since \
        FROM agents a JOIN device_alerts f ON f.device_id = a.id AND f.kind = 'network' \
          AND f.resolved_at IS NULL AND f.since >= now() - interval '24 hours' \
        WHERE a.failing GROUP BY 1, 2), \
      starts AS ( \
        SELECT prefecture, (array_agg(since ORDER BY since))[p_min_groups] AS since \
        FROM group_since GROUP BY 1) \
      SELECT a.prefecture, count(DISTINCT a.tenant_id) FILTER (WHERE a.failing), \
             count(*) FILTER (WHERE a.failing), count(*), date_trunc('minute', s.since) \
      FROM agents a LEFT JOIN starts s ON s.prefecture = a.prefecture \
      GROUP BY a.prefecture, s.since $$";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(DeviceAlerts::Table)
                    .col(ColumnDef::new(DeviceAlerts::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(DeviceAlerts::TenantId).uuid().not_null())
                    .col(ColumnDef::new(DeviceAlerts::ClinicId).uuid().not_null())
                    .col(ColumnDef::new(DeviceAlerts::DeviceId).uuid().not_null())
                    .col(ColumnDef::new(DeviceAlerts::Kind).string_len(16).not_null())
                    .col(ColumnDef::new(DeviceAlerts::Since).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(DeviceAlerts::RaisedAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(DeviceAlerts::ResolvedAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(DeviceAlerts::CreatedAt).timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("device_alerts_log")
                    .table(DeviceAlerts::Table)
                    .col(DeviceAlerts::TenantId)
                    .col(DeviceAlerts::Since)
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        // Partial indexes are not in sea-query's builder; both databases take this statement as written.
        db.execute_unprepared(
            "CREATE UNIQUE INDEX device_alerts_open ON device_alerts (device_id, kind) WHERE resolved_at IS NULL",
        )
        .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Clinics::Table)
                    .add_column(ColumnDef::new(Clinics::OpeningHours).json().null())
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Clinics::Table)
                    .add_column(ColumnDef::new(Clinics::AlertAfterMinutes).integer().null())
                    .to_owned(),
            )
            .await?;
        crate::secure_tenant_tables(manager, &["device_alerts"]).await?;
        if manager.get_database_backend() == sea_orm_migration::sea_orm::DatabaseBackend::Postgres {
            db.execute_unprepared(TENANTS).await?;
            db.execute_unprepared("DROP FUNCTION IF EXISTS onshi_network_failures(integer)").await?;
            db.execute_unprepared(NETWORK_FAILURES).await?;
            db.execute_unprepared("REVOKE ALL ON FUNCTION onshi_network_failures(integer, integer) FROM PUBLIC")
                .await?;
            db.execute_unprepared(&format!(
                "GRANT EXECUTE ON FUNCTION onshi_network_failures(integer, integer) TO {}",
                crate::APP_ROLE
            ))
            .await?;
            db.execute_unprepared("REVOKE ALL ON FUNCTION onshi_alert_tenants(integer) FROM PUBLIC").await?;
            db.execute_unprepared(&format!(
                "GRANT EXECUTE ON FUNCTION onshi_alert_tenants(integer) TO {}",
                crate::APP_ROLE
            ))
            .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == sea_orm_migration::sea_orm::DatabaseBackend::Postgres {
            let db = manager.get_connection();
            db.execute_unprepared("DROP FUNCTION IF EXISTS onshi_alert_tenants(integer)").await?;
            // Back to migration 19's counts, which do not read device_alerts.
            db.execute_unprepared("DROP FUNCTION IF EXISTS onshi_network_failures(integer, integer)").await?;
            crate::m20261202_000019_outage_signal::Migration.up(manager).await?;
        }
        for column in [Clinics::AlertAfterMinutes, Clinics::OpeningHours] {
            manager.alter_table(Table::alter().table(Clinics::Table).drop_column(column).to_owned()).await?;
        }
        manager.drop_table(Table::drop().table(DeviceAlerts::Table).to_owned()).await?;
        Ok(())
    }
}
