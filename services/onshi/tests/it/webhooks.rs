//! Outbound webhooks end to end: an owner adds endpoints on the page, facts of the product (a test, an
//! agent going offline and back, a closed billing month) reach a real HTTP receiver signed as Standard
//! Webhooks says, a receiver that keeps failing is retried on the schedule, disabled and its owner told,
//! and a delivery is replayed from the log. Targets on internal addresses are refused unless allowed.

use std::sync::{Arc, Mutex};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use base64::Engine;
use hmac::{Hmac, Mac};
use onshi_domain::Role;
use onshi_store::DeliveryStatus;
use sea_orm::ConnectionTrait;

use crate::both_modes;
use crate::helpers::*;

/// A delivery as the receiver saw it.
#[derive(Clone, Debug)]
struct Received {
    id: String,
    timestamp: String,
    signature: String,
    body: String,
}

/// A local HTTP receiver answering every POST with `status`; returns its URL and what it received.
async fn receiver(status: u16) -> (String, Arc<Mutex<Vec<Received>>>) {
    let seen: Arc<Mutex<Vec<Received>>> = Arc::default();
    let log = seen.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = HttpServer::new(move || {
        let log = log.clone();
        App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
            let log = log.clone();
            async move {
                let header =
                    |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                log.lock().unwrap().push(Received {
                    id: header("webhook-id"),
                    timestamp: header("webhook-timestamp"),
                    signature: header("webhook-signature"),
                    body: String::from_utf8_lossy(&body).into_owned(),
                });
                HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).finish()
            }
        }))
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .disable_signals()
    .run();
    tokio::spawn(server);
    (format!("http://127.0.0.1:{port}/hook"), seen)
}

/// Verifies a delivery as a receiver would, independently of the product's code: HMAC-SHA256 with the
/// base64 key of `whsec_…` over `id.timestamp.body`, against any `v1,` signature of the header.
fn verifies(secret: &str, r: &Received) -> bool {
    let key = base64::engine::general_purpose::STANDARD.decode(secret.strip_prefix("whsec_").unwrap()).unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.{}", r.id, r.timestamp, r.body).as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    r.signature.split(' ').any(|s| s.strip_prefix("v1,") == Some(expected.as_str()))
}

fn events_of(seen: &Arc<Mutex<Vec<Received>>>) -> Vec<String> {
    seen.lock()
        .unwrap()
        .iter()
        .map(|r| serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["type"].as_str().unwrap().to_owned())
        .collect()
}

async fn add_endpoint(owner: &mut Browser, url: &str) -> (String, String) {
    let events =
        ["usage.below_threshold", "device.offline", "device.recovered", "billing.month_closed", "uke.imported"];
    let mut fields = vec![("url", url), ("description", "院内チャット")];
    fields.extend(events.iter().map(|e| ("event", *e)));
    let r = owner.post("/settings/webhooks", &fields).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let secret = extract(&r.body, "data-testid=\"webhook-secret\">", "<").unwrap();
    let page = owner.get("/settings/webhooks").await.body;
    let row = page.split("data-endpoint=\"").skip(1).find(|s| s.contains(url)).unwrap();
    (row[..36].to_owned(), secret)
}

fn fast(config: &mut onshi_config::Config) {
    config.webhook_allow_private_targets = true;
    config.webhook_backoff_secs = vec![1, 1];
    config.webhook_poll_ms = 100;
    crate::mailbox::route_mail_here(config);
}

both_modes!(webhooks_are_signed_retried_disabled_and_replayed, |config| { fast(config) }, |app| {
    let (mut owner, owner_user) = app.signed_in(Role::Owner).await;
    let (good_url, good) = receiver(204).await;
    let (bad_url, bad) = receiver(500).await;
    let (good_id, good_secret) = add_endpoint(&mut owner, &good_url).await;
    let (bad_id, _) = add_endpoint(&mut owner, &bad_url).await;

    // A test event, signed; the secret verifies it and nothing else does.
    assert_eq!(owner.post(&format!("/settings/webhooks/{good_id}/test"), &[]).await.status, 303);
    eventually(WAIT, "test delivered", || async { !good.lock().unwrap().is_empty() }).await;
    let first = good.lock().unwrap()[0].clone();
    assert!(first.id.starts_with("msg_"));
    let age = time::OffsetDateTime::now_utc().unix_timestamp() - first.timestamp.parse::<i64>().unwrap();
    assert!((0..60).contains(&age));
    assert!(verifies(&good_secret, &first), "signature verifies with the endpoint's secret");
    assert!(!verifies(&onshi_identity::webhook::new_secret(), &first));
    let body: serde_json::Value = serde_json::from_str(&first.body).unwrap();
    assert_eq!(body["type"], "webhook.test");

    // An agent goes silent past the offline limit, then reports again: one event each, to both endpoints.
    let hb = app.factory(0, 7).heartbeat(time::OffsetDateTime::now_utc());
    assert_eq!(app.post_events(0, &[hb]).await.status(), 202);
    eventually(WAIT, "heartbeat written", || async {
        app.store().devices().await.unwrap().iter().any(|d| d.last_seen_at.is_some())
    })
    .await;
    let db = app.owner_db().await;
    let backend = db.get_database_backend();
    let sql = if backend == sea_orm::DatabaseBackend::Postgres {
        "UPDATE devices SET last_seen_at = $1 WHERE last_seen_at IS NOT NULL"
    } else {
        "UPDATE devices SET last_seen_at = ? WHERE last_seen_at IS NOT NULL"
    };
    let long_ago = time::OffsetDateTime::now_utc() - time::Duration::minutes(10);
    db.execute_raw(sea_orm::Statement::from_sql_and_values(backend, sql, [long_ago.into()])).await.unwrap();
    db.close().await.ok();
    eventually(WAIT, "offline announced", || async { events_of(&good).contains(&"device.offline".to_owned()) }).await;
    // Systems that poll see the same outage, open, in the alerts.
    let r = owner.post("/settings/api-tokens", &[("name", "監視"), ("scope", "alerts:read"), ("days", "1")]).await;
    let token = extract(&r.body, "data-testid=\"api-token\">", "<").unwrap();
    let alerts = || async {
        let r = app.client.get(format!("{}/api/v1/alerts", app.base_url())).bearer_auth(&token).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let all = r.json::<serde_json::Value>().await.unwrap()["alerts"].as_array().unwrap().clone();
        // The opening-hours watch may also raise this outage, depending on the time of day (tests/alerts.rs).
        all.into_iter().filter(|a| a["kind"] != "alert.raised").collect::<Vec<_>>()
    };
    let open = alerts().await;
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!((open[0]["kind"].as_str(), open[0]["open"].as_bool()), (Some("device.offline"), Some(true)));
    let hb = app.factory(0, 8).heartbeat(time::OffsetDateTime::now_utc());
    assert_eq!(app.post_events(0, &[hb]).await.status(), 202);
    eventually(WAIT, "recovery announced", || async { events_of(&good).contains(&"device.recovered".to_owned()) })
        .await;
    assert!(alerts().await.is_empty(), "the outage is over");
    let offline: serde_json::Value =
        serde_json::from_str(&good.lock().unwrap().iter().find(|r| r.body.contains("device.offline")).unwrap().body)
            .unwrap();
    assert!(offline["data"]["device_id"].as_str().unwrap().starts_with("dev_"));
    assert!(!offline.to_string().contains("pseudonym"), "no key or patient data in a payload");
    assert_eq!(events_of(&good).iter().filter(|e| *e == "device.offline").count(), 1, "announced once");

    // The failing receiver got each attempt of the schedule (1 + 2 retries), then was disabled, audited,
    // and the owner e-mailed.
    eventually(WAIT, "failing endpoint disabled", || async {
        app.store().webhook_endpoints().await.unwrap().iter().any(|e| e.id.to_string() == bad_id && !e.enabled)
    })
    .await;
    assert!(bad.lock().unwrap().len() >= 3);
    let page = owner.get("/settings/webhooks").await.body;
    assert!(page.contains("data-status=\"failed\""), "the log shows the failure");
    // Why it stopped, in the reader's language, with the time in JST.
    let reason = extract(&page, "data-testid=\"disabled-reason\">", "<").unwrap_or_default();
    assert!(reason.contains("送信が全て失敗したため自動で停止しました（最後のエラー: "), "{reason}");
    assert!(!reason.contains("every delivery"), "{reason}");
    let since = reason.split("から").next().unwrap_or_default();
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    assert!(time::PrimitiveDateTime::parse(since, format).is_ok(), "a JST time, not RFC 3339: {reason}");
    let en = owner.get("/settings/webhooks?lang=en").await.body;
    let reason = extract(&en, "data-testid=\"disabled-reason\">", "<").unwrap_or_default();
    assert!(reason.starts_with("Turned off automatically: every delivery failed since "), "{reason}");
    owner.get("/settings/webhooks?lang=ja").await;
    let audit =
        app.store().audit_entries(&onshi_store::AuditFilter { limit: 1000, ..Default::default() }).await.unwrap();
    assert!(audit.iter().any(|e| e.action == "webhook.endpoint_disabled"));
    eventually(WAIT, "owner told", || async {
        let sink = crate::mailbox::sink();
        sink.all_to(&owner_user.email).iter().any(|m| crate::mailbox::body_text(m).contains(&bad_url))
    })
    .await;

    // Replay from the log: the same message again, same webhook-id, to the good endpoint.
    let delivered = app
        .store()
        .webhook_deliveries(100)
        .await
        .unwrap()
        .into_iter()
        .find(|d| d.endpoint.to_string() == good_id && d.event == "webhook.test")
        .unwrap();
    let before = good.lock().unwrap().len();
    let r = owner.post(&format!("/settings/webhooks/deliveries/{}/replay", delivered.id), &[]).await;
    assert_eq!(r.status, 303);
    eventually(WAIT, "replayed", || async { good.lock().unwrap().len() > before }).await;
    let again = good.lock().unwrap().last().unwrap().clone();
    assert_eq!(again.id, first.id, "a replay keeps the message id so receivers deduplicate");
    assert_eq!(again.body, first.body);

    // Rotation: for a day both secrets sign.
    let r = owner.post(&format!("/settings/webhooks/{good_id}/rotate"), &[]).await;
    let new_secret = extract(&r.body, "data-testid=\"webhook-secret\">", "<").unwrap();
    assert_ne!(new_secret, good_secret);
    assert_eq!(owner.post(&format!("/settings/webhooks/{good_id}/test"), &[]).await.status, 303);
    let count = good.lock().unwrap().len();
    eventually(WAIT, "test after rotation", || async { good.lock().unwrap().len() > count }).await;
    let rotated = good.lock().unwrap().last().unwrap().clone();
    assert!(verifies(&new_secret, &rotated) && verifies(&good_secret, &rotated));
    assert_eq!(rotated.signature.split(' ').count(), 2);
});

// An endpoint turned off while a delivery waits for its retry: the log says the delivery is held, instead
// of a retry time that will not come.
both_modes!(
    an_endpoint_turned_off_by_hand_holds_its_waiting_deliveries,
    |config| {
        fast(config);
        config.webhook_backoff_secs = vec![3600];
    },
    |app| {
        let (mut owner, _) = app.signed_in(Role::Owner).await;
        let (url, seen) = receiver(500).await;
        let (id, _) = add_endpoint(&mut owner, &url).await;
        assert_eq!(owner.post(&format!("/settings/webhooks/{id}/test"), &[]).await.status, 303);
        let mine = || async {
            let all = app.store().webhook_deliveries(100).await.unwrap();
            all.into_iter().filter(|d| d.endpoint.to_string() == id).collect::<Vec<_>>()
        };
        eventually(WAIT, "first attempt refused", || async {
            mine().await.iter().any(|d| d.last_status == Some(500) && d.status == DeliveryStatus::Pending)
        })
        .await;
        assert_eq!(seen.lock().unwrap().len(), 1);
        let page = owner.get("/settings/webhooks").await.body;
        assert!(page.contains("data-status=\"pending\"") && page.contains("次回"), "a retry is announced");

        assert_eq!(owner.post(&format!("/settings/webhooks/{id}/disable"), &[]).await.status, 303);
        let page = owner.get("/settings/webhooks").await.body;
        assert!(!page.contains("次回") && !page.contains("再試行待ち"), "no retry announced");
        assert!(page.contains("保留（エンドポイント停止中）"), "{page}");
        let en = owner.get("/settings/webhooks?lang=en").await.body;
        assert!(en.contains("Held: endpoint off") && !en.contains("Waiting to retry"));
        assert_eq!(mine().await.len(), 1, "nothing sent or added meanwhile");
        assert_eq!(seen.lock().unwrap().len(), 1);
    }
);

both_modes!(webhook_targets_on_internal_addresses_are_refused, |app| {
    let (mut owner, _) = app.signed_in(Role::Owner).await;
    for url in ["http://127.0.0.1:9/hook", "https://169.254.169.254/latest/meta-data", "https://localhost/x"] {
        let r = owner.post("/settings/webhooks", &[("url", url), ("event", "device.offline")]).await;
        assert_eq!(r.status, 422, "{url}");
        // Said in the reader's language only (the text is kept in both).
        let error = extract(&r.body, "data-testid=\"error\">", "<").unwrap_or_default();
        assert!(!error.is_empty() && !error.is_ascii() && !error.contains(" / "), "{url}: {error}");
    }
    let r =
        owner.post("/settings/webhooks?lang=en", &[("url", "https://localhost/x"), ("event", "device.offline")]).await;
    let error = extract(&r.body, "data-testid=\"error\">", "<").unwrap_or_default();
    assert_eq!(error, "internal host names are refused");
    owner.get("/settings/webhooks?lang=ja").await;
    assert!(app.store().webhook_endpoints().await.unwrap().is_empty());
    // Only owners manage them.
    let (mut manager, _) = app.signed_in(Role::Manager).await;
    assert_eq!(manager.get("/settings/webhooks").await.status, 403);
});
