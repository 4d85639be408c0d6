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

/// A device's latest receipt in a group of batches, and its newest heartbeat (time, heartbeat).
type DeviceSeen<'a> = (OffsetDateTime, Option<(OffsetDateTime, &'a onshi_domain::Heartbeat)>);

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
    ///
    /// Looked up within a day of the events' times: that keeps the read to one or two monthly
    /// partitions. A resend has the same time; an id reused with content more than a day apart in time
    /// is not recognised as a conflict and is stored as another event.
    pub async fn event_hashes(
        &self,
        clinic: ClinicId,
        events: &[(EventId, OffsetDateTime)],
    ) -> Result<HashMap<EventId, String>, StoreError> {
        let Some(from) = events.iter().map(|(_, at)| *at).min() else { return Ok(HashMap::new()) };
        let to = events.iter().map(|(_, at)| *at).max().unwrap_or(from);
        let margin = time::Duration::days(1);
        let (from, to) =
            ((from - margin).to_offset(time::UtcOffset::UTC), (to + margin).to_offset(time::UtcOffset::UTC));
        if sea_orm::ConnectionTrait::get_database_backend(self.db) == sea_orm::DatabaseBackend::Postgres {
            // One round trip (see the migration `scale`): every single reception pays for this.
            use sea_orm::ConnectionTrait;
            let ids: Vec<Uuid> = events.iter().map(|(id, _)| id.as_uuid()).collect();
            let rows = self
                .db
                .query_all_raw(sea_orm::Statement::from_sql_and_values(
                    sea_orm::DatabaseBackend::Postgres,
                    "SELECT event_id, content_hash FROM onshi_event_hashes($1, $2, $3, $4, $5)",
                    [self.tenant.into(), clinic.as_uuid().into(), ids.into(), from.into(), to.into()],
                ))
                .await?;
            let mut found = HashMap::new();
            for row in rows {
                let (id, hash): (Uuid, String) = (row.try_get("", "event_id")?, row.try_get("", "content_hash")?);
                found.insert(EventId::from_uuid(id), hash);
            }
            return Ok(found);
        }
        let txn = self.read().await?;
        let mut found = HashMap::new();
        for chunk in events.chunks(500) {
            let rows: Vec<(Uuid, String)> = raw_events::Entity::find()
                .select_only()
                .column(raw_events::Column::EventId)
                .column(raw_events::Column::ContentHash)
                .filter(raw_events::Column::TenantId.eq(self.tenant))
                .filter(raw_events::Column::ClinicId.eq(clinic.as_uuid()))
                .filter(raw_events::Column::OccurredAt.gte(from))
                .filter(raw_events::Column::OccurredAt.lte(to))
                .filter(raw_events::Column::EventId.is_in(chunk.iter().map(|(id, _)| id.as_uuid())))
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
        Ok(self.apply_batches(std::slice::from_ref(batch)).await?.pop().unwrap_or_default())
    }

    /// Applies several accepted batches of this tenant in one transaction, as if one after another (the
    /// worker groups the messages it has at hand: one commit, one set of locks and one rollup update per
    /// clinic instead of one per message). All or nothing; one outcome per batch, in order.
    pub async fn apply_batches(&self, batches: &[QueuedBatch]) -> Result<Vec<ApplyOutcome>, StoreError> {
        // Always committed: the condition holds.
        Ok(self.apply_batches_if(batches, std::future::ready(true)).await?.unwrap_or_default())
    }

    /// As [`TenantStore::apply_batches`], but commits only if `commit_if` yields true; otherwise rolls
    /// back and returns `None`. The worker passes the upload of the batches' archive, already under way:
    /// nothing is applied without its archive, yet the group takes the longer of the two instead of both
    /// one after the other. The condition is awaited once the group's own rows are written (raw events,
    /// visits) and, on PostgreSQL, before the shared ones are locked (a clinic's counters, its agents),
    /// which concurrent groups of the same clinic queue on. It is awaited while the transaction holds
    /// the first locks, so it must be something already running (a spawned task) and bounded: a
    /// dependency that does not answer belongs outside the transaction.
    pub async fn apply_batches_if(
        &self,
        batches: &[QueuedBatch],
        commit_if: impl std::future::Future<Output = bool>,
    ) -> Result<Option<Vec<ApplyOutcome>>, StoreError> {
        if batches.iter().any(|b| b.envelope.tenant.as_uuid() != self.tenant) {
            return Err(StoreError::NotFound { what: "batch of this tenant" });
        }
        // Heartbeats update the device row only: keeping every one as a raw event would grow the table
        // by thousands of rows per device and day for nothing.
        let raw: Vec<(&IngestEnvelope, &AgentEvent)> = batches
            .iter()
            .map(|b| &b.envelope)
            .flat_map(|envelope| envelope.events.iter().map(move |event| (envelope, event)))
            .filter(|(_, e)| matches!(e.payload, EventPayload::Qualification(_)))
            .collect();

        let txn = self.write().await?;
        let postgres = sea_orm::ConnectionTrait::get_database_backend(&txn) == sea_orm::DatabaseBackend::Postgres;
        // (clinic, event): the same event id twice in one group (a resend queued twice) is stored once
        // and counts as new for the first batch only.
        let inserted = self.insert_raw_events(&txn, &raw).await?;
        // Fold the new confirmations per clinic and visit key first, then merge each with what is stored.
        let mut fresh: BTreeMap<Uuid, BTreeMap<String, Visit>> = BTreeMap::new();
        // Per device: the latest receipt and the newest heartbeat.
        let mut seen: BTreeMap<Uuid, DeviceSeen<'_>> = BTreeMap::new();
        let mut confirmed_clinics = std::collections::BTreeSet::new();
        let mut outcomes = Vec::with_capacity(batches.len());
        let mut counted: std::collections::HashSet<(Uuid, Uuid)> = std::collections::HashSet::new();
        for envelope in batches.iter().map(|b| &b.envelope) {
            let clinic = envelope.clinic.as_uuid();
            let received_at = envelope.received_at.to_offset(time::UtcOffset::UTC);
            let mut outcome = ApplyOutcome::default();
            let mut keys = std::collections::BTreeSet::new();
            let device = seen.entry(envelope.device.as_uuid()).or_insert((received_at, None));
            device.0 = device.0.max(received_at);
            for event in &envelope.events {
                match &event.payload {
                    EventPayload::Qualification(check) => {
                        let key = (clinic, event.id.as_uuid());
                        if !inserted.contains(&key) || !counted.insert(key) {
                            outcome.duplicate_events += 1;
                            continue;
                        }
                        outcome.new_events += 1;
                        confirmed_clinics.insert(clinic);
                        if let Some(visit) = Visit::from_event(event.id, event.occurred_at, check) {
                            keys.insert(visit.key.clone());
                            let visits = fresh.entry(clinic).or_default();
                            match visits.get_mut(&visit.key) {
                                Some(existing) => existing.merge(&visit),
                                None => {
                                    visits.insert(visit.key.clone(), visit);
                                }
                            }
                        }
                    }
                    EventPayload::Claims(file) => {
                        let imported = self
                            .apply_claims_in(
                                &txn,
                                clinic,
                                envelope.device.as_uuid(),
                                event.id.as_uuid(),
                                file,
                                received_at,
                            )
                            .await?;
                        outcome.claim_files += usize::from(imported);
                    }
                    EventPayload::Heartbeat(h) => {
                        outcome.heartbeats += 1;
                        if device.1.is_none_or(|(at, _)| event.occurred_at > at) {
                            device.1 = Some((event.occurred_at, h));
                        }
                    }
                }
            }
            outcome.visits_touched = keys.len();
            outcomes.push(outcome);
        }

        let mut deltas = Vec::new();
        if !fresh.is_empty() {
            // Read-merge-write needs the rows locked (FOR UPDATE): two workers merging into the same visit
            // under READ COMMITTED would otherwise lose one update. SQLite has no row locks and needs none:
            // the raw-event insert above already holds its single write lock for the whole transaction.
            // FOR UPDATE cannot lock a visit that does not exist yet: two workers creating the same new
            // visit would both insert it and one would fail on the unique key, to be retried. A
            // transaction-scoped advisory lock per visit key, all of the group's taken at once in one
            // global order (so concurrent groups cannot deadlock), makes the second wait for the first
            // and then find its row.
            if postgres {
                use sea_orm::ConnectionTrait;
                let keys = fresh
                    .iter()
                    .flat_map(|(clinic, visits)| visits.keys().map(move |k| format!("{}:{clinic}:{k}", self.tenant)))
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
            deltas = self.merge_visits(&txn, fresh).await?;
        }

        // What is written so far locks rows of this group's own events (its raw events, its patients'
        // visits; a レセ電 file's rows, once a month). The rows written from here on are shared by every
        // group of a clinic: its day and month counters, its agents. Those groups queue on them until the
        // holder commits, so on PostgreSQL the condition (the archive's upload) is awaited before they are
        // locked, not while they are held: a second group of the clinic then waits for a few statements
        // and a commit, not for an upload. (SQLite's one writer holds the database from the start; the
        // worker uploads before it opens a transaction there.)
        if !commit_if.await {
            txn.rollback().await?;
            return Ok(None);
        }
        if !deltas.is_empty() {
            crate::rollups::apply(&txn, self.tenant, &deltas).await?;
        }

        // A result file from the clinic's own agent carries its code (the API refuses any other): the
        // code the group registered is now confirmed (a no-op once set).
        let now = batches.iter().map(|b| b.envelope.received_at).max().unwrap_or_else(OffsetDateTime::now_utc);
        let confirmed: Vec<Uuid> = confirmed_clinics.into_iter().collect();
        if postgres && seen.values().all(|(_, heartbeat)| heartbeat.is_none()) {
            // A fleet's receptions: no heartbeat to record, only times.
            let heard: Vec<(Uuid, OffsetDateTime)> = seen.iter().map(|(id, (at, _))| (*id, *at)).collect();
            self.touch_pg(&txn, &heard, &confirmed, now).await?;
        } else {
            self.record_devices(&txn, &seen).await?;
            if !confirmed.is_empty() {
                clinics::Entity::update_many()
                    .col_expr(
                        clinics::Column::CodeConfirmedAt,
                        sea_orm::sea_query::Expr::value(now.to_offset(time::UtcOffset::UTC)),
                    )
                    .filter(clinics::Column::Id.is_in(confirmed))
                    .filter(clinics::Column::TenantId.eq(self.tenant))
                    .filter(clinics::Column::CodeConfirmedAt.is_null())
                    .exec(&txn)
                    .await?;
            }
        }
        txn.commit().await?;
        Ok(Some(outcomes))
    }

    /// Records what the group says of its agents: each one's latest receipt and, where it sent one, its
    /// newest heartbeat (state and availability). Device rows are locked in id order, so that
    /// concurrent groups lock them in the same order (SQLite has no row locks: its one writer holds the
    /// database).
    async fn record_devices(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        seen: &BTreeMap<Uuid, DeviceSeen<'_>>,
    ) -> Result<(), StoreError> {
        let stored = devices::Entity::find()
            .filter(devices::Column::TenantId.eq(self.tenant))
            .filter(devices::Column::Id.is_in(seen.keys().copied()))
            .order_by_asc(devices::Column::Id)
            .lock_exclusive()
            .all(txn)
            .await?;
        // Agents heard from without a heartbeat get their time in one statement; a statement per agent
        // made the group's transaction a string of round trips.
        let mut heard: Vec<(Uuid, OffsetDateTime)> = Vec::new();
        for device in stored {
            let Some((received_at, newest_heartbeat)) = seen.get(&device.id).copied() else { continue };
            let newer_seen = device.last_seen_at.is_none_or(|at| received_at > at);
            let Some((at, heartbeat)) = newest_heartbeat else {
                if newer_seen {
                    heard.push((device.id, received_at));
                }
                continue;
            };
            let id = device.id;
            let mut active = device.into_active_model();
            if newer_seen {
                active.last_seen_at = Set(Some(received_at));
            }
            crate::uptime::record(txn, self.tenant, id, at, heartbeat).await?;
            active.agent_version = Set(Some(heartbeat.agent_version.clone()));
            active.last_heartbeat =
                Set(Some(serde_json::to_value(heartbeat).map_err(|e| StoreError::Corrupt(e.to_string()))?));
            active.update(txn).await?;
        }
        self.mark_heard(txn, &heard).await
    }

    /// PostgreSQL, a group without heartbeats (a fleet sending receptions as they happen, one agent per
    /// batch): each agent's `last_seen_at` moved forward and the clinics' codes confirmed, in one
    /// statement. It was three (lock the devices, update them, update the clinics), and at a few batches a
    /// group such fixed costs, not the rows, are what keep the workers busy.
    ///
    /// The `FOR UPDATE` sub-select takes the device rows' locks in id order, as `record_devices` does,
    /// whatever join the planner picks: it is read to its end (hashed, or as the loop's outer side in
    /// order) before or while rows are updated, so concurrent groups cannot deadlock on two agents. An
    /// UPDATE re-checks `last_seen_at` on the newest row version, so a time never moves backwards. The
    /// clinics' part locks a clinic row only while its code is unconfirmed (once in a clinic's life), so
    /// the order PostgreSQL runs the two parts in does not matter for deadlocks in practice; one would
    /// be detected and the group retried.
    async fn touch_pg(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        heard: &[(Uuid, OffsetDateTime)],
        confirmed: &[Uuid],
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        use sea_orm::ConnectionTrait;
        let utc = |t: OffsetDateTime| t.to_offset(time::UtcOffset::UTC);
        let ids: Vec<Uuid> = heard.iter().map(|(id, _)| *id).collect();
        let at: Vec<OffsetDateTime> = heard.iter().map(|(_, at)| utc(*at)).collect();
        txn.execute_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DatabaseBackend::Postgres,
            "WITH confirmed AS ( \
               UPDATE clinics c SET code_confirmed_at = $5 \
               WHERE c.tenant_id = $1 AND c.id = ANY($4::uuid[]) AND c.code_confirmed_at IS NULL \
               RETURNING 1) \
             UPDATE devices d SET last_seen_at = x.at \
             FROM unnest($2::uuid[], $3::timestamptz[]) AS x(id, at), \
               (SELECT id FROM devices WHERE tenant_id = $1 AND id = ANY($2::uuid[]) ORDER BY id FOR UPDATE) AS l \
             WHERE d.tenant_id = $1 AND d.id = x.id AND l.id = x.id \
               AND (d.last_seen_at IS NULL OR d.last_seen_at < x.at)",
            [self.tenant.into(), ids.into(), at.into(), confirmed.to_vec().into(), utc(now).into()],
        ))
        .await?;
        Ok(())
    }

    /// Sets each agent's `last_seen_at` (rows already locked by the caller): on PostgreSQL one statement
    /// over two arrays, on SQLite a statement each (one writer, no round trip to speak of).
    async fn mark_heard(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        heard: &[(Uuid, OffsetDateTime)],
    ) -> Result<(), StoreError> {
        use sea_orm::ConnectionTrait;
        if heard.is_empty() {
            return Ok(());
        }
        let utc = |t: OffsetDateTime| t.to_offset(time::UtcOffset::UTC);
        if txn.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
            let ids: Vec<Uuid> = heard.iter().map(|(id, _)| *id).collect();
            let at: Vec<OffsetDateTime> = heard.iter().map(|(_, at)| utc(*at)).collect();
            txn.execute_raw(sea_orm::Statement::from_sql_and_values(
                sea_orm::DatabaseBackend::Postgres,
                "UPDATE devices d SET last_seen_at = x.at \
                 FROM unnest($1::uuid[], $2::timestamptz[]) AS x(id, at) \
                 WHERE d.tenant_id = $3 AND d.id = x.id",
                [ids.into(), at.into(), self.tenant.into()],
            ))
            .await?;
        } else {
            for (id, at) in heard {
                devices::Entity::update_many()
                    .col_expr(devices::Column::LastSeenAt, sea_orm::sea_query::Expr::value(Some(utc(*at))))
                    .filter(devices::Column::TenantId.eq(self.tenant))
                    .filter(devices::Column::Id.eq(*id))
                    .exec(txn)
                    .await?;
            }
        }
        Ok(())
    }

    /// Stores the raw events not stored before; returns the (clinic, event) keys this call inserted.
    ///
    /// On PostgreSQL one statement per 1,000 events with one array per column (`unnest`): the same text
    /// every time, so it is parsed and planned once per connection, and ten parameters instead of ten per
    /// row (binding 5,000 parameters cost more than inserting the rows). SQLite takes rows of values.
    async fn insert_raw_events(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        raw: &[(&IngestEnvelope, &AgentEvent)],
    ) -> Result<std::collections::HashSet<(Uuid, Uuid)>, StoreError> {
        use sea_orm::ConnectionTrait;
        let utc = |t: OffsetDateTime| t.to_offset(time::UtcOffset::UTC);
        let corrupt = |e: serde_json::Error| StoreError::Corrupt(e.to_string());
        let mut inserted = std::collections::HashSet::new();
        if txn.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
            for chunk in raw.chunks(1000) {
                let column = |f: fn(&IngestEnvelope, &AgentEvent) -> Uuid| -> Vec<Uuid> {
                    chunk.iter().map(|(envelope, event)| f(envelope, event)).collect()
                };
                let payloads: Vec<String> = chunk
                    .iter()
                    .map(|(_, event)| serde_json::to_string(event))
                    .collect::<Result<_, _>>()
                    .map_err(corrupt)?;
                let rows = txn
                    .query_all_raw(sea_orm::Statement::from_sql_and_values(
                        sea_orm::DatabaseBackend::Postgres,
                        "INSERT INTO raw_events (tenant_id, device_id, event_id, clinic_id, batch_id, kind, occurred_at, \
                           received_at, content_hash, payload) \
                         SELECT $1, x.device_id, x.event_id, x.clinic_id, x.batch_id, 'qualification', x.occurred_at, \
                           x.received_at, x.content_hash, x.payload::json \
                         FROM unnest($2::uuid[], $3::uuid[], $4::uuid[], $5::uuid[], $6::timestamptz[], \
                           $7::timestamptz[], $8::text[], $9::text[]) \
                           AS x(device_id, event_id, clinic_id, batch_id, occurred_at, received_at, content_hash, payload) \
                         ON CONFLICT DO NOTHING RETURNING clinic_id, event_id",
                        [
                            self.tenant.into(),
                            column(|envelope, _| envelope.device.as_uuid()).into(),
                            column(|_, event| event.id.as_uuid()).into(),
                            column(|envelope, _| envelope.clinic.as_uuid()).into(),
                            column(|envelope, _| envelope.batch_id).into(),
                            chunk.iter().map(|(_, event)| utc(event.occurred_at)).collect::<Vec<_>>().into(),
                            chunk.iter().map(|(envelope, _)| utc(envelope.received_at)).collect::<Vec<_>>().into(),
                            chunk.iter().map(|(_, event)| event.content_hash()).collect::<Vec<_>>().into(),
                            payloads.into(),
                        ],
                    ))
                    .await?;
                for row in rows {
                    inserted.insert((row.try_get("", "clinic_id")?, row.try_get("", "event_id")?));
                }
            }
            return Ok(inserted);
        }
        // Bounded statements: SQLite caps the bind parameters of one statement.
        for chunk in raw.chunks(500) {
            let rows = chunk
                .iter()
                .map(|(envelope, event)| {
                    Ok(raw_events::ActiveModel {
                        tenant_id: Set(self.tenant),
                        device_id: Set(envelope.device.as_uuid()),
                        event_id: Set(event.id.as_uuid()),
                        clinic_id: Set(envelope.clinic.as_uuid()),
                        batch_id: Set(envelope.batch_id),
                        kind: Set("qualification".to_owned()),
                        occurred_at: Set(utc(event.occurred_at)),
                        received_at: Set(utc(envelope.received_at)),
                        content_hash: Set(event.content_hash()),
                        payload: Set(serde_json::to_value(event).map_err(corrupt)?),
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            match raw_events::Entity::insert_many(rows).on_conflict_do_nothing().exec_with_returning_keys(txn).await? {
                // (tenant, clinic, event, occurred_at)
                TryInsertResult::Inserted(keys) => {
                    inserted.extend(keys.into_iter().map(|(_, clinic, event, _)| (clinic, event)));
                }
                TryInsertResult::Empty | TryInsertResult::Conflicted => {}
            }
        }
        Ok(inserted)
    }

    /// Merges the group's new visits (per clinic and key) with the stored ones (locked), and returns
    /// what that changes in each clinic's rollups, for the caller to apply once: every clinic of the
    /// group in the same statements.
    async fn merge_visits(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        fresh: BTreeMap<Uuid, BTreeMap<String, Visit>>,
    ) -> Result<Vec<(Uuid, RollupDelta)>, StoreError> {
        let clinics: Vec<Uuid> = fresh.keys().copied().collect();
        let keys: Vec<String> = fresh
            .values()
            .flat_map(|v| v.keys().cloned())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        // A visit's key includes its date: the dates let PostgreSQL read only those months' partitions.
        let dates: std::collections::BTreeSet<time::Date> =
            fresh.values().flat_map(|v| v.values().map(|v| v.date)).collect();
        let mut stored: HashMap<(Uuid, String), visits::Model> = HashMap::new();
        if sea_orm::ConnectionTrait::get_database_backend(txn) == sea_orm::DatabaseBackend::Postgres {
            // One statement of fixed text per shape, whatever the counts (parsed once per connection),
            // planned for each execution's values: the `= ANY` of the dates prunes the monthly partitions at
            // plan time. No date range: a day past the partition's histogram, or a partition not analyzed
            // yet, was estimated at one row and the plan read the tenant's whole day for every group (50 ms
            // a look-up at 68,000 visits a day on the feed bench, growing through the day). The two shapes:
            // - a fleet sending as it happens (many clinics, a visit or two each): each wanted (clinic, key,
            //   date) is probed on its own, in key order; the LIMIT keeps PostgreSQL from flattening the probe
            //   into a join planned from statistics. 150 clinics: 1.7 ms analyzed, 7.7 ms not, against 8.6
            //   and 28 ms for reading the clinics' day, which also locked every clinic's rows of any key;
            // - an agent draining its buffer (few clinics, many visits each): one index scan over the key
            //   (tenant, clinic, visit_date, visit_key) for every combination of the group's clinics, dates and
            //   keys. Probing 200 visits of one clinic one by one read the clinic's day per probe when the
            //   partition had no statistics yet (54 ms against 1 ms; 1.2 against 1.5 ms analyzed).
            let few_per_clinic = keys.len() <= 2 * clinics.len();
            let statement = if few_per_clinic {
                let mut wanted: Vec<(&str, Uuid, time::Date)> = fresh
                    .iter()
                    .flat_map(|(clinic, visits)| visits.iter().map(|(key, v)| (key.as_str(), *clinic, v.date)))
                    .collect();
                wanted.sort_unstable();
                sea_orm::Statement::from_sql_and_values(
                    sea_orm::DatabaseBackend::Postgres,
                    "SELECT v.* FROM unnest($2::uuid[], $3::text[], $4::date[]) WITH ORDINALITY \
                       AS k(clinic_id, visit_key, visit_date, n) \
                     CROSS JOIN LATERAL (SELECT * FROM visits x WHERE x.tenant_id = $1 \
                       AND x.clinic_id = k.clinic_id AND x.visit_key = k.visit_key AND x.visit_date = k.visit_date \
                       AND x.visit_date = ANY($5::date[]) LIMIT 1 FOR UPDATE) v \
                     ORDER BY k.n",
                    [
                        self.tenant.into(),
                        wanted.iter().map(|w| w.1).collect::<Vec<_>>().into(),
                        wanted.iter().map(|w| w.0.to_owned()).collect::<Vec<_>>().into(),
                        wanted.iter().map(|w| w.2).collect::<Vec<_>>().into(),
                        dates.iter().copied().collect::<Vec<_>>().into(),
                    ],
                )
            } else {
                sea_orm::Statement::from_sql_and_values(
                    sea_orm::DatabaseBackend::Postgres,
                    "SELECT * FROM visits WHERE tenant_id = $1 AND clinic_id = ANY($2::uuid[]) \
                       AND visit_date = ANY($3::date[]) AND visit_key = ANY($4::text[]) \
                     ORDER BY visit_key FOR UPDATE",
                    [
                        self.tenant.into(),
                        clinics.clone().into(),
                        dates.iter().copied().collect::<Vec<_>>().into(),
                        keys.clone().into(),
                    ],
                )
            };
            let rows = visits::Entity::find().from_raw_sql(statement).all(txn).await?;
            stored.extend(rows.into_iter().map(|m| ((m.clinic_id, m.visit_key.clone()), m)));
        } else {
            for chunk in keys.chunks(500) {
                let rows = visits::Entity::find()
                    .filter(visits::Column::TenantId.eq(self.tenant))
                    .filter(visits::Column::ClinicId.is_in(clinics.iter().copied()))
                    .filter(visits::Column::VisitDate.is_in(dates.iter().copied()))
                    .filter(visits::Column::VisitKey.is_in(chunk.iter().cloned()))
                    .order_by_asc(visits::Column::VisitKey)
                    .lock_exclusive()
                    .all(txn)
                    .await?;
                stored.extend(rows.into_iter().map(|m| ((m.clinic_id, m.visit_key.clone()), m)));
            }
        }
        let mut new_rows: Vec<(Uuid, Uuid, Visit)> = Vec::new();
        let mut merged_rows: Vec<(Uuid, Visit)> = Vec::new();
        let mut deltas: Vec<(Uuid, RollupDelta)> = Vec::with_capacity(fresh.len());
        for (clinic, visits) in fresh {
            let mut delta = RollupDelta::default();
            for (key, visit) in visits {
                match stored.remove(&(clinic, key)) {
                    Some(row) => {
                        let before = visit_from_row(&row)?;
                        let mut merged = before.clone();
                        merged.merge(&visit);
                        if merged == before {
                            continue; // a confirmation that adds nothing (the same visit seen again)
                        }
                        delta.add(Some(&before), &merged);
                        merged_rows.push((row.id, merged));
                    }
                    None => {
                        delta.add(None, &visit);
                        new_rows.push((clinic, Uuid::now_v7(), visit));
                    }
                }
            }
            deltas.push((clinic, delta));
        }
        self.update_visits(txn, &merged_rows).await?;
        self.insert_visits(txn, &new_rows).await?;
        Ok(deltas)
    }

    /// Inserts new visits (clinic, id, visit). On PostgreSQL one statement per 1,000 visits from a JSON
    /// array (one text, planned once per connection); on SQLite rows of values, 200 per statement.
    async fn insert_visits(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        created: &[(Uuid, Uuid, Visit)],
    ) -> Result<(), StoreError> {
        use sea_orm::ConnectionTrait;
        if txn.get_database_backend() != sea_orm::DatabaseBackend::Postgres {
            for chunk in created.chunks(200) {
                let rows = chunk.iter().map(|(clinic, id, visit)| {
                    let mut active = visits::ActiveModel {
                        id: Set(*id),
                        tenant_id: Set(self.tenant),
                        clinic_id: Set(*clinic),
                        visit_key: Set(visit.key.clone()),
                        ..Default::default()
                    };
                    set_visit_fields(&mut active, visit);
                    active
                });
                visits::Entity::insert_many(rows).exec_without_returning(txn).await?;
            }
            return Ok(());
        }
        for chunk in created.chunks(1000) {
            let mut records = Vec::with_capacity(chunk.len());
            for (clinic, id, visit) in chunk {
                let mut record = visit_record(*id, visit)?;
                record["clinic_id"] = serde_json::json!(clinic);
                records.push(record);
            }
            txn.execute_raw(sea_orm::Statement::from_sql_and_values(
                sea_orm::DatabaseBackend::Postgres,
                INSERT_VISITS.as_str(),
                [serde_json::Value::Array(records).into(), self.tenant.into()],
            ))
            .await?;
        }
        Ok(())
    }

    /// Writes merged visits back. On PostgreSQL one UPDATE per month and 1,000 visits, from a JSON
    /// array; on SQLite one per visit. The ids and dates are also given as constant arrays: the dates
    /// prune the partitions at plan time, and the ids make the primary key the plan's way in whatever the
    /// statistics say. With a date range instead, a partition without fresh statistics (a new month, a
    /// day past the histogram, autovacuum behind) was estimated at one row for the tenant, and the plan
    /// hashed every visit of the tenant's day to update a few (50 ms at 68,000 visits a day, growing
    /// through the day).
    async fn update_visits(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        merged: &[(Uuid, Visit)],
    ) -> Result<(), StoreError> {
        use sea_orm::ConnectionTrait;
        if txn.get_database_backend() != sea_orm::DatabaseBackend::Postgres {
            for (id, visit) in merged {
                let mut active = visits::ActiveModel { id: Set(*id), ..Default::default() };
                set_visit_fields(&mut active, visit);
                visits::Entity::update(active)
                    .validate()?
                    .filter(visits::Column::TenantId.eq(self.tenant))
                    .filter(visits::Column::VisitDate.eq(visit.date))
                    .exec(txn)
                    .await?;
            }
            return Ok(());
        }
        let mut by_month: BTreeMap<onshi_domain::YearMonth, Vec<(Uuid, &Visit)>> = BTreeMap::new();
        for (id, v) in merged {
            by_month.entry(onshi_domain::YearMonth::of(v.date)).or_default().push((*id, v));
        }
        for rows in by_month.into_values() {
            for chunk in rows.chunks(1000) {
                let records = chunk.iter().map(|(id, v)| visit_record(*id, v)).collect::<Result<Vec<_>, _>>()?;
                let ids: Vec<Uuid> = chunk.iter().map(|(id, _)| *id).collect();
                let dates: Vec<time::Date> =
                    chunk.iter().map(|(_, v)| v.date).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
                txn.execute_raw(sea_orm::Statement::from_sql_and_values(
                    sea_orm::DatabaseBackend::Postgres,
                    UPDATE_VISITS.as_str(),
                    [serde_json::Value::Array(records).into(), self.tenant.into(), ids.into(), dates.into()],
                ))
                .await?;
            }
        }
        Ok(())
    }
}

/// The visit columns a merge writes (the date first: an update keeps it, being part of the key).
const VISIT_COLUMNS: &str = "visit_date, patient_ref, first_at, last_at, method, identity_check, myna, result, \
    consent_medication, consent_diagnosis, consent_checkup, consent_surgery, confirmations, insurer_number";

/// The set-based visit writes' texts, made once from the column lists (the same text on every call, so
/// each connection parses and plans it once).
static INSERT_VISITS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "INSERT INTO visits (id, tenant_id, clinic_id, visit_key, {VISIT_COLUMNS}, updated_at) \
         SELECT x.id, $2, x.clinic_id, x.visit_key, {}, now() FROM jsonb_to_recordset($1::jsonb) AS x({VISIT_RECORD})",
        VISIT_COLUMNS.split(", ").map(|c| format!("x.{c}")).collect::<Vec<_>>().join(", ")
    )
});
static UPDATE_VISITS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "UPDATE visits v SET {}, updated_at = now() \
         FROM jsonb_to_recordset($1::jsonb) AS x({VISIT_RECORD}) \
         WHERE v.tenant_id = $2 AND v.id = x.id AND v.visit_date = x.visit_date \
           AND v.id = ANY($3::uuid[]) AND v.visit_date = ANY($4::date[])",
        // The date is part of the key: matched on, not written.
        VISIT_COLUMNS.split(", ").skip(1).map(|c| format!("{c} = x.{c}")).collect::<Vec<_>>().join(", ")
    )
});

/// The record type of [`visit_record`]'s JSON for `jsonb_to_recordset` (`clinic_id` only when inserting).
const VISIT_RECORD: &str = "id uuid, clinic_id uuid, visit_key text, visit_date date, patient_ref text, first_at timestamptz, \
    last_at timestamptz, method text, identity_check text, myna boolean, result text, consent_medication boolean, \
    consent_diagnosis boolean, consent_checkup boolean, consent_surgery boolean, confirmations integer, \
    insurer_number text";

/// One visit as a JSON object whose keys are [`VISIT_RECORD`]'s columns, for set-based writes on
/// PostgreSQL (the same fields `set_visit_fields` writes row by row).
fn visit_record(id: Uuid, v: &Visit) -> Result<serde_json::Value, StoreError> {
    let rfc = |t: OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339).map_err(|e| StoreError::Corrupt(e.to_string()))
    };
    Ok(serde_json::json!({
        "id": id,
        "visit_key": v.key,
        "visit_date": v.date.to_string(),
        "patient_ref": v.patient.as_deref(),
        "first_at": rfc(v.first_at)?,
        "last_at": rfc(v.last_at)?,
        "method": v.method.as_str(),
        "identity_check": v.identity.map(|i| i.as_str()),
        "myna": v.myna,
        "result": v.result.as_str(),
        "consent_medication": v.consents.medication,
        "consent_diagnosis": v.consents.diagnosis,
        "consent_checkup": v.consents.checkup,
        "consent_surgery": v.consents.surgery,
        "confirmations": i32::try_from(v.confirmations).unwrap_or(i32::MAX),
        "insurer_number": v.insurer.as_ref().map(|i| i.as_str()),
    }))
}
