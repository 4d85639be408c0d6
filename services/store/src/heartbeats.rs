//! Heartbeats off the queue path. Every agent sends one every 20 s: at national scale that is most of
//! the requests, and each one only says "this agent is alive, in this state". So the ingest handler does
//! not queue them: it records the agent's latest heartbeat per state ([`LatestHeartbeat`]) in the shared
//! cache (Redis in full mode, memory in embedded mode), and a worker takes all of them every few seconds
//! and writes them in one transaction per tenant ([`SystemStore::record_heartbeats`]).
//!
//! What this keeps: the device's last-seen time and heartbeat, and its availability intervals
//! (`uptime`), exact to the flush interval; an agent whose state changes between two flushes leaves one
//! entry per state, so a short degradation is still recorded. What it gives up: a heartbeat is state,
//! not evidence. If the cache loses one before it is written, the next heartbeat (20 s later) says the
//! same; a failed write puts the taken entries back for the next flush.

use std::collections::BTreeMap;

use onshi_domain::{ClinicId, DeviceId, Heartbeat, OFFLINE_AFTER_SECS, TenantId};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseTransaction,
    EntityTrait, IntoActiveModel, QueryFilter, Statement,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::entities::devices;
use crate::{DeviceAuth, StoreError, SystemStore, TenantScope, TenantStore};

/// The cache map that holds the heartbeats waiting to be written (one field per agent and state).
pub const PENDING_HEARTBEATS: &str = "heartbeats:pending";

/// An agent's newest heartbeat in one state, as the ingest handler accepted it. Made only from an
/// authenticated device ([`LatestHeartbeat::accepted`]) and read back from the cache, which only that
/// handler writes to: its tenant is the one the device's credential proved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatestHeartbeat {
    tenant: TenantId,
    clinic: ClinicId,
    device: DeviceId,
    #[serde(with = "time::serde::rfc3339")]
    received_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    occurred_at: OffsetDateTime,
    heartbeat: Heartbeat,
}

impl LatestHeartbeat {
    pub fn accepted(device: &DeviceAuth, occurred_at: OffsetDateTime, heartbeat: Heartbeat) -> Self {
        Self {
            tenant: device.scope.tenant_id(),
            clinic: device.clinic.id,
            device: device.device.id,
            received_at: OffsetDateTime::now_utc(),
            occurred_at,
            heartbeat,
        }
    }

    /// The cache field: one per agent and availability state, so that a later heartbeat in the same
    /// state replaces an earlier one and a change of state is kept.
    pub fn field(&self) -> String {
        format!("{}:{}", self.device, crate::uptime::state(&self.heartbeat))
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }

    pub fn from_cache(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    pub fn occurred_at(&self) -> OffsetDateTime {
        self.occurred_at
    }
}

impl SystemStore<'_> {
    /// Writes taken heartbeats: per tenant one transaction that extends each agent's availability
    /// intervals (oldest heartbeat first) and sets its last-seen time and newest heartbeat. Returns how
    /// many agents' rows were updated. On PostgreSQL each step is one statement for all the tenant's
    /// agents; on SQLite (one clinic's few agents) one per agent.
    pub async fn record_heartbeats(&self, pending: &[LatestHeartbeat]) -> Result<usize, StoreError> {
        let mut by_tenant: BTreeMap<TenantId, Vec<&LatestHeartbeat>> = BTreeMap::new();
        for h in pending {
            by_tenant.entry(h.tenant).or_default().push(h);
        }
        let mut updated = 0;
        for (tenant, mut list) in by_tenant {
            list.sort_by_key(|h| (h.device, h.occurred_at));
            let store = TenantStore::new(self.db(), TenantScope::new(tenant));
            let txn = store.write().await?;
            updated += if txn.get_database_backend() == DatabaseBackend::Postgres {
                record_set_based(&txn, tenant, &list).await?
            } else {
                record_one_by_one(&txn, tenant, &list).await?
            };
            txn.commit().await?;
        }
        Ok(updated)
    }
}

/// Per agent: its heartbeats (sorted by device, then time) and the newest one, with the latest receipt.
fn newest_per_device<'a>(list: &[&'a LatestHeartbeat]) -> Vec<(&'a LatestHeartbeat, OffsetDateTime)> {
    let mut newest: Vec<(&LatestHeartbeat, OffsetDateTime)> = Vec::new();
    for h in list {
        match newest.last_mut() {
            Some((last, received)) if last.device == h.device => {
                *received = (*received).max(h.received_at);
                *last = h;
            }
            _ => newest.push((h, h.received_at)),
        }
    }
    newest
}

async fn record_one_by_one(
    txn: &DatabaseTransaction,
    tenant: TenantId,
    list: &[&LatestHeartbeat],
) -> Result<usize, StoreError> {
    for h in list {
        crate::uptime::record(txn, tenant.as_uuid(), h.device.as_uuid(), h.occurred_at, &h.heartbeat).await?;
    }
    let newest = newest_per_device(list);
    let mut rows: BTreeMap<_, _> = devices::Entity::find()
        .filter(devices::Column::TenantId.eq(tenant.as_uuid()))
        .filter(devices::Column::Id.is_in(newest.iter().map(|(h, _)| h.device.as_uuid())))
        .all(txn)
        .await?
        .into_iter()
        .map(|d| (d.id, d))
        .collect();
    let mut updated = 0;
    for (h, received) in newest {
        // A device removed since it sent this has no row to update.
        let Some(row) = rows.remove(&h.device.as_uuid()) else { continue };
        let newer = row.last_seen_at.is_none_or(|at| received > at);
        let mut active = row.into_active_model();
        if newer {
            active.last_seen_at = Set(Some(received));
        }
        active.agent_version = Set(Some(h.heartbeat.agent_version.clone()));
        active.last_heartbeat =
            Set(Some(serde_json::to_value(&h.heartbeat).map_err(|e| StoreError::Corrupt(e.to_string()))?));
        active.update(txn).await?;
        updated += 1;
    }
    Ok(updated)
}

/// The same as `record_one_by_one` and `uptime::record`, as set-based statements: one per round of
/// availability intervals (an agent's first heartbeat of the flush in round one, its second, if its
/// state changed, in round two) and one for the device rows.
async fn record_set_based(
    txn: &DatabaseTransaction,
    tenant: TenantId,
    list: &[&LatestHeartbeat],
) -> Result<usize, StoreError> {
    let mut rounds: Vec<Vec<serde_json::Value>> = Vec::new();
    let mut previous: Option<DeviceId> = None;
    let mut nth = 0;
    for h in list {
        nth = if previous == Some(h.device) { nth + 1 } else { 0 };
        previous = Some(h.device);
        if rounds.len() <= nth {
            rounds.push(Vec::new());
        }
        let at = h.occurred_at.format(&Rfc3339).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        rounds[nth].push(serde_json::json!({
            "device": h.device.as_uuid(), "at": at, "state": crate::uptime::state(&h.heartbeat),
        }));
    }
    for round in rounds {
        // The latest interval that started at or before the heartbeat: extended when the state is the
        // same and the gap is within the offline limit, left alone when it already covers the moment
        // (a late heartbeat), otherwise a new interval starts.
        txn.execute_raw(Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            format!(
                "WITH input AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(device uuid, at timestamptz, state text)), \
                 latest AS (SELECT DISTINCT ON (u.device_id) u.device_id, u.started_at, u.ended_at, u.state, x.at, x.state AS new_state \
                   FROM input x JOIN device_uptime u ON u.tenant_id = $2 AND u.device_id = x.device AND u.started_at <= x.at \
                   ORDER BY u.device_id, u.started_at DESC), \
                 extended AS (UPDATE device_uptime u SET ended_at = l.at FROM latest l \
                   WHERE u.tenant_id = $2 AND u.device_id = l.device_id AND u.started_at = l.started_at \
                   AND l.ended_at < l.at AND l.state = l.new_state AND l.at - l.ended_at <= interval '{OFFLINE_AFTER_SECS} seconds' \
                   RETURNING u.device_id) \
                 INSERT INTO device_uptime (tenant_id, device_id, started_at, ended_at, state) \
                 SELECT $2, x.device, x.at, x.at, x.state FROM input x \
                 WHERE NOT EXISTS (SELECT 1 FROM extended e WHERE e.device_id = x.device) \
                   AND NOT EXISTS (SELECT 1 FROM latest l WHERE l.device_id = x.device AND (l.ended_at >= x.at \
                     OR (l.state = l.new_state AND l.at - l.ended_at <= interval '{OFFLINE_AFTER_SECS} seconds'))) \
                 ON CONFLICT DO NOTHING"
            ),
            [serde_json::Value::Array(round).into(), tenant.as_uuid().into()],
        ))
        .await?;
    }
    let mut rows = Vec::new();
    for (h, received) in newest_per_device(list) {
        rows.push(serde_json::json!({
            "device": h.device.as_uuid(),
            "seen": received.format(&Rfc3339).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            "version": h.heartbeat.agent_version,
            "heartbeat": serde_json::to_value(&h.heartbeat).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        }));
    }
    let result = txn
        .execute_raw(Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            // The rows are locked in id order first, as the worker (`apply_batches`) and the alert watch lock
            // them: an UPDATE … FROM alone locks in whatever order its join yields, and two transactions
            // taking the same agents' rows in different orders can deadlock.
            "WITH x AS (SELECT * FROM jsonb_to_recordset($1::jsonb) \
               AS x(device uuid, seen timestamptz, version text, heartbeat jsonb)), \
             locked AS MATERIALIZED (SELECT id FROM devices WHERE tenant_id = $2 AND id IN (SELECT device FROM x) \
               ORDER BY id FOR UPDATE) \
             UPDATE devices d SET last_seen_at = GREATEST(d.last_seen_at, x.seen), agent_version = x.version, \
             last_heartbeat = x.heartbeat \
             FROM x JOIN locked l ON l.id = x.device \
             WHERE d.tenant_id = $2 AND d.id = x.device",
            [serde_json::Value::Array(rows).into(), tenant.as_uuid().into()],
        ))
        .await?;
    Ok(usize::try_from(result.rows_affected()).unwrap_or(usize::MAX))
}
