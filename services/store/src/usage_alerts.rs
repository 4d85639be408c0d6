//! The usage watch's memory: which clinic-months managers were already warned about, so each warning goes
//! out once.

use onshi_domain::YearMonth;
use sea_orm::EntityTrait;
use sea_orm::sea_query::OnConflict;

use crate::{ClinicScope, StoreError, TenantStore};

impl TenantStore<'_> {
    /// Records that managers are being warned about `clinic` for `month`; false when that was done
    /// already (each warning goes out once). Audited, announced to webhooks (`usage.below_threshold` with
    /// `announced` as its data) and the e-mail `mails` writes queued, all in the claim's transaction.
    pub async fn claim_usage_alert(
        &self,
        clinic: &ClinicScope,
        month: YearMonth,
        audit: &crate::AuditEntry,
        announced: &serde_json::Value,
        mails: impl FnOnce(&[crate::User]) -> Vec<crate::NewMail> + Send,
    ) -> Result<bool, StoreError> {
        use crate::entities::usage_alerts;
        let txn = self.write().await?;
        let inserted = usage_alerts::ActiveModel {
            tenant_id: sea_orm::Set(self.tenant_uuid()),
            clinic_id: sea_orm::Set(clinic.uuid()),
            month: sea_orm::Set(month.to_string()),
            sent_at: sea_orm::Set(time::OffsetDateTime::now_utc()),
        };
        let result = usage_alerts::Entity::insert(inserted)
            .on_conflict(
                OnConflict::columns([
                    usage_alerts::Column::TenantId,
                    usage_alerts::Column::ClinicId,
                    usage_alerts::Column::Month,
                ])
                .do_nothing()
                .to_owned(),
            )
            .exec_without_returning(&txn)
            .await;
        let fresh = crate::error::inserted(result)?;
        if fresh {
            self.append_in(&txn, audit).await?;
            self.enqueue_webhook_in(&txn, onshi_domain::WebhookEvent::UsageBelowThreshold, announced).await?;
            self.queue_composed_in(&txn, mails).await?;
        }
        txn.commit().await?;
        Ok(fresh)
    }

    /// The usage warnings sent, newest first: (clinic, month, when).
    pub async fn usage_alerts(
        &self,
        limit: u64,
    ) -> Result<Vec<(onshi_domain::ClinicId, YearMonth, time::OffsetDateTime)>, StoreError> {
        use crate::entities::usage_alerts;
        use sea_orm::{ColumnTrait, QueryFilter, QueryOrder, QuerySelect};
        let txn = self.read().await?;
        let rows = usage_alerts::Entity::find()
            .filter(usage_alerts::Column::TenantId.eq(self.tenant_uuid()))
            .order_by_desc(usage_alerts::Column::SentAt)
            .limit(limit)
            .all(&txn)
            .await?;
        txn.commit().await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                Some((onshi_domain::ClinicId::from_uuid(r.clinic_id), YearMonth::parse(&r.month)?, r.sent_at))
            })
            .collect())
    }
}
