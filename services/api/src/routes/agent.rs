//! Agent enrollment and access tokens.
//!
//! `POST /api/v1/agent/enroll`: a one-time code (created for a clinic by its group) becomes a device with a
//! long-lived device secret and the tenant's pseudonymisation key, shown once.
//! `POST /api/v1/agent/token`: the device secret becomes a short-lived access token for ingest. A revoked
//! device gets 401 here, so it stops within one token lifetime at the latest (and at once on ingest,
//! which re-checks the device on every request).

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use onshi_cache::CacheBackend;
use onshi_domain::{DeviceId, FieldError, TenantId};
use onshi_store::{DeviceStatus, StoreError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::web::idempotency::IdempotencyKey;
use crate::{ApiError, AppState};

/// Enrollment attempts per client address per minute. Codes carry ~59 bits, so this is about noise and
/// cost, not about guessing.
const ENROLL_PER_MINUTE: u64 = 10;

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de)
        .map_err(|e| ApiError::InvalidRequest(FieldError::new(e.path().to_string(), e.inner().to_string())))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EnrollRequest {
    /// The one-time enrollment code the group created for the clinic.
    code: String,
    /// A name for this agent on the fleet page (default `onshi-agent`).
    #[serde(default)]
    name: Option<String>,
}

/// A new device: its secret and the group's pseudonymisation key are shown this once.
#[derive(Serialize, ToSchema)]
pub(crate) struct Enrollment {
    tenant: TenantId,
    clinic: onshi_domain::ClinicId,
    institution_code: onshi_domain::MedicalInstitutionCode,
    device: DeviceId,
    /// The device's long-lived secret, exchanged for access tokens at `/api/v1/agent/token`.
    device_secret: String,
    /// The group's key for patient pseudonyms (hex), kept at the clinic.
    pseudonym_key: String,
}

/// Enroll an agent with a one-time code.
#[utoipa::path(
    post,
    path = "/api/v1/agent/enroll",
    tag = "agent",
    operation_id = "enroll_agent",
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "A new UUID per enrollment: a retry with the same key and body within a day gets the same answer (`Idempotent-Replayed: true`) instead of a used code"),
    ),
    request_body(content = EnrollRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Enrolled; keep the secret and the key, they are not shown again", body = Enrollment),
        (status = 422, description = "The Idempotency-Key was used with another body", body = crate::error::ErrorBody),
        (status = 400, description = "Not a valid request, or the code is unknown, used or expired", body = crate::error::ErrorBody),
        (status = 429, description = "Too many attempts from this address; see Retry-After", body = crate::error::ErrorBody),
    ),
    security(())
)]

pub(crate) async fn enroll(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    // The client address only as a hash, so no address lands in the cache in clear.
    let peer = req.peer_addr().map(|a| a.ip().to_string()).unwrap_or_default();
    let key = format!("rl:enroll:{}", &hex::encode(Sha256::digest(peer.as_bytes()))[..16]);
    if let Ok(n) = state.cache.incr_window(&key, Duration::from_secs(60)).await
        && n > ENROLL_PER_MINUTE
    {
        return Err(ApiError::RateLimited { retry_after_secs: 60 });
    }
    let idempotency = IdempotencyKey::from_request(&req, "enroll", &body)?;
    if let Some(key) = &idempotency
        && let Some(answer) = key.replay(&state).await?
    {
        return Ok(HttpResponse::Created()
            .insert_header(("Cache-Control", "no-store"))
            .insert_header(("Idempotent-Replayed", "true"))
            .content_type("application/json")
            .body(answer));
    }
    let request: EnrollRequest = parse(&body)?;
    let name = request.name.as_deref().map(str::trim).filter(|n| !n.is_empty()).unwrap_or("onshi-agent");
    let enrollment = match state.store.system().redeem_enrollment_code(&request.code, name).await {
        Ok(e) => e,
        Err(StoreError::NotFound { .. }) => return Err(ApiError::InvalidEnrollmentCode),
        Err(e) => return Err(e.into()),
    };
    tracing::info!(tenant = %enrollment.tenant, device = %enrollment.device, "agent enrolled");
    let answer = serde_json::to_vec(&Enrollment {
        tenant: enrollment.tenant,
        clinic: enrollment.clinic,
        institution_code: enrollment.institution_code,
        device: enrollment.device,
        device_secret: enrollment.device_secret,
        pseudonym_key: enrollment.pseudonym_key,
    })
    .map_err(ApiError::internal)?;
    if let Some(key) = &idempotency {
        key.keep(&state, &answer).await;
    }
    Ok(HttpResponse::Created()
        .insert_header(("Cache-Control", "no-store"))
        .content_type("application/json")
        .body(answer))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenRequest {
    tenant: TenantId,
    device: DeviceId,
    /// The device secret from enrollment.
    secret: String,
}

/// A short-lived access token for ingest.
#[derive(Serialize, ToSchema)]
pub(crate) struct AccessToken {
    access_token: String,
    #[schema(example = "Bearer")]
    token_type: &'static str,
    /// Seconds until the token expires.
    expires_in: u64,
}

/// Exchange the device secret for an access token.
#[utoipa::path(
    post,
    path = "/api/v1/agent/token",
    tag = "agent",
    operation_id = "agent_token",
    request_body(content = TokenRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "A token for `Authorization: Bearer` on the ingest routes", body = AccessToken),
        (status = 400, description = "Not a valid request", body = crate::error::ErrorBody),
        (status = 401, description = "Unknown device, wrong secret or a revoked device", body = crate::error::ErrorBody),
    ),
    security(())
)]

pub(crate) async fn token(state: web::Data<AppState>, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let request: TokenRequest = parse(&body)?;
    let (_, device) = state
        .store
        .system()
        .device_secret(request.tenant, request.device, &request.secret)
        .await?
        .ok_or(ApiError::Unauthorized("unknown device or wrong secret"))?;
    if device.status == DeviceStatus::Revoked {
        return Err(ApiError::Unauthorized("device revoked"));
    }
    let token = state.device_keys.mint(request.tenant, device.clinic, device.id).map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok().insert_header(("Cache-Control", "no-store")).json(AccessToken {
        access_token: token,
        token_type: "Bearer",
        expires_in: state.device_keys.ttl_secs(),
    }))
}
