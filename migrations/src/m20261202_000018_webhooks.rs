//! Outbound webhooks: a group's endpoints and the deliveries owed to them (a transactional outbox: a
//! delivery row is written in the same transaction as the fact it announces, and the worker sends it
//! until it succeeds or its retry schedule is spent). Devices remember whether their going offline was
//! announced, so each outage is announced once and its end once.
//!
//! Workers find due work across tenants through two SECURITY DEFINER functions that return tenant ids
//! only; everything else is read and written in the tenant's scope.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000018_webhooks"
    }
}

#[derive(DeriveIden)]
enum WebhookEndpoints {
    Table,
    Id,
    TenantId,
    Url,
    Description,
    EventTypes,
    Secret,
    PreviousSecret,
    PreviousSecretUntil,
    Enabled,
    DisabledReason,
    FailingSince,
    CreatedBy,
    CreatedAt,
}

#[derive(DeriveIden)]
enum WebhookDeliveries {
    Table,
    Id,
    TenantId,
    EndpointId,
    MessageId,
    EventType,
    Payload,
    Status,
    Attempts,
    NextAttemptAt,
    LastAttemptAt,
    LastStatus,
    LastError,
    CreatedAt,
    DeliveredAt,
}

#[derive(DeriveIden)]
enum Devices {
    Table,
    OfflineAnnouncedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(WebhookEndpoints::Table)
                    .col(ColumnDef::new(WebhookEndpoints::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(WebhookEndpoints::TenantId).uuid().not_null())
                    .col(ColumnDef::new(WebhookEndpoints::Url).string_len(2048).not_null())
                    .col(ColumnDef::new(WebhookEndpoints::Description).string_len(200).not_null())
                    .col(ColumnDef::new(WebhookEndpoints::EventTypes).json().not_null())
                    .col(ColumnDef::new(WebhookEndpoints::Secret).string_len(100).not_null())
                    .col(ColumnDef::new(WebhookEndpoints::PreviousSecret).string_len(100).null())
                    .col(ColumnDef::new(WebhookEndpoints::PreviousSecretUntil).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(WebhookEndpoints::Enabled).boolean().not_null())
                    .col(ColumnDef::new(WebhookEndpoints::DisabledReason).string_len(300).null())
                    .col(ColumnDef::new(WebhookEndpoints::FailingSince).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(WebhookEndpoints::CreatedBy).uuid().null())
                    .col(ColumnDef::new(WebhookEndpoints::CreatedAt).timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(WebhookDeliveries::Table)
                    .col(ColumnDef::new(WebhookDeliveries::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(WebhookDeliveries::TenantId).uuid().not_null())
                    .col(ColumnDef::new(WebhookDeliveries::EndpointId).uuid().not_null())
                    .col(ColumnDef::new(WebhookDeliveries::MessageId).uuid().not_null())
                    .col(ColumnDef::new(WebhookDeliveries::EventType).string_len(64).not_null())
                    .col(ColumnDef::new(WebhookDeliveries::Payload).text().not_null())
                    .col(ColumnDef::new(WebhookDeliveries::Status).string_len(16).not_null())
                    .col(ColumnDef::new(WebhookDeliveries::Attempts).integer().not_null())
                    .col(ColumnDef::new(WebhookDeliveries::NextAttemptAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(WebhookDeliveries::LastAttemptAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(WebhookDeliveries::LastStatus).integer().null())
                    .col(ColumnDef::new(WebhookDeliveries::LastError).string_len(300).null())
                    .col(ColumnDef::new(WebhookDeliveries::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(WebhookDeliveries::DeliveredAt).timestamp_with_time_zone().null())
                    .to_owned(),
            )
            .await?;
        for (name, cols) in [
            ("webhook_deliveries_due", vec![WebhookDeliveries::Status, WebhookDeliveries::NextAttemptAt]),
            ("webhook_deliveries_log", vec![WebhookDeliveries::TenantId, WebhookDeliveries::CreatedAt]),
        ] {
            let mut index = Index::create();
            index.name(name).table(WebhookDeliveries::Table);
            for c in cols {
                index.col(c);
            }
            manager.create_index(index.to_owned()).await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Devices::Table)
                    .add_column(ColumnDef::new(Devices::OfflineAnnouncedAt).timestamp_with_time_zone().null())
                    .to_owned(),
            )
            .await?;
        crate::secure_tenant_tables(manager, &["webhook_endpoints", "webhook_deliveries"]).await?;
        if manager.get_database_backend() == sea_orm_migration::sea_orm::DatabaseBackend::Postgres {
            let db = manager.get_connection();
            for (signature, body) in [
                (
                    "onshi_webhook_tenants_due()",
                    "RETURNS SETOF uuid LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$ \
                       SELECT DISTINCT tenant_id FROM webhook_deliveries \
                       WHERE status = 'pending' AND next_attempt_at <= now() $$",
                ),
                (
                    "onshi_device_transition_tenants(p_after_secs integer)",
                    "RETURNS SETOF uuid LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$ \
                       SELECT DISTINCT tenant_id FROM devices WHERE status = 'active' AND last_seen_at IS NOT NULL \
                       AND ((offline_announced_at IS NULL \
                             AND last_seen_at < now() - make_interval(secs => p_after_secs)) \
                         OR (offline_announced_at IS NOT NULL \
                             AND last_seen_at >= now() - make_interval(secs => p_after_secs))) $$",
                ),
            ] {
                db.execute_unprepared(&format!("CREATE OR REPLACE FUNCTION {signature} {body}")).await?;
                let name = signature.split('(').next().unwrap_or(signature);
                let args = if name == "onshi_webhook_tenants_due" { "()" } else { "(integer)" };
                db.execute_unprepared(&format!("REVOKE ALL ON FUNCTION {name}{args} FROM PUBLIC")).await?;
                db.execute_unprepared(&format!("GRANT EXECUTE ON FUNCTION {name}{args} TO {}", crate::APP_ROLE))
                    .await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == sea_orm_migration::sea_orm::DatabaseBackend::Postgres {
            let db = manager.get_connection();
            db.execute_unprepared("DROP FUNCTION IF EXISTS onshi_webhook_tenants_due()").await?;
            db.execute_unprepared("DROP FUNCTION IF EXISTS onshi_device_transition_tenants(integer)").await?;
        }
        manager
            .alter_table(Table::alter().table(Devices::Table).drop_column(Devices::OfflineAnnouncedAt).to_owned())
            .await?;
        for table in ["webhook_deliveries", "webhook_endpoints"] {
            manager.drop_table(Table::drop().table(Alias::new(table)).to_owned()).await?;
        }
        Ok(())
    }
}
