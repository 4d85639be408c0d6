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
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::{ApiError, AppState};

/// Enrollment attempts per client address per minute. Codes carry ~59 bits, so this is about noise and
/// cost, not about guessing.
const ENROLL_PER_MINUTE: u64 = 10;

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de)
        .map_err(|e| ApiError::InvalidRequest(FieldError::new(e.path().to_string(), e.inner().to_string())))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrollRequest {
    code: String,
    #[serde(default)]
    name: Option<String>,
}

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
    let request: EnrollRequest = parse(&body)?;
    let name = request.name.as_deref().map(str::trim).filter(|n| !n.is_empty()).unwrap_or("onshi-agent");
    let enrollment = match state.store.system().redeem_enrollment_code(&request.code, name).await {
        Ok(e) => e,
        Err(StoreError::NotFound { .. }) => return Err(ApiError::InvalidEnrollmentCode),
        Err(e) => return Err(e.into()),
    };
    tracing::info!(tenant = %enrollment.tenant, device = %enrollment.device, "agent enrolled");
    Ok(HttpResponse::Created().insert_header(("Cache-Control", "no-store")).json(json!({
        "tenant": enrollment.tenant,
        "clinic": enrollment.clinic,
        "institution_code": enrollment.institution_code,
        "device": enrollment.device,
        "device_secret": enrollment.device_secret,
        "pseudonym_key": enrollment.pseudonym_key,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenRequest {
    tenant: TenantId,
    device: DeviceId,
    secret: String,
}

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
    Ok(HttpResponse::Ok().insert_header(("Cache-Control", "no-store")).json(json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": state.device_keys.ttl_secs(),
    })))
}
