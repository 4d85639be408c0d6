//! Talking to Onshi Cloud: enrollment, access tokens, event delivery.
//!
//! Every delivery attempt ends in one of four outcomes, and each has one response: `Accepted` (delete from
//! the outbox), `Rejected` (the cloud will never take this content: set it aside), `Unauthorized` (get a
//! new token; a revoked device stops), `Retry` (network, 5xx, 429: wait with backoff and send the same
//! events again, which is harmless because the cloud deduplicates by event id).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use onshi_domain::{AgentEvent, EventBatch};
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::credentials::Credentials;

#[derive(Debug)]
pub enum Delivery {
    Accepted,
    Rejected { status: u16, reason: String },
    Unauthorized,
    Retry { reason: String, after: Option<Duration> },
}

#[derive(Debug, thiserror::Error)]
pub enum UplinkError {
    #[error("the cloud refused this device (revoked or unknown); re-enroll it")]
    Revoked,
    #[error("could not reach the cloud: {0}")]
    Transport(String),
    #[error("the cloud answered {status}: {message}")]
    Refused { status: u16, message: String },
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .user_agent(concat!("onshi-agent/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

fn error_message(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            let e = &v["error"];
            let field = e["field"].as_str().map(|f| format!(" ({f})")).unwrap_or_default();
            e["message"].as_str().map(|m| format!("{m}{field}"))
        })
        .unwrap_or_else(|| body.chars().take(200).collect())
}

#[derive(Deserialize)]
struct EnrollResponse {
    tenant: onshi_domain::TenantId,
    clinic: onshi_domain::ClinicId,
    institution_code: onshi_domain::MedicalInstitutionCode,
    device: onshi_domain::DeviceId,
    device_secret: String,
    pseudonym_key: String,
}

/// Exchanges a one-time enrollment code for this device's credentials.
pub async fn enroll(server: &str, code: &str, name: &str) -> Result<Credentials, UplinkError> {
    let server = server.trim_end_matches('/').to_owned();
    let response = client()
        .post(format!("{server}/api/v1/agent/enroll"))
        .json(&serde_json::json!({ "code": code, "name": name }))
        .send()
        .await
        .map_err(|e| UplinkError::Transport(e.to_string()))?;
    let status = response.status();
    let body = response.text().await.map_err(|e| UplinkError::Transport(e.to_string()))?;
    if status.as_u16() != 201 {
        return Err(UplinkError::Refused { status: status.as_u16(), message: error_message(&body) });
    }
    let r: EnrollResponse = serde_json::from_str(&body).map_err(|e| UplinkError::Transport(e.to_string()))?;
    Ok(Credentials {
        server,
        tenant: r.tenant,
        clinic: r.clinic,
        institution_code: r.institution_code,
        device: r.device,
        device_secret: SecretString::from(r.device_secret),
        pseudonym_key: SecretString::from(r.pseudonym_key),
    })
}

pub struct Uplink {
    client: reqwest::Client,
    server: String,
    credentials: Credentials,
    token: Mutex<Option<(String, Instant)>>,
}

impl Uplink {
    pub fn new(credentials: Credentials, server_override: Option<&str>) -> Self {
        let server = server_override.unwrap_or(&credentials.server).trim_end_matches('/').to_owned();
        Self { client: client(), server, credentials, token: Mutex::new(None) }
    }

    fn cached_token(&self) -> Option<String> {
        let guard = self.token.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        guard.as_ref().filter(|(_, until)| Instant::now() < *until).map(|(t, _)| t.clone())
    }

    pub fn forget_token(&self) {
        *self.token.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    /// A valid access token, fetched with the device secret when the cached one is close to expiry.
    pub async fn access_token(&self) -> Result<String, UplinkError> {
        if let Some(token) = self.cached_token() {
            return Ok(token);
        }
        let response = self
            .client
            .post(format!("{}/api/v1/agent/token", self.server))
            .json(&serde_json::json!({
                "tenant": self.credentials.tenant,
                "device": self.credentials.device,
                "secret": self.credentials.device_secret.expose_secret(),
            }))
            .send()
            .await
            .map_err(|e| UplinkError::Transport(e.to_string()))?;
        let status = response.status().as_u16();
        let body = response.text().await.map_err(|e| UplinkError::Transport(e.to_string()))?;
        match status {
            200 => {}
            401 => return Err(UplinkError::Revoked),
            _ => return Err(UplinkError::Refused { status, message: error_message(&body) }),
        }
        #[derive(Deserialize)]
        struct TokenResponse {
            access_token: String,
            expires_in: u64,
        }
        let t: TokenResponse = serde_json::from_str(&body).map_err(|e| UplinkError::Transport(e.to_string()))?;
        // Renew a minute early so a token never expires in flight.
        let until = Instant::now() + Duration::from_secs(t.expires_in.saturating_sub(60).max(10));
        *self.token.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((t.access_token.clone(), until));
        Ok(t.access_token)
    }

    /// Sends one batch and classifies the answer.
    pub async fn deliver(&self, events: &[AgentEvent]) -> Delivery {
        let token = match self.access_token().await {
            Ok(t) => t,
            Err(UplinkError::Revoked) => return Delivery::Unauthorized,
            Err(e) => return Delivery::Retry { reason: e.to_string(), after: None },
        };
        let response = self
            .client
            .post(format!("{}/api/v1/events", self.server))
            .bearer_auth(token)
            .json(&EventBatch { events: events.to_vec() })
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            Err(e) => return Delivery::Retry { reason: format!("network: {e}"), after: None },
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("Retry-After")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = response.text().await.unwrap_or_default();
        match status {
            202 => Delivery::Accepted,
            401 => {
                self.forget_token();
                Delivery::Unauthorized
            }
            429 => Delivery::Retry { reason: "rate limited".into(), after: retry_after },
            400 | 409 | 413 | 422 => Delivery::Rejected { status, reason: error_message(&body) },
            _ => Delivery::Retry { reason: format!("HTTP {status}: {}", error_message(&body)), after: retry_after },
        }
    }
}

/// Exponential backoff with full jitter: a random wait up to min(cap, base·2ⁿ), so agents that lost the
/// link together do not return together.
#[derive(Debug)]
pub struct Backoff {
    attempt: u32,
    base: Duration,
    cap: Duration,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self { attempt: 0, base, cap }
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.base.saturating_mul(1u32 << self.attempt.min(16)).min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        ceiling.mul_f64(rand::rng().random::<f64>()).max(Duration::from_millis(50))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        for _ in 0..30 {
            assert!(b.next_delay() <= Duration::from_secs(5));
        }
        assert!(b.attempt >= 30);
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
