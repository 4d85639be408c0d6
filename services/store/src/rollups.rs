//! Dashboard rollups (daily with receptions per hour, per patient-month, per clinic-month), kept by
//! `apply_batches` in the transaction that changes the visits: a visit's old
//! contribution is subtracted and its new one added, so merges (a late confirmation that changes the
//! method or the first time) keep the sums exact, and a redelivered batch, which changes no visit,
//! changes no rollup. `rebuild_rollups` recomputes a tenant's rollups from its visits. What a visit
//! contributes is the domain's `RollupDelta`; this module only reads visits and writes the sums.

use std::collections::BTreeMap;

use onshi_domain::{ClinicId, ConfirmationMethod, RollupDelta, YearMonth};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, OnConflict};
use sea_orm::{ActiveModelTrait, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use time::Date;
use uuid::Uuid;

use crate::entities::{monthly_patients, monthly_usage, reception_daily, visits};
use crate::{ClinicScope, StoreError, TenantStore};

/// The daily rollup's counters, in `Counts`' order.
const DAILY_COUNTERS: [reception_daily::Column; 9] = {
    use reception_daily::Column as D;
    [
        D::Receptions,
        D::Myna,
        D::ConsentMedication,
        D::ConsentDiagnosis,
        D::ConsentCheckup,
        D::Invalid,
        D::Face,
        D::Pin,
        D::Visual,
    ]
};
/// Its receptions per JST hour, 0 to 23.
const DAILY_HOURS: [reception_daily::Column; 24] = {
    use reception_daily::Column as D;
    [
        D::Hour00,
        D::Hour01,
        D::Hour02,
        D::Hour03,
        D::Hour04,
        D::Hour05,
        D::Hour06,
        D::Hour07,
        D::Hour08,
        D::Hour09,
        D::Hour10,
        D::Hour11,
        D::Hour12,
        D::Hour13,
        D::Hour14,
        D::Hour15,
        D::Hour16,
        D::Hour17,
        D::Hour18,
        D::Hour19,
        D::Hour20,
        D::Hour21,
        D::Hour22,
        D::Hour23,
    ]
};

/// Upserts rollup rows 500 to a statement: a row that exists gets each of `counters` added.
async fn add_counts<E, const K: usize>(
    txn: &DatabaseTransaction,
    rows: Vec<E::ActiveModel>,
    key: [E::Column; K],
    counters: &[E::Column],
) -> Result<(), StoreError>
where
    E: EntityTrait,
    E::ActiveModel: Clone + Send,
{
    for chunk in rows.chunks(500) {
        let mut on_conflict = OnConflict::columns(key);
        for col in counters {
            on_conflict.value(*col, Expr::col((E::default(), *col)).add(Expr::col((Alias::new("excluded"), *col))));
        }
        E::insert_many(chunk.to_vec()).on_conflict(on_conflict).exec_without_returning(txn).await?;
    }
    Ok(())
}

/// Adds each clinic's delta to its rollups, inside the caller's transaction: all of a group's clinics in
/// one statement per table (and per 500 rows), not one round of statements per clinic.
pub(crate) async fn apply(
    txn: &DatabaseTransaction,
    tenant: Uuid,
    deltas: &[(Uuid, RollupDelta)],
) -> Result<(), StoreError> {
    use reception_daily::Column as D;
    // One statement per 500 (clinic, day, method) rows: rows that exist get the difference added, to the
    // day's counters and to each hour's receptions.
    let days: Vec<reception_daily::ActiveModel> = deltas
        .iter()
        .flat_map(|(clinic, delta)| delta.changed_days().map(move |row| (*clinic, row)))
        .map(|(clinic, (&(day, method), d))| {
            let mut row = reception_daily::ActiveModel {
                tenant_id: sea_orm::Set(tenant),
                clinic_id: sea_orm::Set(clinic),
                day: sea_orm::Set(day),
                method: sea_orm::Set(method.to_owned()),
                ..Default::default()
            };
            for (col, n) in DAILY_COUNTERS.iter().zip(d.counts).chain(DAILY_HOURS.iter().zip(d.hours)) {
                row.set(*col, n.into());
            }
            row
        })
        .collect();
    let counters: Vec<D> = DAILY_COUNTERS.iter().chain(&DAILY_HOURS).copied().collect();
    add_counts::<reception_daily::Entity, 4>(txn, days, [D::TenantId, D::ClinicId, D::Day, D::Method], &counters)
        .await?;
    // (clinic, month, patient) → seen with マイナ保険証 in this group.
    let patients: BTreeMap<(Uuid, String, String), bool> = deltas
        .iter()
        .flat_map(|(clinic, delta)| {
            delta.patients.iter().map(move |((m, p), myna)| ((*clinic, m.to_string(), p.clone()), *myna))
        })
        .collect();
    if patients.is_empty() {
        return Ok(());
    }
    // Which of these patient-months exist already, and with what flag: a new one counts a patient, a
    // flag turning true counts a マイナ保険証 patient. Concurrent first sightings of one patient conflict on
    // the key and the loser retries (a transient error), so counts stay exact.
    use monthly_patients::Column as M;
    let set = |f: fn(&(Uuid, String, String)) -> String| -> Vec<String> {
        patients.keys().map(f).collect::<std::collections::BTreeSet<_>>().into_iter().collect()
    };
    let months = set(|(_, m, _)| m.clone());
    let clinics: std::collections::BTreeSet<Uuid> = patients.keys().map(|(c, _, _)| *c).collect();
    let mut existing: BTreeMap<(Uuid, String, String), bool> = BTreeMap::new();
    for chunk in set(|(_, _, p)| p.clone()).chunks(500) {
        // The product of the three lists covers every wanted key; rows of other combinations are ignored.
        let rows = monthly_patients::Entity::find()
            .filter(M::TenantId.eq(tenant))
            .filter(M::ClinicId.is_in(clinics.iter().copied()))
            .filter(M::Month.is_in(months.iter().cloned()))
            .filter(M::Patient.is_in(chunk.iter().cloned()))
            .lock_exclusive()
            .all(txn)
            .await?;
        existing.extend(rows.into_iter().map(|r| ((r.clinic_id, r.month, r.patient), r.myna)));
    }
    // (month, clinic) → (new patients, new マイナ保険証 patients)
    let mut usage: BTreeMap<(String, Uuid), (i32, i32)> = BTreeMap::new();
    let mut fresh = Vec::new();
    // Patient-months whose flag turns true, per clinic-month: one UPDATE per clinic-month and 500 patients.
    let mut turned: BTreeMap<(Uuid, String), Vec<String>> = BTreeMap::new();
    for ((clinic, month, patient), myna) in &patients {
        match existing.get(&(*clinic, month.clone(), patient.clone())) {
            None => {
                let u = usage.entry((month.clone(), *clinic)).or_default();
                u.0 += 1;
                u.1 += i32::from(*myna);
                fresh.push(monthly_patients::ActiveModel {
                    tenant_id: sea_orm::Set(tenant),
                    clinic_id: sea_orm::Set(*clinic),
                    month: sea_orm::Set(month.clone()),
                    patient: sea_orm::Set(patient.clone()),
                    myna: sea_orm::Set(*myna),
                });
            }
            Some(false) if *myna => {
                usage.entry((month.clone(), *clinic)).or_default().1 += 1;
                turned.entry((*clinic, month.clone())).or_default().push(patient.clone());
            }
            Some(_) => {}
        }
    }
    for ((clinic, month), patients) in turned {
        for chunk in patients.chunks(500) {
            monthly_patients::Entity::update_many()
                .col_expr(M::Myna, Expr::value(true))
                .filter(M::TenantId.eq(tenant))
                .filter(M::ClinicId.eq(clinic))
                .filter(M::Month.eq(month.as_str()))
                .filter(M::Patient.is_in(chunk.iter().cloned()))
                .exec(txn)
                .await?;
        }
    }
    for chunk in fresh.chunks(500) {
        monthly_patients::Entity::insert_many(chunk.to_vec()).exec_without_returning(txn).await?;
    }
    use monthly_usage::Column as U;
    let usage: Vec<monthly_usage::ActiveModel> = usage
        .into_iter()
        .filter(|(_, (p, m))| *p != 0 || *m != 0)
        .map(|((month, clinic), (p, m))| monthly_usage::ActiveModel {
            tenant_id: sea_orm::Set(tenant),
            month: sea_orm::Set(month),
            clinic_id: sea_orm::Set(clinic),
            patients: sea_orm::Set(p),
            myna_patients: sea_orm::Set(m),
        })
        .collect();
    add_counts::<monthly_usage::Entity, 3>(
        txn,
        usage,
        [U::TenantId, U::Month, U::ClinicId],
        &[U::Patients, U::MynaPatients],
    )
    .await
}

/// A clinic-month of the estimate: distinct patients, and those confirmed with マイナ保険証.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonthlyUsage {
    pub clinic: ClinicId,
    pub patients: u64,
    pub myna_patients: u64,
}

/// One daily rollup row as the clinic page reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailyRow {
    pub day: Date,
    pub method: ConfirmationMethod,
    pub receptions: i64,
    pub myna: i64,
    pub consent_medication: i64,
    pub consent_diagnosis: i64,
    pub consent_checkup: i64,
    pub invalid: i64,
    pub face: i64,
    pub pin: i64,
    pub visual: i64,
    /// Receptions per JST hour, 0 to 23.
    pub hours: [i64; 24],
}

impl TenantStore<'_> {
    /// Distinct patients and マイナ保険証 patients per clinic for `month`.
    pub async fn monthly_usage(&self, month: YearMonth) -> Result<Vec<MonthlyUsage>, StoreError> {
        Ok(self.usage_by_month(&[month]).await?.into_iter().map(|(_, u)| u).collect())
    }

    /// The same for several months in one read: (month, usage) per clinic-month that had patients.
    pub async fn usage_by_month(&self, months: &[YearMonth]) -> Result<Vec<(YearMonth, MonthlyUsage)>, StoreError> {
        let txn = self.read().await?;
        let rows = monthly_usage::Entity::find()
            .filter(monthly_usage::Column::TenantId.eq(self.tenant_uuid()))
            .filter(monthly_usage::Column::Month.is_in(months.iter().map(ToString::to_string)))
            .all(&txn)
            .await?;
        txn.commit().await?;
        rows.into_iter()
            .map(|r| {
                let usage = MonthlyUsage {
                    clinic: ClinicId::from_uuid(r.clinic_id),
                    patients: u64::try_from(r.patients).unwrap_or(0),
                    myna_patients: u64::try_from(r.myna_patients).unwrap_or(0),
                };
                let month = YearMonth::parse(&r.month)
                    .ok_or_else(|| StoreError::Corrupt(format!("usage month {}", r.month)))?;
                Ok((month, usage))
            })
            .collect()
    }

    /// The daily rollup rows of one clinic between two days (inclusive): a year is ~1,100 rows.
    pub async fn daily(&self, clinic: &ClinicScope, from: Date, to: Date) -> Result<Vec<DailyRow>, StoreError> {
        let txn = self.read().await?;
        let rows = reception_daily::Entity::find()
            .filter(reception_daily::Column::TenantId.eq(self.tenant_uuid()))
            .filter(reception_daily::Column::ClinicId.eq(clinic.uuid()))
            .filter(reception_daily::Column::Day.gte(from))
            .filter(reception_daily::Column::Day.lte(to))
            .order_by_asc(reception_daily::Column::Day)
            .all(&txn)
            .await?;
        txn.commit().await?;
        rows.into_iter()
            .map(|r| {
                Ok(DailyRow {
                    day: r.day,
                    method: ConfirmationMethod::parse(&r.method)
                        .ok_or_else(|| StoreError::Corrupt(format!("rollup method {}", r.method)))?,
                    receptions: i64::from(r.receptions),
                    myna: i64::from(r.myna),
                    consent_medication: i64::from(r.consent_medication),
                    consent_diagnosis: i64::from(r.consent_diagnosis),
                    consent_checkup: i64::from(r.consent_checkup),
                    invalid: i64::from(r.invalid),
                    face: i64::from(r.face),
                    pin: i64::from(r.pin),
                    visual: i64::from(r.visual),
                    hours: [
                        r.hour_00, r.hour_01, r.hour_02, r.hour_03, r.hour_04, r.hour_05, r.hour_06, r.hour_07,
                        r.hour_08, r.hour_09, r.hour_10, r.hour_11, r.hour_12, r.hour_13, r.hour_14, r.hour_15,
                        r.hour_16, r.hour_17, r.hour_18, r.hour_19, r.hour_20, r.hour_21, r.hour_22, r.hour_23,
                    ]
                    .map(i64::from),
                })
            })
            .collect()
    }

    /// Recomputes this tenant's rollups from its visits (after a migration, or to repair).
    pub async fn rebuild_rollups(&self) -> Result<u64, StoreError> {
        let txn = self.write().await?;
        reception_daily::Entity::delete_many()
            .filter(reception_daily::Column::TenantId.eq(self.tenant_uuid()))
            .exec(&txn)
            .await?;
        monthly_patients::Entity::delete_many()
            .filter(monthly_patients::Column::TenantId.eq(self.tenant_uuid()))
            .exec(&txn)
            .await?;
        monthly_usage::Entity::delete_many()
            .filter(monthly_usage::Column::TenantId.eq(self.tenant_uuid()))
            .exec(&txn)
            .await?;
        let mut after: Option<Uuid> = None;
        let mut count = 0u64;
        loop {
            let mut q = visits::Entity::find().filter(visits::Column::TenantId.eq(self.tenant_uuid()));
            if let Some(id) = after {
                q = q.filter(visits::Column::Id.gt(id));
            }
            let page = q.order_by_asc(visits::Column::Id).limit(2000).all(&txn).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            let mut per_clinic: BTreeMap<Uuid, RollupDelta> = BTreeMap::new();
            for row in &page {
                let visit = crate::visits::visit_from_row(row)?;
                per_clinic.entry(row.clinic_id).or_default().add(None, &visit);
                count += 1;
            }
            let deltas: Vec<(Uuid, RollupDelta)> = per_clinic.into_iter().collect();
            apply(&txn, self.tenant_uuid(), &deltas).await?;
        }
        txn.commit().await?;
        Ok(count)
    }
}
