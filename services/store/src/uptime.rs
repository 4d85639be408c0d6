//! Agent availability intervals (see the migration `device_uptime`), extended by heartbeats inside
//! `apply_batch`'s transaction.

use onshi_domain::{DeviceId, Heartbeat, OFFLINE_AFTER_SECS};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder,
};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::entities::device_uptime;
use crate::{StoreError, TenantStore};

/// One stretch of an agent's availability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uptime {
    pub device: DeviceId,
    pub from: OffsetDateTime,
    pub to: OffsetDateTime,
    /// false when the reader or the VPN was failing.
    pub healthy: bool,
}

pub(crate) fn state(h: &Heartbeat) -> &'static str {
    if h.reader_ok == Some(false) || h.network_ok == Some(false) { "degraded" } else { "up" }
}

pub(crate) async fn record(
    txn: &DatabaseTransaction,
    tenant: Uuid,
    device: Uuid,
    at: OffsetDateTime,
    heartbeat: &Heartbeat,
) -> Result<(), StoreError> {
    let at = at.to_offset(time::UtcOffset::UTC);
    let state = state(heartbeat);
    let latest = device_uptime::Entity::find()
        .filter(device_uptime::Column::TenantId.eq(tenant))
        .filter(device_uptime::Column::DeviceId.eq(device))
        .filter(device_uptime::Column::StartedAt.lte(at))
        .order_by_desc(device_uptime::Column::StartedAt)
        .one(txn)
        .await?;
    match latest {
        // A late heartbeat inside the interval changes nothing.
        Some(row) if row.ended_at >= at => {}
        Some(row) if row.state == state && (at - row.ended_at).whole_seconds() <= OFFLINE_AFTER_SECS => {
            let mut active: device_uptime::ActiveModel = row.into();
            active.ended_at = Set(at);
            active.update(txn).await?;
        }
        _ => {
            device_uptime::ActiveModel {
                tenant_id: Set(tenant),
                device_id: Set(device),
                started_at: Set(at),
                ended_at: Set(at),
                state: Set(state.to_owned()),
            }
            .insert(txn)
            .await?;
        }
    }
    Ok(())
}

impl TenantStore<'_> {
    /// Availability intervals of the given agents overlapping [from, to], oldest first.
    pub async fn uptime(
        &self,
        devices: &[DeviceId],
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<Vec<Uptime>, StoreError> {
        let txn = self.read().await?;
        let rows = device_uptime::Entity::find()
            .filter(device_uptime::Column::TenantId.eq(self.tenant_uuid()))
            .filter(device_uptime::Column::DeviceId.is_in(devices.iter().map(DeviceId::as_uuid)))
            .filter(device_uptime::Column::EndedAt.gte(from))
            .filter(device_uptime::Column::StartedAt.lte(to))
            .order_by_asc(device_uptime::Column::StartedAt)
            .all(&txn)
            .await?;
        txn.commit().await?;
        Ok(rows
            .into_iter()
            .map(|r| Uptime {
                device: DeviceId::from_uuid(r.device_id),
                from: r.started_at,
                to: r.ended_at,
                healthy: r.state == "up",
            })
            .collect())
    }
}
