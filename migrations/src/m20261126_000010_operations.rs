//! Operations: the large tables partitioned by month (PostgreSQL), the retention setting per tenant, trace
//! context on embedded queue messages, and the aggregate the metrics endpoint reads.
//!
//! `raw_events` is partitioned by the JST month of `occurred_at` and `visits` by `visit_date`. A partitioned
//! table's unique keys must contain the partition key, so the raw-event key becomes (tenant, device,
//! event, occurred_at) and the visit key (tenant, clinic, visit_key, visit_date). Neither changes what is
//! unique: an event's `occurred_at` is part of its content (a resend with another time is refused as a
//! conflict by the API), and a visit key already contains its date. Each table also has a DEFAULT
//! partition, so a row for a month without its partition is stored rather than refused; `onshi partitions
//! ensure` moves such rows into their month when it creates it. SQLite keeps plain tables.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseBackend};

use crate::APP_ROLE;
use crate::partitions::{self, PARTITIONED};

pub struct Migration;

/// The indexes each partitioned table had when this migration ran, as (table, name, columns, unique). They
/// live here rather than in `partitions`, because later migrations change the indexes (the visits key is
/// reordered in m20261207_000025) and this migration must keep doing what it did. New partitions take
/// their indexes from the parent's when attached, so nothing else reads this list.
const INDEXES: &[(&str, &str, &str, bool)] = &[
    ("raw_events", "raw_events_tenant_clinic_time", "tenant_id, clinic_id, occurred_at", false),
    ("visits", "visits_tenant_clinic_key", "tenant_id, clinic_id, visit_key, visit_date", true),
    ("visits", "visits_tenant_clinic_date", "tenant_id, clinic_id, visit_date", false),
];

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261126_000010_operations"
    }
}

#[derive(DeriveIden)]
enum QueueMessages {
    Table,
    Traceparent,
}

#[derive(DeriveIden)]
enum Tenants {
    Table,
    RetentionBasis,
}

#[derive(DeriveIden)]
enum RawEvents {
    Table,
    TenantId,
    DeviceId,
    EventId,
    OccurredAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(QueueMessages::Table)
                    .add_column(ColumnDef::new(QueueMessages::Traceparent).string_len(64).null())
                    .to_owned(),
            )
            .await?;
        // "medical_record": visit logs are kept as part of the 診療録 (5 years); "billing": as records of
        // 療養の給付 (3 years). The conservative one is the default until the tenant says otherwise.
        manager
            .alter_table(
                Table::alter()
                    .table(Tenants::Table)
                    .add_column(
                        ColumnDef::new(Tenants::RetentionBasis).string_len(16).not_null().default("medical_record"),
                    )
                    .to_owned(),
            )
            .await?;

        if manager.get_database_backend() != DatabaseBackend::Postgres {
            // The raw-event insert names its conflict target, which must match a unique index.
            manager
                .create_index(
                    Index::create()
                        .name("raw_events_dedup")
                        .table(RawEvents::Table)
                        .col(RawEvents::TenantId)
                        .col(RawEvents::DeviceId)
                        .col(RawEvents::EventId)
                        .col(RawEvents::OccurredAt)
                        .unique()
                        .to_owned(),
                )
                .await?;
            return Ok(());
        }

        let db = manager.get_connection();
        for table in PARTITIONED {
            let t = table.name;
            let old = format!("{t}_unpartitioned");
            db.execute_unprepared(&format!("ALTER TABLE {t} RENAME TO {old}")).await?;
            db.execute_unprepared(&format!("ALTER TABLE {old} RENAME CONSTRAINT {t}_pkey TO {old}_pkey")).await?;
            for (_, index, _, _) in INDEXES.iter().filter(|i| i.0 == t) {
                db.execute_unprepared(&format!("ALTER INDEX {index} RENAME TO {old}_{index}")).await?;
            }
            db.execute_unprepared(&format!(
                "CREATE TABLE {t} (LIKE {old} INCLUDING DEFAULTS INCLUDING CONSTRAINTS) PARTITION BY RANGE ({})",
                table.key
            ))
            .await?;
            db.execute_unprepared(&format!("ALTER TABLE {t} ADD PRIMARY KEY ({})", table.primary_key)).await?;
            for (_, index, columns, unique) in INDEXES.iter().filter(|i| i.0 == t) {
                let unique = if *unique { "UNIQUE " } else { "" };
                db.execute_unprepared(&format!("CREATE {unique}INDEX {index} ON {t} ({columns})")).await?;
            }
            for fk in table.foreign_keys {
                db.execute_unprepared(&format!("ALTER TABLE {t} ADD FOREIGN KEY {fk} ON DELETE RESTRICT")).await?;
            }
            db.execute_unprepared(&format!("CREATE TABLE {t}_default PARTITION OF {t} DEFAULT")).await?;
            partitions::secure(db, &format!("{t}_default")).await?;
        }
        // Months from the start of オンライン資格確認 claims to a year ahead, then the old rows move in.
        partitions::ensure(db, partitions::FIRST_MONTH, partitions::months_from_now(12)).await?;
        for table in PARTITIONED {
            let t = table.name;
            db.execute_unprepared(&format!("INSERT INTO {t} SELECT * FROM {t}_unpartitioned")).await?;
            db.execute_unprepared(&format!("DROP TABLE {t}_unpartitioned")).await?;
        }
        // Privileges and policies belong to the parents: queries through them are checked against them.
        // The partitions get no grant (`partitions::secure`), so the application cannot read one directly
        // around the policy.
        crate::secure_tenant_tables(manager, &PARTITIONED.iter().map(|t| t.name).collect::<Vec<_>>()).await?;

        // Agents by recent contact, across tenants, for /metrics. Counts only: the function returns no row
        // of any tenant. SECURITY DEFINER runs it as the schema owner, past the tenant policy.
        db.execute_unprepared(
            "CREATE OR REPLACE FUNCTION onshi_agent_counts(silent_after_secs integer) \
             RETURNS TABLE (reporting bigint, silent bigint) LANGUAGE sql STABLE SECURITY DEFINER \
             SET search_path = public AS $$ \
               SELECT count(*) FILTER (WHERE last_seen_at >= now() - make_interval(secs => silent_after_secs)), \
                      count(*) FILTER (WHERE last_seen_at IS NULL \
                                          OR last_seen_at < now() - make_interval(secs => silent_after_secs)) \
               FROM devices WHERE status = 'active' $$",
        )
        .await?;
        db.execute_unprepared("REVOKE ALL ON FUNCTION onshi_agent_counts(integer) FROM PUBLIC").await?;
        db.execute_unprepared(&format!("GRANT EXECUTE ON FUNCTION onshi_agent_counts(integer) TO {APP_ROLE}")).await?;
        Ok(())
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        // Un-partitioning months of data is a restore from backup, not a migration step.
        Err(DbErr::Migration("m20261126_000010_operations cannot be reverted; restore a backup instead".into()))
    }
}
