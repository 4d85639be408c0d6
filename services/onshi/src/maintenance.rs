//! `onshi maintain`: the periodic database chores, run by a CronJob (or by hand) with the schema owner's
//! connection (`database_migration_url`), never by the request path:
//! 1. create the monthly partitions for the months ahead (PostgreSQL);
//! 2. remove visit records past each tenant's legal floor, audited per tenant (see onshi_store::Purge);
//!    e-mail that could not be sent goes after `FAILED_MAIL_KEEP_DAYS` (not audited: not a record);
//! 3. drop monthly partitions older than the shortest floor once the purge has emptied them;
//! 4. anchor the audit chains' heads in the object store (`crate::anchor`), after the purge's entries.
//!
//! Every step is idempotent, so a failed run is simply run again.

use onshi_config::Config;
use onshi_store::{Purge, Store};
use secrecy::ExposeSecret;
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct MaintenanceReport {
    pub partitions_created: Vec<String>,
    pub purges: Vec<Purge>,
    pub partitions_dropped: Vec<String>,
    /// Audit chains whose head was anchored.
    pub audit_anchored: usize,
}

/// Runs the chores as of today (JST). `months_ahead` partitions are kept ready beyond the current month.
pub async fn maintain(
    config: &Config,
    months_ahead: u32,
    dry_run: bool,
) -> Result<MaintenanceReport, Box<dyn std::error::Error>> {
    let store = Store::connect(config.effective_migration_url().expose_secret(), 2).await?;
    let today = onshi_domain::jst::date_of(time::OffsetDateTime::now_utc());
    let mut report = run(&store, today, months_ahead, dry_run).await?;
    if !dry_run {
        let objects = crate::startup::object_store(config).await?;
        let key = crate::startup::anchor_key(config);
        report.audit_anchored = crate::anchor::write(&store, &objects, &key, None).await?.map_or(0, |h| h.len());
    }
    Ok(report)
}

pub async fn run(
    store: &Store,
    today: time::Date,
    months_ahead: u32,
    dry_run: bool,
) -> Result<MaintenanceReport, Box<dyn std::error::Error>> {
    use onshi_migrations::partitions;
    let postgres = store.backend() == sea_orm::DatabaseBackend::Postgres;
    let db = store.connection();
    let partitions_created = if postgres && !dry_run {
        let current = partitions::month_of_date(today);
        partitions::ensure(db, current, partitions::add_months(current, months_ahead)).await?
    } else {
        Vec::new()
    };
    let purges = store.purge_expired(today, dry_run).await?;
    for purge in &purges {
        tracing::info!(
            tenant = %purge.tenant,
            basis = purge.basis,
            keep_from = %purge.keep_from,
            visits = purge.visits,
            raw_events = purge.raw_events,
            device_uptime = purge.device_uptime,
            device_alerts = purge.device_alerts,
            failed_mail = purge.failed_mail,
            dry_run,
            "retention"
        );
    }
    let partitions_dropped = if postgres && !dry_run {
        let floor = onshi_domain::retention::shortest_keep_from(today);
        partitions::drop_empty_before(db, partitions::month_of_date(floor)).await?
    } else {
        Vec::new()
    };
    Ok(MaintenanceReport { partitions_created, purges, partitions_dropped, audit_anchored: 0 })
}
