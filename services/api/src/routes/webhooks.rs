//! `/settings/webhooks`: a group owner's outbound webhook endpoints (add, rotate the secret, disable,
//! enable, send a test) and the delivery log with replay. Every change is audited; a secret is shown once,
//! when it is made. The worker sends the deliveries (`onshi::webhooks`).

use actix_web::{HttpResponse, web};
use askama::Template;
use onshi_domain::{AuditAction, FieldError, WebhookEvent};
use onshi_store::{AuditResult, DeliveryStatus, DisabledReason, WebhookDelivery, WebhookEndpoint};
use uuid::Uuid;

use crate::web::guard::{Caller, Page};
use crate::web::page::{ok, see_other, unprocessable};
use crate::web::time::jst_second;
use crate::{ApiError, AppState};

/// How long a rotated-out secret keeps signing deliveries next to the new one.
const ROTATION_OVERLAP: time::Duration = time::Duration::hours(24);
/// Deliveries the log shows.
const LOG_ROWS: u64 = 100;

struct EndpointRow {
    endpoint: WebhookEndpoint,
    events: String,
    /// Why it is disabled, in the reader's language.
    disabled_reason: Option<String>,
    failing_since: Option<String>,
    overlap_until: Option<String>,
}

struct DeliveryRow {
    delivery: WebhookDelivery,
    endpoint_url: String,
    event_label: &'static str,
    created: String,
    status: &'static str,
    status_class: &'static str,
    outcome: String,
    next: Option<String>,
    replayable: bool,
}

#[derive(Template)]
#[template(path = "webhooks.html")]
struct WebhooksPage {
    page: Page,
    endpoints: Vec<EndpointRow>,
    deliveries: Vec<DeliveryRow>,
    /// (value, label) of every type an endpoint can subscribe to.
    events: Vec<(&'static str, &'static str)>,
    /// A secret just made, shown once, with the endpoint it belongs to.
    new_secret: Option<(String, String)>,
    error: Option<String>,
    form_url: String,
    form_description: String,
}

fn status_of(page: &Page, status: DeliveryStatus) -> (&'static str, &'static str) {
    match status {
        DeliveryStatus::Pending => (page.lang.t("再試行待ち", "Waiting to retry"), "warn-text"),
        DeliveryStatus::Delivered => (page.lang.t("配信済み", "Delivered"), "ok"),
        DeliveryStatus::Failed => (page.lang.t("失敗", "Failed"), "alert"),
        DeliveryStatus::Skipped => (page.lang.t("送信せず（停止中）", "Not sent (disabled)"), "alert"),
    }
}

fn disabled_reason(page: &Page, reason: &DisabledReason) -> String {
    match reason {
        DisabledReason::ByPerson => page.lang.t("担当者が停止しました", "Turned off by a person").to_owned(),
        DisabledReason::EveryDeliveryFailed { since, last_error } => {
            let (since, last_error) = (jst_second(since), page.lang.pick(last_error));
            if page.lang == crate::web::i18n::Lang::Ja {
                format!("{since}から送信が全て失敗したため自動で停止しました（最後のエラー: {last_error}）")
            } else {
                format!("Turned off automatically: every delivery failed since {since} (last error: {last_error})")
            }
        }
        DisabledReason::Text(text) => text.clone(),
    }
}

async fn render(
    state: &AppState,
    page: Page,
    caller: &Caller,
    new_secret: Option<(String, String)>,
    error: Option<String>,
    form: (&str, &str),
) -> Result<WebhooksPage, ApiError> {
    let store = state.store.tenant(caller.scope);
    let endpoints = store.webhook_endpoints().await?;
    let deliveries = store.webhook_deliveries(LOG_ROWS).await?;
    let now = time::OffsetDateTime::now_utc();
    let label = |e: WebhookEvent| page.lang.t(e.label_ja(), e.label_en());
    let deliveries = deliveries
        .into_iter()
        .map(|d| {
            let endpoint = endpoints.iter().find(|e| e.id == d.endpoint);
            let pending = d.status == DeliveryStatus::Pending;
            // A pending delivery of an endpoint that is off is held, not retried: the sender skips it when
            // it falls due unless the endpoint is back on by then. (Marking it skipped when the endpoint is
            // turned off would race a worker sending it at that moment.)
            let held = pending && endpoint.is_some_and(|e| !e.enabled);
            let (status, status_class) = if held {
                (page.lang.t("保留（エンドポイント停止中）", "Held: endpoint off"), "warn-text")
            } else if pending && d.attempts == 0 {
                // A pending delivery's first attempt shows as "queued", not as waiting to retry.
                (page.lang.t("送信待ち", "Queued"), "")
            } else {
                status_of(&page, d.status)
            };
            let outcome = match (d.last_status, &d.last_error) {
                // The status says it: not sent because the endpoint is disabled.
                _ if d.status == DeliveryStatus::Skipped => String::new(),
                (Some(code), None) => format!("HTTP {code}"),
                (_, Some(error)) => page.lang.pick(error).to_owned(),
                (None, None) => String::new(),
            };
            DeliveryRow {
                endpoint_url: endpoint.map(|e| e.url.clone()).unwrap_or_default(),
                event_label: WebhookEvent::parse(&d.event).map(label).unwrap_or_default(),
                created: jst_second(&d.created_at),
                status,
                status_class,
                outcome,
                next: (pending && d.attempts > 0 && !held).then(|| jst_second(&d.next_attempt_at)),
                replayable: !pending && endpoint.is_some_and(|e| e.enabled),
                delivery: d,
            }
        })
        .collect();
    let endpoints = endpoints
        .into_iter()
        .map(|e| EndpointRow {
            events: e.events.iter().map(|ev| label(*ev)).collect::<Vec<_>>().join(page.lang.t("、", ", ")),
            disabled_reason: e.disabled_reason.as_ref().map(|r| disabled_reason(&page, r)),
            failing_since: e.failing_since.as_ref().map(jst_second),
            overlap_until: e.previous_secret_until.filter(|u| *u > now).as_ref().map(jst_second),
            endpoint: e,
        })
        .collect();
    Ok(WebhooksPage {
        events: WebhookEvent::SUBSCRIBABLE.iter().map(|e| (e.as_str(), label(*e))).collect(),
        page,
        endpoints,
        deliveries,
        new_secret,
        error,
        form_url: form.0.to_owned(),
        form_description: form.1.to_owned(),
    })
}

pub(crate) async fn page(state: web::Data<AppState>, page: Page, caller: Caller) -> Result<HttpResponse, ApiError> {
    ok(render(&state, page, &caller, None, None, ("", "")).await?)
}

/// Why a URL cannot be an endpoint, checked when it is entered and again before every delivery: the
/// scheme, no credentials in it, and no address or name that is obviously internal. The sender also
/// resolves the name and checks the addresses (`onshi::webhooks::checked_target`).
pub fn url_problem(raw: &str, allow_private: bool) -> Option<&'static str> {
    let Ok(url) = url::Url::parse(raw) else { return Some("URL の形式ではありません / not a URL") };
    match url.scheme() {
        "https" => {}
        "http" if allow_private => {}
        _ => return Some("https:// で始まる URL を入力してください / the URL must start with https://"),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Some("URL に利用者名やパスワードを含めないでください / no user name or password in the URL");
    }
    if allow_private {
        return None;
    }
    match url.host() {
        None => Some("URL にホスト名がありません / the URL has no host"),
        Some(url::Host::Ipv4(ip)) if !onshi_domain::webhook::is_public_address(ip.into()) => {
            Some("内部向けのアドレスには送信できません / private, loopback and link-local addresses are refused")
        }
        Some(url::Host::Ipv6(ip)) if !onshi_domain::webhook::is_public_address(ip.into()) => {
            Some("内部向けのアドレスには送信できません / private, loopback and link-local addresses are refused")
        }
        Some(url::Host::Domain(name))
            if name == "localhost"
                || [".localhost", ".local", ".internal", ".lan", ".home.arpa"].iter().any(|s| name.ends_with(s)) =>
        {
            Some("内部向けのホスト名には送信できません / internal host names are refused")
        }
        Some(_) => None,
    }
}

pub(crate) async fn create(
    state: web::Data<AppState>,
    page: Page,
    caller: Caller,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let field =
        |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim().to_owned()).unwrap_or_default();
    let (url, description) = (field("url"), field("description"));
    let events: Vec<WebhookEvent> =
        pairs.iter().filter(|(k, _)| k == "event").filter_map(|(_, v)| WebhookEvent::parse(v)).collect();
    if url.is_empty() {
        // A form that did not come from the page (it marks the field required): a bad request.
        return Err(ApiError::InvalidRequest(FieldError::new("url", "required")));
    }
    let problem = if url.len() > 2048 {
        Some("URL が長すぎます / the URL is too long")
    } else if events.is_empty() || events.contains(&WebhookEvent::Test) {
        Some("通知するイベントを選んでください / choose at least one event")
    } else {
        url_problem(&url, state.webhook_allow_private_targets)
    };
    if let Some(problem) = problem {
        let form = (url.as_str(), description.as_str());
        let problem = page.lang.pick(problem).to_owned();
        return unprocessable(render(&state, page, &caller, None, Some(problem), form).await?);
    }
    let secret = onshi_identity::webhook::new_secret();
    let entry = caller.entry(AuditAction::WebhookCreate, "-", AuditResult::Success).details(serde_json::json!({
        "url": url,
        "events": events.iter().map(|e| e.as_str()).collect::<Vec<_>>(),
    }));
    state
        .store
        .tenant(caller.scope)
        .create_webhook_endpoint(&url, &description, &events, &secret, caller.user.id, &entry)
        .await?;
    ok(render(&state, page, &caller, Some((url, secret)), None, ("", "")).await?)
}

fn endpoint_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::try_parse(raw).map_err(|_| ApiError::NotFound)
}

pub(crate) async fn rotate(
    state: web::Data<AppState>,
    page: Page,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = endpoint_id(&path)?;
    let secret = onshi_identity::webhook::new_secret();
    let entry = caller.entry(AuditAction::WebhookRotateSecret, &format!("webhook:{id}"), AuditResult::Success);
    let store = state.store.tenant(caller.scope);
    store.rotate_webhook_secret(id, &secret, ROTATION_OVERLAP, &entry).await?;
    let url = store.webhook_endpoints().await?.into_iter().find(|e| e.id == id).map(|e| e.url).unwrap_or_default();
    ok(render(&state, page, &caller, Some((url, secret)), None, ("", "")).await?)
}

async fn set_enabled(state: &AppState, caller: &Caller, raw: &str, enabled: bool) -> Result<HttpResponse, ApiError> {
    let id = endpoint_id(raw)?;
    let action = if enabled { AuditAction::WebhookEnable } else { AuditAction::WebhookDisable };
    let entry = caller.entry(action, &format!("webhook:{id}"), AuditResult::Success);
    state.store.tenant(caller.scope).set_webhook_enabled(id, enabled, &entry).await?;
    Ok(see_other("/settings/webhooks"))
}

pub(crate) async fn disable(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_enabled(&state, &caller, &path, false).await
}

pub(crate) async fn enable(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_enabled(&state, &caller, &path, true).await
}

pub(crate) async fn test(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = endpoint_id(&path)?;
    let entry = caller.entry(AuditAction::WebhookTest, &format!("webhook:{id}"), AuditResult::Success);
    state.store.tenant(caller.scope).enqueue_webhook_test(id, &entry).await.map_err(|e| match e {
        onshi_store::StoreError::Conflict { .. } => {
            ApiError::InvalidRequest(FieldError::new("endpoint", "the endpoint is disabled; enable it first"))
        }
        e => e.into(),
    })?;
    Ok(see_other("/settings/webhooks"))
}

pub(crate) async fn replay(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = endpoint_id(&path)?;
    let entry = caller.entry(AuditAction::WebhookReplay, &format!("webhook-delivery:{id}"), AuditResult::Success);
    state.store.tenant(caller.scope).replay_webhook_delivery(id, &entry).await.map_err(|e| match e {
        onshi_store::StoreError::Conflict { .. } => {
            ApiError::InvalidRequest(FieldError::new("delivery", "its endpoint is disabled; enable it first"))
        }
        e => e.into(),
    })?;
    Ok(see_other("/settings/webhooks"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_targets_are_refused_when_entered() {
        for bad in [
            "http://example.com/hook",
            "https://user:pw@example.com/",
            "https://127.0.0.1/",
            "https://169.254.169.254/latest/meta-data",
            "https://[::1]/",
            "https://10.0.0.8/",
            "https://localhost/",
            "https://printer.local/",
            "ftp://example.com/",
            "not a url",
        ] {
            assert!(url_problem(bad, false).is_some(), "{bad}");
        }
        assert_eq!(url_problem("https://hooks.example.com/onshi", false), None);
        assert_eq!(url_problem("http://127.0.0.1:9000/hook", true), None, "allowed for tests");
    }
}
