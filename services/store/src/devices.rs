//! The agents (devices) of a tenant's clinics: enrollment codes, the device list, revocation. How a device
//! proves who it is lives in `credentials`.

use onshi_domain::{ClinicId, DeviceId};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use time::OffsetDateTime;

use crate::entities::devices;
use crate::error::StoreError;
use crate::{ClinicScope, TenantStore};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceStatus {
    Active,
    Revoked,
}

impl DeviceStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Revoked => "revoked",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    pub id: DeviceId,
    pub clinic: ClinicId,
    pub name: String,
    pub status: DeviceStatus,
    pub agent_version: Option<String>,
    pub last_seen_at: Option<OffsetDateTime>,
    pub last_heartbeat: Option<onshi_domain::Heartbeat>,
    /// When the worker announced this agent offline (`device.offline`); `None` once it is heard again.
    pub offline_announced_at: Option<OffsetDateTime>,
    /// When the agent was enrolled (its row created): nothing can have been heard from it before.
    pub enrolled_at: OffsetDateTime,
}

impl Device {
    pub fn health(&self, now: OffsetDateTime) -> onshi_domain::DeviceHealth {
        onshi_domain::DeviceHealth::of(self.last_seen_at, self.last_heartbeat.as_ref(), now)
    }
}

impl TenantStore<'_> {
    pub async fn create_device(&self, clinic: &ClinicScope, name: &str) -> Result<Device, StoreError> {
        let clinic = clinic.id;
        let txn = self.write().await?;
        if self.clinic_in(&txn, clinic).await?.is_none() {
            return Err(StoreError::NotFound { what: "clinic" });
        }
        let id = DeviceId::new();
        let now = OffsetDateTime::now_utc();
        devices::ActiveModel {
            id: Set(id.as_uuid()),
            tenant_id: Set(self.tenant),
            clinic_id: Set(clinic.as_uuid()),
            name: Set(name.to_owned()),
            status: Set(DeviceStatus::Active.as_str().to_owned()),
            agent_version: Set(None),
            last_seen_at: Set(None),
            last_heartbeat: Set(None),
            secret_hash: Set(None),
            offline_announced_at: Set(None),
            created_at: Set(now),
        }
        .insert(&txn)
        .await?;
        txn.commit().await?;
        Ok(Device {
            id,
            clinic,
            name: name.to_owned(),
            status: DeviceStatus::Active,
            agent_version: None,
            last_seen_at: None,
            last_heartbeat: None,
            offline_announced_at: None,
            enrolled_at: now,
        })
    }

    /// Creates a one-time code that enrolls one agent for `clinic`, valid for `ttl`. The code is returned
    /// once; only its hash is stored.
    pub async fn create_enrollment_code(
        &self,
        clinic: &ClinicScope,
        ttl: time::Duration,
    ) -> Result<String, StoreError> {
        let clinic = clinic.id;
        let txn = self.write().await?;
        if self.clinic_in(&txn, clinic).await?.is_none() {
            return Err(StoreError::NotFound { what: "clinic" });
        }
        let code = crate::secrets::enrollment_code();
        let now = OffsetDateTime::now_utc();
        crate::entities::enrollment_codes::ActiveModel {
            code_hash: Set(crate::secrets::sha256_hex(&crate::secrets::normalise_code(&code))),
            tenant_id: Set(self.tenant),
            clinic_id: Set(clinic.as_uuid()),
            expires_at: Set(now + ttl),
            used_at: Set(None),
            device_id: Set(None),
            created_at: Set(now),
        }
        .insert(&txn)
        .await?;
        txn.commit().await?;
        Ok(code)
    }

    pub async fn device(&self, id: DeviceId) -> Result<Option<Device>, StoreError> {
        let txn = self.read().await?;
        let row = devices::Entity::find_by_id(id.as_uuid())
            .filter(devices::Column::TenantId.eq(self.tenant))
            .one(&txn)
            .await?;
        txn.commit().await?;
        row.map(device_from_row).transpose()
    }

    pub async fn devices(&self) -> Result<Vec<Device>, StoreError> {
        let txn = self.read().await?;
        let rows = devices::Entity::find()
            .filter(devices::Column::TenantId.eq(self.tenant))
            .order_by_asc(devices::Column::CreatedAt)
            .all(&txn)
            .await?;
        txn.commit().await?;
        rows.into_iter().map(device_from_row).collect()
    }

    /// Revokes an agent of `clinic` and records who did it, in one transaction. Its tokens stop working
    /// at the next request (device authentication reads the status every time).
    pub async fn revoke_device(
        &self,
        clinic: &ClinicScope,
        id: DeviceId,
        audit: &crate::AuditEntry,
    ) -> Result<(), StoreError> {
        let txn = self.write().await?;
        let updated = devices::Entity::update_many()
            .col_expr(devices::Column::Status, Expr::value(DeviceStatus::Revoked.as_str()))
            .filter(devices::Column::TenantId.eq(self.tenant))
            .filter(devices::Column::ClinicId.eq(clinic.uuid()))
            .filter(devices::Column::Id.eq(id.as_uuid()))
            .exec(&txn)
            .await?;
        if updated.rows_affected == 0 {
            return Err(StoreError::NotFound { what: "device" });
        }
        self.append_in(&txn, audit).await?;
        txn.commit().await?;
        Ok(())
    }
}

pub(crate) fn device_from_row(row: devices::Model) -> Result<Device, StoreError> {
    let status = match row.status.as_str() {
        "active" => DeviceStatus::Active,
        "revoked" => DeviceStatus::Revoked,
        other => return Err(StoreError::Corrupt(format!("device status {other}"))),
    };
    Ok(Device {
        id: DeviceId::from_uuid(row.id),
        clinic: ClinicId::from_uuid(row.clinic_id),
        name: row.name,
        status,
        agent_version: row.agent_version,
        last_seen_at: row.last_seen_at,
        // A heartbeat of an older or newer shape that no longer parses is simply not shown.
        last_heartbeat: row.last_heartbeat.and_then(|j| serde_json::from_value(j).ok()),
        offline_announced_at: row.offline_announced_at,
        enrolled_at: row.created_at,
    })
}
