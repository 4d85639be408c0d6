//! Where a [`TenantScope`] comes from: each credential the service accepts is checked here, and only a
//! credential that checks out yields a scope. Callers outside this crate cannot build a scope from an id
//! they were sent (`TenantScope::new` is private to the crate); operator commands, which act on a tenant
//! named on their command line, use the explicitly named [`TenantScope::operator`].
//!
//! The look-ups read in read-only transactions: an unauthenticated attempt never opens a write
//! transaction (only a valid API token records its use afterwards).

use onshi_domain::{ClinicId, DeviceId, TenantId, UserId};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use time::OffsetDateTime;

use crate::accounts::{EmailPurpose, User, UserStatus};
use crate::clinics::clinic_from_row;
use crate::devices::device_from_row;
use crate::entities::{api_tokens, devices, email_tokens};
use crate::{ApiToken, Clinic, Device, StoreError, SystemStore, TenantScope, TenantStore};

/// A device whose access token's claims match a device of that tenant and clinic. Its status is included
/// so that the caller can refuse a revoked device with that reason.
#[derive(Debug, Clone)]
pub struct DeviceAuth {
    pub scope: TenantScope,
    pub clinic: Clinic,
    pub device: Device,
}

/// A usable API token and the user who made it (still active).
#[derive(Debug, Clone)]
pub struct TokenAuth {
    pub scope: TenantScope,
    pub token: ApiToken,
    pub user: User,
}

/// A usable e-mailed link: unused, unexpired, of the purpose asked for.
#[derive(Debug, Clone)]
pub struct EmailLink {
    pub scope: TenantScope,
    pub user: UserId,
}

impl SystemStore<'_> {
    fn as_tenant(&self, tenant: TenantId) -> TenantStore<'_> {
        TenantStore::new(self.db(), TenantScope::new(tenant))
    }

    /// A signed-in session: the scope and user, if the user exists in `tenant`, is active and still on the
    /// session epoch the session was made in (sign-out everywhere bumps it).
    pub async fn session_user(
        &self,
        tenant: TenantId,
        user: UserId,
        epoch: i32,
    ) -> Result<Option<(TenantScope, User)>, StoreError> {
        let store = self.as_tenant(tenant);
        Ok(store
            .user(user)
            .await?
            .filter(|u| u.status == UserStatus::Active && u.session_epoch == epoch)
            .map(|u| (store.scope(), u)))
    }

    /// A user a session at an earlier stage names (password done, second factor pending): the user must
    /// exist and be active.
    pub async fn pending_user(
        &self,
        tenant: TenantId,
        user: UserId,
    ) -> Result<Option<(TenantScope, User)>, StoreError> {
        let store = self.as_tenant(tenant);
        Ok(store.user(user).await?.filter(|u| u.status == UserStatus::Active).map(|u| (store.scope(), u)))
    }

    /// The claims of a verified device access token: the device and its clinic, read in one transaction
    /// (every ingest request authenticates with this).
    pub async fn device_auth(
        &self,
        tenant: TenantId,
        clinic: ClinicId,
        device: DeviceId,
    ) -> Result<Option<DeviceAuth>, StoreError> {
        let store = self.as_tenant(tenant);
        let txn = store.read().await?;
        let row = devices::Entity::find_by_id(device.as_uuid())
            .filter(devices::Column::TenantId.eq(tenant.as_uuid()))
            .filter(devices::Column::ClinicId.eq(clinic.as_uuid()))
            .one(&txn)
            .await?;
        let clinic_row = match &row {
            Some(_) => store.clinic_in(&txn, clinic).await?,
            None => None,
        };
        txn.commit().await?;
        match (row, clinic_row) {
            (Some(d), Some(c)) => {
                Ok(Some(DeviceAuth { scope: store.scope(), clinic: clinic_from_row(c)?, device: device_from_row(d)? }))
            }
            _ => Ok(None),
        }
    }

    /// A device secret presented to get an access token: the device, if `secret` is its secret. Revoked
    /// devices are returned too (the caller refuses them with that reason).
    pub async fn device_secret(
        &self,
        tenant: TenantId,
        device: DeviceId,
        secret: &str,
    ) -> Result<Option<(TenantScope, Device)>, StoreError> {
        let store = self.as_tenant(tenant);
        let txn = store.read().await?;
        let row = devices::Entity::find_by_id(device.as_uuid())
            .filter(devices::Column::TenantId.eq(tenant.as_uuid()))
            .one(&txn)
            .await?;
        txn.commit().await?;
        let Some(row) = row else { return Ok(None) };
        let matches = row
            .secret_hash
            .as_deref()
            .is_some_and(|stored| crate::secrets::constant_time_eq(stored, &crate::secrets::sha256_hex(secret)));
        if !matches {
            return Ok(None);
        }
        Ok(Some((store.scope(), device_from_row(row)?)))
    }

    /// An integration API token (by the hash of its secret part): usable when not revoked, not expired and
    /// made by a user who is still active. Records its use.
    pub async fn api_token(&self, tenant: TenantId, token_hash: &str) -> Result<Option<TokenAuth>, StoreError> {
        let store = self.as_tenant(tenant);
        let now = OffsetDateTime::now_utc();
        let txn = store.read().await?;
        let row = api_tokens::Entity::find()
            .filter(api_tokens::Column::TenantId.eq(tenant.as_uuid()))
            .filter(api_tokens::Column::TokenHash.eq(token_hash))
            .filter(api_tokens::Column::RevokedAt.is_null())
            .one(&txn)
            .await?
            .filter(|r| r.expires_at.is_none_or(|e| e > now));
        txn.commit().await?;
        let Some(row) = row else { return Ok(None) };
        let token = crate::accounts::api_token_from_row(row)?;
        let Some(user) = store.user(token.created_by).await?.filter(|u| u.status == UserStatus::Active) else {
            return Ok(None);
        };
        let txn = store.write().await?;
        api_tokens::Entity::update_many()
            .col_expr(api_tokens::Column::LastUsedAt, Expr::value(now))
            .filter(api_tokens::Column::Id.eq(token.id.as_uuid()))
            .filter(api_tokens::Column::TenantId.eq(tenant.as_uuid()))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(Some(TokenAuth { scope: store.scope(), token, user }))
    }

    /// An e-mailed link (by the hash of its secret part), if it is usable for `purpose`. Unknown, used and
    /// expired links are indistinguishable. It is not used up here: the flow calls
    /// `TenantStore::consume_email_token` when its action succeeds.
    pub async fn email_link(
        &self,
        tenant: TenantId,
        token_hash: &str,
        purpose: EmailPurpose,
    ) -> Result<Option<EmailLink>, StoreError> {
        let store = self.as_tenant(tenant);
        let txn = store.read().await?;
        let row = email_tokens::Entity::find_by_id(token_hash.to_owned())
            .filter(email_tokens::Column::TenantId.eq(tenant.as_uuid()))
            .filter(email_tokens::Column::Purpose.eq(purpose.as_str()))
            .filter(email_tokens::Column::UsedAt.is_null())
            .one(&txn)
            .await?;
        txn.commit().await?;
        Ok(row
            .filter(|r| r.expires_at > OffsetDateTime::now_utc())
            .map(|r| EmailLink { scope: store.scope(), user: UserId::from_uuid(r.user_id) }))
    }
}
