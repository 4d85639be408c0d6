//! Everything a tenant owns, reachable only through a `TenantScope`. Every query below filters on the
//! scope's tenant id; a row of another tenant is indistinguishable from a missing one.

use std::collections::{BTreeMap, HashMap};

use onshi_domain::{
    ClinicId, ConfirmationMethod, Consents, DeviceId, EventId, EventPayload, FacilityKind, IngestEnvelope,
    MedicalInstitutionCode, QualificationResult, Visit,
};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, DatabaseTransaction, EntityTrait,
    IntoActiveModel, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, TryInsertResult,
};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::TenantScope;
use crate::entities::{clinics, devices, raw_events, visits};
use crate::error::StoreError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clinic {
    pub id: ClinicId,
    pub code: MedicalInstitutionCode,
    pub name: String,
    pub kind: FacilityKind,
    /// Planned start of オン資 operation, when the clinic is still introducing it.
    pub oqs_start: Option<Date>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceStatus {
    Active,
    Revoked,
}

impl DeviceStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Revoked => "revoked",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    pub id: DeviceId,
    pub clinic: ClinicId,
    pub name: String,
    pub status: DeviceStatus,
    pub agent_version: Option<String>,
    pub last_seen_at: Option<OffsetDateTime>,
    pub last_heartbeat: Option<onshi_domain::Heartbeat>,
}

impl Device {
    pub fn health(&self, now: OffsetDateTime) -> onshi_domain::DeviceHealth {
        onshi_domain::DeviceHealth::of(self.last_seen_at, self.last_heartbeat.as_ref(), now)
    }
}

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

/// What one `apply_batch` did; a redelivered batch reports only duplicates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyOutcome {
    pub new_events: usize,
    pub duplicate_events: usize,
    pub visits_touched: usize,
    /// Heartbeat events in the batch (not stored as raw events; a redelivery counts them again).
    pub heartbeats: usize,
}

pub struct TenantStore<'a> {
    db: &'a DatabaseConnection,
    tenant: Uuid,
}

impl<'a> TenantStore<'a> {
    pub(crate) fn new(db: &'a DatabaseConnection, scope: TenantScope) -> Self {
        Self { db, tenant: scope.tenant_id().as_uuid() }
    }

    /// A read transaction scoped to this tenant (see `crate::begin_tenant`).
    pub(crate) async fn read(&self) -> Result<DatabaseTransaction, StoreError> {
        crate::begin_tenant(self.db, self.tenant, false).await
    }

    /// A write transaction scoped to this tenant.
    pub(crate) async fn write(&self) -> Result<DatabaseTransaction, StoreError> {
        crate::begin_tenant(self.db, self.tenant, true).await
    }

    pub(crate) fn tenant_uuid(&self) -> Uuid {
        self.tenant
    }

    pub fn scope(&self) -> TenantScope {
        TenantScope::verified(onshi_domain::TenantId::from_uuid(self.tenant))
    }

    pub async fn create_clinic(&self, code: &MedicalInstitutionCode, name: &str) -> Result<Clinic, StoreError> {
        self.create_clinic_starting(code, name, None).await
    }

    /// Adds a clinic, with its planned start of オン資 operation when known (onboarding deadlines).
    pub async fn create_clinic_starting(
        &self,
        code: &MedicalInstitutionCode,
        name: &str,
        oqs_start: Option<Date>,
    ) -> Result<Clinic, StoreError> {
        let txn = self.write().await?;
        let exists = clinics::Entity::find()
            .filter(clinics::Column::TenantId.eq(self.tenant))
            .filter(clinics::Column::InstitutionCode.eq(code.as_str()))
            .count(&txn)
            .await?;
        if exists > 0 {
            return Err(StoreError::Conflict { what: "a clinic with this 医療機関コード" });
        }
        let id = ClinicId::new();
        let kind = code.facility_kind();
        clinics::ActiveModel {
            id: Set(id.as_uuid()),
            tenant_id: Set(self.tenant),
            institution_code: Set(code.as_str().to_owned()),
            name: Set(name.to_owned()),
            facility_kind: Set(kind.label().to_owned()),
            oqs_start_date: Set(oqs_start),
            created_at: Set(OffsetDateTime::now_utc()),
        }
        .insert(&txn)
        .await?;
        txn.commit().await?;
        Ok(Clinic { id, code: code.clone(), name: name.to_owned(), kind, oqs_start })
    }

    pub async fn clinics(&self) -> Result<Vec<Clinic>, StoreError> {
        let txn = self.read().await?;
        let rows = clinics::Entity::find()
            .filter(clinics::Column::TenantId.eq(self.tenant))
            .order_by_asc(clinics::Column::InstitutionCode)
            .all(&txn)
            .await?;
        txn.commit().await?;
        rows.into_iter().map(clinic_from_row).collect()
    }

    pub async fn clinic(&self, id: ClinicId) -> Result<Option<Clinic>, StoreError> {
        let txn = self.read().await?;
        let row = self.clinic_in(&txn, id).await?;
        txn.commit().await?;
        row.map(clinic_from_row).transpose()
    }

    pub(crate) async fn clinic_in(
        &self,
        txn: &DatabaseTransaction,
        id: ClinicId,
    ) -> Result<Option<clinics::Model>, StoreError> {
        Ok(clinics::Entity::find_by_id(id.as_uuid()).filter(clinics::Column::TenantId.eq(self.tenant)).one(txn).await?)
    }

    /// Sets or clears a clinic's planned start of オン資 operation.
    pub async fn set_clinic_start(&self, id: ClinicId, start: Option<Date>) -> Result<(), StoreError> {
        let txn = self.write().await?;
        let updated = clinics::Entity::update_many()
            .col_expr(clinics::Column::OqsStartDate, Expr::value(start))
            .filter(clinics::Column::TenantId.eq(self.tenant))
            .filter(clinics::Column::Id.eq(id.as_uuid()))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        if updated.rows_affected == 0 {
            return Err(StoreError::NotFound { what: "clinic" });
        }
        Ok(())
    }

    pub async fn create_device(&self, clinic: ClinicId, name: &str) -> Result<Device, StoreError> {
        let txn = self.write().await?;
        if self.clinic_in(&txn, clinic).await?.is_none() {
            return Err(StoreError::NotFound { what: "clinic" });
        }
        let id = DeviceId::new();
        devices::ActiveModel {
            id: Set(id.as_uuid()),
            tenant_id: Set(self.tenant),
            clinic_id: Set(clinic.as_uuid()),
            name: Set(name.to_owned()),
            status: Set(DeviceStatus::Active.as_str().to_owned()),
            agent_version: Set(None),
            last_seen_at: Set(None),
            last_heartbeat: Set(None),
            secret_hash: Set(None),
            created_at: Set(OffsetDateTime::now_utc()),
        }
        .insert(&txn)
        .await?;
        txn.commit().await?;
        Ok(Device {
            id,
            clinic,
            name: name.to_owned(),
            status: DeviceStatus::Active,
            agent_version: None,
            last_seen_at: None,
            last_heartbeat: None,
        })
    }

    /// Creates a one-time code that enrolls one agent for `clinic`, valid for `ttl`. The code is returned
    /// once; only its hash is stored.
    pub async fn create_enrollment_code(&self, clinic: ClinicId, ttl: time::Duration) -> Result<String, StoreError> {
        let txn = self.write().await?;
        if self.clinic_in(&txn, clinic).await?.is_none() {
            return Err(StoreError::NotFound { what: "clinic" });
        }
        let code = crate::secrets::enrollment_code();
        let now = OffsetDateTime::now_utc();
        crate::entities::enrollment_codes::ActiveModel {
            code_hash: Set(crate::secrets::sha256_hex(&crate::secrets::normalise_code(&code))),
            tenant_id: Set(self.tenant),
            clinic_id: Set(clinic.as_uuid()),
            expires_at: Set(now + ttl),
            used_at: Set(None),
            device_id: Set(None),
            created_at: Set(now),
        }
        .insert(&txn)
        .await?;
        txn.commit().await?;
        Ok(code)
    }

    /// The device, if `secret` is its device secret. Revoked devices are returned too (the caller refuses
    /// them with a clear reason).
    pub async fn device_with_secret(&self, id: DeviceId, secret: &str) -> Result<Option<Device>, StoreError> {
        let txn = self.read().await?;
        let row = devices::Entity::find_by_id(id.as_uuid())
            .filter(devices::Column::TenantId.eq(self.tenant))
            .one(&txn)
            .await?;
        txn.commit().await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let matches = row
            .secret_hash
            .as_deref()
            .is_some_and(|stored| crate::secrets::constant_time_eq(stored, &crate::secrets::sha256_hex(secret)));
        if !matches {
            return Ok(None);
        }
        device_from_row(row).map(Some)
    }

    pub async fn device(&self, id: DeviceId) -> Result<Option<Device>, StoreError> {
        let txn = self.read().await?;
        let row = devices::Entity::find_by_id(id.as_uuid())
            .filter(devices::Column::TenantId.eq(self.tenant))
            .one(&txn)
            .await?;
        txn.commit().await?;
        row.map(device_from_row).transpose()
    }

    /// A device and its clinic, read in one transaction: every ingest request authenticates with this, so
    /// it is one round of BEGIN / tenant setting / COMMIT instead of two.
    pub async fn device_with_clinic(&self, id: DeviceId) -> Result<Option<(Device, Clinic)>, StoreError> {
        let txn = self.read().await?;
        let device = devices::Entity::find_by_id(id.as_uuid())
            .filter(devices::Column::TenantId.eq(self.tenant))
            .one(&txn)
            .await?;
        let clinic = match &device {
            Some(d) => self.clinic_in(&txn, ClinicId::from_uuid(d.clinic_id)).await?,
            None => None,
        };
        txn.commit().await?;
        match (device, clinic) {
            (Some(d), Some(c)) => Ok(Some((device_from_row(d)?, clinic_from_row(c)?))),
            _ => Ok(None),
        }
    }

    pub async fn devices(&self) -> Result<Vec<Device>, StoreError> {
        let txn = self.read().await?;
        let rows = devices::Entity::find()
            .filter(devices::Column::TenantId.eq(self.tenant))
            .order_by_asc(devices::Column::CreatedAt)
            .all(&txn)
            .await?;
        txn.commit().await?;
        rows.into_iter().map(device_from_row).collect()
    }

    pub async fn revoke_device(&self, id: DeviceId) -> Result<(), StoreError> {
        let txn = self.write().await?;
        let updated = devices::Entity::update_many()
            .col_expr(devices::Column::Status, Expr::value(DeviceStatus::Revoked.as_str()))
            .filter(devices::Column::TenantId.eq(self.tenant))
            .filter(devices::Column::Id.eq(id.as_uuid()))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        if updated.rows_affected == 0 {
            return Err(StoreError::NotFound { what: "device" });
        }
        Ok(())
    }

    /// The content hashes of those of `ids` this device has already sent, for the API's 409 check.
    pub async fn event_hashes(
        &self,
        device: DeviceId,
        ids: &[EventId],
    ) -> Result<HashMap<EventId, String>, StoreError> {
        let txn = self.read().await?;
        let mut found = HashMap::new();
        for chunk in ids.chunks(500) {
            let rows: Vec<(Uuid, String)> = raw_events::Entity::find()
                .select_only()
                .column(raw_events::Column::EventId)
                .column(raw_events::Column::ContentHash)
                .filter(raw_events::Column::TenantId.eq(self.tenant))
                .filter(raw_events::Column::DeviceId.eq(device.as_uuid()))
                .filter(raw_events::Column::EventId.is_in(chunk.iter().map(EventId::as_uuid)))
                .into_tuple()
                .all(&txn)
                .await?;
            found.extend(rows.into_iter().map(|(id, hash)| (EventId::from_uuid(id), hash)));
        }
        txn.commit().await?;
        Ok(found)
    }

    /// Applies one accepted batch in one transaction: stores each event not seen before (raw and
    /// immutable), folds new qualification results into visits, and records heartbeats. Events already
    /// stored are skipped, so a redelivered batch has no effect at all.
    pub async fn apply_batch(&self, envelope: &IngestEnvelope) -> Result<ApplyOutcome, StoreError> {
        let received_at = envelope.received_at.to_offset(time::UtcOffset::UTC);
        // Heartbeats update the device row only: keeping every one as a raw event would grow the table
        // by thousands of rows per device and day for nothing.
        let rows: Vec<raw_events::ActiveModel> = envelope
            .events
            .iter()
            .filter(|event| matches!(event.payload, EventPayload::Qualification(_)))
            .map(|event| {
                let payload = serde_json::to_value(event).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                Ok(raw_events::ActiveModel {
                    tenant_id: Set(self.tenant),
                    device_id: Set(envelope.device.as_uuid()),
                    event_id: Set(event.id.as_uuid()),
                    clinic_id: Set(envelope.clinic.as_uuid()),
                    batch_id: Set(envelope.batch_id),
                    kind: Set("qualification".to_owned()),
                    occurred_at: Set(event.occurred_at.to_offset(time::UtcOffset::UTC)),
                    received_at: Set(received_at),
                    content_hash: Set(event.content_hash()),
                    payload: Set(payload),
                })
            })
            .collect::<Result<_, StoreError>>()?;
        let qualification_events = rows.len();

        let txn = self.write().await?;
        let inserted = match raw_events::Entity::insert_many(rows)
            .on_conflict_do_nothing()
            .exec_with_returning_keys(&txn)
            .await?
        {
            TryInsertResult::Inserted(keys) => keys.into_iter().map(|(_, _, event, _)| event).collect(),
            TryInsertResult::Empty | TryInsertResult::Conflicted => Vec::new(),
        };
        let inserted: std::collections::HashSet<Uuid> = inserted.into_iter().collect();

        // Fold the batch's new confirmations per visit key first, then merge each with what is stored.
        let mut fresh: BTreeMap<String, Visit> = BTreeMap::new();
        let mut newest_heartbeat: Option<(OffsetDateTime, &onshi_domain::Heartbeat)> = None;
        for event in &envelope.events {
            match &event.payload {
                EventPayload::Qualification(check) if inserted.contains(&event.id.as_uuid()) => {
                    if let Some(visit) = Visit::from_event(event.id, event.occurred_at, check) {
                        match fresh.get_mut(&visit.key) {
                            Some(existing) => existing.merge(&visit),
                            None => {
                                fresh.insert(visit.key.clone(), visit);
                            }
                        }
                    }
                }
                EventPayload::Qualification(_) => {}
                EventPayload::Heartbeat(h) => {
                    if newest_heartbeat.is_none_or(|(at, _)| event.occurred_at > at) {
                        newest_heartbeat = Some((event.occurred_at, h));
                    }
                }
            }
        }

        let visits_touched = fresh.len();
        if !fresh.is_empty() {
            // Read-merge-write needs the rows locked (FOR UPDATE): two workers merging into the same visit
            // under READ COMMITTED would otherwise lose one update. Locking in key order keeps concurrent
            // batches from deadlocking. SQLite has no row locks and needs none: the raw-event insert
            // above already holds its single write lock for the whole transaction.
            // FOR UPDATE cannot lock a visit that does not exist yet: two workers creating the same new
            // visit would both insert it and one would fail on the unique key, to be retried. A
            // transaction-scoped advisory lock per visit key, taken in one global order (so concurrent
            // batches cannot deadlock), makes the second wait for the first and then find its row.
            if sea_orm::ConnectionTrait::get_database_backend(&txn) == sea_orm::DatabaseBackend::Postgres {
                use sea_orm::ConnectionTrait;
                let keys = fresh
                    .keys()
                    .map(|k| format!("{}:{}:{k}", self.tenant, envelope.clinic))
                    .collect::<Vec<_>>()
                    .join("\n");
                txn.query_all_raw(sea_orm::Statement::from_sql_and_values(
                    sea_orm::DatabaseBackend::Postgres,
                    "SELECT pg_advisory_xact_lock(h) FROM \
                     (SELECT DISTINCT hashtextextended(k, 0) AS h FROM unnest(string_to_array($1, E'\\n')) AS k) AS locks \
                     ORDER BY h",
                    [keys.into()],
                ))
                .await?;
            }
            let stored = visits::Entity::find()
                .filter(visits::Column::TenantId.eq(self.tenant))
                .filter(visits::Column::ClinicId.eq(envelope.clinic.as_uuid()))
                .filter(visits::Column::VisitKey.is_in(fresh.keys().cloned()))
                .order_by_asc(visits::Column::VisitKey)
                .lock_exclusive()
                .all(&txn)
                .await?;
            let mut stored: HashMap<String, visits::Model> =
                stored.into_iter().map(|m| (m.visit_key.clone(), m)).collect();
            let mut new_rows = Vec::new();
            let mut deltas = crate::rollups::HourlyDeltas::new();
            let mut patients = BTreeMap::new();
            for (key, visit) in fresh {
                match stored.remove(&key) {
                    Some(row) => {
                        let before = visit_from_row(&row)?;
                        let mut merged = before.clone();
                        merged.merge(&visit);
                        crate::rollups::add_delta(&mut deltas, Some(&before), &merged);
                        note_patient(&mut patients, &merged);
                        let date = row.visit_date;
                        let mut active = row.into_active_model();
                        set_visit_fields(&mut active, &merged);
                        // The date lets PostgreSQL touch one monthly partition instead of probing all.
                        visits::Entity::update(active)
                            .validate()?
                            .filter(visits::Column::VisitDate.eq(date))
                            .exec(&txn)
                            .await?;
                    }
                    None => {
                        crate::rollups::add_delta(&mut deltas, None, &visit);
                        note_patient(&mut patients, &visit);
                        let mut active = visits::ActiveModel {
                            id: Set(Uuid::now_v7()),
                            tenant_id: Set(self.tenant),
                            clinic_id: Set(envelope.clinic.as_uuid()),
                            visit_key: Set(visit.key.clone()),
                            ..Default::default()
                        };
                        set_visit_fields(&mut active, &visit);
                        new_rows.push(active);
                    }
                }
            }
            if !new_rows.is_empty() {
                visits::Entity::insert_many(new_rows).exec_without_returning(&txn).await?;
            }
            crate::rollups::apply(&txn, self.tenant, envelope.clinic.as_uuid(), &deltas, &patients).await?;
        }

        if let Some(device) = devices::Entity::find_by_id(envelope.device.as_uuid())
            .filter(devices::Column::TenantId.eq(self.tenant))
            .one(&txn)
            .await?
        {
            let newer_seen = device.last_seen_at.is_none_or(|at| received_at > at);
            let mut active = device.into_active_model();
            let mut changed = false;
            if newer_seen {
                active.last_seen_at = Set(Some(received_at));
                changed = true;
            }
            if let Some((at, heartbeat)) = newest_heartbeat {
                crate::uptime::record(&txn, self.tenant, envelope.device.as_uuid(), at, heartbeat).await?;
                active.agent_version = Set(Some(heartbeat.agent_version.clone()));
                active.last_heartbeat =
                    Set(Some(serde_json::to_value(heartbeat).map_err(|e| StoreError::Corrupt(e.to_string()))?));
                changed = true;
            }
            if changed {
                active.update(&txn).await?;
            }
        }
        txn.commit().await?;
        Ok(ApplyOutcome {
            new_events: inserted.len(),
            duplicate_events: qualification_events - inserted.len(),
            visits_touched,
            heartbeats: envelope.events.iter().filter(|e| matches!(e.payload, EventPayload::Heartbeat(_))).count(),
        })
    }

    /// The latest visits of a clinic, newest first.
    pub async fn recent_visits(&self, clinic: ClinicId, limit: u64) -> Result<Vec<VisitRow>, StoreError> {
        let txn = self.read().await?;
        let rows = visits::Entity::find()
            .filter(visits::Column::TenantId.eq(self.tenant))
            .filter(visits::Column::ClinicId.eq(clinic.as_uuid()))
            .order_by_desc(visits::Column::LastAt)
            .limit(limit)
            .all(&txn)
            .await?;
        txn.commit().await?;
        rows.iter().map(visit_row_from_model).collect()
    }

    /// Visits of a clinic on one day, oldest first.
    pub async fn visits_on(&self, clinic: ClinicId, date: Date) -> Result<Vec<VisitRow>, StoreError> {
        let txn = self.read().await?;
        let rows = visits::Entity::find()
            .filter(visits::Column::TenantId.eq(self.tenant))
            .filter(visits::Column::ClinicId.eq(clinic.as_uuid()))
            .filter(visits::Column::VisitDate.eq(date))
            .order_by_asc(visits::Column::FirstAt)
            .all(&txn)
            .await?;
        txn.commit().await?;
        rows.iter().map(visit_row_from_model).collect()
    }

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

/// Records the patient of a visit for the month's distinct-patient rollup.
fn note_patient(patients: &mut crate::rollups::MonthlyPatients, visit: &Visit) {
    if let Some(p) = &visit.patient {
        let flag = patients.entry((onshi_domain::jst::month_key(visit.date), p.as_str().to_owned())).or_default();
        *flag |= visit.myna;
    }
}

fn clinic_from_row(row: clinics::Model) -> Result<Clinic, StoreError> {
    let code = MedicalInstitutionCode::parse(&row.institution_code).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(Clinic {
        id: ClinicId::from_uuid(row.id),
        kind: code.facility_kind(),
        code,
        name: row.name,
        oqs_start: row.oqs_start_date,
    })
}

fn device_from_row(row: devices::Model) -> Result<Device, StoreError> {
    let status = match row.status.as_str() {
        "active" => DeviceStatus::Active,
        "revoked" => DeviceStatus::Revoked,
        other => return Err(StoreError::Corrupt(format!("device status {other}"))),
    };
    Ok(Device {
        id: DeviceId::from_uuid(row.id),
        clinic: ClinicId::from_uuid(row.clinic_id),
        name: row.name,
        status,
        agent_version: row.agent_version,
        last_seen_at: row.last_seen_at,
        // A heartbeat of an older or newer shape that no longer parses is simply not shown.
        last_heartbeat: row.last_heartbeat.and_then(|j| serde_json::from_value(j).ok()),
    })
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

fn set_visit_fields(active: &mut visits::ActiveModel, visit: &Visit) {
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
    active.updated_at = Set(OffsetDateTime::now_utc());
}
