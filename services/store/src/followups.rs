//! 資格無効 follow-up (`onshi_domain::followup`): a clinic's receptions whose latest result is not valid,
//! with the 保険者番号 and the status the desk set (`followups`; no row = open).

use onshi_domain::followup::FollowUpStatus;
use onshi_domain::{ConfirmationMethod, InsurerNumber, QualificationResult, UserId};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::entities::{followups, visits};
use crate::{AuditEntry, ClinicScope, StoreError, TenantStore};

/// One reception to follow up.
#[derive(Debug, Clone, PartialEq)]
pub struct FollowUpCase {
    pub visit: Uuid,
    pub first_at: OffsetDateTime,
    pub method: ConfirmationMethod,
    pub result: QualificationResult,
    pub insurer: Option<InsurerNumber>,
    /// The patient's keyed pseudonym, when the check identified one (never a name or number).
    pub patient: Option<String>,
    pub confirmations: u32,
    pub status: FollowUpStatus,
}

impl TenantStore<'_> {
    /// The receptions of `clinic` from `from` to `to` (JST dates, inclusive) whose latest result is not
    /// valid, oldest first, with their status.
    pub async fn followups(&self, clinic: &ClinicScope, from: Date, to: Date) -> Result<Vec<FollowUpCase>, StoreError> {
        let txn = self.read().await?;
        let rows = visits::Entity::find()
            .filter(visits::Column::TenantId.eq(self.tenant_uuid()))
            .filter(visits::Column::ClinicId.eq(clinic.uuid()))
            .filter(visits::Column::VisitDate.between(from, to))
            .filter(visits::Column::Result.ne(QualificationResult::Valid.as_str()))
            .order_by_asc(visits::Column::FirstAt)
            .all(&txn)
            .await?;
        let statuses = followups::Entity::find()
            .filter(followups::Column::TenantId.eq(self.tenant_uuid()))
            .filter(followups::Column::ClinicId.eq(clinic.uuid()))
            .filter(followups::Column::VisitDate.between(from, to))
            .all(&txn)
            .await?;
        txn.commit().await?;
        rows.into_iter()
            .map(|row| {
                let visit = crate::visits::visit_from_row(&row)?;
                let status = statuses
                    .iter()
                    .find(|s| s.visit_id == row.id)
                    .and_then(|s| FollowUpStatus::parse(&s.status))
                    .unwrap_or_default();
                Ok(FollowUpCase {
                    visit: row.id,
                    first_at: visit.first_at,
                    method: visit.method,
                    result: visit.result,
                    insurer: visit.insurer,
                    patient: visit.patient,
                    confirmations: visit.confirmations,
                    status,
                })
            })
            .collect()
    }

    /// Sets the status of receptions of `clinic` that need following up; ids that are not such a reception
    /// of this clinic are skipped. One transaction with its audit entry. Returns how many changed.
    pub async fn set_followup_statuses(
        &self,
        clinic: &ClinicScope,
        changes: &[(Uuid, FollowUpStatus)],
        by: Option<UserId>,
        audit: &AuditEntry,
    ) -> Result<usize, StoreError> {
        let txn = self.write().await?;
        let ids: Vec<Uuid> = changes.iter().map(|(id, _)| *id).collect();
        let cases = visits::Entity::find()
            .filter(visits::Column::TenantId.eq(self.tenant_uuid()))
            .filter(visits::Column::ClinicId.eq(clinic.uuid()))
            .filter(visits::Column::Id.is_in(ids))
            .filter(visits::Column::Result.ne(QualificationResult::Valid.as_str()))
            .all(&txn)
            .await?;
        let now = OffsetDateTime::now_utc();
        let mut changed = 0;
        for (id, status) in changes {
            let Some(case) = cases.iter().find(|c| c.id == *id) else { continue };
            let row = followups::ActiveModel {
                tenant_id: Set(self.tenant_uuid()),
                clinic_id: Set(clinic.uuid()),
                visit_id: Set(*id),
                visit_date: Set(case.visit_date),
                status: Set(status.code().to_owned()),
                updated_by: Set(by.map(|u| u.as_uuid())),
                updated_at: Set(now),
            };
            let upsert = OnConflict::columns([followups::Column::TenantId, followups::Column::VisitId])
                .update_columns([followups::Column::Status, followups::Column::UpdatedBy, followups::Column::UpdatedAt])
                .to_owned();
            followups::Entity::insert(row).on_conflict(upsert).exec_without_returning(&txn).await?;
            changed += 1;
        }
        if changed > 0 {
            self.append_in(&txn, audit).await?;
        }
        txn.commit().await?;
        Ok(changed)
    }
}
