//! The outbox of system e-mail (usage warnings, agent alerts, radar notices, weekly summaries, disabled
//! webhook endpoints): a watch writes one row per recipient and a worker sends it, retrying on a schedule,
//! so a mail server that is down for an hour delays an alert instead of losing it. A row is deleted once
//! sent; a row whose schedule is spent stays `failed` with its last error for an operator to see.
//!
//! Workers find due mail across tenants through a SECURITY DEFINER function that returns tenant ids only.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261203_000024_mail_outbox"
    }
}

#[derive(DeriveIden)]
enum MailOutbox {
    Table,
    Id,
    TenantId,
    Topic,
    Recipient,
    Subject,
    Body,
    Status,
    Attempts,
    NextAttemptAt,
    LastError,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(MailOutbox::Table)
                    .col(ColumnDef::new(MailOutbox::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(MailOutbox::TenantId).uuid().not_null())
                    .col(ColumnDef::new(MailOutbox::Topic).string_len(64).not_null())
                    .col(ColumnDef::new(MailOutbox::Recipient).string_len(320).not_null())
                    .col(ColumnDef::new(MailOutbox::Subject).string_len(300).not_null())
                    .col(ColumnDef::new(MailOutbox::Body).text().not_null())
                    .col(ColumnDef::new(MailOutbox::Status).string_len(16).not_null())
                    .col(ColumnDef::new(MailOutbox::Attempts).integer().not_null())
                    .col(ColumnDef::new(MailOutbox::NextAttemptAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(MailOutbox::LastError).string_len(300).null())
                    .col(ColumnDef::new(MailOutbox::CreatedAt).timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("mail_outbox_due")
                    .table(MailOutbox::Table)
                    .col(MailOutbox::Status)
                    .col(MailOutbox::NextAttemptAt)
                    .to_owned(),
            )
            .await?;
        crate::secure_tenant_tables(manager, &["mail_outbox"]).await?;
        if manager.get_database_backend() == sea_orm_migration::sea_orm::DatabaseBackend::Postgres {
            let db = manager.get_connection();
            db.execute_unprepared(
                "CREATE OR REPLACE FUNCTION onshi_mail_tenants_due() RETURNS SETOF uuid \
                 LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$ \
                   SELECT DISTINCT tenant_id FROM mail_outbox WHERE status = 'pending' AND next_attempt_at <= now() $$",
            )
            .await?;
            db.execute_unprepared("REVOKE ALL ON FUNCTION onshi_mail_tenants_due() FROM PUBLIC").await?;
            db.execute_unprepared(&format!(
                "GRANT EXECUTE ON FUNCTION onshi_mail_tenants_due() TO {}",
                crate::APP_ROLE
            ))
            .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == sea_orm_migration::sea_orm::DatabaseBackend::Postgres {
            manager.get_connection().execute_unprepared("DROP FUNCTION IF EXISTS onshi_mail_tenants_due()").await?;
        }
        manager.drop_table(Table::drop().table(MailOutbox::Table).to_owned()).await?;
        Ok(())
    }
}
