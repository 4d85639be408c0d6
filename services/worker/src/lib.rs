//! The worker: takes accepted batches off the queue and applies them to the store.
//!
//! A message carries one accepted batch or several (requests the API published together,
//! `onshi_queue::parts`). For each message, in this order: decode (a message that cannot be decoded or
//! has an unknown version is poison and goes straight to the dead-letter queue); archive its batches as
//! received in the object store (idempotent: same key, same bytes); apply them in one database
//! transaction per tenant (idempotent by event id); notify live subscribers; then ack. A crash anywhere
//! before the ack means redelivery, and redelivery is harmless, so every accepted event takes effect
//! exactly once. A message whose batches did not all apply is split, each batch returned on its own
//! (`Worker::handle_group`), so one faulty batch never holds back or dead-letters another's.
//!
//! Outages: a lost queue consumer is re-attached with backoff for as long as it takes (`run`); a database
//! or object store that does not answer at all holds the message, unacknowledged, until it answers again
//! (`ride_out`), so an outage of any length spends none of a message's delivery limit. A failure while
//! the dependency answers is the message's own: it goes back to the queue, which dead-letters it after
//! `delivery_limit` returns, so nothing loops forever. (A message held longer than RabbitMQ's
//! `consumer_timeout`, 30 minutes by default, is returned by the broker and counts one delivery.)

mod heartbeats;

use std::time::{Duration, Instant};

pub use heartbeats::DEFAULT_FLUSH as DEFAULT_HEARTBEAT_FLUSH;
use onshi_cache::{Cache, CacheBackend};
use onshi_domain::{IngestEnvelope, feed, jst};
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

/// How long the quick way waits for a group's archive upload (`archive_while_applying`) before it rolls
/// back and goes the careful way: the transaction holds its own rows' locks meanwhile.
const ARCHIVE_DEADLINE: Duration = Duration::from_secs(2);
/// How long groups go the careful way after an upload outlasted `ARCHIVE_DEADLINE`.
const QUICK_WAY_PAUSE: Duration = Duration::from_secs(60);

/// How the quick way (`archive_while_applying`) ended.
enum Quick {
    Applied(Vec<onshi_store::ApplyOutcome>),
    /// Nothing committed; `archived` when the group's archive is written all the same.
    NotApplied {
        archived: bool,
    },
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
    /// Until when groups skip the quick way (`archive_while_applying`): after an upload outlasted its
    /// deadline, a slow object store would otherwise cost every group a transaction rolled back.
    pub quick_way_off_until: std::sync::Arc<std::sync::Mutex<Option<Instant>>>,
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
    /// A message of several batches not all applied: each went back to the queue on its own.
    Split,
}

/// One accepted batch of a delivery: its bytes as received (archived as evidence), its own trace
/// context, and the delivery's attempt.
struct Part {
    bytes: Vec<u8>,
    headers: onshi_queue::Headers,
    attempt: u32,
    batch: QueuedBatch,
}

impl Part {
    /// The batch's span, joined to the trace of the request that sent it.
    fn span(&self) -> tracing::Span {
        let envelope = self.batch.envelope();
        let span = tracing::info_span!(
            "batch",
            batch = %envelope.batch_id,
            tenant = %envelope.tenant,
            attempt = self.attempt,
            trace_id = tracing::field::Empty
        );
        onshi_telemetry::trace::continue_trace(&span, self.headers.traceparent.as_deref());
        span
    }
}

/// What a delivery holds, once read.
enum Held {
    /// Its batches: these indices of the group's parts.
    Batches(std::ops::Range<usize>),
    /// A part that cannot be decoded, among `parts` in all.
    Undecodable { parts: usize },
}

/// How one batch fared.
#[derive(Debug, Clone)]
enum PartResult {
    Applied(onshi_store::ApplyOutcome),
    /// Failed for a reason that may pass.
    Retry,
    /// Will never apply.
    Dead(String),
}

/// One clinic's live-feed note for the batches of a group (see [`onshi_domain::feed`]): their visits
/// added up and the latest receptions among them. Agents send each reception as it happens, so a group
/// holds many one-reception batches of the same clinics; one note per clinic instead of one per batch.
fn clinic_note<'a>(
    clinic: onshi_domain::ClinicId,
    visits: usize,
    envelopes: impl Iterator<Item = &'a IngestEnvelope>,
) -> feed::ClinicNote {
    // Picked before anything is serialised: the worker's hot path pays for ten, not the whole batch.
    let mut receptions: Vec<feed::Reception> = envelopes
        .flat_map(|envelope| envelope.events.iter())
        .filter_map(|e| match &e.payload {
            onshi_domain::EventPayload::Qualification(q) if !q.batch => {
                Some(feed::Reception { at: e.occurred_at, method: q.method, result: q.result })
            }
            _ => None,
        })
        .collect();
    receptions.sort_by_key(|r| std::cmp::Reverse(r.at));
    receptions.truncate(feed::RECEPTIONS_PER_NOTE);
    feed::ClinicNote { clinic, visits, receptions }
}

/// The notes for a tenant's group of applied batches, one per clinic whose visits changed.
pub fn group_notes<'a>(applied: impl IntoIterator<Item = (&'a IngestEnvelope, usize)>) -> Vec<feed::ClinicNote> {
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
                            tracing::warn!(error = %onshi_telemetry::Chain(&e), "cannot consume from the queue; retrying until it answers");
                        } else {
                            tracing::debug!(error = %onshi_telemetry::Chain(&e), "queue still unreachable");
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
                        tasks.spawn(async move { worker.handle_group(group).await });
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %onshi_telemetry::Chain(&e), "lost the queue consumer; reconnecting");
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

    /// Processes the deliveries at hand together and settles each; returns how each ended, in order.
    ///
    /// A delivery carries one batch or several (concurrent requests published together,
    /// `onshi_queue::parts`). All the batches at hand are archived and each tenant's are applied in one
    /// transaction; if that transaction fails for a reason of its own (not an outage), they are applied
    /// one by one, so only a faulty batch fails. A delivery is acked once all its batches are applied,
    /// returned when none could be, and dead-lettered when its only batch is poison. One that carries
    /// several batches and could apply only some is split: each batch goes back to the queue as its own
    /// message, then the delivery is acked, so a faulty batch is retried and dead-lettered alone while
    /// its neighbours (already applied) come back as harmless duplicates.
    pub async fn handle_group(&self, deliveries: Vec<Delivery>) -> Vec<Settled> {
        let mut held: Vec<Held> = Vec::with_capacity(deliveries.len());
        let mut parts: Vec<Part> = Vec::new();
        for delivery in &deliveries {
            let split = onshi_queue::parts::split(&delivery.payload, &delivery.headers);
            let count = split.len();
            let mut decoded = Vec::with_capacity(count);
            for (bytes, headers) in split {
                let Some(batch) = decode(bytes) else { break };
                decoded.push(Part { bytes: bytes.to_vec(), headers, attempt: delivery.delivery_count, batch });
            }
            if decoded.len() == count {
                held.push(Held::Batches(parts.len()..parts.len() + count));
                parts.extend(decoded);
            } else {
                held.push(Held::Undecodable { parts: count });
            }
        }

        let mut by_tenant: std::collections::BTreeMap<onshi_domain::TenantId, Vec<usize>> = Default::default();
        for (i, part) in parts.iter().enumerate() {
            by_tenant.entry(part.batch.envelope().tenant).or_default().push(i);
        }
        let mut results: Vec<PartResult> = vec![PartResult::Retry; parts.len()];
        for (tenant, indices) in by_tenant {
            let group: Vec<&Part> = indices.iter().map(|&i| &parts[i]).collect();
            let span = match group.as_slice() {
                [one] => one.span(),
                _ => tracing::info_span!("batches", %tenant, batches = group.len()),
            };
            let applied = self.apply_tenant(&group).instrument(span).await;
            for (i, result) in indices.into_iter().zip(applied) {
                results[i] = result;
            }
        }

        // Every applied batch is counted, also one whose message is split below (it comes back as a
        // duplicate).
        for (part, result) in parts.iter().zip(&results) {
            if let PartResult::Applied(outcome) = result {
                part.span().in_scope(|| record_applied(&part.batch, *outcome));
            }
        }

        let settling = Instant::now();
        let mut settled = Vec::with_capacity(deliveries.len());
        for (delivery, held) in deliveries.into_iter().zip(held) {
            let outcome = match held {
                Held::Undecodable { parts: 1 } => settle_dead(delivery, "undecodable message").await,
                Held::Undecodable { .. } => self.split_back(delivery).await,
                Held::Batches(range) => self.settle(delivery, &results[range]).await,
            };
            count(outcome);
            settled.push(outcome);
        }
        stage_done("settle", settling);

        // Best effort and after the acks: the usage watch of each tenant whose visits changed.
        if let Some(hook) = &self.after_apply {
            let mut touched: Vec<&QueuedBatch> = Vec::new();
            for (part, result) in parts.iter().zip(&results) {
                if matches!(result, PartResult::Applied(o) if o.visits_touched > 0)
                    && !touched.iter().any(|b| b.envelope().tenant == part.batch.envelope().tenant)
                {
                    touched.push(&part.batch);
                }
            }
            for batch in touched {
                hook.after_apply(batch.scope()).await;
            }
        }
        settled
    }

    /// Settles a delivery whose batches were all decoded, from how each fared (`results`, in order).
    async fn settle(&self, delivery: Delivery, results: &[PartResult]) -> Settled {
        if results.iter().all(|r| matches!(r, PartResult::Applied(_))) {
            if let Err(e) = delivery.ack().await {
                // Applied but not acked: it will come back and be skipped as a duplicate.
                tracing::warn!(error = %onshi_telemetry::Chain(&e), "ack failed after applying");
            }
            return Settled::Applied;
        }
        // None applied for a reason that may pass: back to the queue once as it is; if it fails again
        // and carries several batches, they go on alone, so that one batch failing for good (an error the
        // store cannot tell from a passing one) does not spend its neighbours' delivery limit with its own.
        if results.iter().all(|r| matches!(r, PartResult::Retry)) {
            if results.len() > 1 && delivery.delivery_count > 1 {
                return self.split_back(delivery).await;
            }
            return settle_retry(delivery).await;
        }
        match results {
            [PartResult::Dead(reason)] => settle_dead(delivery, reason).await,
            _ => self.split_back(delivery).await,
        }
    }

    /// Returns each batch of a delivery to the queue as its own message, then acks the delivery. If a
    /// publish fails, the delivery is returned whole instead (batches already sent back then arrive
    /// twice, which applying tolerates).
    async fn split_back(&self, delivery: Delivery) -> Settled {
        let parts = onshi_queue::parts::split(&delivery.payload, &delivery.headers);
        tracing::info!(batches = parts.len(), "returning a message's batches one by one");
        for (bytes, headers) in parts {
            if let Err(e) = self.queue.publish(bytes, &headers).await {
                tracing::warn!(error = %onshi_telemetry::Chain(&e), "could not return a batch on its own; returning the message");
                return settle_retry(delivery).await;
            }
        }
        if let Err(e) = delivery.ack().await {
            // Its batches are queued on their own already; the message itself will come back and be split
            // again, which is harmless.
            tracing::warn!(error = %onshi_telemetry::Chain(&e), "ack failed after splitting");
        }
        Settled::Split
    }

    /// Archives and applies one tenant's batches; how each fared, in order.
    async fn apply_tenant(&self, parts: &[&Part]) -> Vec<PartResult> {
        let batches: Vec<QueuedBatch> = parts.iter().map(|p| p.batch.clone()).collect();
        let Some(first) = batches.first() else { return Vec::new() };
        let started = Instant::now();
        // First the quick way: the archive's upload and the transaction at once, committed only once the
        // upload is done. Any failure, of either, and the group goes the careful way: the archive first
        // (the quick way's upload if it got that far, else one riding out an object store that does not
        // answer), then the transaction, retried in place; its clock starts after the archive.
        let (stored, started) = match self.archive_while_applying(parts, &batches).await {
            Quick::Applied(outcomes) => (Ok(outcomes), started),
            Quick::NotApplied { archived } => {
                if !archived && !self.archive(parts).await {
                    return vec![PartResult::Retry; parts.len()];
                }
                let started = Instant::now();
                (self.store_batches(first.scope(), &batches).await, started)
            }
        };
        let applied = stage_done("apply", started);
        match stored {
            Ok(outcomes) => {
                // The live feed before any ack: one note per clinic.
                self.publish_feed(
                    first.envelope().tenant,
                    batches.iter().map(QueuedBatch::envelope).zip(outcomes.iter().map(|o| o.visits_touched)),
                )
                .await;
                stage_done("publish", applied);
                outcomes.into_iter().map(PartResult::Applied).collect()
            }
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %onshi_telemetry::Chain(&e), batches = batches.len(), "applying failed; returning the batches");
                vec![PartResult::Retry; parts.len()]
            }
            Err(e) if batches.len() == 1 => {
                tracing::warn!(error = %onshi_telemetry::Chain(&e), "applying the batch failed");
                vec![PartResult::Dead(e.to_string())]
            }
            Err(e) => {
                tracing::warn!(error = %onshi_telemetry::Chain(&e), "applying the batches together failed; applying them one by one");
                let mut results = Vec::with_capacity(parts.len());
                for (part, batch) in parts.iter().zip(&batches) {
                    results.push(self.apply_alone(batch).instrument(part.span()).await);
                }
                results
            }
        }
    }

    async fn apply_alone(&self, batch: &QueuedBatch) -> PartResult {
        match self.store_batches(batch.scope(), std::slice::from_ref(batch)).await {
            Ok(mut outcomes) => {
                let outcome = outcomes.pop().unwrap_or_default();
                self.publish_feed(batch.envelope().tenant, [(batch.envelope(), outcome.visits_touched)]).await;
                PartResult::Applied(outcome)
            }
            Err(e) => {
                tracing::warn!(error = %onshi_telemetry::Chain(&e), transient = e.is_transient(), "applying the batch failed");
                if e.is_transient() { PartResult::Retry } else { PartResult::Dead(e.to_string()) }
            }
        }
    }

    /// Archives batches as received (evidence only: heartbeat-only batches carry none): one object for
    /// one batch (`archive_key`), one JSON-lines object for several (`archive_group_key`), since an
    /// object store charges per request. False when the object store refused while answering: the
    /// batches go back.
    async fn archive(&self, parts: &[&Part]) -> bool {
        let Some((key, body, content_type)) = self.archive_object(parts) else { return true };
        while let Err(e) = put_archive(&self.objects, &key, body.clone(), content_type).await {
            tracing::warn!(error = %onshi_telemetry::Chain(&e), "archiving failed");
            if !self.ride_out(Dependency::Objects).await {
                return false;
            }
        }
        true
    }

    /// The archive object of batches (key, body, content type); `None` when there is nothing to archive.
    fn archive_object(&self, parts: &[&Part]) -> Option<(String, Vec<u8>, &'static str)> {
        if !self.archive_raw_batches {
            return None;
        }
        let evidence: Vec<&Part> = parts
            .iter()
            .copied()
            .filter(|p| {
                p.batch
                    .envelope()
                    .events
                    .iter()
                    .any(|e| matches!(e.payload, onshi_domain::EventPayload::Qualification(_)))
            })
            .collect();
        match evidence.as_slice() {
            [] => None,
            [one] => Some((archive_key(one.batch.envelope()), one.bytes.clone(), "application/json")),
            [first, ..] => {
                let mut body = Vec::with_capacity(evidence.iter().map(|p| p.bytes.len() + 1).sum());
                for part in &evidence {
                    body.extend_from_slice(&part.bytes);
                    body.push(b'\n');
                }
                Some((archive_group_key(first.batch.envelope()), body, "application/x-ndjson"))
            }
        }
    }

    /// Uploads the batches' archive while their transaction does its writes, and commits once the upload
    /// is done: nothing is applied without its archive, and a group takes the longer of the two, not both
    /// (an S3 PUT is tens of milliseconds; s3s-fs on the bench box took 7 ms, half the transaction). The
    /// transaction waits at most `ARCHIVE_DEADLINE` for the upload, since it holds the locks of its own
    /// rows meanwhile (it waits before taking the clinic counters' and agents', which other groups of
    /// the clinic need: `TenantStore::apply_batches_if`); past that it rolls back, the upload goes on,
    /// and the careful way waits for it. PostgreSQL only: a SQLite transaction holds the whole
    /// database's write lock, and the local object store gains nothing from the overlap.
    async fn archive_while_applying(&self, parts: &[&Part], batches: &[QueuedBatch]) -> Quick {
        let quick_way_off =
            || self.quick_way_off_until.lock().map(|until| until.is_some_and(|t| Instant::now() < t)).unwrap_or(true);
        let Some(first) = batches.first().filter(|_| self.store.is_postgres() && !quick_way_off()) else {
            return Quick::NotApplied { archived: false };
        };
        let store = self.store.tenant(first.scope());
        // Spawned, so that it runs while the transaction does (a future passed along would only start when
        // the transaction awaits it).
        let mut upload = self.archive_object(parts).map(|(key, body, content_type)| {
            let objects = self.objects.clone();
            tokio::spawn(async move { put_archive(&objects, &key, body, content_type).await.is_ok() })
        });
        // What the transaction learnt of the upload: Some(ok) once it finished, None if never waited for
        // or still running at the deadline.
        let mut uploaded: Option<bool> = None;
        let archived = async {
            let Some(task) = upload.as_mut() else {
                uploaded = Some(true);
                return true;
            };
            match tokio::time::timeout(ARCHIVE_DEADLINE, task).await {
                Ok(done) => {
                    let ok = done.unwrap_or(false);
                    uploaded = Some(ok);
                    ok
                }
                Err(_) => false,
            }
        };
        let applied = store.apply_batches_if(batches, archived).await;
        if let Ok(Some(outcomes)) = applied {
            return Quick::Applied(outcomes);
        }
        match &applied {
            Err(e) => tracing::debug!(error = %onshi_telemetry::Chain(e), "applying failed; retrying the careful way"),
            Ok(_) if uploaded.is_none() => {
                tracing::warn!(
                    deadline_ms = ARCHIVE_DEADLINE.as_millis() as u64,
                    "archive upload outlasted its deadline; groups upload before their transaction for a minute"
                );
                if let Ok(mut until) = self.quick_way_off_until.lock() {
                    *until = Some(Instant::now() + QUICK_WAY_PAUSE);
                }
            }
            Ok(_) => tracing::debug!("archive upload failed; applying the careful way"),
        }
        // The upload's outcome, waiting for it if it is still under way (never a second upload at once).
        let archived = match (uploaded, upload) {
            (Some(ok), _) => ok,
            (None, Some(task)) => task.await.unwrap_or(false),
            (None, None) => false,
        };
        Quick::NotApplied { archived }
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
                        tracing::debug!(error = %onshi_telemetry::Chain(&e), attempt, "transient failure; retrying in place");
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

    /// Publishes the live-feed notes of applied batches (`group_notes`) on the tenant's channel, all in
    /// one message. Best effort: the page also refreshes from the store.
    async fn publish_feed<'a>(
        &self,
        tenant: onshi_domain::TenantId,
        applied: impl IntoIterator<Item = (&'a IngestEnvelope, usize)>,
    ) {
        let notes = group_notes(applied);
        if notes.is_empty() {
            return;
        }
        // One message for the group (a JSON array of its notes), not one per clinic: a group of a fleet's
        // receptions touches as many clinics as it has batches, and each publish was a round trip on the
        // way to the page (2.7 ms a group of 13 on the bench box) and a wake-up of every subscriber.
        let payload = match feed::encode(&notes) {
            Ok(payload) => payload,
            Err(e) => return tracing::debug!(error = %e, "live update not encoded"),
        };
        if let Err(e) = self.cache.publish(&feed::channel(tenant), payload.as_bytes()).await {
            tracing::debug!(error = %onshi_telemetry::Chain(&e), "live update not published");
        }
    }
}

/// Puts a group's archive object, timed as the `archive` step (whichever way the group goes).
async fn put_archive(
    objects: &ObjectStore,
    key: &str,
    body: Vec<u8>,
    content_type: &str,
) -> Result<(), onshi_objects::ObjectError> {
    let started = Instant::now();
    let put = objects.put(key, body, content_type).await;
    stage_done("archive", started);
    put
}

/// Records how long a step of handling a group took (`onshi_worker_stage_seconds`); returns now, when the
/// next step starts.
fn stage_done(stage: &str, since: Instant) -> Instant {
    let now = Instant::now();
    onshi_telemetry::metrics().worker_stage.with_label_values(&[stage]).observe((now - since).as_secs_f64());
    now
}

fn count(settled: Settled) {
    let outcome = match settled {
        Settled::Applied => "applied",
        Settled::Retried => "retried",
        Settled::DeadLettered => "dead_lettered",
        Settled::Split => "split",
    };
    onshi_telemetry::metrics().worker_batches.with_label_values(&[outcome]).inc();
}

fn decode(bytes: &[u8]) -> Option<QueuedBatch> {
    match QueuedBatch::from_queue(bytes) {
        Ok(batch) => Some(batch),
        Err(e) => {
            tracing::error!(error = %onshi_telemetry::Chain(&e), "undecodable message");
            None
        }
    }
}

/// After the commit (and the live feed): an applied batch's metrics and log line.
fn record_applied(batch: &QueuedBatch, outcome: onshi_store::ApplyOutcome) {
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
}

async fn settle_retry(delivery: Delivery) -> Settled {
    if let Err(e) = delivery.retry().await {
        tracing::warn!(error = %onshi_telemetry::Chain(&e), "could not return the message; the broker will redeliver it");
    }
    Settled::Retried
}

async fn settle_dead(delivery: Delivery, reason: &str) -> Settled {
    if let Err(e) = delivery.dead_letter(reason).await {
        tracing::warn!(error = %onshi_telemetry::Chain(&e), "could not dead-letter the message; the broker will redeliver it");
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
        assert_eq!(notes[0].clinic, a);
        assert_eq!(notes[0].visits, 3);
        let times: Vec<time::OffsetDateTime> = notes[0].receptions.iter().map(|r| r.at).collect();
        assert_eq!(
            times,
            [
                time::macros::datetime!(2026-11-25 09:05 +09:00),
                time::macros::datetime!(2026-11-25 09:01 +09:00),
                time::macros::datetime!(2026-11-25 09:00 +09:00)
            ],
            "newest first"
        );
    }
}
