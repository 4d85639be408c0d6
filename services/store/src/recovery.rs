//! Recovery codes of a user's second factor: a set replaced whole, each code usable once.

use onshi_domain::UserId;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, Set};
use time::OffsetDateTime;

use crate::audit::AuditEntry;
use crate::entities::recovery_codes;
use crate::{StoreError, TenantStore};

impl TenantStore<'_> {
    /// Replaces the user's recovery codes with `hashes` (the old ones stop working), audited.
    pub async fn replace_recovery_codes(
        &self,
        user: UserId,
        hashes: &[String],
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let txn = self.write().await?;
        recovery_codes::Entity::delete_many()
            .filter(recovery_codes::Column::TenantId.eq(self.tenant_uuid()))
            .filter(recovery_codes::Column::UserId.eq(user.as_uuid()))
            .exec(&txn)
            .await?;
        let now = OffsetDateTime::now_utc();
        let rows = hashes.iter().map(|h| recovery_codes::ActiveModel {
            tenant_id: Set(self.tenant_uuid()),
            user_id: Set(user.as_uuid()),
            code_hash: Set(h.clone()),
            created_at: Set(now),
            used_at: Set(None),
        });
        recovery_codes::Entity::insert_many(rows).exec(&txn).await?;
        self.append_in(&txn, audit).await?;
        txn.commit().await?;
        Ok(())
    }

    /// Uses the code with this hash if it is the user's and unused: `Some(codes left)` then, else `None`.
    /// Marking it used is one conditional update, so two sign-ins racing with one code cannot both pass.
    pub async fn use_recovery_code(&self, user: UserId, hash: &str) -> Result<Option<u64>, StoreError> {
        let txn = self.write().await?;
        let used = recovery_codes::Entity::update_many()
            .col_expr(recovery_codes::Column::UsedAt, Expr::value(OffsetDateTime::now_utc()))
            .filter(recovery_codes::Column::TenantId.eq(self.tenant_uuid()))
            .filter(recovery_codes::Column::UserId.eq(user.as_uuid()))
            .filter(recovery_codes::Column::CodeHash.eq(hash))
            .filter(recovery_codes::Column::UsedAt.is_null())
            .exec(&txn)
            .await?
            .rows_affected;
        let left = if used == 1 { Some(self.unused_in(&txn, user).await?) } else { None };
        txn.commit().await?;
        Ok(left)
    }

    /// How many of the user's recovery codes are still unused.
    pub async fn recovery_codes_left(&self, user: UserId) -> Result<u64, StoreError> {
        let txn = self.read().await?;
        let left = self.unused_in(&txn, user).await?;
        txn.commit().await?;
        Ok(left)
    }

    async fn unused_in(&self, txn: &sea_orm::DatabaseTransaction, user: UserId) -> Result<u64, StoreError> {
        Ok(recovery_codes::Entity::find()
            .filter(recovery_codes::Column::TenantId.eq(self.tenant_uuid()))
            .filter(recovery_codes::Column::UserId.eq(user.as_uuid()))
            .filter(recovery_codes::Column::UsedAt.is_null())
            .count(txn)
            .await?)
    }
}
