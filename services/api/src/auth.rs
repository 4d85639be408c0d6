//! Device authentication: short-lived JWTs (HS256) that an enrolled agent presents as a Bearer token.
//!
//! Claims: `iss`, `aud`, `sub` (device id), `tnt` (tenant), `cln` (clinic), `typ` = "device", `iat`,
//! `exp`. Issuer, audience, expiry and type are all required; only HS256 verifies. A valid signature is
//! not enough: the device must still exist, belong to the claimed clinic and not be revoked. That is read
//! from the database at most once per `device_cache::TTL` per device and process (`device_cache`); a revocation is
//! announced to every process and takes effect within the time the announcement takes to arrive.

use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use onshi_domain::{ClinicId, DeviceId, TenantId};
use onshi_store::{DeviceAuth, DeviceStatus};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{ApiError, AppState};

const DEVICE_TOKEN_TYPE: &str = "device";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub tnt: String,
    pub cln: String,
    pub typ: String,
    pub iat: i64,
    pub exp: i64,
}

#[derive(Clone)]
pub struct DeviceKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
    ttl_secs: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("could not sign a device token")]
pub struct SignError(#[source] jsonwebtoken::errors::Error);

impl DeviceKeys {
    pub fn new(secret: &[u8], issuer: &str, audience: &str, ttl_secs: u64) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 30;
        validation.validate_nbf = true;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            ttl_secs,
        }
    }

    /// Signs an access token for a device. Enrollment (the edge agent issue) calls this; so do the demo
    /// and `onshi device token`.
    pub fn mint(&self, tenant: TenantId, clinic: ClinicId, device: DeviceId) -> Result<String, SignError> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let claims = DeviceClaims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: device.to_string(),
            tnt: tenant.to_string(),
            cln: clinic.to_string(),
            typ: DEVICE_TOKEN_TYPE.to_owned(),
            iat: now,
            exp: now + i64::try_from(self.ttl_secs).unwrap_or(900),
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).map_err(SignError)
    }

    pub fn ttl_secs(&self) -> u64 {
        self.ttl_secs
    }

    /// Verifies signature and claims; returns the ids the token speaks for.
    pub fn verify(&self, token: &str) -> Result<(TenantId, ClinicId, DeviceId), ApiError> {
        let data = decode::<DeviceClaims>(token, &self.decoding, &self.validation)
            .map_err(|_| ApiError::Unauthorized("invalid or expired device token"))?;
        let c = data.claims;
        if c.typ != DEVICE_TOKEN_TYPE {
            return Err(ApiError::Unauthorized("not a device token"));
        }
        let bad = |_| ApiError::Unauthorized("malformed device token");
        Ok((c.tnt.parse().map_err(bad)?, c.cln.parse().map_err(bad)?, c.sub.parse().map_err(bad)?))
    }
}

/// An authenticated, active device, with its tenant scope and clinic. Extracting it is the
/// authentication of an ingest request.
#[derive(Debug, Clone)]
pub struct AuthenticatedDevice(pub DeviceAuth);

impl FromRequest for AuthenticatedDevice {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let header = req.headers().get("Authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
        Box::pin(async move {
            let state = state.ok_or(ApiError::Unauthorized("server misconfigured"))?;
            let token = header
                .as_deref()
                .and_then(|h| h.strip_prefix("Bearer "))
                .ok_or(ApiError::Unauthorized("missing Bearer token"))?;
            let (tenant, clinic_id, device_id) = state.device_keys.verify(token.trim())?;
            if let Some(auth) = state.device_cache.get(tenant, clinic_id, device_id) {
                return Ok(AuthenticatedDevice(auth));
            }
            let lookup = state.device_cache.lookup();
            let auth = state
                .store
                .system()
                .device_auth(tenant, clinic_id, device_id)
                .await?
                .ok_or(ApiError::Unauthorized("unknown device"))?;
            if auth.device.status == DeviceStatus::Revoked {
                return Err(ApiError::Unauthorized("device revoked"));
            }
            state.device_cache.keep(lookup, &auth);
            Ok(AuthenticatedDevice(auth))
        })
    }
}
