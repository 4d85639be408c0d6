//! A tenant's door: `TenantStore` holds a tenant id taken from a [`TenantScope`], and every query in the
//! modules that extend it (`clinics`, `devices`, `visits`, `ingest`, `rollups`, `billing`, `accounts`,
//! `audit`, ...) filters on that id, inside a transaction that also sets it for PostgreSQL's row-level
//! security. A row of another tenant is indistinguishable from a missing one.

use sea_orm::{DatabaseConnection, DatabaseTransaction};
use uuid::Uuid;

use crate::TenantScope;
use crate::error::StoreError;

pub struct TenantStore<'a> {
    pub(crate) db: &'a DatabaseConnection,
    pub(crate) tenant: Uuid,
}

impl<'a> TenantStore<'a> {
    pub(crate) fn new(db: &'a DatabaseConnection, scope: TenantScope) -> Self {
        Self { db, tenant: scope.tenant_id().as_uuid() }
    }

    /// A read transaction scoped to this tenant (see `crate::begin_tenant`).
    pub(crate) async fn read(&self) -> Result<DatabaseTransaction, StoreError> {
        crate::begin_tenant(self.db, self.tenant, false).await
    }

    /// A write transaction scoped to this tenant.
    pub(crate) async fn write(&self) -> Result<DatabaseTransaction, StoreError> {
        crate::begin_tenant(self.db, self.tenant, true).await
    }

    pub(crate) fn tenant_uuid(&self) -> Uuid {
        self.tenant
    }

    pub fn scope(&self) -> TenantScope {
        TenantScope::new(onshi_domain::TenantId::from_uuid(self.tenant))
    }
}
