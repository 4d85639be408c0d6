//! Visits (受付): how a stored row maps to the domain's `Visit` and to what pages read, and the clinic-level
//! queries over them. Visits are written only by `ingest`.

use onshi_domain::{ClinicId, ConfirmationMethod, Consents, QualificationResult, Visit};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue::Set, ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::entities::visits;
use crate::error::StoreError;
use crate::{ClinicScope, TenantStore};

/// A visit as pages and exports read it. The patient pseudonym is not part of it: no page needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct VisitRow {
    pub clinic: ClinicId,
    pub date: Date,
    pub first_at: OffsetDateTime,
    pub last_at: OffsetDateTime,
    pub method: ConfirmationMethod,
    pub myna: bool,
    pub result: QualificationResult,
    pub consents: Consents,
    pub confirmations: u32,
}

/// Which visits of a clinic a listing returns: days `from..=to`, optionally one method and one result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VisitFilter {
    pub from: Date,
    pub to: Date,
    pub method: Option<ConfirmationMethod>,
    pub result: Option<QualificationResult>,
}

/// Where a page of a visit listing ended: listings are ordered by day, then by the row's id, so a cursor
/// stays valid while new visits arrive (they land on their own day, never between two pages of a past one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VisitCursor {
    pub date: Date,
    pub id: Uuid,
}

impl std::fmt::Display for VisitCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", onshi_domain::Day(self.date), self.id.simple())
    }
}

impl std::str::FromStr for VisitCursor {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        // Exactly the form `Display` writes: what the API hands out and documents, nothing looser.
        let (date, id) = s.split_once('.').ok_or(())?;
        if date.len() != 10 || id.len() != 32 || !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(());
        }
        let date = onshi_domain::jst::parse_date(date).ok_or(())?;
        let id = Uuid::try_parse(id).map_err(|_| ())?;
        Ok(Self { date, id })
    }
}

impl TenantStore<'_> {
    /// One page of a clinic's visits after `after`, in listing order, with each visit's cursor.
    pub async fn visits_page(
        &self,
        clinic: &ClinicScope,
        filter: &VisitFilter,
        after: Option<VisitCursor>,
        limit: u64,
    ) -> Result<Vec<(VisitCursor, Visit)>, StoreError> {
        let mut query = visits::Entity::find()
            .filter(visits::Column::TenantId.eq(self.tenant))
            .filter(visits::Column::ClinicId.eq(clinic.uuid()))
            .filter(visits::Column::VisitDate.gte(filter.from))
            .filter(visits::Column::VisitDate.lte(filter.to));
        if let Some(method) = filter.method {
            query = query.filter(visits::Column::Method.eq(method.as_str()));
        }
        if let Some(result) = filter.result {
            query = query.filter(visits::Column::Result.eq(result.as_str()));
        }
        if let Some(after) = after {
            query = query.filter(Condition::any().add(visits::Column::VisitDate.gt(after.date)).add(
                Condition::all().add(visits::Column::VisitDate.eq(after.date)).add(visits::Column::Id.gt(after.id)),
            ));
        }
        let txn = self.read().await?;
        let rows = query
            .order_by_asc(visits::Column::VisitDate)
            .order_by_asc(visits::Column::Id)
            .limit(limit)
            .all(&txn)
            .await?;
        txn.commit().await?;
        rows.iter().map(|r| Ok((VisitCursor { date: r.visit_date, id: r.id }, visit_from_row(r)?))).collect()
    }

    /// Visits of a clinic whose qualification was not confirmed valid, newest first (follow-up list).
    pub async fn invalid_visits(
        &self,
        clinic: &ClinicScope,
        from: Date,
        to: Date,
        limit: u64,
    ) -> Result<Vec<crate::VisitRow>, StoreError> {
        self.clinic_visits(clinic, |q| {
            q.filter(visits::Column::VisitDate.gte(from))
                .filter(visits::Column::VisitDate.lte(to))
                // A literal, not a parameter: the planner uses the partial index `visits_not_valid` only
                // when it can see that the predicate is the index's.
                .filter(Expr::cust(format!("result <> '{}'", QualificationResult::Valid.as_str())))
                .order_by_desc(visits::Column::LastAt)
                .limit(limit)
        })
        .await
    }

    /// The latest visits of a clinic, newest first.
    pub async fn recent_visits(&self, clinic: &ClinicScope, limit: u64) -> Result<Vec<VisitRow>, StoreError> {
        self.clinic_visits(clinic, |q| q.order_by_desc(visits::Column::LastAt).limit(limit)).await
    }

    /// Visits of a clinic on one day, oldest first.
    pub async fn visits_on(&self, clinic: &ClinicScope, date: Date) -> Result<Vec<VisitRow>, StoreError> {
        self.clinic_visits(clinic, |q| {
            q.filter(visits::Column::VisitDate.eq(date)).order_by_asc(visits::Column::FirstAt)
        })
        .await
    }
}

fn parse_method(s: &str) -> Result<ConfirmationMethod, StoreError> {
    ConfirmationMethod::parse(s).ok_or_else(|| StoreError::Corrupt(format!("visit method {s}")))
}

fn parse_result(s: &str) -> Result<QualificationResult, StoreError> {
    QualificationResult::parse(s).ok_or_else(|| StoreError::Corrupt(format!("visit result {s}")))
}

fn consents_of(row: &visits::Model) -> Consents {
    Consents {
        medication: row.consent_medication,
        diagnosis: row.consent_diagnosis,
        checkup: row.consent_checkup,
        surgery: row.consent_surgery,
    }
}

pub(crate) fn visit_from_row(row: &visits::Model) -> Result<Visit, StoreError> {
    Ok(Visit {
        key: row.visit_key.clone(),
        date: row.visit_date,
        patient: row.patient_ref.clone(),
        first_at: row.first_at,
        last_at: row.last_at,
        method: parse_method(&row.method)?,
        identity: row.identity_check.as_deref().and_then(onshi_domain::IdentityCheck::parse),
        myna: row.myna,
        result: parse_result(&row.result)?,
        // A stored number that no longer parses is dropped, not fatal: it only serves follow-up.
        insurer: row.insurer_number.as_deref().and_then(onshi_domain::InsurerNumber::parse),
        consents: consents_of(row),
        confirmations: u32::try_from(row.confirmations).unwrap_or(0),
    })
}

pub(crate) fn visit_row_from_model(row: &visits::Model) -> Result<VisitRow, StoreError> {
    Ok(VisitRow {
        clinic: ClinicId::from_uuid(row.clinic_id),
        date: row.visit_date,
        first_at: row.first_at,
        last_at: row.last_at,
        method: parse_method(&row.method)?,
        myna: row.myna,
        result: parse_result(&row.result)?,
        consents: consents_of(row),
        confirmations: u32::try_from(row.confirmations).unwrap_or(0),
    })
}

pub(crate) fn set_visit_fields(active: &mut visits::ActiveModel, visit: &Visit) {
    let utc = time::UtcOffset::UTC;
    active.visit_date = Set(visit.date);
    active.patient_ref = Set(visit.patient.clone());
    active.first_at = Set(visit.first_at.to_offset(utc));
    active.last_at = Set(visit.last_at.to_offset(utc));
    active.method = Set(visit.method.as_str().to_owned());
    active.identity_check = Set(visit.identity.map(|i| i.as_str().to_owned()));
    active.myna = Set(visit.myna);
    active.result = Set(visit.result.as_str().to_owned());
    active.consent_medication = Set(visit.consents.medication);
    active.consent_diagnosis = Set(visit.consents.diagnosis);
    active.consent_checkup = Set(visit.consents.checkup);
    active.consent_surgery = Set(visit.consents.surgery);
    active.confirmations = Set(i32::try_from(visit.confirmations).unwrap_or(i32::MAX));
    active.insurer_number = Set(visit.insurer.as_ref().map(|i| i.as_str().to_owned()));
    active.updated_at = Set(OffsetDateTime::now_utc());
}

impl TenantStore<'_> {
    /// Visits of one clinic as pages read them, with `refine` adding the day, filter and order.
    async fn clinic_visits(
        &self,
        clinic: &ClinicScope,
        refine: impl FnOnce(sea_orm::Select<visits::Entity>) -> sea_orm::Select<visits::Entity>,
    ) -> Result<Vec<VisitRow>, StoreError> {
        let txn = self.read().await?;
        let query = visits::Entity::find()
            .filter(visits::Column::TenantId.eq(self.tenant))
            .filter(visits::Column::ClinicId.eq(clinic.uuid()));
        let rows = refine(query).all(&txn).await?;
        txn.commit().await?;
        rows.iter().map(visit_row_from_model).collect()
    }
}
