//! The worker side of outbound webhooks: every `webhook_poll_ms` it claims the deliveries that are due
//! (in any tenant), sends them signed (Standard Webhooks, `onshi_identity::webhook`) and records each
//! outcome; every ten polls it also records agents gone silent or back (`device.offline`,
//! `device.recovered`). Several workers may run this at once: a delivery is claimed with a lease, and a
//! device's outage is announced in the transaction that records it.
//!
//! A target must be `https` and resolve to public addresses only; the connection goes to the address that
//! was checked (no second lookup a DNS answer could change), redirects are not followed, and the request
//! and the wait for an answer are bounded. `webhook_allow_private_targets` lifts the address and scheme
//! rules for tests and closed networks.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt;
use onshi_domain::Role;
use onshi_store::{DeliveryOutcome, DisabledEndpoint, DueDelivery, NewMail, Store, TenantScope, UserStatus};
use tokio_util::sync::CancellationToken;

/// How long a claimed delivery is ours before another worker may take it: well over what a claim's sends
/// can take (32 claimed, 8 at a time, each at most 5 s to resolve and 10 s to answer).
const LEASE: time::Duration = time::Duration::seconds(300);
/// Deliveries claimed per tenant and poll, and sent at once.
const CLAIM: u64 = 32;
const IN_FLIGHT: usize = 8;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Device outages are looked for every this many polls.
const TRANSITIONS_EVERY: u32 = 10;

#[derive(Clone)]
pub struct WebhookSender {
    pub store: Store,
    /// Whether owners are told by e-mail that an endpoint was disabled (false when mail is not
    /// configured usably).
    pub mail: bool,
    pub public_url: String,
    pub allow_private: bool,
    pub backoff: Vec<u64>,
    pub poll: Duration,
}

impl WebhookSender {
    pub async fn run(self, stop: CancellationToken) {
        let mut polls = 0u32;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(self.poll) => {}
            }
            if polls.is_multiple_of(TRANSITIONS_EVERY) {
                self.announce_transitions().await;
            }
            polls = polls.wrapping_add(1);
            self.deliver_due().await;
        }
    }

    async fn announce_transitions(&self) {
        let after = onshi_domain::OFFLINE_AFTER_SECS;
        let tenants = match self.store.device_transition_tenants(after).await {
            Ok(t) => t,
            Err(e) => return tracing::warn!(error = %onshi_telemetry::Chain(&e), "agent outages not looked for"),
        };
        for scope in tenants {
            match self.store.tenant(scope).announce_device_transitions(after).await {
                Ok(t) if t.offline + t.recovered > 0 => {
                    tracing::info!(tenant = %scope.tenant_id(), offline = t.offline, recovered = t.recovered, "agent outages recorded");
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %onshi_telemetry::Chain(&e), tenant = %scope.tenant_id(), "agent outages not recorded")
                }
            }
        }
    }

    /// One poll: every due delivery of every tenant, a tenant at a time.
    pub async fn deliver_due(&self) {
        let tenants = match self.store.webhook_tenants_due().await {
            Ok(t) => t,
            Err(e) => {
                return tracing::warn!(error = %onshi_telemetry::Chain(&e), "due webhook deliveries not looked for");
            }
        };
        for scope in tenants {
            let due = match self.store.tenant(scope).claim_due_webhooks(LEASE, CLAIM).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(error = %onshi_telemetry::Chain(&e), tenant = %scope.tenant_id(), "webhook deliveries not claimed");
                    continue;
                }
            };
            futures_util::stream::iter(due)
                .for_each_concurrent(IN_FLIGHT, |delivery| async move {
                    let outcome = send(&delivery, self.allow_private).await;
                    self.record(scope, &delivery, &outcome).await;
                })
                .await;
        }
    }

    async fn record(&self, scope: TenantScope, delivery: &DueDelivery, outcome: &DeliveryOutcome) {
        let m = onshi_telemetry::metrics();
        let label = if matches!(outcome, DeliveryOutcome::Delivered { .. }) { "delivered" } else { "failed" };
        m.webhook_attempts.with_label_values(&[label]).inc();
        let store = self.store.tenant(scope);
        let tell = |endpoint: &DisabledEndpoint, users: &[onshi_store::User]| self.owners_told(endpoint, users);
        match store.finish_webhook_delivery(delivery, outcome, &self.backoff, tell).await {
            Ok(Some(disabled)) => tracing::warn!(endpoint = %disabled.id, "webhook endpoint disabled"),
            Ok(None) => {}
            // The lease runs out and the delivery is sent again: at least once, never lost.
            Err(e) => {
                tracing::warn!(error = %onshi_telemetry::Chain(&e), delivery = %delivery.id, "webhook outcome not recorded")
            }
        }
    }

    /// The e-mail to the group's owners about an endpoint disabled, queued with the change.
    fn owners_told(&self, endpoint: &DisabledEndpoint, users: &[onshi_store::User]) -> Vec<NewMail> {
        if !self.mail {
            return Vec::new();
        }
        let owners =
            users.iter().filter(|u| u.status == UserStatus::Active && u.role == Role::Owner).map(|u| u.email.as_str());
        let body = format!(
            "Webhook の送信先 {url} への配信が再試行を含めてすべて失敗したため、この送信先を停止しました。\n\
             受信側を確認し、設定画面で再開してから、失敗した配信を再送してください: {site}/settings/webhooks\n\n\
             Every delivery to the webhook endpoint {url}, retries included, failed, so it has been disabled.\n\
             Check the receiver, enable it again and replay the failed deliveries: {site}/settings/webhooks\n",
            url = endpoint.url,
            site = self.public_url.trim_end_matches('/'),
        );
        NewMail::to_each("webhook_disabled", owners, "【Onshi Cloud】Webhook の送信先を停止しました", &body)
    }
}

/// A target whose name gives no address (the lookup failed, or found none).
const NO_ADDRESS: &str = "ホスト名を引けません / the host name does not resolve";

/// Where a delivery may go: the URL's host and the checked address to connect to, or why not. The URL
/// must pass the rules it was entered under (`onshi_api::webhook_url_problem`), and its name must resolve
/// to public addresses now.
pub async fn checked_target(url: &str, allow_private: bool) -> Result<(url::Url, String, SocketAddr), String> {
    if let Some(problem) = onshi_api::webhook_url_problem(url, allow_private) {
        return Err(problem.to_owned());
    }
    let parsed = url::Url::parse(url).map_err(|e| format!("URL の形式ではありません / not a URL: {e}"))?;
    let host = parsed.host_str().ok_or("URL にホスト名がありません / the URL has no host")?.to_owned();
    let port = parsed.port_or_known_default().ok_or("URL のポートが分かりません / the URL has no port")?;
    let lookup = host.trim_start_matches('[').trim_end_matches(']').to_owned();
    let addrs: Vec<SocketAddr> =
        tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::lookup_host((lookup.as_str(), port)))
            .await
            .map_err(|_| "ホスト名を時間内に引けませんでした / the host name did not resolve in time".to_owned())?
            .map_err(|_| NO_ADDRESS.to_owned())?
            .collect();
    let first = *addrs.first().ok_or(NO_ADDRESS)?;
    if !allow_private && addrs.iter().any(|a| !onshi_domain::webhook::is_public_address(a.ip())) {
        return Err("ホスト名が内部向けのアドレスを指しています / the host resolves to a private, loopback or link-local address"
            .to_owned());
    }
    Ok((parsed, host, first))
}

/// One attempt: 2xx is delivered, anything else (a refused target, no answer, another status) failed.
async fn send(delivery: &DueDelivery, allow_private: bool) -> DeliveryOutcome {
    let failed = |status: Option<u16>, error: String| DeliveryOutcome::Failed { status, error };
    let (url, host, addr) = match checked_target(&delivery.url, allow_private).await {
        Ok(t) => t,
        Err(e) => return failed(None, e),
    };
    let client = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        // A proxy would look the name up again, past the address we checked.
        .no_proxy()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .resolve(&host, addr)
        .user_agent("Onshi-Webhooks/1")
        .build()
    {
        Ok(c) => c,
        Err(e) => return failed(None, format!("送信の準備に失敗しました / client: {e}")),
    };
    let timestamp = time::OffsetDateTime::now_utc().unix_timestamp();
    let id = format!("msg_{}", delivery.message_id.simple());
    let body = delivery.payload.clone().into_bytes();
    let signature = onshi_identity::webhook::signature_header(&delivery.secrets, &id, timestamp, &body);
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await;
    match response {
        Ok(r) if r.status().is_success() => DeliveryOutcome::Delivered { status: r.status().as_u16() },
        Ok(r) if r.status().is_redirection() => {
            failed(Some(r.status().as_u16()), "リダイレクトには従いません。転送先の URL を登録してください / redirects are not followed; give the final URL"
                .to_owned())
        }
        Ok(r) => failed(Some(r.status().as_u16()), format!("HTTP {}", r.status().as_u16())),
        Err(e) if e.is_timeout() => failed(None, "10 秒以内に応答がありませんでした / no answer within 10 seconds".to_owned()),
        Err(e) if e.is_connect() => failed(None, "接続できませんでした（拒否または到達不能） / connection refused or unreachable".to_owned()),
        Err(e) => failed(None, format!("送信に失敗しました / request failed: {e}")),
    }
}
