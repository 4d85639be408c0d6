//! Operations that exist before a tenant is known. Keep this small: everything tenant-owned belongs in
//! `TenantStore`.

use onshi_domain::{ClinicId, DeviceId, TenantId};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, DatabaseConnection, EntityTrait};
use time::OffsetDateTime;

use crate::entities::{clinics, devices, enrollment_codes, tenants};
use crate::error::StoreError;

/// What a redeemed enrollment code gives the agent. `device_secret` and `pseudonym_key` are shown once.
#[derive(Clone)]
pub struct Enrollment {
    pub tenant: TenantId,
    pub clinic: ClinicId,
    pub institution_code: onshi_domain::MedicalInstitutionCode,
    pub device: DeviceId,
    pub device_secret: String,
    pub pseudonym_key: String,
}

impl std::fmt::Debug for Enrollment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enrollment").field("tenant", &self.tenant).field("device", &self.device).finish_non_exhaustive()
    }
}

pub struct SystemStore<'a> {
    db: &'a DatabaseConnection,
}

impl<'a> SystemStore<'a> {
    pub(crate) fn new(db: &'a DatabaseConnection) -> Self {
        Self { db }
    }

    pub(crate) fn db(&self) -> &'a DatabaseConnection {
        self.db
    }

    /// Creates a clinic group (tenant). Signup and the demo seed call this.
    pub async fn create_tenant(&self, name: &str) -> Result<TenantId, StoreError> {
        let id = TenantId::new();
        let txn = crate::begin_tenant(self.db, id.as_uuid(), true).await?;
        Self::insert_tenant(&txn, id, name).await?;
        txn.commit().await?;
        Ok(id)
    }

    pub(crate) async fn insert_tenant(
        txn: &sea_orm::DatabaseTransaction,
        id: TenantId,
        name: &str,
    ) -> Result<(), StoreError> {
        tenants::ActiveModel {
            id: Set(id.as_uuid()),
            name: Set(name.to_owned()),
            created_at: Set(OffsetDateTime::now_utc()),
            pseudonym_key: Set(Some(crate::secrets::random_hex32())),
            retention_basis: Set(onshi_domain::RetentionBasis::MedicalRecord.as_str().to_owned()),
        }
        .insert(txn)
        .await?;
        Ok(())
    }

    /// Exchanges a one-time enrollment code for a new device of the code's clinic. The code is consumed in
    /// the same transaction (row locked), so it can never enroll two devices. Unknown, used and expired
    /// codes are indistinguishable to the caller.
    pub async fn redeem_enrollment_code(&self, code: &str, device_name: &str) -> Result<Enrollment, StoreError> {
        use sea_orm::{ColumnTrait, IntoActiveModel, QueryFilter, QuerySelect};
        let hash = crate::secrets::sha256_hex(&crate::secrets::normalise_code(code));
        let now = OffsetDateTime::now_utc();
        let txn = crate::begin_write(self.db).await?;
        // First find the code's tenant (the one open look-up), then lock the row under that tenant:
        // PostgreSQL applies the UPDATE policy to SELECT … FOR UPDATE, which needs the tenant set.
        let tenant_id = enrollment_codes::Entity::find_by_id(hash.clone())
            .one(&txn)
            .await?
            .map(|r| r.tenant_id)
            .ok_or(StoreError::NotFound { what: "enrollment code" })?;
        crate::set_tenant(&txn, tenant_id).await?;
        let row = enrollment_codes::Entity::find_by_id(hash)
            .filter(enrollment_codes::Column::TenantId.eq(tenant_id))
            .filter(enrollment_codes::Column::UsedAt.is_null())
            .lock_exclusive()
            .one(&txn)
            .await?
            .filter(|r| r.expires_at > now)
            .ok_or(StoreError::NotFound { what: "enrollment code" })?;
        let tenant = tenants::Entity::find_by_id(row.tenant_id)
            .one(&txn)
            .await?
            .ok_or(StoreError::NotFound { what: "tenant" })?;
        let key = match &tenant.pseudonym_key {
            Some(key) => key.clone(),
            None => {
                let key = crate::secrets::random_hex32();
                let mut active = tenant.into_active_model();
                active.pseudonym_key = Set(Some(key.clone()));
                active.update(&txn).await?;
                key
            }
        };
        let clinic = clinics::Entity::find_by_id(row.clinic_id)
            .filter(clinics::Column::TenantId.eq(row.tenant_id))
            .one(&txn)
            .await?
            .ok_or(StoreError::NotFound { what: "clinic" })?;
        let device = DeviceId::new();
        let secret = crate::secrets::random_hex32();
        devices::ActiveModel {
            id: Set(device.as_uuid()),
            tenant_id: Set(row.tenant_id),
            clinic_id: Set(row.clinic_id),
            name: Set(device_name.chars().take(100).collect()),
            status: Set("active".to_owned()),
            agent_version: Set(None),
            last_seen_at: Set(None),
            last_heartbeat: Set(None),
            secret_hash: Set(Some(crate::secrets::sha256_hex(&secret))),
            offline_announced_at: Set(None),
            created_at: Set(now),
        }
        .insert(&txn)
        .await?;
        let mut used = row.into_active_model();
        used.used_at = Set(Some(now));
        used.device_id = Set(Some(device.as_uuid()));
        used.update(&txn).await?;
        txn.commit().await?;
        let code = onshi_domain::MedicalInstitutionCode::parse(&clinic.institution_code)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(Enrollment {
            tenant: TenantId::from_uuid(clinic.tenant_id),
            clinic: ClinicId::from_uuid(clinic.id),
            institution_code: code,
            device,
            device_secret: secret,
            pseudonym_key: key,
        })
    }

    /// The oldest tenant, if any. The demo database holds only the demo tenant. Under PostgreSQL's
    /// row-level security no tenant is visible without one set, so this is for the embedded mode.
    pub async fn first_tenant(&self) -> Result<Option<TenantId>, StoreError> {
        use sea_orm::QueryOrder;
        Ok(tenants::Entity::find()
            .order_by_asc(tenants::Column::CreatedAt)
            .one(self.db)
            .await?
            .map(|t| TenantId::from_uuid(t.id)))
    }
}
