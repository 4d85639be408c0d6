//! User accounts, e-mail tokens and integration API tokens.
//!
//! Credentials arrive here already hashed (onshi-identity); the store never sees a password or a token
//! secret. Every change that matters to security bumps the user's `session_epoch`, which invalidates all
//! of the user's sessions at their next request: password change or reset, second-factor change, role
//! change, disable.

use onshi_domain::{ApiScope, ApiTokenId, ClinicId, Role, TenantId, UserId};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, SqlErr,
};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::audit::{AuditEntry, append};
use crate::entities::{api_tokens, email_tokens, user_logins, users};
use crate::{StoreError, SystemStore, TenantScope, TenantStore};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserStatus {
    /// Invited by e-mail; no password yet.
    Invited,
    Active,
    Disabled,
}

impl UserStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Invited => "invited",
            UserStatus::Active => "active",
            UserStatus::Disabled => "disabled",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "invited" => Ok(UserStatus::Invited),
            "active" => Ok(UserStatus::Active),
            "disabled" => Ok(UserStatus::Disabled),
            other => Err(StoreError::Corrupt(format!("user status {other}"))),
        }
    }
}

#[derive(Clone, PartialEq)]
pub struct User {
    pub id: UserId,
    pub tenant: TenantId,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    pub clinics: Vec<ClinicId>,
    pub password_hash: Option<String>,
    pub totp_secret: Option<String>,
    pub totp_enabled: bool,
    pub totp_last_step: u64,
    pub email_verified: bool,
    pub status: UserStatus,
    pub session_epoch: i32,
}

impl User {
    /// Whether the group's alerts about `clinic` (about the whole group when `None`) are e-mailed to this
    /// user: an active owner or manager who sees it.
    pub fn is_told_about(&self, clinic: Option<ClinicId>) -> bool {
        let access = onshi_domain::ClinicAccess::of(self.role, &self.clinics);
        self.gets_alerts() && clinic.map_or(access == onshi_domain::ClinicAccess::All, |c| access.includes(c))
    }

    /// Whether this user gets the group's alert e-mail at all: an active owner or manager.
    pub fn gets_alerts(&self) -> bool {
        self.status == UserStatus::Active && matches!(self.role, Role::Owner | Role::Manager)
    }
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User").field("id", &self.id).field("role", &self.role).finish_non_exhaustive()
    }
}

/// A new account, as signup or an invitation creates it.
#[derive(Debug, Clone)]
pub struct NewUser<'a> {
    pub email: &'a str,
    pub display_name: &'a str,
    pub role: Role,
    pub clinics: &'a [ClinicId],
    /// Argon2id PHC string (signup); None for an invitation.
    pub password_hash: Option<&'a str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailPurpose {
    Verify,
    Reset,
    Invite,
}

impl EmailPurpose {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            EmailPurpose::Verify => "verify",
            EmailPurpose::Reset => "reset",
            EmailPurpose::Invite => "invite",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiToken {
    pub id: ApiTokenId,
    pub name: String,
    pub created_by: UserId,
    pub scopes: Vec<ApiScope>,
    pub expires_at: Option<OffsetDateTime>,
    pub last_used_at: Option<OffsetDateTime>,
    pub revoked: bool,
    pub created_at: OffsetDateTime,
}

/// E-mail addresses are compared case-insensitively and without surrounding space.
pub fn normalise_email(email: &str) -> String {
    email.trim().to_lowercase()
}

fn user_from_row(row: users::Model) -> Result<User, StoreError> {
    let role: Role =
        row.role.parse().map_err(|e: onshi_domain::access::UnknownRole| StoreError::Corrupt(e.to_string()))?;
    let clinics: Vec<Uuid> = serde_json::from_value(row.clinic_ids).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(User {
        id: UserId::from_uuid(row.id),
        tenant: TenantId::from_uuid(row.tenant_id),
        email: row.email,
        display_name: row.display_name,
        role,
        clinics: clinics.into_iter().map(ClinicId::from_uuid).collect(),
        password_hash: row.password_hash,
        totp_secret: row.totp_secret,
        totp_enabled: row.totp_enabled,
        totp_last_step: u64::try_from(row.totp_last_step).unwrap_or(0),
        email_verified: row.email_verified_at.is_some(),
        status: UserStatus::parse(&row.status)?,
        session_epoch: row.session_epoch,
    })
}

fn clinic_json(clinics: &[ClinicId]) -> serde_json::Value {
    serde_json::Value::Array(clinics.iter().map(|c| serde_json::Value::String(c.as_uuid().to_string())).collect())
}

fn conflict_on_unique(e: sea_orm::DbErr, what: &'static str) -> StoreError {
    match e.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(_)) => StoreError::Conflict { what },
        _ => StoreError::Db(e),
    }
}

/// Makes `email` sign in to `user` of `tenant`: the service-wide directory row, whose key is the address.
/// Only an address its owner has proved (a verification or invitation link followed, or an operator's
/// account) is claimed, so nobody can hold an address by signing up or inviting with it; a second
/// claim is a `Conflict`, told only to the person who has just proved the address.
async fn claim_login(txn: &DatabaseTransaction, email: &str, tenant: Uuid, user: UserId) -> Result<(), StoreError> {
    if let Some(existing) = user_logins::Entity::find_by_id(email.to_owned()).one(txn).await? {
        return if existing.user_id == user.as_uuid() {
            Ok(())
        } else {
            Err(StoreError::Conflict { what: "an account with this e-mail address" })
        };
    }
    user_logins::ActiveModel { email: Set(email.to_owned()), tenant_id: Set(tenant), user_id: Set(user.as_uuid()) }
        .insert(txn)
        .await
        .map_err(|e| conflict_on_unique(e, "an account with this e-mail address"))?;
    Ok(())
}

/// Whether the group already has a member (of any status) with this address.
async fn member_with(txn: &DatabaseTransaction, tenant: Uuid, email: &str) -> Result<bool, StoreError> {
    Ok(users::Entity::find()
        .filter(users::Column::TenantId.eq(tenant))
        .filter(users::Column::Email.eq(email))
        .one(txn)
        .await?
        .is_some())
}

async fn insert_user(
    txn: &DatabaseTransaction,
    tenant: Uuid,
    user: &NewUser<'_>,
    status: UserStatus,
    claim: bool,
) -> Result<UserId, StoreError> {
    let email = normalise_email(user.email);
    let id = UserId::new();
    if member_with(txn, tenant, &email).await? {
        return Err(StoreError::Conflict { what: "a member of this group with this e-mail address" });
    }
    if claim {
        claim_login(txn, &email, tenant, id).await?;
    }
    let now = OffsetDateTime::now_utc();
    users::ActiveModel {
        id: Set(id.as_uuid()),
        tenant_id: Set(tenant),
        email: Set(email),
        display_name: Set(user.display_name.chars().take(100).collect()),
        role: Set(user.role.as_str().to_owned()),
        clinic_ids: Set(clinic_json(user.clinics)),
        password_hash: Set(user.password_hash.map(str::to_owned)),
        totp_secret: Set(None),
        totp_enabled: Set(false),
        totp_last_step: Set(0),
        email_verified_at: Set(None),
        status: Set(status.as_str().to_owned()),
        session_epoch: Set(0),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(txn)
    .await?;
    Ok(id)
}

impl SystemStore<'_> {
    /// Web signup: a new clinic group with its owner, in one transaction, audited in the new chain. The
    /// owner's address is not claimed until the verification link is followed (`mark_email_verified`):
    /// a signup never verified holds nothing, and its link expires with `VERIFY_TTL`.
    pub async fn sign_up(
        &self,
        group_name: &str,
        owner: &NewUser<'_>,
        audit: &AuditEntry,
    ) -> Result<(TenantScope, UserId), StoreError> {
        let tenant = TenantId::new();
        let txn = crate::begin_tenant(self.db(), tenant.as_uuid(), true).await?;
        SystemStore::insert_tenant(&txn, tenant, group_name).await?;
        let user = insert_user(&txn, tenant.as_uuid(), owner, UserStatus::Active, false).await?;
        let mut entry = audit.clone();
        entry.actor_id = Some(user);
        entry.target = format!("user:{user}");
        append(&txn, &tenant.as_uuid().to_string(), Some(tenant.as_uuid()), &entry).await?;
        txn.commit().await?;
        Ok((TenantScope::new(tenant), user))
    }

    /// Whether an account signs in with this address (for signup, which then answers as it would for a
    /// free address and writes to the owner of this one instead).
    pub async fn address_in_use(&self, email: &str) -> Result<bool, StoreError> {
        Ok(self.find_login(email).await?.is_some())
    }

    async fn find_login(&self, email: &str) -> Result<Option<(TenantId, UserId)>, StoreError> {
        Ok(user_logins::Entity::find_by_id(normalise_email(email))
            .one(self.db())
            .await?
            .map(|r| (TenantId::from_uuid(r.tenant_id), UserId::from_uuid(r.user_id))))
    }

    /// Signs in with an e-mail address: `check` judges the account's password (and status). Only an
    /// account that passes yields its scope; a refused one is returned for the audit entry.
    pub async fn sign_in(&self, email: &str, check: impl FnOnce(&User) -> bool) -> Result<SignIn, StoreError> {
        let Some((tenant, user)) = self.find_login(email).await? else { return Ok(SignIn::Unknown) };
        let store = TenantStore::new(self.db(), TenantScope::new(tenant));
        let Some(user) = store.user(user).await? else { return Ok(SignIn::Unknown) };
        Ok(if check(&user) { SignIn::Accepted(store.scope(), user) } else { SignIn::Refused(user) })
    }

    /// For a password-reset request naming `email`: an e-mail link token of `purpose` for the account's
    /// user if it is active, with `make` giving (secret, hash) for the user's tenant. Nothing when there is
    /// no such account; the caller answers the same either way.
    pub async fn issue_reset_link(
        &self,
        email: &str,
        ttl: time::Duration,
        make: impl FnOnce(TenantId) -> (String, String),
    ) -> Result<Option<(User, String)>, StoreError> {
        let Some((tenant, user)) = self.find_login(email).await? else { return Ok(None) };
        let store = TenantStore::new(self.db(), TenantScope::new(tenant));
        let Some(user) = store.user(user).await?.filter(|u| u.status == UserStatus::Active) else {
            return Ok(None);
        };
        let (secret, hash) = make(tenant);
        store.create_email_token(user.id, EmailPurpose::Reset, &hash, ttl).await?;
        Ok(Some((user, secret)))
    }

    /// Records a refused sign-in in the audit chain of the account's tenant.
    pub async fn audit_refused(&self, user: &User, entry: &AuditEntry) -> Result<(), StoreError> {
        TenantStore::new(self.db(), TenantScope::new(user.tenant)).audit(entry).await
    }

    /// Records an event that has no tenant (a failed sign-in for an unknown address).
    pub async fn audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        crate::audit::append_system(self.db(), entry).await
    }
}

/// What a sign-in attempt found.
#[derive(Debug)]
pub enum SignIn {
    Unknown,
    Refused(User),
    Accepted(TenantScope, User),
}

impl TenantStore<'_> {
    pub async fn user(&self, id: UserId) -> Result<Option<User>, StoreError> {
        let txn = self.read().await?;
        let row = users::Entity::find_by_id(id.as_uuid())
            .filter(users::Column::TenantId.eq(self.tenant_uuid()))
            .one(&txn)
            .await?;
        txn.commit().await?;
        row.map(user_from_row).transpose()
    }

    pub async fn users(&self) -> Result<Vec<User>, StoreError> {
        let txn = self.read().await?;
        let users = self.users_in(&txn).await?;
        txn.commit().await?;
        Ok(users)
    }

    pub(crate) async fn users_in(&self, txn: &DatabaseTransaction) -> Result<Vec<User>, StoreError> {
        let rows = users::Entity::find()
            .filter(users::Column::TenantId.eq(self.tenant_uuid()))
            .order_by_asc(users::Column::CreatedAt)
            .all(txn)
            .await?;
        rows.into_iter().map(user_from_row).collect()
    }

    /// Creates an account (an invitation when it has no password), audited in the same transaction.
    pub async fn add_user(&self, user: &NewUser<'_>, audit: &AuditEntry) -> Result<UserId, StoreError> {
        let txn = self.write().await?;
        for clinic in user.clinics {
            if self.clinic_in(&txn, *clinic).await?.is_none() {
                return Err(StoreError::NotFound { what: "clinic" });
            }
        }
        // An invitation (no password yet) claims no address: accepting it does. An account created with
        // a password (operators, the demo) is usable at once.
        let status = if user.password_hash.is_some() { UserStatus::Active } else { UserStatus::Invited };
        let id = insert_user(&txn, self.tenant_uuid(), user, status, status == UserStatus::Active).await?;
        let mut entry = audit.clone();
        entry.target = format!("user:{id}");
        self.append_in(&txn, &entry).await?;
        txn.commit().await?;
        Ok(id)
    }

    pub(crate) async fn append_in(&self, txn: &DatabaseTransaction, entry: &AuditEntry) -> Result<(), StoreError> {
        append(txn, &self.tenant_uuid().to_string(), Some(self.tenant_uuid()), entry).await
    }

    /// Applies `change` to one user row, bumps the session epoch when `revoke_sessions`, and appends
    /// `audit`, all in one transaction.
    async fn change_user(
        &self,
        id: UserId,
        revoke_sessions: bool,
        audit: &AuditEntry,
        change: impl FnOnce(&mut users::ActiveModel),
    ) -> Result<(), StoreError> {
        let txn = self.write().await?;
        let row = users::Entity::find_by_id(id.as_uuid())
            .filter(users::Column::TenantId.eq(self.tenant_uuid()))
            .lock_exclusive()
            .one(&txn)
            .await?
            .ok_or(StoreError::NotFound { what: "user" })?;
        let epoch = row.session_epoch;
        // Signing in needs the address proved and the account active; a change that makes that true (a
        // verification link followed, an invitation accepted) claims the address in the same
        // transaction: if another account has it, nothing changes.
        let usable = |u: &users::Model| u.email_verified_at.is_some() && u.status == UserStatus::Active.as_str();
        let was_usable = usable(&row);
        let mut active: users::ActiveModel = row.into();
        change(&mut active);
        if revoke_sessions {
            active.session_epoch = Set(epoch.wrapping_add(1));
        }
        active.updated_at = Set(OffsetDateTime::now_utc());
        let updated = active.update(&txn).await?;
        if usable(&updated) && !was_usable {
            claim_login(&txn, &updated.email, self.tenant_uuid(), id).await?;
        }
        self.append_in(&txn, audit).await?;
        txn.commit().await?;
        Ok(())
    }

    /// Sets a new password (change, reset, or accepting an invitation). Ends every session of the user.
    /// Accepting an invitation claims the address (`Conflict` when another account signs in with it).
    pub async fn set_password(&self, id: UserId, phc: &str, audit: &AuditEntry) -> Result<(), StoreError> {
        let phc = phc.to_owned();
        self.change_user(id, true, audit, move |u| {
            u.password_hash = Set(Some(phc));
            if let sea_orm::ActiveValue::Unchanged(s) | sea_orm::ActiveValue::Set(s) = &u.status
                && s == UserStatus::Invited.as_str()
            {
                u.status = Set(UserStatus::Active.as_str().to_owned());
                // The invitation reached this address: it is verified.
                u.email_verified_at = Set(Some(OffsetDateTime::now_utc()));
            }
        })
        .await
    }

    /// The signup's link was followed: the address is proved, and claimed (`Conflict` when another
    /// account already signs in with it).
    pub async fn mark_email_verified(&self, id: UserId, audit: &AuditEntry) -> Result<(), StoreError> {
        self.change_user(id, false, audit, |u| u.email_verified_at = Set(Some(OffsetDateTime::now_utc()))).await
    }

    /// Stores a TOTP secret that is not yet confirmed (enrolment in progress).
    pub async fn set_pending_totp(&self, id: UserId, secret: &str) -> Result<(), StoreError> {
        let txn = self.write().await?;
        users::Entity::update_many()
            .col_expr(users::Column::TotpSecret, Expr::value(secret.to_owned()))
            .col_expr(users::Column::TotpEnabled, Expr::value(false))
            .filter(users::Column::TenantId.eq(self.tenant_uuid()))
            .filter(users::Column::Id.eq(id.as_uuid()))
            .filter(users::Column::TotpEnabled.eq(false))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(())
    }

    /// Confirms the pending secret with an accepted step. Other sessions end (a second-factor change).
    pub async fn enable_totp(&self, id: UserId, step: u64, audit: &AuditEntry) -> Result<(), StoreError> {
        let step = i64::try_from(step).unwrap_or(i64::MAX);
        self.change_user(id, true, audit, move |u| {
            u.totp_enabled = Set(true);
            u.totp_last_step = Set(step);
        })
        .await
    }

    /// Removes the second factor (an owner resetting a user who lost the device). The user must enrol
    /// again at the next sign-in; sessions end.
    pub async fn reset_totp(&self, id: UserId, audit: &AuditEntry) -> Result<(), StoreError> {
        self.change_user(id, true, audit, |u| {
            u.totp_enabled = Set(false);
            u.totp_secret = Set(None);
        })
        .await
    }

    /// Marks `step` as used if it is later than the last used one. False means the code was replayed.
    pub async fn consume_totp_step(&self, id: UserId, step: u64) -> Result<bool, StoreError> {
        let step = i64::try_from(step).unwrap_or(i64::MAX);
        let txn = self.write().await?;
        let updated = users::Entity::update_many()
            .col_expr(users::Column::TotpLastStep, Expr::value(step))
            .filter(users::Column::TenantId.eq(self.tenant_uuid()))
            .filter(users::Column::Id.eq(id.as_uuid()))
            .filter(users::Column::TotpLastStep.lt(step))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(updated.rows_affected == 1)
    }

    pub async fn set_role(
        &self,
        id: UserId,
        role: Role,
        clinics: &[ClinicId],
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let json = clinic_json(clinics);
        for clinic in clinics {
            if self.clinic(*clinic).await?.is_none() {
                return Err(StoreError::NotFound { what: "clinic" });
            }
        }
        self.change_user(id, true, audit, move |u| {
            u.role = Set(role.as_str().to_owned());
            u.clinic_ids = Set(json);
        })
        .await
    }

    pub async fn set_status(&self, id: UserId, status: UserStatus, audit: &AuditEntry) -> Result<(), StoreError> {
        self.change_user(id, true, audit, move |u| u.status = Set(status.as_str().to_owned())).await
    }

    /// Ends every session of the user (sign out everywhere).
    pub async fn revoke_sessions(&self, id: UserId, audit: &AuditEntry) -> Result<(), StoreError> {
        self.change_user(id, true, audit, |_| {}).await
    }

    /// Stores the hash of an e-mail link token for `user`.
    pub async fn create_email_token(
        &self,
        user: UserId,
        purpose: EmailPurpose,
        token_hash: &str,
        ttl: time::Duration,
    ) -> Result<(), StoreError> {
        let txn = self.write().await?;
        let now = OffsetDateTime::now_utc();
        email_tokens::ActiveModel {
            token_hash: Set(token_hash.to_owned()),
            tenant_id: Set(self.tenant_uuid()),
            user_id: Set(user.as_uuid()),
            purpose: Set(purpose.as_str().to_owned()),
            expires_at: Set(now + ttl),
            used_at: Set(None),
            created_at: Set(now),
        }
        .insert(&txn)
        .await?;
        txn.commit().await?;
        Ok(())
    }

    /// Uses a link token once: the user it was for, if it is of `purpose`, unused and unexpired.
    /// Unknown, used and expired tokens are indistinguishable.
    pub async fn consume_email_token(
        &self,
        token_hash: &str,
        purpose: EmailPurpose,
    ) -> Result<Option<UserId>, StoreError> {
        let txn = self.write().await?;
        let now = OffsetDateTime::now_utc();
        let row = email_tokens::Entity::find_by_id(token_hash.to_owned())
            .filter(email_tokens::Column::TenantId.eq(self.tenant_uuid()))
            .filter(email_tokens::Column::Purpose.eq(purpose.as_str()))
            .filter(email_tokens::Column::UsedAt.is_null())
            .lock_exclusive()
            .one(&txn)
            .await?
            .filter(|r| r.expires_at > now);
        let Some(row) = row else {
            txn.commit().await?;
            return Ok(None);
        };
        let user = UserId::from_uuid(row.user_id);
        let mut active: email_tokens::ActiveModel = row.into();
        active.used_at = Set(Some(now));
        active.update(&txn).await?;
        txn.commit().await?;
        Ok(Some(user))
    }

    pub async fn create_api_token(
        &self,
        created_by: UserId,
        name: &str,
        scopes: &[ApiScope],
        token_hash: &str,
        expires_at: Option<OffsetDateTime>,
        audit: &AuditEntry,
    ) -> Result<ApiTokenId, StoreError> {
        let txn = self.write().await?;
        let id = ApiTokenId::new();
        api_tokens::ActiveModel {
            id: Set(id.as_uuid()),
            tenant_id: Set(self.tenant_uuid()),
            created_by: Set(created_by.as_uuid()),
            name: Set(name.chars().take(100).collect()),
            token_hash: Set(token_hash.to_owned()),
            scopes: Set(serde_json::to_value(scopes).map_err(|e| StoreError::Corrupt(e.to_string()))?),
            expires_at: Set(expires_at),
            last_used_at: Set(None),
            revoked_at: Set(None),
            created_at: Set(OffsetDateTime::now_utc()),
        }
        .insert(&txn)
        .await?;
        let mut entry = audit.clone();
        entry.target = format!("api-token:{id}");
        self.append_in(&txn, &entry).await?;
        txn.commit().await?;
        Ok(id)
    }

    pub async fn api_tokens(&self) -> Result<Vec<ApiToken>, StoreError> {
        let txn = self.read().await?;
        let rows = api_tokens::Entity::find()
            .filter(api_tokens::Column::TenantId.eq(self.tenant_uuid()))
            .order_by_desc(api_tokens::Column::CreatedAt)
            .all(&txn)
            .await?;
        txn.commit().await?;
        rows.into_iter().map(api_token_from_row).collect()
    }

    pub async fn revoke_api_token(&self, id: ApiTokenId, audit: &AuditEntry) -> Result<(), StoreError> {
        let txn = self.write().await?;
        let updated = api_tokens::Entity::update_many()
            .col_expr(api_tokens::Column::RevokedAt, Expr::value(OffsetDateTime::now_utc()))
            .filter(api_tokens::Column::TenantId.eq(self.tenant_uuid()))
            .filter(api_tokens::Column::Id.eq(id.as_uuid()))
            .filter(api_tokens::Column::RevokedAt.is_null())
            .exec(&txn)
            .await?;
        if updated.rows_affected == 0 {
            return Err(StoreError::NotFound { what: "api token" });
        }
        self.append_in(&txn, audit).await?;
        txn.commit().await?;
        Ok(())
    }
}

pub(crate) fn api_token_from_row(row: api_tokens::Model) -> Result<ApiToken, StoreError> {
    Ok(ApiToken {
        id: ApiTokenId::from_uuid(row.id),
        name: row.name,
        created_by: UserId::from_uuid(row.created_by),
        scopes: serde_json::from_value(row.scopes).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        expires_at: row.expires_at,
        last_used_at: row.last_used_at,
        revoked: row.revoked_at.is_some(),
        created_at: row.created_at,
    })
}
