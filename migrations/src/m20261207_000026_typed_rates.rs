//! The レセプト件数ベース 利用率 has one home: `official_usage`. Before that table existed, a rate typed on the
//! billing page lived in the clinic's billing settings (`clinic_billing.settings -> usage_rates`), and
//! saving the settings later copied the official figures back into that JSON. Every reader had to merge
//! the two, and a figure corrected in the table could still be read from its stale copy.
//!
//! Here each typed rate becomes an official figure without a notice (`notified_on` NULL, no counts, entered
//! when the settings were last saved, by nobody on record), unless the month already has an official
//! figure, which wins as it did when merged; then the key is removed from the settings. Workers of the
//! previous release read `official_usage` too, and their settings writes only copy figures the table
//! already holds, so the rolling upgrade loses nothing (docs/operations.md).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseBackend};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261207_000026_typed_rates"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        move_typed_rates(manager.get_connection()).await
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        // The figures stay in `official_usage`, which the previous release reads as well.
        Ok(())
    }
}

/// Moves every typed rate into `official_usage` and drops the settings' `usage_rates` (the migration's
/// work; public so a test can run it on rows written the old way). Running it again changes nothing.
pub async fn move_typed_rates<C: ConnectionTrait>(db: &C) -> Result<(), DbErr> {
    // The same two statements in each database's JSON functions. A month key that is not `YYYY-MM` or a
    // rate that is not a number between 0 and 1 was never written by the application: left out (and
    // dropped with the key) rather than failing the upgrade.
    let (insert, strip) = match db.get_database_backend() {
        DatabaseBackend::Postgres => (
            // CASE rather than WHERE: PostgreSQL may call a function or cast before filtering.
            "INSERT INTO official_usage (tenant_id, clinic_id, month, rate, entered_at) \
                 SELECT b.tenant_id, b.clinic_id, r.key, r.rate, b.updated_at FROM clinic_billing b, \
                 LATERAL (SELECT key, CASE WHEN jsonb_typeof(value) = 'number' THEN (value #>> '{}')::float8 END \
                 AS rate FROM jsonb_each(CASE WHEN jsonb_typeof(b.settings::jsonb -> 'usage_rates') = 'object' \
                 THEN b.settings::jsonb -> 'usage_rates' ELSE '{}'::jsonb END)) r \
                 WHERE r.key ~ '^[0-9]{4}-[0-9]{2}$' AND r.rate BETWEEN 0 AND 1 \
                 ON CONFLICT (tenant_id, clinic_id, month) DO NOTHING",
            "UPDATE clinic_billing SET settings = (settings::jsonb - 'usage_rates')::json \
                 WHERE settings::jsonb ? 'usage_rates'",
        ),
        _ => (
            "INSERT INTO official_usage (tenant_id, clinic_id, month, rate, entered_at) \
                 SELECT b.tenant_id, b.clinic_id, r.key, r.value, b.updated_at \
                 FROM clinic_billing b, json_each(b.settings, '$.usage_rates') r \
                 WHERE json_type(b.settings, '$.usage_rates') = 'object' \
                 AND r.key GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]' AND r.type IN ('real', 'integer') \
                 AND r.value BETWEEN 0 AND 1 \
                 ON CONFLICT (tenant_id, clinic_id, month) DO NOTHING",
            "UPDATE clinic_billing SET settings = json_remove(settings, '$.usage_rates') \
                 WHERE json_type(settings, '$.usage_rates') IS NOT NULL",
        ),
    };
    db.execute_unprepared(insert).await?;
    db.execute_unprepared(strip).await?;
    Ok(())
}
