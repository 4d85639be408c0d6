//! The ingest use case: applying one accepted batch in one transaction (raw events kept once, visits
//! merged, rollups and the device's heartbeat updated), and what the API needs to refuse resends.
//!
//! A batch reaches the worker as a [`QueuedBatch`]: made by the ingest handler from an authenticated
//! device ([`DeviceAuth`]) and read back from the queue, which only that handler writes to. Its tenant is
//! the one the device's credential proved, so the worker never builds a scope from raw input.

use std::collections::{BTreeMap, HashMap};

use onshi_domain::{AgentEvent, ClinicId, ENVELOPE_VERSION, EventId, EventPayload, IngestEnvelope, RollupDelta, Visit};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect, TryInsertResult,
};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::entities::{clinics, devices, raw_events, visits};
use crate::error::StoreError;
use crate::visits::{set_visit_fields, visit_from_row};
use crate::{DeviceAuth, TenantScope, TenantStore};

/// What one `apply_batch` did; a redelivered batch reports only duplicates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyOutcome {
    pub new_events: usize,
    pub duplicate_events: usize,
    pub visits_touched: usize,
    /// Heartbeat events in the batch (not stored as raw events; a redelivery counts them again).
    pub heartbeats: usize,
    /// レセ電 files imported (not counting one seen before).
    pub claim_files: usize,
}

/// One accepted batch on its way from the API to a worker.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedBatch {
    envelope: IngestEnvelope,
}

/// Why a queued message cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum QueuedBatchError {
    #[error("not a batch envelope")]
    Undecodable(#[source] serde_json::Error),
    #[error("unknown envelope version {0}")]
    Version(u16),
}

impl QueuedBatch {
    /// The batch an authenticated device sent, accepted now.
    pub fn accepted(device: &DeviceAuth, batch_id: Uuid, events: Vec<AgentEvent>) -> Self {
        Self {
            envelope: IngestEnvelope {
                version: ENVELOPE_VERSION,
                batch_id,
                tenant: device.scope.tenant_id(),
                clinic: device.clinic.id,
                device: device.device.id,
                received_at: OffsetDateTime::now_utc(),
                events,
            },
        }
    }

    /// Reads a message from the work queue (written only by the ingest handler).
    pub fn from_queue(bytes: &[u8]) -> Result<Self, QueuedBatchError> {
        let envelope: IngestEnvelope = serde_json::from_slice(bytes).map_err(QueuedBatchError::Undecodable)?;
        if envelope.version != ENVELOPE_VERSION {
            return Err(QueuedBatchError::Version(envelope.version));
        }
        Ok(Self { envelope })
    }

    /// The message body for the queue.
    pub fn to_bytes(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(&self.envelope)
    }

    /// The tenant the device's credential proved.
    pub fn scope(&self) -> TenantScope {
        TenantScope::new(self.envelope.tenant)
    }

    pub fn envelope(&self) -> &IngestEnvelope {
        &self.envelope
    }
}

impl TenantStore<'_> {
    /// The content hashes of those of `ids` already stored for this clinic (from any of its devices), for
    /// the API's resend and 409 checks.
    pub async fn event_hashes(
        &self,
        clinic: ClinicId,
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
                .filter(raw_events::Column::ClinicId.eq(clinic.as_uuid()))
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
    pub async fn apply_batch(&self, batch: &QueuedBatch) -> Result<ApplyOutcome, StoreError> {
        let envelope = &batch.envelope;
        if envelope.tenant.as_uuid() != self.tenant {
            return Err(StoreError::NotFound { what: "batch of this tenant" });
        }
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
            // (tenant, clinic, event, occurred_at)
            TryInsertResult::Inserted(keys) => keys.into_iter().map(|(_, _, event, _)| event).collect(),
            TryInsertResult::Empty | TryInsertResult::Conflicted => Vec::new(),
        };
        let inserted: std::collections::HashSet<Uuid> = inserted.into_iter().collect();

        // Fold the batch's new confirmations per visit key first, then merge each with what is stored.
        let mut fresh: BTreeMap<String, Visit> = BTreeMap::new();
        let mut newest_heartbeat: Option<(OffsetDateTime, &onshi_domain::Heartbeat)> = None;
        let mut claim_files = 0;
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
                EventPayload::Claims(file) => {
                    let imported = self
                        .apply_claims_in(
                            &txn,
                            envelope.clinic.as_uuid(),
                            envelope.device.as_uuid(),
                            event.id.as_uuid(),
                            file,
                            received_at,
                        )
                        .await?;
                    claim_files += usize::from(imported);
                }
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
            let mut delta = RollupDelta::default();
            for (key, visit) in fresh {
                match stored.remove(&key) {
                    Some(row) => {
                        let before = visit_from_row(&row)?;
                        let mut merged = before.clone();
                        merged.merge(&visit);
                        delta.add(Some(&before), &merged);
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
                        delta.add(None, &visit);
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
            crate::rollups::apply(&txn, self.tenant, envelope.clinic.as_uuid(), &delta).await?;
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
        // A result file from the clinic's own agent carries its code (the API refuses any other): the
        // code the group registered is now confirmed. One conditional UPDATE, a no-op once set.
        if !inserted.is_empty() {
            clinics::Entity::update_many()
                .col_expr(clinics::Column::CodeConfirmedAt, sea_orm::sea_query::Expr::value(received_at))
                .filter(clinics::Column::Id.eq(envelope.clinic.as_uuid()))
                .filter(clinics::Column::TenantId.eq(self.tenant))
                .filter(clinics::Column::CodeConfirmedAt.is_null())
                .exec(&txn)
                .await?;
        }
        txn.commit().await?;
        Ok(ApplyOutcome {
            new_events: inserted.len(),
            duplicate_events: qualification_events - inserted.len(),
            visits_touched,
            heartbeats: envelope.events.iter().filter(|e| matches!(e.payload, EventPayload::Heartbeat(_))).count(),
            claim_files,
        })
    }
}
