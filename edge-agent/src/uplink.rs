//! Talking to Onshi Cloud: enrollment, access tokens, event delivery.
//!
//! Every delivery attempt ends in one of four outcomes, and each has one response: `Accepted` (delete from
//! the outbox, never resend), `Rejected` (the cloud will never take this content: set it aside),
//! `Unauthorized` (the cloud refuses this device: a revoked device keeps its events and waits), `Retry`
//! (network, 5xx, 429: wait with a short, capped backoff and send the same events again, which is harmless
//! because the cloud deduplicates by event id).
//!
//! A 401 on a delivery means the access token is no longer taken (it expired in flight, the cloud
//! restarted with new keys): `deliver` renews it and resends at once, and only a device the token
//! endpoint refuses (or a fresh token refused again) is `Unauthorized`. Every successful token renewal,
//! and every heartbeat the agent gets through, signals `recovered`, which wakes a delivery loop waiting
//! out its backoff: the cloud is back, send now.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use onshi_domain::{AgentEvent, EventBatch};
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::Notify;

use crate::credentials::Credentials;

#[derive(Debug)]
pub enum Delivery {
    Accepted,
    Rejected {
        status: u16,
        reason: String,
    },
    Unauthorized,
    /// Send the same events again: after `after` when the cloud said so (`Retry-After`, at most a minute),
    /// otherwise after the caller's backoff. `rate_limited` (429): the cloud is up but wants fewer
    /// requests, so signs of the cloud being back do not cut the wait short.
    Retry {
        reason: String,
        after: Option<Duration>,
        rate_limited: bool,
    },
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
    // The code can be redeemed once: if the answer is lost on the way, a retry with the same
    // Idempotency-Key gets the same answer instead of "code already used".
    let key = uuid::Uuid::new_v4().to_string();
    let mut attempt = 0;
    let (status, body) = loop {
        attempt += 1;
        let sent = client()
            .post(format!("{server}/api/v1/agent/enroll"))
            .header("Idempotency-Key", &key)
            .json(&serde_json::json!({ "code": code, "name": name }))
            .send()
            .await;
        let answer = match sent {
            Ok(response) => {
                let status = response.status();
                response.text().await.map(|body| (status, body))
            }
            Err(e) => Err(e),
        };
        match answer {
            Ok(answer) => break answer,
            Err(_) if attempt < 3 => tokio::time::sleep(std::time::Duration::from_secs(attempt)).await,
            Err(e) => return Err(UplinkError::Transport(e.to_string())),
        }
    };
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
    recovered: Notify,
}

/// One POST of events, before a refused token is dealt with.
enum Sent {
    Answer(Delivery),
    TokenRefused,
}

impl Uplink {
    pub fn new(credentials: Credentials, server_override: Option<&str>) -> Self {
        let server = server_override.unwrap_or(&credentials.server).trim_end_matches('/').to_owned();
        Self { client: client(), server, credentials, token: Mutex::new(None), recovered: Notify::new() }
    }

    /// Signalled (to the tasks waiting at that moment) whenever the cloud proves reachable: a token was
    /// renewed, or the agent reported that a heartbeat got through (`cloud_answered`).
    pub fn recovered(&self) -> &Notify {
        &self.recovered
    }

    /// The cloud accepted something: wake whoever is waiting out a backoff.
    pub fn cloud_answered(&self) {
        self.recovered.notify_waiters();
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
        self.cloud_answered();
        Ok(t.access_token)
    }

    /// Sends one batch and classifies the answer. A refused access token is renewed and the batch resent
    /// at once, once.
    pub async fn deliver(&self, events: &[AgentEvent]) -> Delivery {
        let mut renewed = false;
        loop {
            let token = match self.access_token().await {
                Ok(t) => t,
                Err(UplinkError::Revoked) => return Delivery::Unauthorized,
                Err(e) => return Delivery::Retry { reason: e.to_string(), after: None, rate_limited: false },
            };
            match self.send(&token, events).await {
                Sent::Answer(delivery) => return delivery,
                Sent::TokenRefused => {
                    self.forget_token();
                    if renewed {
                        // A token fresh from the cloud refused by the same cloud: treat as a refused device.
                        return Delivery::Unauthorized;
                    }
                    tracing::info!("access token refused; renewing it and resending now");
                    renewed = true;
                }
            }
        }
    }

    async fn send(&self, token: &str, events: &[AgentEvent]) -> Sent {
        // A month's claims travel alone, to the route whose body limit fits a whole レセ電 file.
        let route = match events {
            [AgentEvent { payload: onshi_domain::EventPayload::Claims(_), .. }] => "claims",
            _ => "events",
        };
        let response = self
            .client
            .post(format!("{}/api/v1/{route}", self.server))
            .bearer_auth(token)
            .json(&EventBatch { events: events.to_vec() })
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                return Sent::Answer(Delivery::Retry {
                    reason: format!("network: {e}"),
                    after: None,
                    rate_limited: false,
                });
            }
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("Retry-After")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .map(|secs| Duration::from_secs(secs.min(MAX_RETRY_AFTER_SECS)));
        let body = response.text().await.unwrap_or_default();
        Sent::Answer(match status {
            202 => Delivery::Accepted,
            401 => return Sent::TokenRefused,
            429 => Delivery::Retry { reason: "rate limited".into(), after: retry_after, rate_limited: true },
            400 | 409 | 413 | 422 => Delivery::Rejected { status, reason: error_message(&body) },
            _ => Delivery::Retry {
                reason: format!("HTTP {status}: {}", error_message(&body)),
                after: retry_after,
                rate_limited: false,
            },
        })
    }
}

/// A `Retry-After` longer than this is shortened to it: an agent must not sit out a proxy's hour.
const MAX_RETRY_AFTER_SECS: u64 = 60;

/// Exponential backoff with equal jitter: a wait between half and all of min(cap, base·2ⁿ), so agents that
/// lost the link together do not return together, while no wait exceeds the cap (the cloud's return is
/// noticed within a cap at worst). `reset` after any sign of the cloud (an accepted batch, a heartbeat,
/// a renewed token) starts again from `base`.
#[derive(Debug)]
pub struct Backoff {
    attempt: u32,
    base: Duration,
    cap: Duration,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self { attempt: 0, base, cap: cap.max(base) }
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The longest the next wait may be.
    pub fn ceiling(&self) -> Duration {
        self.base.saturating_mul(1u32 << self.attempt.min(16)).min(self.cap)
    }

    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let half = ceiling / 2;
        (half + half.mul_f64(rand::rng().random::<f64>())).max(Duration::from_millis(10))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_and_never_beyond() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(5));
        let mut ceilings = Vec::new();
        for _ in 0..1000 {
            ceilings.push(b.ceiling());
            let d = b.next_delay();
            assert!(d <= Duration::from_secs(5), "waited {d:?} after {} failures", b.attempt);
            assert!(d >= ceilings[ceilings.len() - 1] / 2, "jitter went below half the ceiling");
        }
        assert_eq!(&ceilings[..5], &[500, 1000, 2000, 4000, 5000].map(Duration::from_millis));
        assert_eq!(b.ceiling(), Duration::from_secs(5));
    }

    #[test]
    fn backoff_starts_again_from_its_base_after_a_reset() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(5));
        for _ in 0..30 {
            b.next_delay();
        }
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(500));
        assert!(b.next_delay() <= Duration::from_millis(500));
        assert_eq!(b.ceiling(), Duration::from_millis(1000));
    }

    #[test]
    fn the_delivery_backoff_is_capped_at_five_seconds_by_default() {
        let config = crate::AgentConfig::with("/nonexistent", Vec::new()).unwrap();
        let mut b = Backoff::new(config.retry_min(), config.retry_max());
        for _ in 0..100 {
            b.next_delay();
        }
        assert_eq!(b.ceiling(), Duration::from_secs(5));
    }
}
