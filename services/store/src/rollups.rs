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
/// one statement per table, not one round of statements per clinic. On PostgreSQL each statement's text
/// is fixed (rows travel as arrays or a JSON array), so a connection parses and plans it once; on SQLite
/// sea-orm builds rows of values, 500 to a statement.
pub(crate) async fn apply(
    txn: &DatabaseTransaction,
    tenant: Uuid,
    deltas: &[(Uuid, RollupDelta)],
) -> Result<(), StoreError> {
    let postgres = pg(txn);
    if postgres {
        upsert_daily_pg(txn, tenant, deltas).await?;
    } else {
        upsert_daily(txn, tenant, deltas).await?;
    }
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
    let existing = if postgres {
        patient_months_pg(txn, tenant, &patients).await?
    } else {
        patient_months(txn, tenant, &patients).await?
    };
    // (month, clinic) → (new patients, new マイナ保険証 patients)
    let mut usage: UsageDelta = BTreeMap::new();
    let mut fresh = Vec::new();
    let mut turned: Turned = BTreeMap::new();
    for ((clinic, month, patient), myna) in &patients {
        match existing.get(&(*clinic, month.clone(), patient.clone())) {
            None => {
                let u = usage.entry((month.clone(), *clinic)).or_default();
                u.0 += 1;
                u.1 += i32::from(*myna);
                fresh.push(((*clinic, month.clone(), patient.clone()), *myna));
            }
            Some(false) if *myna => {
                usage.entry((month.clone(), *clinic)).or_default().1 += 1;
                turned.entry((*clinic, month.clone())).or_default().push(patient.clone());
            }
            Some(_) => {}
        }
    }
    // A clinic-month whose counts do not change needs no write.
    usage.retain(|_, (p, m)| *p != 0 || *m != 0);
    if postgres {
        write_patients_pg(txn, tenant, &turned, &fresh, &usage).await
    } else {
        write_patients(txn, tenant, turned, fresh, usage).await
    }
}

/// Clinic-month → patients whose マイナ保険証 flag turns true.
type Turned = BTreeMap<(Uuid, String), Vec<String>>;
/// Patient-months seen for the first time, with their flag.
type Fresh = Vec<((Uuid, String, String), bool)>;
/// (month, clinic) → (new patients, new マイナ保険証 patients).
type UsageDelta = BTreeMap<(String, Uuid), (i32, i32)>;

/// Writes the patient-months and the clinic-month counts through sea-orm (SQLite).
async fn write_patients(
    txn: &DatabaseTransaction,
    tenant: Uuid,
    turned: Turned,
    fresh: Fresh,
    usage: UsageDelta,
) -> Result<(), StoreError> {
    use monthly_patients::Column as M;
    // One UPDATE per clinic-month and 500 patients.
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
        let rows = chunk.iter().map(|((clinic, month, patient), myna)| monthly_patients::ActiveModel {
            tenant_id: sea_orm::Set(tenant),
            clinic_id: sea_orm::Set(*clinic),
            month: sea_orm::Set(month.clone()),
            patient: sea_orm::Set(patient.clone()),
            myna: sea_orm::Set(*myna),
        });
        monthly_patients::Entity::insert_many(rows).exec_without_returning(txn).await?;
    }
    use monthly_usage::Column as U;
    let usage: Vec<monthly_usage::ActiveModel> = usage
        .into_iter()
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

/// The same on PostgreSQL: at most three statements of fixed text, whatever the row count.
async fn write_patients_pg(
    txn: &DatabaseTransaction,
    tenant: Uuid,
    turned: &Turned,
    fresh: &Fresh,
    usage: &UsageDelta,
) -> Result<(), StoreError> {
    use sea_orm::ConnectionTrait;
    let run = |sql: &'static str, values: Vec<sea_orm::Value>| {
        txn.execute_raw(sea_orm::Statement::from_sql_and_values(sea_orm::DatabaseBackend::Postgres, sql, values))
    };
    if !turned.is_empty() {
        let (clinics, months, patients) = key_arrays(turned.iter().flat_map(|((clinic, month), patients)| {
            patients.iter().map(move |p| (*clinic, month.as_str(), p.as_str()))
        }));
        run(
            "UPDATE monthly_patients p SET myna = true \
             FROM unnest($2::uuid[], $3::text[], $4::text[]) AS x(clinic_id, month, patient) \
             WHERE p.tenant_id = $1 AND p.clinic_id = x.clinic_id AND p.month = x.month AND p.patient = x.patient",
            vec![tenant.into(), clinics.into(), months.into(), patients.into()],
        )
        .await?;
    }
    if !fresh.is_empty() {
        let (clinics, months, patients) = key_arrays(fresh.iter().map(|((c, m, p), _)| (*c, m.as_str(), p.as_str())));
        let mynas: Vec<bool> = fresh.iter().map(|(_, myna)| *myna).collect();
        run(
            "INSERT INTO monthly_patients (tenant_id, clinic_id, month, patient, myna) \
             SELECT $1, x.clinic_id, x.month, x.patient, x.myna \
             FROM unnest($2::uuid[], $3::text[], $4::text[], $5::boolean[]) AS x(clinic_id, month, patient, myna)",
            vec![tenant.into(), clinics.into(), months.into(), patients.into(), mynas.into()],
        )
        .await?;
    }
    if !usage.is_empty() {
        run(
            "INSERT INTO monthly_usage (tenant_id, month, clinic_id, patients, myna_patients) \
             SELECT $1, x.month, x.clinic_id, x.patients, x.myna_patients \
             FROM unnest($2::text[], $3::uuid[], $4::integer[], $5::integer[]) AS x(month, clinic_id, patients, myna_patients) \
             ON CONFLICT (tenant_id, month, clinic_id) DO UPDATE SET \
               patients = monthly_usage.patients + excluded.patients, \
               myna_patients = monthly_usage.myna_patients + excluded.myna_patients",
            vec![
                tenant.into(),
                usage.iter().map(|((m, _), _)| m.clone()).collect::<Vec<_>>().into(),
                usage.iter().map(|((_, c), _)| *c).collect::<Vec<_>>().into(),
                usage.iter().map(|(_, (p, _))| *p).collect::<Vec<_>>().into(),
                usage.iter().map(|(_, (_, m))| *m).collect::<Vec<_>>().into(),
            ],
        )
        .await?;
    }
    Ok(())
}

/// The daily rows' upsert through sea-orm (SQLite): one statement per 500 (clinic, day, method) rows;
/// rows that exist get the difference added, to the day's counters and to each hour's receptions.
async fn upsert_daily(
    txn: &DatabaseTransaction,
    tenant: Uuid,
    deltas: &[(Uuid, RollupDelta)],
) -> Result<(), StoreError> {
    use reception_daily::Column as D;
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
    add_counts::<reception_daily::Entity, 4>(txn, days, [D::TenantId, D::ClinicId, D::Day, D::Method], &counters).await
}

/// The same on PostgreSQL in one statement of fixed text (parsed and planned once per connection, like
/// the visits' writes): the rows as a JSON array read by `jsonb_to_recordset`. A text that changes with
/// the row count, as `insert_many` builds, is parsed anew by most groups (about a millisecond each).
async fn upsert_daily_pg(
    txn: &DatabaseTransaction,
    tenant: Uuid,
    deltas: &[(Uuid, RollupDelta)],
) -> Result<(), StoreError> {
    use sea_orm::{ConnectionTrait, IdenStatic};
    let mut rows = Vec::new();
    for (clinic, delta) in deltas {
        for (&(day, method), d) in delta.changed_days() {
            let mut row = serde_json::Map::new();
            row.insert("clinic_id".into(), serde_json::json!(clinic));
            row.insert("day".into(), serde_json::json!(day.to_string()));
            row.insert("method".into(), serde_json::json!(method));
            for (col, n) in DAILY_COUNTERS.iter().zip(d.counts).chain(DAILY_HOURS.iter().zip(d.hours)) {
                row.insert(col.as_str().into(), serde_json::json!(n));
            }
            rows.push(serde_json::Value::Object(row));
        }
    }
    if rows.is_empty() {
        return Ok(());
    }
    txn.execute_raw(sea_orm::Statement::from_sql_and_values(
        sea_orm::DatabaseBackend::Postgres,
        UPSERT_DAILY.as_str(),
        [tenant.into(), serde_json::Value::Array(rows).into()],
    ))
    .await?;
    Ok(())
}

/// [`upsert_daily_pg`]'s text, made once from the column lists.
static UPSERT_DAILY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    use sea_orm::IdenStatic;
    let counters: Vec<&str> = DAILY_COUNTERS.iter().chain(&DAILY_HOURS).map(|c| c.as_str()).collect();
    format!(
        "INSERT INTO reception_daily (tenant_id, clinic_id, day, method, {cols}) \
         SELECT $1, x.clinic_id, x.day, x.method, {xs} \
         FROM jsonb_to_recordset($2::jsonb) AS x(clinic_id uuid, day date, method text, {typed}) \
         ON CONFLICT (tenant_id, clinic_id, day, method) DO UPDATE SET {sums}",
        cols = counters.join(", "),
        xs = counters.iter().map(|c| format!("x.{c}")).collect::<Vec<_>>().join(", "),
        typed = counters.iter().map(|c| format!("{c} integer")).collect::<Vec<_>>().join(", "),
        sums =
            counters.iter().map(|c| format!("{c} = reception_daily.{c} + excluded.{c}")).collect::<Vec<_>>().join(", "),
    )
});

fn pg(txn: &DatabaseTransaction) -> bool {
    sea_orm::ConnectionTrait::get_database_backend(txn) == sea_orm::DatabaseBackend::Postgres
}

/// Which of the wanted patient-months exist, with their flag, locked for the transaction (SQLite): the
/// product of the clinic, month and patient lists covers every wanted key; other combinations are
/// ignored.
async fn patient_months(
    txn: &DatabaseTransaction,
    tenant: Uuid,
    wanted: &BTreeMap<(Uuid, String, String), bool>,
) -> Result<BTreeMap<(Uuid, String, String), bool>, StoreError> {
    use monthly_patients::Column as M;
    let set = |f: fn(&(Uuid, String, String)) -> String| -> Vec<String> {
        wanted.keys().map(f).collect::<std::collections::BTreeSet<_>>().into_iter().collect()
    };
    let months = set(|(_, m, _)| m.clone());
    let clinics: std::collections::BTreeSet<Uuid> = wanted.keys().map(|(c, _, _)| *c).collect();
    let mut existing = BTreeMap::new();
    for chunk in set(|(_, _, p)| p.clone()).chunks(500) {
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
    Ok(existing)
}

/// The same on PostgreSQL: exactly the wanted keys (three arrays joined by position), one statement of
/// fixed text, rows locked in the keys' order, which every transaction shares.
async fn patient_months_pg(
    txn: &DatabaseTransaction,
    tenant: Uuid,
    wanted: &BTreeMap<(Uuid, String, String), bool>,
) -> Result<BTreeMap<(Uuid, String, String), bool>, StoreError> {
    use sea_orm::ConnectionTrait;
    let (clinics, months, patients) = key_arrays(wanted.keys().map(|(c, m, p)| (*c, m.as_str(), p.as_str())));
    let rows = txn
        .query_all_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT p.clinic_id, p.month, p.patient, p.myna FROM monthly_patients p \
             JOIN unnest($2::uuid[], $3::text[], $4::text[]) WITH ORDINALITY AS x(clinic_id, month, patient, n) \
               ON p.clinic_id = x.clinic_id AND p.month = x.month AND p.patient = x.patient \
             WHERE p.tenant_id = $1 ORDER BY x.n FOR UPDATE OF p",
            [tenant.into(), clinics.into(), months.into(), patients.into()],
        ))
        .await?;
    let mut existing = BTreeMap::new();
    for row in rows {
        existing.insert(
            (row.try_get("", "clinic_id")?, row.try_get("", "month")?, row.try_get("", "patient")?),
            row.try_get("", "myna")?,
        );
    }
    Ok(existing)
}

/// Patient-month keys as one array per column, for `unnest`.
fn key_arrays<'a>(keys: impl Iterator<Item = (Uuid, &'a str, &'a str)>) -> (Vec<Uuid>, Vec<String>, Vec<String>) {
    let mut arrays = (Vec::new(), Vec::new(), Vec::new());
    for (clinic, month, patient) in keys {
        arrays.0.push(clinic);
        arrays.1.push(month.to_owned());
        arrays.2.push(patient.to_owned());
    }
    arrays
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
