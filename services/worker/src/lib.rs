//! The worker: takes accepted batches off the queue and applies them to the store.
//!
//! For each message, in this order: decode (a message that cannot be decoded or has an unknown version
//! is poison and goes straight to the dead-letter queue); archive the batch as received in the object
//! store (idempotent: same key, same bytes); apply it in one database transaction (idempotent by event
//! id); notify live subscribers; then ack. A crash anywhere before the ack means redelivery, and
//! redelivery is harmless, so every accepted event takes effect exactly once.
//!
//! Outages: a lost queue consumer is re-attached with backoff for as long as it takes (`run`); a database
//! or object store that does not answer at all holds the message, unacknowledged, until it answers again
//! (`ride_out`), so an outage of any length spends none of a message's delivery limit. A failure while
//! the dependency answers is the message's own: it goes back to the queue, which dead-letters it after
//! `delivery_limit` returns, so nothing loops forever. (A message held longer than RabbitMQ's
//! `consumer_timeout`, 30 minutes by default, is returned by the broker and counts one delivery.)

mod heartbeats;

use std::time::Duration;

pub use heartbeats::DEFAULT_FLUSH as DEFAULT_HEARTBEAT_FLUSH;
use onshi_cache::{Cache, CacheBackend};
use onshi_domain::{IngestEnvelope, jst};
use onshi_objects::{ObjectBackend, ObjectStore};
use onshi_queue::{Delivery, MessageConsumer, MessageQueue, Queue};
use onshi_store::{QueuedBatch, Store};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// What the worker writes to besides the queue.
#[derive(Debug, Clone, Copy)]
enum Dependency {
    Database,
    Objects,
}

impl Dependency {
    fn name(self) -> &'static str {
        match self {
            Dependency::Database => "database",
            Dependency::Objects => "object store",
        }
    }
}

/// Deliveries at hand applied together at most (bounded anyway by the prefetch).
const GROUP_MAX: usize = 256;

/// A group stops growing at this many bytes of messages (about 1,000 events): its transaction takes one
/// advisory lock per visit key, and PostgreSQL's lock table is shared by all connections
/// (`max_locks_per_transaction` × connections); a group of 20,000 events ran out of it.
const GROUP_BYTES: usize = 512 * 1024;

/// Groups one worker applies at the same time.
const IN_FLIGHT: usize = 2;

/// How long a dependency may take to answer "are you there".
const PING_DEADLINE: Duration = Duration::from_secs(2);

/// The first pause before reconnecting to the queue, and the longest.
const RECONNECT_MIN: Duration = Duration::from_secs(1);
const RECONNECT_MAX: Duration = Duration::from_secs(30);

/// Between half and all of `pause`, so a fleet of workers does not reconnect in step.
fn jittered(pause: Duration) -> Duration {
    pause.mul_f64(0.5 + rand::random::<f64>() * 0.5)
}

#[derive(Clone)]
pub struct Worker {
    pub store: Store,
    pub queue: Queue,
    pub cache: Cache,
    pub objects: ObjectStore,
    pub archive_raw_batches: bool,
    pub prefetch: u16,
    /// How often the pending heartbeats are written (see `heartbeats`).
    pub heartbeat_flush: Duration,
    /// Runs after a batch changed a tenant's visits (the usage watch); best effort, after the ack.
    pub after_apply: Option<std::sync::Arc<dyn AfterApply>>,
    /// The consumer's state, for the health endpoints and metrics.
    pub health: std::sync::Arc<onshi_queue::ConsumerHealth>,
}

/// Work that follows applied visits but must never hold up or fail a message: alerts, notifications.
pub trait AfterApply: Send + Sync {
    fn after_apply(
        &self,
        scope: onshi_store::TenantScope,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>>;
}

/// How a message ended, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    Applied,
    Retried,
    DeadLettered,
}

/// The channel on which a tenant's live updates are published (no personal data in the name or body).
pub fn feed_channel(tenant: onshi_domain::TenantId) -> String {
    format!("feed:{tenant}")
}

/// The live-feed note for an applied batch: the clinic, how many visits it touched, and its latest
/// receptions' time, method and result (at most ten; no patient, insurer or name).
pub fn feed_note(envelope: &IngestEnvelope, visits: usize) -> serde_json::Value {
    clinic_note(envelope.clinic, visits, std::iter::once(envelope))
}

/// One note for several batches of one clinic applied together: their visits added up and the latest
/// ten receptions among them. Agents send each reception as it happens, so a group holds many
/// one-reception batches of the same clinics; one publish per clinic instead of one per batch.
fn clinic_note<'a>(
    clinic: onshi_domain::ClinicId,
    visits: usize,
    envelopes: impl Iterator<Item = &'a IngestEnvelope>,
) -> serde_json::Value {
    // Picked before anything is serialised: the worker's hot path pays for ten, not the whole batch.
    let mut latest: Vec<(time::OffsetDateTime, &onshi_domain::QualificationCheck)> = envelopes
        .flat_map(|envelope| envelope.events.iter())
        .filter_map(|e| match &e.payload {
            onshi_domain::EventPayload::Qualification(q) if !q.batch => Some((e.occurred_at, q)),
            _ => None,
        })
        .collect();
    latest.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
    let receptions: Vec<serde_json::Value> = latest
        .into_iter()
        .take(10)
        .map(|(at, q)| {
            serde_json::json!({
                "at": at.format(&time::format_description::well_known::Rfc3339).ok(),
                "method": q.method,
                "result": q.result,
            })
        })
        .collect();
    serde_json::json!({ "clinic": clinic.to_string(), "visits": visits, "receptions": receptions })
}

/// The notes for a tenant's group of applied batches, one per clinic whose visits changed.
pub fn group_notes<'a>(applied: impl IntoIterator<Item = (&'a IngestEnvelope, usize)>) -> Vec<serde_json::Value> {
    let mut by_clinic: std::collections::BTreeMap<onshi_domain::ClinicId, (usize, Vec<&IngestEnvelope>)> =
        Default::default();
    for (envelope, visits) in applied.into_iter().filter(|(_, visits)| *visits > 0) {
        let entry = by_clinic.entry(envelope.clinic).or_default();
        entry.0 += visits;
        entry.1.push(envelope);
    }
    by_clinic
        .into_iter()
        .map(|(clinic, (visits, envelopes))| clinic_note(clinic, visits, envelopes.into_iter()))
        .collect()
}

/// The object key under which a batch is archived.
pub fn archive_key(envelope: &IngestEnvelope) -> String {
    format!("raw/{}/{}/{}.json", envelope.tenant, jst::date_of(envelope.received_at), envelope.batch_id.simple())
}

/// The object key under which a group of batches applied together is archived (JSON lines, one batch
/// per line, each as received), named after its first batch.
pub fn archive_group_key(first: &IngestEnvelope) -> String {
    format!("raw/{}/{}/{}.group.jsonl", first.tenant, jst::date_of(first.received_at), first.batch_id.simple())
}

impl Worker {
    /// Consumes until `shutdown` is cancelled, then waits for in-flight messages to settle.
    ///
    /// A lost consumer (the broker went away, its connection was closed, the embedded queue's database
    /// failed) is never fatal: the worker says so once, reconnects with a growing, jittered pause (1 s
    /// to 30 s) for as long as it takes, and consumes again as soon as the queue answers. Messages in
    /// flight when the connection died are redelivered by the broker; applying them again is harmless.
    pub async fn run(self, shutdown: CancellationToken) {
        let writer = tokio::spawn(self.clone().write_heartbeats(shutdown.clone()));
        let mut tasks = JoinSet::new();
        let mut pause = RECONNECT_MIN;
        let mut consumer = None;
        loop {
            let Some(current) = consumer.as_mut() else {
                match self.queue.consume(self.prefetch).await {
                    Ok(c) => {
                        if self.health.reconnects() > 0 {
                            tracing::info!(queue = self.queue.kind(), "queue reachable again; consuming");
                        } else {
                            tracing::info!(queue = self.queue.kind(), prefetch = self.prefetch, "worker consuming");
                        }
                        self.health.consuming();
                        pause = RECONNECT_MIN;
                        consumer = Some(c);
                    }
                    Err(e) => {
                        if pause == RECONNECT_MIN {
                            tracing::warn!(error = %e, "cannot consume from the queue; retrying until it answers");
                        } else {
                            tracing::debug!(error = %e, "queue still unreachable");
                        }
                        self.health.lost();
                        self.health.reconnecting();
                        onshi_telemetry::metrics().worker_reconnects.inc();
                        let wait = jittered(pause);
                        pause = (pause * 2).min(RECONNECT_MAX);
                        tokio::select! {
                            () = shutdown.cancelled() => break,
                            () = tokio::time::sleep(wait) => {}
                            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                        }
                    }
                }
                continue;
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                // While IN_FLIGHT groups are being applied, deliveries wait in the consumer's buffer (up
                // to the prefetch) and make the next group larger: under load, fewer and larger
                // transactions; at rest, each message at once.
                next = current.next(), if tasks.len() < IN_FLIGHT => match next {
                    Some(Ok(delivery)) => {
                        self.health.delivered();
                        // Whatever else has arrived is applied with it (one transaction per tenant).
                        let mut bytes = delivery.payload.len();
                        let mut group = vec![delivery];
                        while group.len() < GROUP_MAX && bytes < GROUP_BYTES {
                            let Some(more) = current.ready() else { break };
                            self.health.delivered();
                            bytes += more.payload.len();
                            group.push(more);
                        }
                        let worker = self.clone();
                        if group.len() == 1 {
                            tasks.spawn(async move { vec![worker.handle(group.remove(0)).await] });
                        } else {
                            tasks.spawn(async move { worker.handle_group(group).await });
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "lost the queue consumer; reconnecting");
                        self.health.lost();
                        consumer = None;
                    }
                    None => {
                        tracing::warn!("the queue closed the consumer; reconnecting");
                        self.health.lost();
                        consumer = None;
                    }
                },
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        self.health.lost();
        // Unsettled messages of a stopped worker are redelivered anyway; waiting is only politeness.
        let drain = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(10), drain).await.is_err() {
            tracing::warn!("worker stopped with messages in flight; they will be redelivered");
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), writer).await;
    }

    async fn answers(&self, dependency: Dependency) -> bool {
        let ping = async {
            match dependency {
                Dependency::Database => self.store.ping().await.is_ok(),
                Dependency::Objects => self.objects.get("readyz/probe").await.is_ok(),
            }
        };
        tokio::time::timeout(PING_DEADLINE, ping).await.unwrap_or(false)
    }

    /// After a write failed: if `dependency` does not answer at all, holds the message (unacknowledged)
    /// until it does and returns true, so the caller tries again. An outage is not the message's fault
    /// and must not spend its delivery limit; only failures while the dependency answers do. Returns
    /// false at once when it answers (the failure was this message's own).
    async fn ride_out(&self, dependency: Dependency) -> bool {
        if self.answers(dependency).await {
            return false;
        }
        tracing::warn!(dependency = dependency.name(), "not reachable; holding the message until it answers");
        let mut pause = RECONNECT_MIN;
        loop {
            tokio::time::sleep(jittered(pause)).await;
            if self.answers(dependency).await {
                tracing::info!(dependency = dependency.name(), "reachable again; retrying the message");
                return true;
            }
            pause = (pause * 2).min(RECONNECT_MAX);
        }
    }

    /// Processes one delivery and settles it.
    pub async fn handle(&self, delivery: Delivery) -> Settled {
        let settled = self.decode_and_apply(delivery).await;
        count(settled);
        settled
    }

    async fn decode_and_apply(&self, delivery: Delivery) -> Settled {
        let Some(batch) = decode(&delivery) else {
            return settle_dead(delivery, "undecodable message").await;
        };
        let span = batch_span(&delivery, &batch);
        self.apply(delivery, batch).instrument(span).await
    }

    /// Processes the deliveries at hand together: each is archived as before, and each tenant's batches
    /// are applied in one transaction. If that transaction fails for a reason of its own (not an outage),
    /// the batches are applied one by one, so only the faulty one is returned or dead-lettered.
    pub async fn handle_group(&self, deliveries: Vec<Delivery>) -> Vec<Settled> {
        let mut settled = Vec::with_capacity(deliveries.len());
        let mut by_tenant: std::collections::BTreeMap<onshi_domain::TenantId, Vec<(Delivery, QueuedBatch)>> =
            Default::default();
        for delivery in deliveries {
            match decode(&delivery) {
                Some(batch) => by_tenant.entry(batch.envelope().tenant).or_default().push((delivery, batch)),
                None => settled.push(settle_dead(delivery, "undecodable message").await),
            }
        }
        for (tenant, items) in by_tenant {
            let span = tracing::info_span!("batches", %tenant, batches = items.len());
            settled.extend(self.apply_together(items).instrument(span).await);
        }
        for s in &settled {
            count(*s);
        }
        settled
    }

    async fn apply_together(&self, items: Vec<(Delivery, QueuedBatch)>) -> Vec<Settled> {
        if items.len() == 1 {
            let mut items = items;
            let Some((delivery, batch)) = items.pop() else { return Vec::new() };
            return vec![self.apply(delivery, batch).await];
        }
        let mut settled = Vec::new();
        if !self.archive_group(&items).await {
            for (delivery, _) in items {
                settled.push(settle_retry(delivery).await);
            }
            return settled;
        }
        let kept = items;
        let batches: Vec<QueuedBatch> = kept.iter().map(|(_, b)| b.clone()).collect();
        let Some(first) = batches.first() else { return settled };
        match self.store_batches(first.scope(), &batches).await {
            Ok(outcomes) => {
                let hook_scope = outcomes.iter().any(|o| o.visits_touched > 0).then(|| first.scope());
                // The live feed before any ack, as for a single batch, but one note per clinic.
                self.publish_feed(
                    first.envelope().tenant,
                    batches.iter().map(QueuedBatch::envelope).zip(outcomes.iter().map(|o| o.visits_touched)),
                )
                .await;
                for ((delivery, batch), outcome) in kept.into_iter().zip(outcomes) {
                    // Each batch's settling joins its own request's trace (the group's transaction can
                    // belong to only one).
                    let span = batch_span(&delivery, &batch);
                    settled.push(self.settle_applied(delivery, &batch, outcome, false).instrument(span).await);
                }
                if let (Some(scope), Some(hook)) = (hook_scope, &self.after_apply) {
                    hook.after_apply(scope).await;
                }
            }
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, "applying the batches failed; returning them");
                for (delivery, _) in kept {
                    settled.push(settle_retry(delivery).await);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "applying the batches together failed; applying them one by one");
                for (delivery, batch) in kept {
                    let span = batch_span(&delivery, &batch);
                    settled.push(self.store_and_settle(delivery, batch).instrument(span).await);
                }
            }
        }
        settled
    }

    /// Archives the batch as received (evidence only: heartbeat-only batches carry none). False when
    /// the object store refused it while answering: the message goes back.
    async fn archive(&self, delivery: &Delivery, batch: &QueuedBatch) -> bool {
        let envelope = batch.envelope();
        // Heartbeat-only batches (one every 20 s from every agent) carry no qualification data to keep
        // as evidence; archiving them would be one object-store PUT per heartbeat.
        let evidence =
            envelope.events.iter().any(|e| matches!(e.payload, onshi_domain::EventPayload::Qualification(_)));
        if self.archive_raw_batches && evidence {
            let key = archive_key(envelope);
            while let Err(e) = self.objects.put(&key, delivery.payload.clone(), "application/json").await {
                tracing::warn!(error = %e, "archiving the batch failed");
                if !self.ride_out(Dependency::Objects).await {
                    return false;
                }
            }
        }
        true
    }

    /// Archives a tenant's group of batches as one object (`archive_group_key`): one line per batch,
    /// each as received. One PUT per group instead of one per batch: an agent sends each reception as it
    /// happens, and an object store charges per request.
    async fn archive_group(&self, items: &[(Delivery, QueuedBatch)]) -> bool {
        let evidence: Vec<&(Delivery, QueuedBatch)> = items
            .iter()
            .filter(|(_, b)| {
                b.envelope().events.iter().any(|e| matches!(e.payload, onshi_domain::EventPayload::Qualification(_)))
            })
            .collect();
        let Some((_, first)) = evidence.first() else { return true };
        if !self.archive_raw_batches {
            return true;
        }
        if evidence.len() == 1 {
            let (delivery, batch) = evidence[0];
            return self.archive(delivery, batch).await;
        }
        let mut body = Vec::with_capacity(evidence.iter().map(|(d, _)| d.payload.len() + 1).sum());
        for (delivery, _) in &evidence {
            body.extend_from_slice(&delivery.payload);
            body.push(b'\n');
        }
        let key = archive_group_key(first.envelope());
        while let Err(e) = self.objects.put(&key, body.clone(), "application/x-ndjson").await {
            tracing::warn!(error = %e, "archiving the group failed");
            if !self.ride_out(Dependency::Objects).await {
                return false;
            }
        }
        true
    }

    /// Applies batches of one tenant in one transaction, retrying transient failures in place and
    /// holding on through a database outage.
    async fn store_batches(
        &self,
        scope: onshi_store::TenantScope,
        batches: &[QueuedBatch],
    ) -> Result<Vec<onshi_store::ApplyOutcome>, onshi_store::StoreError> {
        let store = self.store.tenant(scope);
        loop {
            // A lock timeout or a lost connection often passes in a moment: try again here a few times
            // before anything else.
            let mut result = store.apply_batches(batches).await;
            for attempt in 1..=3u32 {
                match &result {
                    Err(e) if e.is_transient() => {
                        tracing::debug!(error = %e, attempt, "transient failure; retrying in place");
                        tokio::time::sleep(Duration::from_millis(100 * 2u64.pow(attempt))).await;
                        result = store.apply_batches(batches).await;
                    }
                    _ => break,
                }
            }
            match &result {
                Err(e) if e.is_transient() && self.ride_out(Dependency::Database).await => continue,
                _ => return result,
            }
        }
    }

    async fn apply(&self, delivery: Delivery, batch: QueuedBatch) -> Settled {
        if !self.archive(&delivery, &batch).await {
            return settle_retry(delivery).await;
        }
        self.store_and_settle(delivery, batch).await
    }

    async fn store_and_settle(&self, delivery: Delivery, batch: QueuedBatch) -> Settled {
        match self.store_batches(batch.scope(), std::slice::from_ref(&batch)).await {
            Ok(mut outcomes) => {
                let outcome = outcomes.pop().unwrap_or_default();
                self.publish_feed(batch.envelope().tenant, [(batch.envelope(), outcome.visits_touched)]).await;
                self.settle_applied(delivery, &batch, outcome, true).await
            }
            Err(e) => {
                tracing::warn!(error = %e, source = ?std::error::Error::source(&e), transient = e.is_transient(), "applying the batch failed");
                if e.is_transient() {
                    settle_retry(delivery).await
                } else {
                    settle_dead(delivery, &e.to_string()).await
                }
            }
        }
    }

    /// Publishes the live-feed notes of applied batches (`group_notes`) on the tenant's channel. Best
    /// effort: the page also refreshes from the store.
    async fn publish_feed<'a>(
        &self,
        tenant: onshi_domain::TenantId,
        applied: impl IntoIterator<Item = (&'a IngestEnvelope, usize)>,
    ) {
        let channel = feed_channel(tenant);
        for note in group_notes(applied) {
            if let Err(e) = self.cache.publish(&channel, note.to_string().as_bytes()).await {
                tracing::debug!(error = %e, "live update not published");
                return;
            }
        }
    }

    /// After the commit (and the live feed): metrics, the ack, and (when `hook`) the after-apply work.
    async fn settle_applied(
        &self,
        delivery: Delivery,
        batch: &QueuedBatch,
        outcome: onshi_store::ApplyOutcome,
        hook: bool,
    ) -> Settled {
        let envelope = batch.envelope();
        let m = onshi_telemetry::metrics();
        m.worker_events.with_label_values(&["new"]).inc_by(outcome.new_events as u64);
        m.worker_events.with_label_values(&["duplicate"]).inc_by(outcome.duplicate_events as u64);
        m.agent_heartbeats.inc_by(outcome.heartbeats as u64);
        let lag = time::OffsetDateTime::now_utc() - envelope.received_at;
        m.worker_lag.observe(lag.as_seconds_f64().max(0.0));
        tracing::info!(
            batch = %envelope.batch_id,
            new = outcome.new_events,
            duplicates = outcome.duplicate_events,
            visits = outcome.visits_touched,
            "batch applied"
        );
        let acked = delivery.ack().await;
        if hook
            && outcome.visits_touched > 0
            && let Some(hook) = &self.after_apply
        {
            hook.after_apply(batch.scope()).await;
        }
        if let Err(e) = acked {
            // Applied but not acked: it will come back and be skipped as a duplicate.
            tracing::warn!(error = %e, "ack failed after applying");
        }
        Settled::Applied
    }
}

fn count(settled: Settled) {
    let outcome = match settled {
        Settled::Applied => "applied",
        Settled::Retried => "retried",
        Settled::DeadLettered => "dead_lettered",
    };
    onshi_telemetry::metrics().worker_batches.with_label_values(&[outcome]).inc();
}

fn decode(delivery: &Delivery) -> Option<QueuedBatch> {
    match QueuedBatch::from_queue(&delivery.payload) {
        Ok(batch) => Some(batch),
        Err(e) => {
            tracing::error!(error = %e, "undecodable message");
            None
        }
    }
}

fn batch_span(delivery: &Delivery, batch: &QueuedBatch) -> tracing::Span {
    let envelope = batch.envelope();
    let span = tracing::info_span!(
        "batch",
        batch = %envelope.batch_id,
        tenant = %envelope.tenant,
        attempt = delivery.delivery_count,
        trace_id = tracing::field::Empty
    );
    onshi_telemetry::trace::continue_trace(&span, delivery.headers.traceparent.as_deref());
    span
}

async fn settle_retry(delivery: Delivery) -> Settled {
    if let Err(e) = delivery.retry().await {
        tracing::warn!(error = %e, "could not return the message; the broker will redeliver it");
    }
    Settled::Retried
}

async fn settle_dead(delivery: Delivery, reason: &str) -> Settled {
    if let Err(e) = delivery.dead_letter(reason).await {
        tracing::warn!(error = %e, "could not dead-letter the message; the broker will redeliver it");
    }
    Settled::DeadLettered
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(clinic: onshi_domain::ClinicId, receptions: &[&str]) -> IngestEnvelope {
        let events = receptions
            .iter()
            .map(|at| {
                serde_json::from_str(&format!(
                    r#"{{"id":"{}","occurred_at":"{at}","payload":{{"qualification":{{
                    "institution_code":"1311234567","method":"myna_card","result":"valid","patient":"{}"}}}}}}"#,
                    uuid::Uuid::now_v7(),
                    "ab".repeat(32)
                ))
                .unwrap()
            })
            .collect();
        IngestEnvelope {
            version: 1,
            batch_id: uuid::Uuid::now_v7(),
            tenant: onshi_domain::TenantId::new(),
            clinic,
            device: onshi_domain::DeviceId::new(),
            received_at: time::OffsetDateTime::now_utc(),
            events,
        }
    }

    #[test]
    fn a_group_publishes_one_note_per_clinic_with_its_visits_added_up_and_the_latest_receptions() {
        let (a, b) = (onshi_domain::ClinicId::new(), onshi_domain::ClinicId::new());
        let first = envelope(a, &["2026-11-25T09:00:00+09:00"]);
        let second = envelope(a, &["2026-11-25T09:05:00+09:00", "2026-11-25T09:01:00+09:00"]);
        let untouched = envelope(b, &["2026-11-25T09:02:00+09:00"]);
        let notes = group_notes([(&first, 1), (&untouched, 0), (&second, 2)]);
        assert_eq!(notes.len(), 1, "a clinic whose visits did not change gets no note: {notes:?}");
        assert_eq!(notes[0]["clinic"], a.to_string());
        assert_eq!(notes[0]["visits"], 3);
        let times: Vec<&str> =
            notes[0]["receptions"].as_array().unwrap().iter().map(|r| r["at"].as_str().unwrap()).collect();
        assert_eq!(
            times,
            ["2026-11-25T09:05:00+09:00", "2026-11-25T09:01:00+09:00", "2026-11-25T09:00:00+09:00"],
            "newest first"
        );
        // The note of a batch alone is the same as before grouping.
        assert_eq!(feed_note(&first, 1), group_notes([(&first, 1)])[0]);
    }
}
