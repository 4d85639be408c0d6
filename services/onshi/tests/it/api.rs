//! The integration API as a group's own system uses it: the contract it is served with, visits a page at
//! a time, 利用率 by month, conditional requests and the per-token rate limit.

use onshi_domain::Role;
use time::macros::datetime;

use crate::both_modes;
use crate::helpers::*;

async fn token_with(browser: &mut Browser, scopes: &[&str]) -> String {
    let mut fields = vec![("name", "基幹システム連携"), ("days", "1")];
    fields.extend(scopes.iter().map(|s| ("scope", *s)));
    let r = browser.post("/settings/api-tokens", &fields).await;
    assert_eq!(r.status, 200, "{}", r.body);
    extract(&r.body, "data-testid=\"api-token\">", "<").unwrap()
}

both_modes!(the_read_api_pages_visits_reports_usage_and_answers_conditionally, |app| {
    // November 2026 at the first clinic: 25 patients over three days, every other one with マイナ保険証.
    let events: Vec<_> = (0..25)
        .map(|i| {
            let at = datetime!(2026-11-09 09:00 +09:00) + time::Duration::days(i % 3) + time::Duration::minutes(i);
            valid_visit(app, &format!("{:08}", 100 + i), at, i % 2 == 0)
        })
        .collect();
    assert_eq!(app.post_events(0, &events).await.status(), 202);
    eventually(WAIT, "applied", || async { app.store().raw_event_count().await.unwrap() == 25 }).await;

    let (mut owner, _) = app.signed_in(Role::Owner).await;
    let token = token_with(&mut owner, &["receptions:read", "usage:read"]).await;
    let client = reqwest::Client::new();
    let get = |path: String| client.get(format!("{}{path}", app.base_url())).bearer_auth(&token).send();
    let clinic = app.clinics[0].clinic.id;
    let base = format!("/api/v1/clinics/{clinic}/visits?from=2026-11-01&to=2026-11-30&limit=10");

    // Three pages of 10, 10 and 5, no visit twice, ordered by day; the last page has no cursor.
    let mut seen = std::collections::HashSet::new();
    let mut days = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("{base}&cursor={c}"),
            None => base.clone(),
        };
        let r = get(path).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["ratelimit-limit"], "600");
        let body: serde_json::Value = r.json().await.unwrap();
        pages += 1;
        for v in body["visits"].as_array().unwrap() {
            let patient = v["patient"].as_str().expect("a pseudonym");
            assert_eq!(patient.len(), 64);
            assert!(seen.insert(patient.to_owned()), "a visit on two pages");
            days.push(v["date"].as_str().unwrap().to_owned());
        }
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!((pages, seen.len()), (3, 25));
    assert!(days.windows(2).all(|w| w[0] <= w[1]), "ordered by day: {days:?}");

    // Filters.
    let r = get(format!("/api/v1/clinics/{clinic}/visits?from=2026-11-01&to=2026-11-30&method=myna_card&limit=100"))
        .await
        .unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    let myna = body["visits"].as_array().unwrap();
    assert_eq!(myna.len(), 13);
    assert!(myna.iter().all(|v| v["myna"] == true && v["method"] == "myna_card"));

    // Bad parameters are 400 naming the field.
    for (query, field) in [
        ("cursor=nonsense", "cursor"),
        ("limit=0", "limit"),
        ("from=2026-12-01&to=2026-11-01", "from"),
        ("from=2025-01-01&to=2026-11-30", "to"),
    ] {
        let r = get(format!("/api/v1/clinics/{clinic}/visits?{query}")).await.unwrap();
        assert_eq!(r.status(), 400, "{query}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"]["field"], field, "{query}");
    }

    // 利用率 by month: the estimate for November, nothing claimed or notified yet.
    let r = get(format!("/api/v1/clinics/{clinic}/usage?from=2026-10&to=2026-11")).await.unwrap();
    assert_eq!(r.status(), 200);
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    let body: serde_json::Value = r.json().await.unwrap();
    let months = body["months"].as_array().unwrap();
    assert_eq!(months.len(), 2);
    assert_eq!(months[0]["month"], "2026-10");
    assert_eq!(months[0]["estimate"]["patients"], 0);
    assert!(months[0]["estimate"]["rate"].is_null());
    assert_eq!(months[1]["estimate"]["patients"], 25);
    assert_eq!(months[1]["estimate"]["myna_patients"], 13);
    assert!((months[1]["estimate"]["rate"].as_f64().unwrap() - 0.52).abs() < 1e-9);
    assert!(months[1]["claims"].is_null() && months[1]["official"].is_null());

    // The same request with the ETag is 304 without a body; another ETag gets the body.
    let url = format!("{}/api/v1/clinics/{clinic}/usage?from=2026-10&to=2026-11", app.base_url());
    let r = client.get(&url).bearer_auth(&token).header("If-None-Match", &etag).send().await.unwrap();
    assert_eq!(r.status(), 304);
    assert_eq!(r.headers()["etag"].to_str().unwrap(), etag);
    assert!(r.bytes().await.unwrap().is_empty());
    let r = client.get(&url).bearer_auth(&token).header("If-None-Match", "\"other\"").send().await.unwrap();
    assert_eq!(r.status(), 200);

    // Another group's clinic, or a scope the token lacks.
    assert_eq!(
        get("/api/v1/clinics/cln_0192f0c1a2b37c4d8e9f0a1b2c3d4e5f/usage".to_owned()).await.unwrap().status(),
        404
    );
    assert_eq!(get("/api/v1/audit".to_owned()).await.unwrap().status(), 403);
});

both_modes!(
    an_api_token_is_held_to_its_rate_limit,
    |config| {
        config.api_requests_per_token_per_minute = 3;
    },
    |app| {
        let (mut owner, _) = app.signed_in(Role::Owner).await;
        let token = token_with(&mut owner, &["clinics:read"]).await;
        let client = reqwest::Client::new();
        // Eight requests at once: even if a clock minute ends among them, one side has more than three.
        let mut limited = None;
        for _ in 0..8 {
            let r = client.get(format!("{}/api/v1/clinics", app.base_url())).bearer_auth(&token).send().await.unwrap();
            let remaining: u64 = r.headers()["ratelimit-remaining"].to_str().unwrap().parse().unwrap();
            assert!(remaining <= 3);
            if r.status() == 429 {
                limited = Some(r);
                break;
            }
            assert_eq!(r.status(), 200);
        }
        let r = limited.expect("the fourth request in a minute is refused");
        assert_eq!(r.headers()["ratelimit-remaining"], "0");
        let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry));
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "rate_limited");
    }
);

both_modes!(the_contract_is_served_and_rendered, |app| {
    let client = reqwest::Client::new();
    let r = client.get(format!("{}/api/v1/openapi.json", app.base_url())).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    let doc: serde_json::Value = r.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in ["/api/v1/events", "/api/v1/agent/enroll", "/api/v1/clinics/{clinic}/visits"] {
        assert!(doc["paths"][path].is_object(), "{path}");
    }
    let r = client
        .get(format!("{}/api/v1/openapi.json", app.base_url()))
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);

    let mut b = app.browser();
    let page = b.get("/developers/api?lang=en").await;
    assert_eq!(page.status, 200);
    let operations: usize = doc["paths"].as_object().unwrap().values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(page.body.matches("data-testid=\"operation\"").count(), operations);
    assert!(page.body.contains("id=\"schema-VisitItem\""));
    assert!(!page.body.contains("<script"), "rendered on the server, nothing to load");
});

// Cases schemathesis found (scripts/api-contract), kept so they cannot come back.
both_modes!(contract_findings_stay_fixed, |app| {
    let client = reqwest::Client::new();
    // An undeclared method on a served path is 405 with Allow (was 404).
    let r = client.request(reqwest::Method::TRACE, format!("{}/api/v1/clinics", app.base_url())).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");
    let r = client.delete(format!("{}/signin", app.base_url())).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.headers()["allow"].to_str().unwrap()), (405, "GET, POST"));
    assert_eq!(client.get(format!("{}/api/v1/nothing", app.base_url())).send().await.unwrap().status(), 404);

    // An audit filter that is not one is refused, not ignored (`result=x` listed everything).
    let (mut owner, _) = app.signed_in(Role::Owner).await;
    let token = token_with(&mut owner, &["audit:read"]).await;
    let r = client.get(format!("{}/api/v1/audit?result=x", app.base_url())).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["field"], "result");
    let r = client.get(format!("{}/api/v1/audit?result=", app.base_url())).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200, "empty is no filter, as the viewer's form sends it");
});

both_modes!(closed_billing_months_and_the_fleet_are_read_with_their_scopes, |app| {
    webhook_outbox(app, &[onshi_domain::WebhookEvent::BillingMonthClosed]).await;
    let events = vec![
        valid_visit(app, "00000001", datetime!(2025-03-03 09:10 +09:00), true),
        valid_visit(app, "00000002", datetime!(2025-03-05 10:00 +09:00), false),
        app.factory(0, 3).heartbeat(time::OffsetDateTime::now_utc()),
    ];
    assert_eq!(app.post_events(0, &events).await.status(), 202);
    eventually(WAIT, "applied", || async { app.store().raw_event_count().await.unwrap() >= 2 }).await;
    eventually(WAIT, "heartbeat written", || async {
        app.store().devices().await.unwrap().iter().any(|d| d.last_seen_at.is_some())
    })
    .await;
    let clinic = app.clinics[0].clinic.id;
    let (mut owner, _) = app.signed_in(Role::Owner).await;
    let token = token_with(&mut owner, &["billing:read", "fleet:read"]).await;
    let client = reqwest::Client::new();
    let get = |path: String| client.get(format!("{}{path}", app.base_url())).bearer_auth(&token).send();

    // An open month is not served; once closed it is, as closed.
    let path = format!("/api/v1/clinics/{clinic}/billing/2025-03");
    assert_eq!(get(path.clone()).await.unwrap().status(), 404);
    assert_eq!(owner.post(&format!("/billing/{clinic}/2025-03/close"), &[("confirm", "yes")]).await.status, 303);
    assert_eq!(webhook_events(app).await, ["billing.month_closed"], "announced with the close");
    let r = get(path.clone()).await.unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["month"], "2025-03");
    assert!(body["closed_by"].as_str().unwrap().starts_with("usr_"));
    let lines = body["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 2);
    assert!(lines.iter().all(|l| l["reason"].as_str().is_some_and(|r| !r.is_empty())));
    assert_eq!(lines[0]["date"], "2025-03-03");
    assert_eq!(get(format!("/api/v1/clinics/{clinic}/billing/2025-13")).await.unwrap().status(), 404);

    // The fleet: the agent that reported is online.
    let r = get("/api/v1/fleet".to_owned()).await.unwrap();
    assert_eq!(r.status(), 200);
    let fleet: serde_json::Value = r.json().await.unwrap();
    let agents = fleet["agents"].as_array().unwrap();
    let online: Vec<_> = agents.iter().filter(|a| a["clinic_id"] == clinic.to_string()).collect();
    assert_eq!(online.len(), 1);
    assert_eq!(online[0]["state"], "online");
    assert!(agents.iter().all(|a| a["device_id"].as_str().unwrap().starts_with("dev_")));
});

both_modes!(an_enrollment_retried_with_its_idempotency_key_gets_the_same_answer, |app| {
    let code = app.store().create_enrollment_code(&app.clinics[1].clinic, time::Duration::hours(1)).await.unwrap();
    let client = reqwest::Client::new();
    let url = format!("{}/api/v1/agent/enroll", app.base_url());
    let body = serde_json::json!({ "code": code, "name": "受付PC" });
    let post = |key: &str, body: &serde_json::Value| client.post(&url).header("Idempotency-Key", key).json(body).send();
    let first = post("4f2b8c1e-enroll", &body).await.unwrap();
    assert_eq!(first.status(), 201);
    let first: serde_json::Value = first.json().await.unwrap();
    // The answer was lost on the way: the same key and body get it again, not "code already used".
    let again = post("4f2b8c1e-enroll", &body).await.unwrap();
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<serde_json::Value>().await.unwrap(), first);
    // The same key for another request is refused; no key, and the used code is refused.
    let other = serde_json::json!({ "code": code, "name": "別のPC" });
    let r = post("4f2b8c1e-enroll", &other).await.unwrap();
    assert_eq!(r.status(), 422);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["error"]["code"], "idempotency_key_reused");
    let r = client.post(&url).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = post("bad key with spaces", &body).await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["error"]["field"], "Idempotency-Key");
    // One device, whatever the retries.
    let devices = app.store().devices().await.unwrap();
    assert_eq!(devices.iter().filter(|d| d.clinic == app.clinics[1].clinic.id && d.name == "受付PC").count(), 1);
});
