//! Storage of the billing review: clinic settings for the rules engine, reviews, closed months, exports.
//! A closed month refuses further reviews; every change is audited in its own transaction.

use std::collections::HashMap;

use onshi_domain::{UserId, YearMonth};
use onshi_rules::ClinicSettings;
use sea_orm::sea_query::ExprTrait;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::audit::AuditEntry;
use crate::entities::{billing_exports, billing_months, billing_reviews, clinic_billing, visits};
use crate::{ClinicScope, StoreError, TenantStore};

/// A visit as the billing review needs it. Holds the patient pseudonym for the engine; never rendered.
#[derive(Debug, Clone)]
pub struct BillingVisit {
    pub id: Uuid,
    /// The patient's pseudonym (`visit:<id>` for a valid check without one: its own patient).
    pub patient: String,
    pub date: Date,
    pub first_at: OffsetDateTime,
    pub myna: bool,
    /// 診療情報 obtained through オン資: the patient consented to sharing medication or diagnosis data.
    pub info_obtained: bool,
    /// No earlier visit of this patient at this clinic in our data.
    pub first_seen: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoredReview {
    pub visit: Uuid,
    pub status: String,
    pub kind: Option<String>,
    pub info_obtained: Option<bool>,
    pub exclude: bool,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct ExportRecord {
    pub id: Uuid,
    pub object_key: String,
    pub encoding: String,
    pub rows: i32,
    /// SHA-256 of the stored file (none for exports made before it was kept).
    pub sha256: Option<String>,
    pub created_at: OffsetDateTime,
}

/// A closed month: when, by whom, and the review it was closed with (none for months closed before
/// snapshots were kept).
#[derive(Debug, Clone)]
pub struct ClosedMonth {
    pub at: OffsetDateTime,
    pub by: UserId,
    pub snapshot: Option<String>,
    pub snapshot_sha256: Option<String>,
}

/// A visit's id and first confirmation time, and whether it identified its patient (`billing_visits`
/// returns only those that did).
#[derive(Debug, Clone)]
pub struct VisitTime {
    pub id: Uuid,
    pub first_at: OffsetDateTime,
    pub identified: bool,
}

/// A check that identified nobody: no patient, and a result other than valid (an error, nobody found,
/// several candidates).
fn unidentified() -> sea_orm::sea_query::SimpleExpr {
    visits::Column::PatientRef
        .is_null()
        .and(visits::Column::Result.ne(onshi_domain::QualificationResult::Valid.as_str()))
}

impl TenantStore<'_> {
    /// The clinic's settings for the rules engine, empty when unset: its 届出 and オン資件数ベース rates from
    /// the billing settings, and as `usage_rates` the official レセプト件数ベース figures, whose only home is
    /// `official_usage` (migration m20261207_000026).
    pub async fn billing_settings(&self, clinic: &ClinicScope) -> Result<ClinicSettings, StoreError> {
        let txn = self.read().await?;
        let row = clinic_billing::Entity::find_by_id(clinic.uuid())
            .filter(clinic_billing::Column::TenantId.eq(self.tenant_uuid()))
            .one(&txn)
            .await?;
        let official = crate::entities::official_usage::Entity::find()
            .filter(crate::entities::official_usage::Column::TenantId.eq(self.tenant_uuid()))
            .filter(crate::entities::official_usage::Column::ClinicId.eq(clinic.uuid()))
            .all(&txn)
            .await?;
        txn.commit().await?;
        let mut settings = match row {
            Some(r) => ClinicSettings::from_json(&r.settings).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            None => ClinicSettings::default(),
        };
        // A copy left in the settings is not read: the table is the figure a correction changes.
        settings.usage_rates.clear();
        for o in official {
            if let Some(month) = YearMonth::parse(&o.month) {
                settings.usage_rates.insert(month, o.rate);
            }
        }
        Ok(settings)
    }

    /// Saves the clinic's 届出 and オン資件数ベース rates. Its `usage_rates` are not saved: they are the
    /// official figures `billing_settings` read, entered through `set_official_usage`.
    pub async fn set_billing_settings(
        &self,
        clinic: &ClinicScope,
        settings: &ClinicSettings,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let mut json = settings.to_json();
        if let Some(object) = json.as_object_mut() {
            object.remove("usage_rates");
        }
        let txn = self.write().await?;
        let exists = clinic_billing::Entity::find_by_id(clinic.uuid())
            .filter(clinic_billing::Column::TenantId.eq(self.tenant_uuid()))
            .one(&txn)
            .await?
            .is_some();
        let row = clinic_billing::ActiveModel {
            clinic_id: Set(clinic.uuid()),
            tenant_id: Set(self.tenant_uuid()),
            settings: Set(json),
            updated_at: Set(OffsetDateTime::now_utc()),
        };
        if exists {
            row.update(&txn).await?;
        } else {
            row.insert(&txn).await?;
        }
        self.append_in(&txn, audit).await?;
        txn.commit().await?;
        Ok(())
    }

    /// Visits of a clinic from `from` to `to` inclusive, with whether each is the patient's first here.
    ///
    /// Not the checks that identified nobody (an error, nobody found, several candidates): such a check
    /// stands alone in `visits` and is no reception to bill. Most are followed by a retry that
    /// finds the patient, which is that person's visit; counted as visits of their own they were each a
    /// "first visit" of nobody, a second provisional 初診 addon for one reception. The billing page says
    /// how many there were (`visit_times`).
    pub async fn billing_visits(
        &self,
        clinic: &ClinicScope,
        from: Date,
        to: Date,
    ) -> Result<Vec<BillingVisit>, StoreError> {
        let txn = self.read().await?;
        let rows = visits::Entity::find()
            .filter(visits::Column::TenantId.eq(self.tenant_uuid()))
            .filter(visits::Column::ClinicId.eq(clinic.uuid()))
            .filter(visits::Column::VisitDate.gte(from))
            .filter(visits::Column::VisitDate.lte(to))
            .filter(unidentified().not())
            .order_by_asc(visits::Column::FirstAt)
            .all(&txn)
            .await?;
        let patients: Vec<String> = rows.iter().filter_map(|r| r.patient_ref.clone()).collect();
        let mut first_dates: HashMap<String, Date> = HashMap::new();
        for chunk in patients.chunks(500) {
            let found: Vec<(Option<String>, Option<Date>)> = visits::Entity::find()
                .select_only()
                .column(visits::Column::PatientRef)
                .column_as(visits::Column::VisitDate.min(), "first")
                .filter(visits::Column::TenantId.eq(self.tenant_uuid()))
                .filter(visits::Column::ClinicId.eq(clinic.uuid()))
                .filter(visits::Column::PatientRef.is_in(chunk.iter().cloned()))
                .group_by(visits::Column::PatientRef)
                .into_tuple()
                .all(&txn)
                .await?;
            first_dates.extend(found.into_iter().filter_map(|(p, d)| Some((p?, d?))));
        }
        txn.commit().await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                // A valid check whose result lacked the patient's identifiers (never seen from a real
                // terminal, but the event allows it) is a reception: its own patient, as it always was.
                let patient = r.patient_ref.unwrap_or_else(|| format!("visit:{}", r.id));
                BillingVisit {
                    id: r.id,
                    first_seen: first_dates.get(&patient).is_none_or(|d| *d >= r.visit_date),
                    patient,
                    date: r.visit_date,
                    first_at: r.first_at,
                    myna: r.myna,
                    info_obtained: r.consent_medication == Some(true) || r.consent_diagnosis == Some(true),
                }
            })
            .collect())
    }

    /// Every visit of a clinic from `from` to `to` inclusive, with its first confirmation time and whether
    /// it identified its patient: one light read for what a closed month's page needs (the times of the
    /// lines it kept, the visits that arrived since) and for counting the checks `billing_visits` leaves
    /// out, without `billing_visits`' look-up of each patient's first visit.
    pub async fn visit_times(&self, clinic: &ClinicScope, from: Date, to: Date) -> Result<Vec<VisitTime>, StoreError> {
        let txn = self.read().await?;
        let rows: Vec<(Uuid, OffsetDateTime, bool)> = visits::Entity::find()
            .select_only()
            .column(visits::Column::Id)
            .column(visits::Column::FirstAt)
            .expr_as(unidentified(), "unidentified")
            .filter(visits::Column::TenantId.eq(self.tenant_uuid()))
            .filter(visits::Column::ClinicId.eq(clinic.uuid()))
            .filter(visits::Column::VisitDate.gte(from))
            .filter(visits::Column::VisitDate.lte(to))
            .into_tuple()
            .all(&txn)
            .await?;
        txn.commit().await?;
        Ok(rows
            .into_iter()
            .map(|(id, first_at, unidentified)| VisitTime { id, first_at, identified: !unidentified })
            .collect())
    }

    /// Reviews of the clinic's visits in the given months ("YYYY-MM").
    pub async fn billing_reviews(
        &self,
        clinic: &ClinicScope,
        months: &[YearMonth],
    ) -> Result<Vec<StoredReview>, StoreError> {
        let txn = self.read().await?;
        let rows = billing_reviews::Entity::find()
            .filter(billing_reviews::Column::TenantId.eq(self.tenant_uuid()))
            .filter(billing_reviews::Column::ClinicId.eq(clinic.uuid()))
            .filter(billing_reviews::Column::Month.is_in(months.iter().map(ToString::to_string)))
            .all(&txn)
            .await?;
        txn.commit().await?;
        Ok(rows
            .into_iter()
            .map(|r| StoredReview {
                visit: r.visit_id,
                status: r.status,
                kind: r.kind,
                info_obtained: r.info_obtained,
                exclude: r.exclude,
                reason: r.reason,
            })
            .collect())
    }

    /// When and by whom the month was closed, with what it was closed with, if it was.
    pub async fn billing_month_closed(
        &self,
        clinic: &ClinicScope,
        month: YearMonth,
    ) -> Result<Option<ClosedMonth>, StoreError> {
        let txn = self.read().await?;
        let row = billing_months::Entity::find_by_id((self.tenant_uuid(), clinic.uuid(), month.to_string()))
            .one(&txn)
            .await?;
        txn.commit().await?;
        Ok(row.map(|r| ClosedMonth {
            at: r.closed_at,
            by: UserId::from_uuid(r.closed_by),
            snapshot: r.snapshot,
            snapshot_sha256: r.snapshot_sha256,
        }))
    }

    /// `Conflict` when the month is closed: nothing in it may change (reviews, approvals).
    async fn refuse_if_closed(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        clinic: &ClinicScope,
        month: YearMonth,
    ) -> Result<(), StoreError> {
        let closed = billing_months::Entity::find_by_id((self.tenant_uuid(), clinic.uuid(), month.to_string()))
            .one(txn)
            .await?
            .is_some();
        if closed { Err(StoreError::Conflict { what: "a closed billing month" }) } else { Ok(()) }
    }

    /// Reopens a closed month: the close and its snapshot go, in one transaction with the audit entry
    /// (which carries the reason and the snapshot's hash).
    pub async fn reopen_billing_month(
        &self,
        clinic: &ClinicScope,
        month: YearMonth,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let txn = self.write().await?;
        let removed = billing_months::Entity::delete_by_id((self.tenant_uuid(), clinic.uuid(), month.to_string()))
            .exec(&txn)
            .await?
            .rows_affected;
        if removed == 0 {
            return Err(StoreError::NotFound { what: "closed billing month" });
        }
        self.append_in(&txn, audit).await?;
        txn.commit().await?;
        Ok(())
    }

    /// Records reviews of visits of the clinic's month (each replacing the visit's earlier review), in one
    /// transaction with one audit entry, unless the month is closed. A visit of another clinic, tenant or
    /// month is not found, and nothing is written.
    pub async fn review_visits(
        &self,
        clinic: &ClinicScope,
        month: YearMonth,
        reviews: &[StoredReview],
        user: UserId,
        audit: &AuditEntry,
    ) -> Result<usize, StoreError> {
        let txn = self.write().await?;
        self.refuse_if_closed(&txn, clinic, month).await?;
        let now = OffsetDateTime::now_utc();
        for chunk in reviews.chunks(500) {
            let ids: Vec<Uuid> = chunk.iter().map(|r| r.visit).collect();
            let found: Vec<(Uuid, Date)> = visits::Entity::find()
                .select_only()
                .column(visits::Column::Id)
                .column(visits::Column::VisitDate)
                .filter(visits::Column::TenantId.eq(self.tenant_uuid()))
                .filter(visits::Column::ClinicId.eq(clinic.uuid()))
                .filter(visits::Column::Id.is_in(ids.iter().copied()))
                .into_tuple()
                .all(&txn)
                .await?;
            let distinct: std::collections::BTreeSet<Uuid> = ids.iter().copied().collect();
            if found.len() != distinct.len() || found.iter().any(|(_, d)| !month.contains(*d)) {
                return Err(StoreError::NotFound { what: "visit" });
            }
            billing_reviews::Entity::delete_many()
                .filter(billing_reviews::Column::TenantId.eq(self.tenant_uuid()))
                .filter(billing_reviews::Column::VisitId.is_in(ids.iter().copied()))
                .exec(&txn)
                .await?;
            let rows = chunk.iter().map(|review| billing_reviews::ActiveModel {
                visit_id: Set(review.visit),
                tenant_id: Set(self.tenant_uuid()),
                clinic_id: Set(clinic.uuid()),
                month: Set(month.to_string()),
                status: Set(review.status.clone()),
                kind: Set(review.kind.clone()),
                info_obtained: Set(review.info_obtained),
                exclude: Set(review.exclude),
                reason: Set(review.reason.chars().take(500).collect()),
                user_id: Set(user.as_uuid()),
                at: Set(now),
            });
            billing_reviews::Entity::insert_many(rows).exec(&txn).await?;
        }
        self.append_in(&txn, audit).await?;
        txn.commit().await?;
        Ok(reviews.len())
    }

    /// Closes the month with `snapshot`, the review as it stands (JSON), kept with its SHA-256 (which
    /// the caller has computed for the audit entry too).
    #[allow(clippy::too_many_arguments)]
    pub async fn close_billing_month(
        &self,
        clinic: &ClinicScope,
        month: YearMonth,
        snapshot: &str,
        snapshot_sha256: &str,
        user: UserId,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let txn = self.write().await?;
        if self.clinic_in(&txn, clinic.id).await?.is_some() {
            billing_months::ActiveModel {
                tenant_id: Set(self.tenant_uuid()),
                clinic_id: Set(clinic.uuid()),
                month: Set(month.to_string()),
                closed_at: Set(OffsetDateTime::now_utc()),
                closed_by: Set(user.as_uuid()),
                snapshot: Set(Some(snapshot.to_owned())),
                snapshot_sha256: Set(Some(snapshot_sha256.to_owned())),
            }
            .insert(&txn)
            .await
            .map_err(|e| match e.sql_err() {
                Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => {
                    StoreError::Conflict { what: "a closed billing month" }
                }
                _ => StoreError::Db(e),
            })?;
        } else {
            return Err(StoreError::NotFound { what: "clinic" });
        }
        self.append_in(&txn, audit).await?;
        let announced = serde_json::json!({
            "clinic_id": clinic.id,
            "month": month.to_string(),
            "closed_by": user,
            "snapshot_sha256": snapshot_sha256,
        });
        self.enqueue_webhook_in(&txn, onshi_domain::WebhookEvent::BillingMonthClosed, &announced).await?;
        txn.commit().await?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn record_billing_export(
        &self,
        clinic: &ClinicScope,
        month: YearMonth,
        object_key: &str,
        encoding: &str,
        rows: usize,
        sha256: &str,
        user: UserId,
        audit: &AuditEntry,
    ) -> Result<Uuid, StoreError> {
        let txn = self.write().await?;
        let id = Uuid::now_v7();
        billing_exports::ActiveModel {
            id: Set(id),
            tenant_id: Set(self.tenant_uuid()),
            clinic_id: Set(clinic.uuid()),
            month: Set(month.to_string()),
            object_key: Set(object_key.to_owned()),
            encoding: Set(encoding.to_owned()),
            rows: Set(i32::try_from(rows).unwrap_or(i32::MAX)),
            sha256: Set(Some(sha256.to_owned())),
            created_by: Set(user.as_uuid()),
            created_at: Set(OffsetDateTime::now_utc()),
        }
        .insert(&txn)
        .await?;
        self.append_in(&txn, audit).await?;
        txn.commit().await?;
        Ok(id)
    }

    pub async fn billing_exports(
        &self,
        clinic: &ClinicScope,
        month: YearMonth,
    ) -> Result<Vec<ExportRecord>, StoreError> {
        let txn = self.read().await?;
        let rows = billing_exports::Entity::find()
            .filter(billing_exports::Column::TenantId.eq(self.tenant_uuid()))
            .filter(billing_exports::Column::ClinicId.eq(clinic.uuid()))
            .filter(billing_exports::Column::Month.eq(month.to_string()))
            .order_by_desc(billing_exports::Column::CreatedAt)
            .all(&txn)
            .await?;
        txn.commit().await?;
        Ok(rows
            .into_iter()
            .map(|r| ExportRecord {
                id: r.id,
                object_key: r.object_key,
                encoding: r.encoding,
                rows: r.rows,
                sha256: r.sha256,
                created_at: r.created_at,
            })
            .collect())
    }
}
