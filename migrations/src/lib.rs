//! Database migrations, run on PostgreSQL and SQLite alike (`onshi migrate`, and at start-up of the
//! embedded mode). Each migration is a file of its own and is never edited once released: a schema change
//! is a new migration.

pub use sea_orm_migration::prelude::*;

mod m20261125_000001_foundation;
mod m20261125_000002_enrollment;
mod m20261125_000003_accounts;
mod m20261125_000004_billing;
mod m20261125_000005_rollups;
mod m20261125_000006_monthly_usage;
mod m20261125_000007_usage_alerts;
mod m20261125_000008_device_uptime;
mod m20261125_000009_identity_check;
mod m20261126_000010_operations;
mod m20261201_000011_clinic_dedup;
mod m20261201_000012_clinic_code_confirmed;
mod m20261201_000013_billing_snapshot;
mod m20261201_000014_export_sha256;
mod m20261201_000015_recovery_codes;
mod m20261201_000016_claims;
mod m20261202_000017_scale;
mod m20261202_000018_webhooks;
mod m20261202_000019_outage_signal;
mod m20261202_000020_device_alerts;
mod m20261202_000021_expiry_radar;
mod m20261202_000022_followups;
mod m20261202_000023_daily_hours;
mod m20261203_000024_mail_outbox;
mod m20261207_000025_visit_day_key;
mod m20261207_000026_typed_rates;
pub mod partitions;

pub use m20261207_000025_visit_day_key::{VISIT_DAY_KEY, VISIT_DAY_KEY_COLUMNS};
pub use m20261207_000026_typed_rates::move_typed_rates;

pub use m20261125_000003_accounts::APP_ROLE;

/// Grants the application role DML on new tenant tables and puts them under the tenant policy
/// (PostgreSQL only; SQLite has no row-level security). Migrations after the accounts one call this for
/// each tenant table they create.
pub(crate) async fn secure_tenant_tables(manager: &SchemaManager<'_>, tables: &[&str]) -> Result<(), DbErr> {
    use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseBackend};
    if manager.get_database_backend() != DatabaseBackend::Postgres {
        return Ok(());
    }
    let db = manager.get_connection();
    for table in tables {
        db.execute_unprepared(&format!("GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {APP_ROLE}")).await?;
        tenant_policy(db, table).await?;
    }
    Ok(())
}

/// Enables and forces row-level security on `table` with the tenant policy.
pub(crate) async fn tenant_policy<C>(db: &C, table: &str) -> Result<(), DbErr>
where
    C: sea_orm_migration::sea_orm::ConnectionTrait,
{
    db.execute_unprepared(&format!("ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")).await?;
    db.execute_unprepared(&format!("ALTER TABLE {table} FORCE ROW LEVEL SECURITY")).await?;
    db.execute_unprepared(&format!(
        "CREATE POLICY tenant_isolation ON {table} USING (tenant_id = onshi_current_tenant()) \
         WITH CHECK (tenant_id = onshi_current_tenant())"
    ))
    .await?;
    Ok(())
}

/// Every table whose rows belong to one tenant. Each has row-level security enabled and forced on
/// PostgreSQL; a test compares the catalog with this list, so a new tenant table cannot be forgotten.
pub const TENANT_TABLES: &[&str] = &[
    "clinics",
    "users",
    "devices",
    "raw_events",
    "visits",
    "enrollment_codes",
    "user_logins",
    "email_tokens",
    "api_tokens",
    "audit_log",
    "clinic_billing",
    "billing_reviews",
    "billing_months",
    "billing_exports",
    "reception_hourly",
    "reception_daily",
    "monthly_patients",
    "monthly_usage",
    "usage_alerts",
    "device_uptime",
    "recovery_codes",
    "claim_files",
    "claim_receipts",
    "claim_days",
    "official_usage",
    "webhook_endpoints",
    "webhook_deliveries",
    "device_alerts",
    "radar_notices",
    "weekly_summaries",
    "followups",
    "mail_outbox",
];

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_foundation::Migration),
            Box::new(m20261125_000002_enrollment::Migration),
            Box::new(m20261125_000003_accounts::Migration),
            Box::new(m20261125_000004_billing::Migration),
            Box::new(m20261125_000005_rollups::Migration),
            Box::new(m20261125_000006_monthly_usage::Migration),
            Box::new(m20261125_000007_usage_alerts::Migration),
            Box::new(m20261125_000008_device_uptime::Migration),
            Box::new(m20261125_000009_identity_check::Migration),
            Box::new(m20261126_000010_operations::Migration),
            Box::new(m20261201_000011_clinic_dedup::Migration),
            Box::new(m20261201_000012_clinic_code_confirmed::Migration),
            Box::new(m20261201_000013_billing_snapshot::Migration),
            Box::new(m20261201_000014_export_sha256::Migration),
            Box::new(m20261201_000015_recovery_codes::Migration),
            Box::new(m20261201_000016_claims::Migration),
            Box::new(m20261202_000017_scale::Migration),
            Box::new(m20261202_000018_webhooks::Migration),
            Box::new(m20261202_000019_outage_signal::Migration),
            Box::new(m20261202_000020_device_alerts::Migration),
            Box::new(m20261202_000021_expiry_radar::Migration),
            Box::new(m20261202_000022_followups::Migration),
            Box::new(m20261202_000023_daily_hours::Migration),
            Box::new(m20261203_000024_mail_outbox::Migration),
            Box::new(m20261207_000025_visit_day_key::Migration),
            Box::new(m20261207_000026_typed_rates::Migration),
        ]
    }
}
