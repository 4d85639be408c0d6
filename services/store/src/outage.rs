//! Counts across all groups for "is it us or everyone?" (`onshi_domain::outage`): never a row of a tenant.

use sea_orm::{ConnectionTrait, Statement};
use time::{Duration, OffsetDateTime};

use crate::{Store, StoreError};

impl Store {
    /// Agents heard from within `window_secs` and how many fail the オン資 gateway / VPN probe, per
    /// prefecture, across all groups: counts only (onshi_domain::outage decides what they mean).
    pub async fn network_failures(
        &self,
        window_secs: i64,
    ) -> Result<Vec<onshi_domain::outage::RegionCount>, StoreError> {
        let db = &self.db;
        let backend = db.get_database_backend();
        let statement = if backend == sea_orm::DatabaseBackend::Postgres {
            Statement::from_sql_and_values(
                backend,
                "SELECT prefecture, groups_failing, agents_failing, agents_reporting, failing_since \
                 FROM onshi_network_failures($1)",
                [i32::try_from(window_secs).unwrap_or(i32::MAX).into()],
            )
        } else {
            let failing = "json_extract(d.last_heartbeat, '$.network_ok') = 0";
            Statement::from_sql_and_values(
                backend,
                format!(
                    "SELECT CAST(substr(c.institution_code, 1, 2) AS INTEGER) AS prefecture, \
                     COUNT(DISTINCT CASE WHEN {failing} THEN d.tenant_id END) AS groups_failing, \
                     SUM(CASE WHEN {failing} THEN 1 ELSE 0 END) AS agents_failing, COUNT(*) AS agents_reporting, \
                     MIN(CASE WHEN {failing} THEN f.since END) AS failing_since \
                     FROM devices d JOIN clinics c ON c.id = d.clinic_id AND c.tenant_id = d.tenant_id \
                     LEFT JOIN device_alerts f ON f.device_id = d.id AND f.kind = 'network' AND f.resolved_at IS NULL \
                     WHERE d.status = 'active' AND d.last_heartbeat IS NOT NULL AND d.last_seen_at >= ? GROUP BY 1"
                ),
                [(OffsetDateTime::now_utc() - Duration::seconds(window_secs)).into()],
            )
        };
        let rows = db.query_all_raw(statement).await?;
        rows.iter()
            .map(|r| {
                let prefecture: i32 = r.try_get("", "prefecture")?;
                let count = |name: &str| -> Result<u64, StoreError> {
                    let n: i64 = r.try_get("", name)?;
                    Ok(u64::try_from(n).unwrap_or(0))
                };
                Ok(onshi_domain::outage::RegionCount {
                    prefecture: u8::try_from(prefecture).unwrap_or(0),
                    groups_failing: count("groups_failing")?,
                    agents_failing: count("agents_failing")?,
                    agents_reporting: count("agents_reporting")?,
                    failing_since: r.try_get("", "failing_since")?,
                })
            })
            .collect()
    }
}
