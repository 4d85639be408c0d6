//! Counts over a tenant's ingested data, for tests and benchmarks that prove exactly-once effect. Not
//! part of what the service offers: compiled only with the `counters` feature.

use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect};

use crate::TenantStore;
use crate::entities::{raw_events, visits};
use crate::error::StoreError;

impl TenantStore<'_> {
    pub async fn visit_count(&self) -> Result<u64, StoreError> {
        let txn = self.read().await?;
        let n = visits::Entity::find().filter(visits::Column::TenantId.eq(self.tenant)).count(&txn).await?;
        txn.commit().await?;
        Ok(n)
    }

    /// Sum of confirmations over all visits: equals the number of distinct non-bulk qualification events
    /// applied, which tests use to prove exactly-once effect.
    pub async fn confirmation_count(&self) -> Result<u64, StoreError> {
        let txn = self.read().await?;
        let total: Option<Option<i64>> = visits::Entity::find()
            .select_only()
            .column_as(visits::Column::Confirmations.sum(), "total")
            .filter(visits::Column::TenantId.eq(self.tenant))
            .into_tuple()
            .one(&txn)
            .await?;
        txn.commit().await?;
        Ok(total.flatten().unwrap_or(0).max(0) as u64)
    }

    pub async fn raw_event_count(&self) -> Result<u64, StoreError> {
        let txn = self.read().await?;
        let n = raw_events::Entity::find().filter(raw_events::Column::TenantId.eq(self.tenant)).count(&txn).await?;
        txn.commit().await?;
        Ok(n)
    }
}
