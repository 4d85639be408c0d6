//! `POST /api/v1/events`: an agent delivers a batch of events; `POST /api/v1/claims`: one month's claims
//! (a レセ電 file reduced at the clinic, `EventPayload::Claims`) alone, under a body limit that fits one.
//!
//! 202 means every event of the batch is durable: published to the queue with a broker confirm (full
//! mode) or committed to the embedded database. Heartbeats are the exception, being state and not
//! evidence: an agent's newest heartbeat per state is kept in the shared cache and written in bulk by the
//! worker (`onshi_store::LatestHeartbeat`); without the cache they are queued like the rest. A batch is accepted or refused whole. Resending a batch
//! (same event ids, same content) is harmless and answered 202 again; reusing an event id for different
//! content is a 409.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use futures_util::StreamExt;
use onshi_cache::CacheBackend;
use onshi_domain::EventBatch;
use onshi_queue::Headers;
use onshi_store::QueuedBatch;
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::auth::AuthenticatedDevice;
use crate::{ApiError, AppState};

/// A claims request's body limit: a month of a large hospital's receipts, reduced, is a few tens of MB.
const MAX_CLAIMS_BODY_BYTES: usize = 64 * 1024 * 1024;

/// Which route a batch came in by: each carries its own kind of events.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    Events,
    Claims,
}

/// A batch the cloud has made durable.
#[derive(Serialize, ToSchema)]
pub(crate) struct BatchAccepted {
    /// The id the cloud gave this request (for support; resends get a new one).
    #[schema(format = Uuid)]
    batch_id: String,
    /// Events of the batch now durable, resends of earlier events included.
    accepted: usize,
    /// Of those, events the cloud already had (same id and content).
    duplicates: usize,
}

/// Deliver a batch of events (資格確認 results, heartbeats).
///
/// 202 means every event is durable. A batch is accepted or refused whole; resending it is harmless.
#[utoipa::path(
    post,
    path = "/api/v1/events",
    tag = "agent",
    operation_id = "post_events",
    request_body(content = onshi_domain::EventBatch, content_type = "application/json"),
    responses(
        (status = 202, description = "Every event of the batch is durable", body = BatchAccepted),
        (status = 400, description = "Not a valid batch (the field names the JSON path)", body = crate::error::ErrorBody),
        (status = 401, description = "Missing, invalid or expired device token, or a revoked device", body = crate::error::ErrorBody),
        (status = 409, description = "An event id was sent before with different content", body = crate::error::ErrorBody),
        (status = 413, description = "The body exceeds the limit", body = crate::error::ErrorBody),
        (status = 422, description = "A valid batch that breaks a rule (another clinic's code, a time in the future)", body = crate::error::ErrorBody),
        (status = 429, description = "More batches this second than the device may send; see Retry-After", body = crate::error::ErrorBody),
        (status = 503, description = "Not durable yet; send the same batch again later", body = crate::error::ErrorBody),
    ),
    security(("device_token" = []))
)]
pub(crate) async fn post_events(
    state: web::Data<AppState>,
    device: AuthenticatedDevice,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    respond(accept(state, device, payload, Route::Events).await)
}

/// Deliver one month's claims (a レセ電 file reduced at the clinic) as a single `claims` event.
#[utoipa::path(
    post,
    path = "/api/v1/claims",
    tag = "agent",
    operation_id = "post_claims",
    request_body(content = onshi_domain::EventBatch, content_type = "application/json"),
    responses(
        (status = 202, description = "The claims are durable", body = BatchAccepted),
        (status = 400, description = "Not a valid batch", body = crate::error::ErrorBody),
        (status = 401, description = "Missing, invalid or expired device token", body = crate::error::ErrorBody),
        (status = 409, description = "An event id was sent before with different content", body = crate::error::ErrorBody),
        (status = 413, description = "The body exceeds the limit", body = crate::error::ErrorBody),
        (status = 422, description = "A valid batch that breaks a rule", body = crate::error::ErrorBody),
        (status = 429, description = "More batches this second than the device may send; see Retry-After", body = crate::error::ErrorBody),
        (status = 503, description = "Not durable yet; send the same batch again later", body = crate::error::ErrorBody),
    ),
    security(("device_token" = []))
)]
pub(crate) async fn post_claims(
    state: web::Data<AppState>,
    device: AuthenticatedDevice,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    respond(accept(state, device, payload, Route::Claims).await)
}

fn respond(result: Result<Accepted, ApiError>) -> Result<HttpResponse, ApiError> {
    let m = onshi_telemetry::metrics();
    match &result {
        Ok(counts) => {
            m.ingest_batches.with_label_values(&["accepted"]).inc();
            m.ingest_events.with_label_values(&["accepted"]).inc_by(counts.fresh as u64);
            m.ingest_events.with_label_values(&["duplicate"]).inc_by(counts.duplicates as u64);
        }
        Err(_) => m.ingest_batches.with_label_values(&["rejected"]).inc(),
    }
    let counts = result?;
    Ok(HttpResponse::Accepted().json(BatchAccepted {
        batch_id: counts.batch_id.to_string(),
        accepted: counts.fresh + counts.duplicates,
        duplicates: counts.duplicates,
    }))
}

struct Accepted {
    batch_id: uuid::Uuid,
    fresh: usize,
    duplicates: usize,
}

async fn accept(
    state: web::Data<AppState>,
    AuthenticatedDevice(device): AuthenticatedDevice,
    mut payload: web::Payload,
    route: Route,
) -> Result<Accepted, ApiError> {
    // Per-device fixed window: a runaway agent cannot starve the others. A cache outage must not stop
    // ingest, so the limiter fails open.
    match state.cache.incr_window(&format!("rl:ingest:{}", device.device.id), Duration::from_secs(1)).await {
        Ok(n) if n > u64::from(state.ingest_batches_per_device_per_sec) => {
            return Err(ApiError::RateLimited { retry_after_secs: 1 });
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "rate limiter unavailable; allowing the request"),
    }

    let limit = match route {
        Route::Events => state.max_body_bytes,
        Route::Claims => state.max_body_bytes.max(MAX_CLAIMS_BODY_BYTES),
    };
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|_| ApiError::InvalidBatch(onshi_domain::FieldError::new("", "body could not be read")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }

    let batch = EventBatch::from_json(&body).map_err(ApiError::InvalidBatch)?;
    let claims = batch.events.iter().filter(|e| matches!(e.payload, onshi_domain::EventPayload::Claims(_))).count();
    match route {
        Route::Events if claims > 0 => {
            return Err(ApiError::RejectedBatch(onshi_domain::FieldError::new(
                "events",
                "claims (レセ電) go to /api/v1/claims, one file per request",
            )));
        }
        Route::Claims if claims != 1 || batch.events.len() != 1 => {
            return Err(ApiError::RejectedBatch(onshi_domain::FieldError::new(
                "events",
                "exactly one claims event (one レセ電 file) per request",
            )));
        }
        _ => {}
    }
    let now = OffsetDateTime::now_utc();
    batch.validate(&device.clinic.code, now).map_err(ApiError::RejectedBatch)?;

    let total = batch.events.len();
    let (heartbeats, mut events): (Vec<_>, Vec<_>) =
        batch.events.into_iter().partition(|e| matches!(e.payload, onshi_domain::EventPayload::Heartbeat(_)));
    let mut coalesced = 0;
    if !heartbeats.is_empty() {
        match coalesce_heartbeats(&state, &device, &heartbeats).await {
            Ok(()) => {
                coalesced = heartbeats.len();
                onshi_telemetry::metrics().agent_heartbeats.inc_by(coalesced as u64);
            }
            // Without the cache, heartbeats take the queue like everything else.
            Err(e) => {
                tracing::warn!(error = %e, "heartbeats not coalesced; queueing them");
                events.extend(heartbeats);
            }
        }
    }

    let store = state.store.tenant(device.scope);
    // Only qualification events are stored, so only they can be resent duplicates; a heartbeat-only batch
    // (most requests) needs no look-up.
    let stored: Vec<_> = events
        .iter()
        .filter(|e| matches!(e.payload, onshi_domain::EventPayload::Qualification(_)))
        .map(|e| (e.id, e.occurred_at))
        .collect();
    let known =
        if stored.is_empty() { Default::default() } else { store.event_hashes(device.clinic.id, &stored).await? };
    let mut fresh = Vec::with_capacity(events.len());
    for (i, event) in events.into_iter().enumerate() {
        match known.get(&event.id) {
            Some(hash) if *hash == event.content_hash() => {} // already stored: a resend
            Some(_) => return Err(ApiError::EventConflict { field: format!("events[{i}].id") }),
            None => fresh.push(event),
        }
    }
    let duplicates = total - coalesced - fresh.len();
    let fresh_count = fresh.len() + coalesced;
    let batch_id = uuid::Uuid::now_v7();
    if !fresh.is_empty() {
        let queued = fresh.len();
        let message = QueuedBatch::accepted(&device, batch_id, fresh).to_bytes().map_err(ApiError::internal)?;
        // The worker's span joins this request's trace through the message header.
        let headers = Headers { traceparent: onshi_telemetry::trace::current_traceparent() };
        // Shares a message (one broker write and confirm) with requests published at the same moment.
        state.publisher.publish(message, headers).await.map_err(ApiError::unavailable)?;
        tracing::info!(%batch_id, events = queued, "batch queued");
    }
    Ok(Accepted { batch_id, fresh: fresh_count, duplicates })
}

/// Records the newest heartbeat per availability state in the cache, where the worker's heartbeat writer
/// takes them in bulk (see `onshi_store::LatestHeartbeat`): no queue message, no database write per
/// heartbeat.
async fn coalesce_heartbeats(
    state: &AppState,
    device: &onshi_store::DeviceAuth,
    events: &[onshi_domain::AgentEvent],
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut newest: std::collections::BTreeMap<String, onshi_store::LatestHeartbeat> = Default::default();
    for event in events {
        let onshi_domain::EventPayload::Heartbeat(h) = &event.payload else { continue };
        let latest = onshi_store::LatestHeartbeat::accepted(device, event.occurred_at, h.clone());
        match newest.get(&latest.field()) {
            Some(kept) if kept.occurred_at() >= latest.occurred_at() => {}
            _ => {
                newest.insert(latest.field(), latest);
            }
        }
    }
    for (field, latest) in newest {
        state.cache.map_set(onshi_store::PENDING_HEARTBEATS, &field, &latest.to_bytes()?).await?;
    }
    Ok(())
}
