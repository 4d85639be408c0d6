//! The clinic's claims (レセ電) as the agent delivered them, and the official 利用率 figures as 支払基金
//! notified them.
//!
//! Replacement, so that a month is never counted twice and a correction always wins:
//! - the same file again (same SHA-256) changes nothing;
//! - a file for the same 請求年月, 審査支払機関 and volume as a current one replaces it whole (a corrected
//!   file sent again before submission);
//! - a receipt for a (診療年月, patient) that an earlier file already claimed replaces that receipt (月遅れ,
//!   返戻 resubmitted in a later month).
//!
//! Each import is audited (`uke.imported`) with what it replaced, in the transaction that stores it.

use std::collections::{BTreeMap, HashMap, HashSet};

use onshi_domain::{AuditAction, ClaimedVisitKind, ClaimsFile, YearMonth};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QuerySelect,
};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::audit::{AuditEntry, AuditResult};
use crate::entities::{claim_days, claim_files, claim_receipts, official_usage, visits};
use crate::{ClinicScope, StoreError, TenantStore};

/// Rows per INSERT: well under SQLite's bound on parameters.
const CHUNK: usize = 400;

/// One patient-day as the claims state it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimDay {
    pub patient: Option<String>,
    pub date: Date,
    pub kind: Option<ClaimedVisitKind>,
    /// Reception-addon codes claimed that day.
    pub addons: Vec<String>,
    /// The receipt's sealed カルテ番号 (opened only by the billing pages).
    pub chart_sealed: Option<String>,
}

/// A service month's receipts from the claims: the claims-based 利用率's parts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClaimsUsage {
    /// 入院外 receipts (the official figure's denominator).
    pub outpatient_receipts: u64,
    /// Of them, receipts whose patient used a マイナ保険証 at this clinic that month (matched by pseudonym).
    pub myna_receipts: u64,
}

/// The official figure for one clinic and month, as notified (支払基金's お知らせ or the portal).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OfficialFigure {
    pub uses: Option<i32>,
    pub users: Option<i32>,
    pub receipts: Option<i32>,
    pub rate: f64,
    pub notified_on: Option<Date>,
}

/// One day of a receipt: 初診/再診, its codes, the addon codes.
type DayCodes = (Option<ClaimedVisitKind>, Vec<String>, Vec<String>);

impl TenantStore<'_> {
    /// Stores one claims file inside the ingest transaction `txn` (see the module for what it replaces);
    /// false when the same file was imported before and nothing changed.
    pub(crate) async fn apply_claims_in(
        &self,
        txn: &DatabaseTransaction,
        clinic: Uuid,
        device: Uuid,
        event: Uuid,
        file: &ClaimsFile,
        received_at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let tenant = self.tenant_uuid();
        let same = claim_files::Entity::find()
            .filter(claim_files::Column::TenantId.eq(tenant))
            .filter(claim_files::Column::ClinicId.eq(clinic))
            .filter(claim_files::Column::FileSha256.eq(&file.file_sha256))
            .one(txn)
            .await?;
        if same.is_some() {
            return Ok(false);
        }
        let file_id = Uuid::now_v7();

        // Earlier files for the same month, payer and volume: replaced whole.
        let earlier: Vec<Uuid> = claim_files::Entity::find()
            .select_only()
            .column(claim_files::Column::Id)
            .filter(claim_files::Column::TenantId.eq(tenant))
            .filter(claim_files::Column::ClinicId.eq(clinic))
            .filter(claim_files::Column::ClaimMonth.eq(file.claim_month.to_string()))
            .filter(claim_files::Column::Payer.eq(file.payer.as_str()))
            .filter(claim_files::Column::Volume.eq(i16::from(file.volume)))
            .filter(claim_files::Column::ReplacedBy.is_null())
            .into_tuple()
            .all(txn)
            .await?;
        let mut gone: Vec<Uuid> = Vec::new();
        for chunk in earlier.chunks(CHUNK) {
            let ids: Vec<Uuid> = claim_receipts::Entity::find()
                .select_only()
                .column(claim_receipts::Column::Id)
                .filter(claim_receipts::Column::TenantId.eq(tenant))
                .filter(claim_receipts::Column::FileId.is_in(chunk.iter().copied()))
                .into_tuple()
                .all(txn)
                .await?;
            gone.extend(ids);
        }
        let replaced_files = earlier.len();
        let in_replaced = gone.len();

        // Receipts of other current files for a (診療年月, patient, 入院/外来) claimed again here: the one from
        // the later 請求年月 wins, whatever order the files arrive in (a backfilled older file does not undo
        // a 返戻 resubmission).
        let ours_keys: HashSet<(String, &str, bool)> = file
            .receipts
            .iter()
            .filter_map(|r| Some((r.service_month.to_string(), r.patient.as_ref()?.as_str(), r.outpatient)))
            .collect();
        let mut claimed: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (month, patient, _) in &ours_keys {
            claimed.entry(month.as_str()).or_default().push((*patient).to_owned());
        }
        let already: HashSet<Uuid> = gone.iter().copied().collect();
        let mut existing: Vec<(Uuid, Uuid, String, Option<String>, bool)> = Vec::new();
        for (month, patients) in &mut claimed {
            patients.sort_unstable();
            patients.dedup();
            for chunk in patients.chunks(CHUNK) {
                let rows: Vec<(Uuid, Uuid, String, Option<String>, bool)> = claim_receipts::Entity::find()
                    .select_only()
                    .column(claim_receipts::Column::Id)
                    .column(claim_receipts::Column::FileId)
                    .column(claim_receipts::Column::ServiceMonth)
                    .column(claim_receipts::Column::PatientRef)
                    .column(claim_receipts::Column::Outpatient)
                    .filter(claim_receipts::Column::TenantId.eq(tenant))
                    .filter(claim_receipts::Column::ClinicId.eq(clinic))
                    .filter(claim_receipts::Column::ServiceMonth.eq(*month))
                    .filter(claim_receipts::Column::PatientRef.is_in(chunk.iter().cloned()))
                    .into_tuple()
                    .all(txn)
                    .await?;
                existing.extend(rows.into_iter().filter(|r| !already.contains(&r.0)));
            }
        }
        let files: Vec<Uuid> = existing.iter().map(|r| r.1).collect::<HashSet<_>>().into_iter().collect();
        let mut file_month: HashMap<Uuid, String> = HashMap::new();
        for chunk in files.chunks(CHUNK) {
            let rows: Vec<(Uuid, String)> = claim_files::Entity::find()
                .select_only()
                .column(claim_files::Column::Id)
                .column(claim_files::Column::ClaimMonth)
                .filter(claim_files::Column::TenantId.eq(tenant))
                .filter(claim_files::Column::Id.is_in(chunk.iter().copied()))
                .into_tuple()
                .all(txn)
                .await?;
            file_month.extend(rows);
        }
        let ours = file.claim_month.to_string();
        // (診療年月, patient, 外来) of this file that a later file already claims: not stored.
        let mut kept_elsewhere: HashSet<(String, String, bool)> = HashSet::new();
        for (id, file_id, month, patient, outpatient) in existing {
            let Some(patient) = patient else { continue };
            if !ours_keys.contains(&(month.clone(), patient.as_str(), outpatient)) {
                continue;
            }
            if file_month.get(&file_id).is_some_and(|m| *m > ours) {
                kept_elsewhere.insert((month, patient, outpatient));
            } else {
                gone.push(id);
            }
        }
        let superseded_receipts = gone.len() - in_replaced;
        for chunk in gone.chunks(CHUNK) {
            claim_days::Entity::delete_many()
                .filter(claim_days::Column::TenantId.eq(tenant))
                .filter(claim_days::Column::ReceiptId.is_in(chunk.iter().copied()))
                .exec(txn)
                .await?;
            claim_receipts::Entity::delete_many()
                .filter(claim_receipts::Column::TenantId.eq(tenant))
                .filter(claim_receipts::Column::Id.is_in(chunk.iter().copied()))
                .exec(txn)
                .await?;
        }
        if !earlier.is_empty() {
            claim_files::Entity::update_many()
                .col_expr(claim_files::Column::ReplacedBy, sea_orm::sea_query::Expr::value(file_id))
                .filter(claim_files::Column::TenantId.eq(tenant))
                .filter(claim_files::Column::Id.is_in(earlier.iter().copied()))
                .exec(txn)
                .await?;
        }

        claim_files::ActiveModel {
            id: Set(file_id),
            tenant_id: Set(tenant),
            clinic_id: Set(clinic),
            device_id: Set(device),
            event_id: Set(event),
            claim_month: Set(file.claim_month.to_string()),
            payer: Set(file.payer.as_str().to_owned()),
            volume: Set(i16::from(file.volume)),
            file_sha256: Set(file.file_sha256.clone()),
            receipts: Set(i32::try_from(file.receipts.len()).unwrap_or(i32::MAX)),
            total_points: Set(i64::try_from(file.total_points).unwrap_or(i64::MAX)),
            imported_at: Set(received_at),
            replaced_by: Set(None),
        }
        .insert(txn)
        .await?;

        let mut receipts = Vec::with_capacity(file.receipts.len());
        let mut days = Vec::new();
        for r in file.receipts.iter().filter(|r| {
            !r.patient.as_ref().is_some_and(|p| {
                kept_elsewhere.contains(&(r.service_month.to_string(), p.as_str().to_owned(), r.outpatient))
            })
        }) {
            let id = Uuid::now_v7();
            receipts.push(claim_receipts::ActiveModel {
                id: Set(id),
                tenant_id: Set(tenant),
                clinic_id: Set(clinic),
                file_id: Set(file_id),
                service_month: Set(r.service_month.to_string()),
                receipt_no: Set(i32::try_from(r.receipt_no).unwrap_or(i32::MAX)),
                receipt_type: Set(r.receipt_type.clone()),
                outpatient: Set(r.outpatient),
                patient_ref: Set(r.patient.as_ref().map(|p| p.as_str().to_owned())),
                online_confirmed: Set(r.online_confirmed),
                chart_sealed: Set(r.chart.clone()),
                points: Set(i64::try_from(r.points).unwrap_or(i64::MAX)),
            });
            let mut by_day: BTreeMap<Date, DayCodes> = BTreeMap::new();
            for v in &r.visits {
                let day = by_day.entry(v.date.0).or_default();
                day.0 = Some(v.kind);
                day.1.extend(v.codes.iter().cloned());
            }
            for a in &r.addons {
                for d in &a.dates {
                    by_day.entry(d.0).or_default().2.push(a.code.clone());
                }
            }
            for (date, (kind, codes, addons)) in by_day {
                days.push(claim_days::ActiveModel {
                    tenant_id: Set(tenant),
                    clinic_id: Set(clinic),
                    receipt_id: Set(id),
                    service_date: Set(date),
                    patient_ref: Set(r.patient.as_ref().map(|p| p.as_str().to_owned())),
                    kind: Set(kind.map(|k| k.label().to_owned())),
                    codes: Set(serde_json::json!(codes)),
                    addons: Set(serde_json::json!(addons)),
                });
            }
        }
        let receipt_count = receipts.len();
        for chunk in receipts.chunks(CHUNK) {
            claim_receipts::Entity::insert_many(chunk.to_vec()).exec_without_returning(txn).await?;
        }
        for chunk in days.chunks(CHUNK) {
            claim_days::Entity::insert_many(chunk.to_vec()).exec_without_returning(txn).await?;
        }

        let announced = serde_json::json!({
            "clinic_id": onshi_domain::ClinicId::from_uuid(clinic),
            "claim_month": file.claim_month.to_string(),
            "payer": file.payer.as_str(),
            "volume": file.volume,
            "file_sha256": file.file_sha256,
            "receipts": receipt_count,
            "total_points": file.total_points,
            "replaced_files": replaced_files,
        });
        let audit = AuditEntry::new(
            None,
            &format!("device:{}", onshi_domain::DeviceId::from_uuid(device)),
            AuditAction::UkeImported,
            &format!("clinic:{}", onshi_domain::ClinicId::from_uuid(clinic)),
            AuditResult::Success,
        )
        .details({
            let mut details = announced.clone();
            details["superseded_receipts"] = serde_json::json!(superseded_receipts);
            details["kept_from_later_files"] = serde_json::json!(kept_elsewhere.len());
            details
        });
        self.append_in(txn, &audit).await?;
        self.enqueue_webhook_in(txn, onshi_domain::WebhookEvent::UkeImported, &announced).await?;
        Ok(true)
    }

    /// The claimed patient-days of a clinic from `from` to `to`, with each receipt's sealed カルテ番号.
    pub async fn claim_days(&self, clinic: &ClinicScope, from: Date, to: Date) -> Result<Vec<ClaimDay>, StoreError> {
        let txn = self.read().await?;
        let rows = claim_days::Entity::find()
            .filter(claim_days::Column::TenantId.eq(self.tenant_uuid()))
            .filter(claim_days::Column::ClinicId.eq(clinic.uuid()))
            .filter(claim_days::Column::ServiceDate.gte(from))
            .filter(claim_days::Column::ServiceDate.lte(to))
            .all(&txn)
            .await?;
        let receipt_ids: Vec<Uuid> = rows.iter().map(|r| r.receipt_id).collect::<HashSet<_>>().into_iter().collect();
        let mut charts: HashMap<Uuid, Option<String>> = HashMap::new();
        for chunk in receipt_ids.chunks(CHUNK) {
            let found: Vec<(Uuid, Option<String>)> = claim_receipts::Entity::find()
                .select_only()
                .column(claim_receipts::Column::Id)
                .column(claim_receipts::Column::ChartSealed)
                .filter(claim_receipts::Column::TenantId.eq(self.tenant_uuid()))
                .filter(claim_receipts::Column::Id.is_in(chunk.iter().copied()))
                .into_tuple()
                .all(&txn)
                .await?;
            charts.extend(found);
        }
        txn.commit().await?;
        Ok(rows
            .into_iter()
            .map(|r| ClaimDay {
                chart_sealed: charts.get(&r.receipt_id).cloned().flatten(),
                patient: r.patient_ref,
                date: r.service_date,
                kind: r.kind.as_deref().and_then(ClaimedVisitKind::from_label),
                addons: serde_json::from_value(r.addons).unwrap_or_default(),
            })
            .collect())
    }

    /// The (patient, 診療年月) pairs the clinic's imported claims hold a receipt for, from `from` to `to`: a
    /// visit is compared with the claims only when its patient's receipt for that month is in.
    pub async fn claimed_patient_months(
        &self,
        clinic: &ClinicScope,
        from: YearMonth,
        to: YearMonth,
    ) -> Result<HashSet<(String, YearMonth)>, StoreError> {
        let txn = self.read().await?;
        let rows: Vec<(Option<String>, String)> = claim_receipts::Entity::find()
            .select_only()
            .column(claim_receipts::Column::PatientRef)
            .column(claim_receipts::Column::ServiceMonth)
            .filter(claim_receipts::Column::TenantId.eq(self.tenant_uuid()))
            .filter(claim_receipts::Column::ClinicId.eq(clinic.uuid()))
            .filter(claim_receipts::Column::ServiceMonth.gte(from.to_string()))
            .filter(claim_receipts::Column::ServiceMonth.lte(to.to_string()))
            .into_tuple()
            .all(&txn)
            .await?;
        txn.commit().await?;
        Ok(rows.into_iter().filter_map(|(p, m)| Some((p?, YearMonth::parse(&m)?))).collect())
    }

    /// The key this group's agents seal カルテ番号 with (its pseudonymisation key), for the billing pages
    /// to open them; `None` before the first agent enrolled.
    pub async fn chart_key(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.read().await?;
        let tenant = crate::entities::tenants::Entity::find_by_id(self.tenant_uuid()).one(&txn).await?;
        txn.commit().await?;
        Ok(tenant.and_then(|t| t.pseudonym_key).map(|k| hex::decode(&k).unwrap_or_else(|_| k.into_bytes())))
    }

    /// The claims-based 利用率's parts per service month (months without their own claims are left out), in
    /// three reads whatever the number of months.
    pub async fn claims_usage(
        &self,
        clinic: &ClinicScope,
        months: &[YearMonth],
    ) -> Result<BTreeMap<YearMonth, ClaimsUsage>, StoreError> {
        if months.is_empty() {
            return Ok(BTreeMap::new());
        }
        let txn = self.read().await?;
        // A month's figure needs its own claims (a file of the 請求年月 after it); a 月遅れ receipt in a later
        // file alone would make a figure of one receipt.
        let main: Vec<String> = claim_files::Entity::find()
            .select_only()
            .column(claim_files::Column::ClaimMonth)
            .filter(claim_files::Column::TenantId.eq(self.tenant_uuid()))
            .filter(claim_files::Column::ClinicId.eq(clinic.uuid()))
            .filter(claim_files::Column::ClaimMonth.is_in(months.iter().map(|m| m.plus(1).to_string())))
            .filter(claim_files::Column::ReplacedBy.is_null())
            .into_tuple()
            .all(&txn)
            .await?;
        let main: HashSet<YearMonth> = main.iter().filter_map(|m| Some(YearMonth::parse(m)?.plus(-1))).collect();
        let receipts: Vec<(String, Option<String>)> = claim_receipts::Entity::find()
            .select_only()
            .column(claim_receipts::Column::ServiceMonth)
            .column(claim_receipts::Column::PatientRef)
            .filter(claim_receipts::Column::TenantId.eq(self.tenant_uuid()))
            .filter(claim_receipts::Column::ClinicId.eq(clinic.uuid()))
            .filter(claim_receipts::Column::ServiceMonth.is_in(main.iter().map(ToString::to_string)))
            .filter(claim_receipts::Column::Outpatient.eq(true))
            .into_tuple()
            .all(&txn)
            .await?;
        // Only the months that have claims need the visits (most clinics send none for most months): a
        // year of a busy clinic's visits is tens of thousands of rows the clinic page would read for nothing.
        let (Some(first), Some(last)) = (main.iter().min(), main.iter().max()) else {
            txn.commit().await?;
            return Ok(BTreeMap::new());
        };
        let seen: Vec<(Date, Option<String>)> = visits::Entity::find()
            .select_only()
            .column(visits::Column::VisitDate)
            .column(visits::Column::PatientRef)
            .filter(visits::Column::TenantId.eq(self.tenant_uuid()))
            .filter(visits::Column::ClinicId.eq(clinic.uuid()))
            .filter(visits::Column::VisitDate.gte(first.first_day()))
            .filter(visits::Column::VisitDate.lte(last.last_day()))
            .filter(visits::Column::PatientRef.is_not_null())
            .filter(visits::Column::Myna.eq(true))
            .into_tuple()
            .all(&txn)
            .await?;
        txn.commit().await?;
        let myna: HashSet<(YearMonth, String)> =
            seen.into_iter().filter_map(|(d, p)| Some((YearMonth::of(d), p?))).collect();
        let mut out: BTreeMap<YearMonth, ClaimsUsage> = BTreeMap::new();
        for (month, patient) in receipts {
            let Some(month) = YearMonth::parse(&month).filter(|m| months.contains(m)) else { continue };
            let usage = out.entry(month).or_default();
            usage.outpatient_receipts += 1;
            usage.myna_receipts += u64::from(patient.is_some_and(|p| myna.contains(&(month, p))));
        }
        Ok(out)
    }

    /// The official figures entered for a clinic, by month.
    pub async fn official_usage(
        &self,
        clinic: &ClinicScope,
    ) -> Result<BTreeMap<YearMonth, OfficialFigure>, StoreError> {
        let txn = self.read().await?;
        let rows = official_usage::Entity::find()
            .filter(official_usage::Column::TenantId.eq(self.tenant_uuid()))
            .filter(official_usage::Column::ClinicId.eq(clinic.uuid()))
            .all(&txn)
            .await?;
        txn.commit().await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                Some((
                    YearMonth::parse(&r.month)?,
                    OfficialFigure {
                        uses: r.uses,
                        users: r.users,
                        receipts: r.receipts,
                        rate: r.rate,
                        notified_on: r.notified_on,
                    },
                ))
            })
            .collect())
    }

    /// The official rates of every clinic of the tenant for `months`, by clinic (one read, for the group
    /// dashboard).
    pub async fn official_rates(
        &self,
        months: &[YearMonth],
    ) -> Result<HashMap<onshi_domain::ClinicId, BTreeMap<YearMonth, f64>>, StoreError> {
        let txn = self.read().await?;
        let rows: Vec<(Uuid, String, f64)> = official_usage::Entity::find()
            .select_only()
            .column(official_usage::Column::ClinicId)
            .column(official_usage::Column::Month)
            .column(official_usage::Column::Rate)
            .filter(official_usage::Column::TenantId.eq(self.tenant_uuid()))
            .filter(official_usage::Column::Month.is_in(months.iter().map(ToString::to_string)))
            .into_tuple()
            .all(&txn)
            .await?;
        txn.commit().await?;
        let mut out: HashMap<onshi_domain::ClinicId, BTreeMap<YearMonth, f64>> = HashMap::new();
        for (clinic, month, rate) in rows {
            if let Some(m) = YearMonth::parse(&month) {
                out.entry(onshi_domain::ClinicId::from_uuid(clinic)).or_default().insert(m, rate);
            }
        }
        Ok(out)
    }

    /// Enters (or corrects) official figures for one or more clinic-months, audited per clinic-month, in
    /// one transaction: a pasted list is taken whole or not at all.
    pub async fn set_official_usage(
        &self,
        entries: &[(&ClinicScope, YearMonth, OfficialFigure)],
        by: Option<onshi_domain::UserId>,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let txn = self.write().await?;
        let now = OffsetDateTime::now_utc();
        for (clinic, month, f) in entries {
            official_usage::Entity::delete_many()
                .filter(official_usage::Column::TenantId.eq(self.tenant_uuid()))
                .filter(official_usage::Column::ClinicId.eq(clinic.uuid()))
                .filter(official_usage::Column::Month.eq(month.to_string()))
                .exec(&txn)
                .await?;
            official_usage::ActiveModel {
                tenant_id: Set(self.tenant_uuid()),
                clinic_id: Set(clinic.uuid()),
                month: Set(month.to_string()),
                uses: Set(f.uses),
                users: Set(f.users),
                receipts: Set(f.receipts),
                rate: Set(f.rate),
                notified_on: Set(f.notified_on),
                entered_by: Set(by.map(|u| u.as_uuid())),
                entered_at: Set(now),
            }
            .insert(&txn)
            .await?;
            let mut entry = audit.clone();
            entry.target = format!("clinic:{}", clinic.clinic().id);
            entry.details = serde_json::json!({
                "month": month.to_string(), "rate": f.rate, "uses": f.uses, "users": f.users,
                "receipts": f.receipts, "notified_on": f.notified_on.map(|d| d.to_string()),
            });
            self.append_in(&txn, &entry).await?;
        }
        txn.commit().await?;
        Ok(())
    }
}
