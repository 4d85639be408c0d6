//! One result, one event, per clinic: the raw-event key becomes (tenant, clinic, event, occurred_at)
//! instead of (tenant, device, event, occurred_at). Event ids come from the result's content, so a second
//! agent on the same terminal (re-installed, re-enrolled) that reads the same files again sends the same
//! ids, and they must be recognised as resends rather than stored a second time.
//!
//! Rows that the old key let in twice (the same event from two devices of one clinic) are reduced to the
//! first one received before the new key is built. Their visits had counted the confirmation twice; run
//! `onshi rollups rebuild` after this migration where that happened (the migration logs how many rows it
//! removed). PostgreSQL changes the partitioned table's primary key in place (partitions follow); SQLite,
//! which cannot change a primary key, rebuilds the table.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseBackend};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261201_000011_clinic_dedup"
    }
}

#[derive(DeriveIden)]
enum RawEventsNew {
    Table,
}

#[derive(DeriveIden)]
enum RawEvents {
    TenantId,
    DeviceId,
    EventId,
    ClinicId,
    BatchId,
    Kind,
    OccurredAt,
    ReceivedAt,
    ContentHash,
    Payload,
}

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
}

/// After `raw_events_new` exists with the new key: copy (the first of each duplicate wins), swap.
const SQLITE_SWAP: &str = "
INSERT OR IGNORE INTO raw_events_new
    SELECT tenant_id, device_id, event_id, clinic_id, batch_id, kind, occurred_at, received_at, content_hash, payload
    FROM raw_events ORDER BY received_at, device_id;
DROP TABLE raw_events;
ALTER TABLE raw_events_new RENAME TO raw_events;
CREATE INDEX raw_events_tenant_clinic_time ON raw_events (tenant_id, clinic_id, occurred_at);
";

/// The table as the foundation migration created it (same column types), with the new key.
fn sqlite_table() -> TableCreateStatement {
    Table::create()
        .table(RawEventsNew::Table)
        .col(ColumnDef::new(RawEvents::TenantId).uuid().not_null())
        .col(ColumnDef::new(RawEvents::DeviceId).uuid().not_null())
        .col(ColumnDef::new(RawEvents::EventId).uuid().not_null())
        .col(ColumnDef::new(RawEvents::ClinicId).uuid().not_null())
        .col(ColumnDef::new(RawEvents::BatchId).uuid().not_null())
        .col(ColumnDef::new(RawEvents::Kind).string_len(32).not_null())
        .col(ColumnDef::new(RawEvents::OccurredAt).timestamp_with_time_zone().not_null())
        .col(ColumnDef::new(RawEvents::ReceivedAt).timestamp_with_time_zone().not_null())
        .col(ColumnDef::new(RawEvents::ContentHash).string_len(64).not_null())
        .col(ColumnDef::new(RawEvents::Payload).json().not_null())
        .primary_key(
            Index::create()
                .col(RawEvents::TenantId)
                .col(RawEvents::ClinicId)
                .col(RawEvents::EventId)
                .col(RawEvents::OccurredAt),
        )
        .foreign_key(
            ForeignKey::create()
                .from(RawEventsNew::Table, RawEvents::TenantId)
                .to(Tenants::Table, Tenants::Id)
                .on_delete(ForeignKeyAction::Restrict),
        )
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let removed = match manager.get_database_backend() {
            DatabaseBackend::Postgres => {
                let removed = db
                    .execute_unprepared(
                        "DELETE FROM raw_events a USING raw_events b \
                         WHERE a.tenant_id = b.tenant_id AND a.clinic_id = b.clinic_id \
                           AND a.event_id = b.event_id AND a.occurred_at = b.occurred_at \
                           AND (a.received_at, a.device_id) > (b.received_at, b.device_id)",
                    )
                    .await?
                    .rows_affected();
                db.execute_unprepared("ALTER TABLE raw_events DROP CONSTRAINT raw_events_pkey").await?;
                db.execute_unprepared(
                    "ALTER TABLE raw_events ADD PRIMARY KEY (tenant_id, clinic_id, event_id, occurred_at)",
                )
                .await?;
                removed
            }
            _ => {
                let before = count(db).await?;
                manager.create_table(sqlite_table()).await?;
                db.execute_unprepared(SQLITE_SWAP).await?;
                before.saturating_sub(count(db).await?)
            }
        };
        if removed > 0 {
            println!(
                "m20261201_000011_clinic_dedup: removed {removed} raw event(s) stored twice by two devices of one \
                 clinic; run `onshi rollups rebuild` to correct the visits they counted"
            );
        }
        Ok(())
    }
}

async fn count(db: &SchemaManagerConnection<'_>) -> Result<u64, DbErr> {
    let row = db
        .query_one_raw(sea_orm_migration::sea_orm::Statement::from_string(
            DatabaseBackend::Sqlite,
            "SELECT count(*) AS n FROM raw_events",
        ))
        .await?;
    Ok(row.map(|r| r.try_get::<i64>("", "n")).transpose()?.map_or(0, |n: i64| n.unsigned_abs()))
}
