//! Pages and health endpoints.

use serde_json::Value;

use crate::both_modes;
use crate::helpers::*;

both_modes!(health_and_readiness_answer, |app| {
    let health = app.client.get(format!("{}/healthz", app.base_url())).send().await.unwrap();
    assert_eq!(health.status(), 200);
    // Ready once every dependency answers and the in-process consumer is attached (a moment after start).
    eventually(WAIT, "ready", || async {
        app.client.get(format!("{}/readyz", app.base_url())).send().await.unwrap().status() == 200
    })
    .await;
    let ready = app.client.get(format!("{}/readyz", app.base_url())).send().await.unwrap();
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["checks"]["consumer"], true);
    assert_eq!(body["checks"]["database"], true);
    let expected_queue = if app.mode == Mode::Full { "rabbitmq" } else { "embedded" };
    assert_eq!(body["adapters"]["queue"], expected_queue);
});

both_modes!(the_visits_page_lists_each_clinics_receptions_of_today, |app| {
    let events = app.receptions(1, 12, 20);
    assert_eq!(app.post_events(1, &events).await.status(), 202);
    eventually(WAIT, "applied", || async { app.store().raw_event_count().await.unwrap() == 12 }).await;

    let today = onshi_domain::jst::date_of(time::OffsetDateTime::now_utc());
    let todays = app.store().visits_on(&app.clinics[1].clinic, today).await.unwrap();
    let (mut browser, _) = app.signed_in(onshi_domain::Role::Manager).await;
    let response = browser.get("/").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.headers["x-content-type-options"], "nosniff");
    assert_eq!(response.headers["cache-control"], "no-store");
    assert!(response.headers["strict-transport-security"].to_str().unwrap().contains("max-age=31536000"));
    assert!(response.headers["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
    let html = response.body;
    assert!(html.contains("受付ログ"));
    for c in &app.clinics {
        assert!(html.contains(&c.clinic.name), "{} missing", c.clinic.name);
    }
    // Panels are in 医療機関コード order, which is the seed order: [0, 0 visits], [1, n], [2, 0].
    let counts: Vec<usize> = html
        .split("data-testid=\"today-visits\">")
        .skip(1)
        .map(|s| s.split('<').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(counts, vec![0, todays.len(), 0]);
    // The clinic's day lists its receptions in order of arrival and shows that time (JST), so the times
    // read in order (they once showed each visit's last check in first-check order).
    let day = browser.get(&format!("/clinics/{}/receptions?date={today}", app.clinics[1].clinic.id)).await.body;
    let times: Vec<&str> = day.split("<td class=\"when\">").skip(1).map(|s| &s[..5]).collect();
    assert_eq!(times.len(), todays.len());
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    let first = todays[0].first_at.to_offset(onshi_domain::jst::JST);
    assert_eq!(times[0], format!("{:02}:{:02}", first.hour(), first.minute()));
    // No patient pseudonym reaches the page.
    for event in &events {
        if let onshi_domain::EventPayload::Qualification(q) = &event.payload
            && let Some(p) = &q.patient
        {
            assert!(!html.contains(p.as_str()));
        }
    }
});

both_modes!(clinic_staff_see_only_their_clinics, |app| {
    let own = app.clinics[1].clinic.id;
    let user = app.user_in(app.tenant, onshi_domain::Role::ClinicStaff, &[own]).await;
    let mut browser = app.browser();
    browser.sign_in(&user).await;
    let html = browser.get("/").await.body;
    assert!(html.contains(&app.clinics[1].clinic.name));
    assert!(!html.contains(&app.clinics[0].clinic.name) && !html.contains(&app.clinics[2].clinic.name));
    assert_eq!(browser.get(&format!("/clinics/{own}/receptions")).await.status, 200);
    let other = app.clinics[0].clinic.id;
    assert_eq!(browser.get(&format!("/clinics/{other}/receptions")).await.status, 404);
    // Management pages are not for clinic staff.
    assert_eq!(browser.get("/staff").await.status, 403);
});

both_modes!(browsers_get_error_pages_in_their_language_and_api_clients_get_json, |app| {
    let (mut browser, _) = app.signed_in(onshi_domain::Role::Manager).await;
    // No route at all, an id that is nobody's, and a path served only under POST (405 with `Allow`, as a
    // page in the browser's language).
    for (path, status) in [("/no-such-page", 404), ("/dashboard/clinics/cln_nothing", 404), ("/signout", 405)] {
        let page = browser.get(path).await;
        assert_eq!(page.status, status, "{path}");
        assert!(page.headers["content-type"].to_str().unwrap().starts_with("text/html"), "{path}");
        assert!(page.body.contains("<h1"), "{path}: {}", page.body);
    }
    assert!(browser.get("/no-such-page").await.body.contains("ページが見つかりません"));
    assert!(browser.get("/no-such-page?lang=en").await.body.contains("Page not found"));
    // The API keeps its machine-readable body, for unknown paths too.
    let api = app.client.get(format!("{}/api/v1/no-such-thing", app.base_url())).send().await.unwrap();
    assert_eq!(api.status(), 404);
    let body: Value = api.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
});
