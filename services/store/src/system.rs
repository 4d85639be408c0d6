//! Operations that exist before a tenant is known. Keep this small: everything tenant-owned belongs in
//! `TenantStore`.

use onshi_domain::TenantId;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, DatabaseConnection, EntityTrait, PaginatorTrait};
use time::OffsetDateTime;

use crate::entities::tenants;
use crate::error::StoreError;

pub struct SystemStore<'a> {
    db: &'a DatabaseConnection,
}

impl<'a> SystemStore<'a> {
    pub(crate) fn new(db: &'a DatabaseConnection) -> Self {
        Self { db }
    }

    /// Creates a clinic group (tenant). Signup and the demo seed call this.
    pub async fn create_tenant(&self, name: &str) -> Result<TenantId, StoreError> {
        let id = TenantId::new();
        tenants::ActiveModel {
            id: Set(id.as_uuid()),
            name: Set(name.to_owned()),
            created_at: Set(OffsetDateTime::now_utc()),
        }
        .insert(self.db)
        .await?;
        Ok(id)
    }

    pub async fn tenant_exists(&self, id: TenantId) -> Result<bool, StoreError> {
        Ok(tenants::Entity::find_by_id(id.as_uuid()).one(self.db).await?.is_some())
    }

    /// The oldest tenant, if any. The demo database holds only the demo tenant.
    pub async fn first_tenant(&self) -> Result<Option<TenantId>, StoreError> {
        use sea_orm::QueryOrder;
        Ok(tenants::Entity::find()
            .order_by_asc(tenants::Column::CreatedAt)
            .one(self.db)
            .await?
            .map(|t| TenantId::from_uuid(t.id)))
    }

    pub async fn tenant_count(&self) -> Result<u64, StoreError> {
        Ok(tenants::Entity::find().count(self.db).await?)
    }
}
