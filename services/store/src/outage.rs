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
        let min_groups = i32::try_from(onshi_domain::outage::MIN_GROUPS).unwrap_or(i32::MAX);
        let statement = if backend == sea_orm::DatabaseBackend::Postgres {
            Statement::from_sql_and_values(
                backend,
                "SELECT prefecture, groups_failing, agents_failing, agents_reporting, failing_since \
                 FROM onshi_network_failures($1, $2)",
                [i32::try_from(window_secs).unwrap_or(i32::MAX).into(), min_groups.into()],
            )
        } else {
            // The same as the PostgreSQL function, for the one embedded process that holds every group.
            let now = OffsetDateTime::now_utc();
            Statement::from_sql_and_values(
                backend,
                "WITH agents AS ( \
                   SELECT CAST(substr(c.institution_code, 1, 2) AS INTEGER) AS prefecture, d.tenant_id, d.id, \
                          CASE WHEN json_extract(d.last_heartbeat, '$.network_ok') = 0 THEN 1 ELSE 0 END AS failing \
                   FROM devices d JOIN clinics c ON c.id = d.clinic_id AND c.tenant_id = d.tenant_id \
                   WHERE d.status = 'active' AND d.last_heartbeat IS NOT NULL AND d.last_seen_at >= ?), \
                 group_since AS ( \
                   SELECT a.prefecture, a.tenant_id, MIN(f.since) AS since \
                   FROM agents a JOIN device_alerts f ON f.device_id = a.id AND f.kind = 'network' \
                     AND f.resolved_at IS NULL AND f.since >= ? \
                   WHERE a.failing = 1 GROUP BY 1, 2), \
                 ranked AS ( \
                   SELECT prefecture, since, ROW_NUMBER() OVER (PARTITION BY prefecture ORDER BY since) AS n \
                   FROM group_since) \
                 SELECT a.prefecture, COUNT(DISTINCT CASE WHEN a.failing = 1 THEN a.tenant_id END) AS groups_failing, \
                        SUM(a.failing) AS agents_failing, COUNT(*) AS agents_reporting, r.since AS failing_since \
                 FROM agents a LEFT JOIN ranked r ON r.prefecture = a.prefecture AND r.n = ? \
                 GROUP BY a.prefecture, r.since",
                [(now - Duration::seconds(window_secs)).into(), (now - Duration::hours(24)).into(), min_groups.into()],
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
                    // SQLite keeps the time as written; the page shows minutes.
                    failing_since: r.try_get("", "failing_since")?,
                })
            })
            .collect()
    }
}
