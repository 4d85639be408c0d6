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

use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use onshi_cache::CacheBackend as _;
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

/// Bodies up to this size (a heartbeat is about 300 bytes, a reception about 700) are read before the
/// rate limiter counts them; see `accept`.
const SMALL_BODY_BYTES: usize = 16 * 1024;

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
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    respond(accept(state, device, declared_length(&req), payload, Route::Events).await)
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
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    respond(accept(state, device, declared_length(&req), payload, Route::Claims).await)
}

/// The body's length as the client declared it (`Content-Length`), if it did.
fn declared_length(req: &HttpRequest) -> Option<usize> {
    req.headers().get(actix_web::http::header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
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
    declared_length: Option<usize>,
    payload: web::Payload,
    route: Route,
) -> Result<Accepted, ApiError> {
    // Per-device fixed window: a runaway agent cannot starve the others. A small body (what an agent sends
    // as things happen: a heartbeat, a reception) is read first, so that a heartbeat's count and its state
    // take one cache round trip together (`coalesce_heartbeats`); a larger one is counted before it is read.
    let window_key = format!("rl:ingest:{}", device.device.id);
    let window = onshi_cache::Window {
        key: &window_key,
        length: Duration::from_secs(1),
        limit: u64::from(state.ingest_batches_per_device_per_sec),
    };
    let counted_first = route == Route::Claims || declared_length.is_none_or(|n| n > SMALL_BODY_BYTES);
    if counted_first {
        count(&state, window).await?;
    }

    let batch = match read_batch(&state, &device, payload, route).await {
        Ok(batch) => batch,
        Err(refused) => {
            // Refused requests count too: an agent that keeps sending bad batches meets the limiter.
            if !counted_first {
                count(&state, window).await?;
            }
            return Err(refused);
        }
    };

    let total = batch.events.len();
    let (heartbeats, mut events): (Vec<_>, Vec<_>) =
        batch.events.into_iter().partition(|e| matches!(e.payload, onshi_domain::EventPayload::Heartbeat(_)));
    let mut coalesced = 0;
    if !heartbeats.is_empty() {
        match coalesce_heartbeats(&state, &device, &heartbeats, (!counted_first).then_some(window)).await {
            Ok(true) => {
                coalesced = heartbeats.len();
                onshi_telemetry::metrics().agent_heartbeats.inc_by(coalesced as u64);
            }
            Ok(false) => return Err(ApiError::RateLimited { retry_after_secs: 1 }),
            // Without the cache, heartbeats take the queue like everything else (and the limiter, which
            // lives in the same cache, fails open).
            Err(e) => {
                tracing::warn!(error = %onshi_telemetry::Chain(e.as_ref()), "heartbeats not coalesced; queueing them");
                events.extend(heartbeats);
            }
        }
    } else if !counted_first {
        count(&state, window).await?;
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

/// Reads the body within the route's limit and checks the batch: well formed, the route's kind of events,
/// this clinic's code, no time in the future.
async fn read_batch(
    state: &AppState,
    device: &onshi_store::DeviceAuth,
    mut payload: web::Payload,
    route: Route,
) -> Result<EventBatch, ApiError> {
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
    Ok(batch)
}

/// Counts a request in the device's window; beyond its limit, refuses it. A cache outage must not stop
/// ingest, so the limiter fails open.
async fn count(state: &AppState, window: onshi_cache::Window<'_>) -> Result<(), ApiError> {
    match state.cache.incr_window(window.key, window.length).await {
        Ok(n) if n > window.limit => Err(ApiError::RateLimited { retry_after_secs: 1 }),
        Ok(_) => Ok(()),
        Err(e) => {
            tracing::warn!(error = %onshi_telemetry::Chain(&e), "rate limiter unavailable; allowing the request");
            Ok(())
        }
    }
}

/// Records the newest heartbeat per availability state in the cache, where the worker's heartbeat writer
/// takes them in bulk (see `onshi_store::LatestHeartbeat`): no queue message, no database write per
/// heartbeat. With a `window`, the request is counted in the same round trip; `false` means it was over
/// the limit and nothing was recorded.
async fn coalesce_heartbeats(
    state: &AppState,
    device: &onshi_store::DeviceAuth,
    events: &[onshi_domain::AgentEvent],
    window: Option<onshi_cache::Window<'_>>,
) -> Result<bool, Box<dyn std::error::Error + Send + Sync>> {
    let mut newest: std::collections::BTreeMap<String, onshi_store::LatestHeartbeat> = Default::default();
    for event in events {
        let onshi_domain::EventPayload::Heartbeat(h) = &event.payload else { continue };
        let latest = onshi_store::LatestHeartbeat::accepted(device, event.occurred_at, h.clone());
        let field = latest.field();
        match newest.get(&field) {
            Some(kept) if kept.occurred_at() >= latest.occurred_at() => {}
            _ => {
                newest.insert(field, latest);
            }
        }
    }
    let fields = newest
        .into_iter()
        .map(|(field, latest)| Ok((field, latest.to_bytes()?)))
        .collect::<Result<Vec<_>, serde_json::Error>>()?;
    Ok(state.cache.map_set(onshi_store::PENDING_HEARTBEATS, &fields, window).await?)
}
