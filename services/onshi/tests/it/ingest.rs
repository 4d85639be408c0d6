//! The ingest path: POST /api/v1/events → queue → worker → raw events and visits.

use onshi_domain::Role;
use serde_json::Value;

use crate::both_modes;
use crate::helpers::*;

both_modes!(a_batch_goes_in_and_visits_come_out, |app| {
    let events = app.receptions(0, 25, 1);
    let response = app.post_events(0, &events).await;
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["accepted"], 25);
    assert_eq!(body["duplicates"], 0);

    let expected = reception_count(&events);
    eventually(WAIT, "all events applied", || async { app.store().raw_event_count().await.unwrap() == 25 }).await;
    eventually(WAIT, "every reception folded into a visit", || async {
        app.store().confirmation_count().await.unwrap() == expected
    })
    .await;
    let visits = app.store().recent_visits(&app.clinics[0].clinic, 100).await.unwrap();
    assert!(!visits.is_empty());
    assert!(visits.iter().all(|v| v.clinic == app.clinics[0].clinic.id));
    // Other clinics of the tenant received nothing.
    assert!(app.store().recent_visits(&app.clinics[1].clinic, 10).await.unwrap().is_empty());
});

both_modes!(the_same_batch_posted_twice_yields_no_duplicates, |app| {
    let events = app.receptions(1, 30, 2);
    assert_eq!(app.post_events(1, &events).await.status(), 202);
    eventually(WAIT, "first delivery applied", || async { app.store().raw_event_count().await.unwrap() == 30 }).await;
    let visits_before = app.store().visit_count().await.unwrap();

    // The agent did not see the first 202 and sends everything again, plus one new event.
    let mut again = events.clone();
    let extra = app.receptions(1, 1, 99);
    again.extend(extra.clone());
    let response = app.post_events(1, &again).await;
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["duplicates"], 30);

    eventually(WAIT, "the new event applied", || async { app.store().raw_event_count().await.unwrap() == 31 }).await;
    let expected = reception_count(&events) + reception_count(&extra);
    assert_eq!(app.store().confirmation_count().await.unwrap(), expected);
    assert!(app.store().visit_count().await.unwrap() <= visits_before + 1);
});

both_modes!(a_second_agent_of_the_same_clinic_adds_nothing_already_stored, |app| {
    // A re-installed agent on the same terminal re-reads every file still in the folders: same results,
    // same event ids, another device.
    let events = app.receptions(1, 30, 5);
    assert_eq!(app.post_events(1, &events).await.status(), 202);
    eventually(WAIT, "first device's events applied", || async { app.store().raw_event_count().await.unwrap() == 30 })
        .await;
    let store = app.adapters().store.tenant(onshi_store::TenantScope::operator(app.tenant));
    let clinic = store.clinic_scope(app.clinics[1].clinic.id, &onshi_domain::ClinicAccess::All).await.unwrap().unwrap();
    let second = store.create_device(&clinic, "再インストール").await.unwrap();
    let token = app.running().device_keys.mint(app.tenant, clinic.id, second.id).unwrap();
    let send = |events: &[onshi_domain::AgentEvent]| {
        app.client
            .post(format!("{}/api/v1/events", app.base_url()))
            .bearer_auth(&token)
            .json(&onshi_domain::EventBatch { events: events.to_vec() })
            .send()
    };
    let response = send(&events).await.unwrap();
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["duplicates"], 30, "recognised as resends: {body}");

    // Both devices sending the same new results at once, each with one result of its own: once both
    // batches are applied (both of their own results are there), the shared ones are stored once.
    let fresh = app.receptions(1, 10, 6);
    let (own_a, own_b) = (app.receptions(1, 1, 7), app.receptions(1, 1, 8));
    let batch_a: Vec<_> = fresh.iter().chain(&own_a).cloned().collect();
    let batch_b: Vec<_> = fresh.iter().chain(&own_b).cloned().collect();
    let (a, b) = tokio::join!(app.post_events(1, &batch_a), send(&batch_b));
    assert_eq!((a.status().as_u16(), b.unwrap().status().as_u16()), (202, 202));
    eventually(WAIT, "both batches applied", || async { app.store().raw_event_count().await.unwrap() >= 42 }).await;
    assert_eq!(app.store().raw_event_count().await.unwrap(), 42);
    let expected = [&events, &fresh, &own_a, &own_b].iter().map(|e| reception_count(e)).sum::<u64>();
    assert_eq!(app.store().confirmation_count().await.unwrap(), expected);
});

both_modes!(concurrent_resends_of_one_batch_take_effect_once, |app| {
    let events = app.receptions(0, 20, 3);
    let sends = (0..8).map(|_| app.post_events(0, &events));
    for response in futures_util::future::join_all(sends).await {
        assert_eq!(response.status(), 202);
    }
    let expected = reception_count(&events);
    eventually(WAIT, "events applied", || async { app.store().raw_event_count().await.unwrap() == 20 }).await;
    // Let every redundant message settle: the queue drains completely.
    eventually(WAIT, "queue drained", || async {
        use onshi_queue::MessageQueue;
        app.adapters().queue.depth().await.unwrap() == 0
    })
    .await;
    assert_eq!(app.store().raw_event_count().await.unwrap(), 20);
    assert_eq!(app.store().confirmation_count().await.unwrap(), expected);
});

both_modes!(a_bad_batch_is_refused_whole_and_names_the_field, |app| {
    // Malformed JSON value: 400 naming the path.
    let mut events = app.receptions(0, 3, 4);
    let mut json = serde_json::to_value(onshi_domain::EventBatch { events: events.clone() }).unwrap();
    json["events"][2]["payload"]["qualification"]["method"] = Value::from("fax");
    let response = app.post_raw(0, json.to_string()).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_batch");
    assert_eq!(body["error"]["field"], "events[2].payload.qualification.method");

    // Well-formed but another clinic's event: 422, and the two good events are not stored either.
    let foreign = app.receptions(2, 1, 5);
    events.extend(foreign);
    let response = app.post_events(0, &events).await;
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["field"], "events[3].payload.qualification.institution_code");

    // Not JSON at all.
    let response = app.post_raw(0, "{\"events\": [".to_owned()).await;
    assert_eq!(response.status(), 400);

    // A marker batch proves the pipeline ran; only the marker is stored.
    let marker = app.receptions(0, 1, 6);
    assert_eq!(app.post_events(0, &marker).await.status(), 202);
    eventually(WAIT, "marker applied", || async { app.store().raw_event_count().await.unwrap() >= 1 }).await;
    assert_eq!(app.store().raw_event_count().await.unwrap(), 1);
});

both_modes!(an_event_id_reused_with_other_content_is_a_conflict, |app| {
    let events = app.receptions(0, 2, 7);
    assert_eq!(app.post_events(0, &events).await.status(), 202);
    eventually(WAIT, "applied", || async { app.store().raw_event_count().await.unwrap() == 2 }).await;
    let mut altered = events.clone();
    altered[1].occurred_at -= time::Duration::hours(1);
    let response = app.post_events(0, &altered).await;
    assert_eq!(response.status(), 409);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "event_id_conflict");
    assert_eq!(body["error"]["field"], "events[1].id");
});

both_modes!(ingest_requires_a_valid_token_of_an_active_device, |app| {
    let events = serde_json::to_string(&onshi_domain::EventBatch { events: app.receptions(0, 1, 8) }).unwrap();
    let url = format!("{}/api/v1/events", app.base_url());
    let send = |token: Option<String>| {
        let mut request = app.client.post(&url).header("Content-Type", "application/json").body(events.clone());
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        request.send()
    };
    assert_eq!(send(None).await.unwrap().status(), 401);
    assert_eq!(send(Some("not-a-jwt".into())).await.unwrap().status(), 401);

    // Signed with another key.
    let other = onshi_api::DeviceKeys::new(b"another-secret-another-secret-another", "onshi", "onshi-ingest", 900);
    let c = &app.clinics[0];
    assert_eq!(send(Some(other.mint(app.tenant, c.clinic.id, c.device).unwrap())).await.unwrap().status(), 401);

    // Right key, wrong audience.
    let secret = secrecy::ExposeSecret::expose_secret(app.config.jwt_secret.as_ref().unwrap()).to_owned();
    let wrong_aud = onshi_api::DeviceKeys::new(secret.as_bytes(), "onshi", "someone-else", 900);
    assert_eq!(send(Some(wrong_aud.mint(app.tenant, c.clinic.id, c.device).unwrap())).await.unwrap().status(), 401);

    // A device claiming another clinic of the same tenant.
    let keys = &app.running().device_keys;
    let mixed = keys.mint(app.tenant, app.clinics[1].clinic.id, c.device).unwrap();
    assert_eq!(send(Some(mixed)).await.unwrap().status(), 401);

    // Valid, then revoked.
    let token = app.token(0);
    assert_eq!(send(Some(token.clone())).await.unwrap().status(), 202);
    app.revoke_device(c.device).await;
    // Every API process forgets the device when the revocation is announced on the cache's channel:
    // refused within a second (in practice within milliseconds), though it was authenticated just now.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    let mut response = send(Some(token.clone())).await.unwrap();
    while response.status() != 401 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        response = send(Some(token.clone())).await.unwrap();
    }
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
});

both_modes!(
    a_device_that_floods_the_endpoint_is_throttled,
    |config| {
        config.ingest_batches_per_device_per_sec = 3;
    },
    |app| {
        let mut statuses = Vec::new();
        for i in 0..10 {
            statuses.push(app.post_events(0, &app.receptions(0, 1, 100 + i)).await.status().as_u16());
        }
        assert!(statuses.contains(&429), "{statuses:?}");
        assert!(statuses.iter().filter(|s| **s == 202).count() >= 3, "{statuses:?}");
        // Another device is not affected by the first one's budget.
        assert_eq!(app.post_events(1, &app.receptions(1, 1, 200)).await.status(), 202);

        // Heartbeats are counted in the round trip that records them, and count the same.
        let mut factory = app.factory(2, 7);
        let mut statuses = Vec::new();
        for _ in 0..10 {
            let beat = factory.heartbeat(time::OffsetDateTime::now_utc());
            statuses.push(app.post_events(2, &[beat]).await.status().as_u16());
        }
        assert!(statuses.contains(&429), "{statuses:?}");
        assert!(statuses.iter().filter(|s| **s == 202).count() >= 3, "{statuses:?}");

        // Refused batches count too: an agent that keeps sending bad ones meets the limiter.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let mut statuses = Vec::new();
        for _ in 0..10 {
            statuses.push(app.post_raw(1, "{\"events\": 1}".to_owned()).await.status().as_u16());
        }
        assert!(statuses.contains(&400) && statuses.contains(&429), "{statuses:?}");
    }
);

both_modes!(
    an_oversized_body_is_refused,
    |config| {
        config.max_body_bytes = 4096;
    },
    |app| {
        let events = app.receptions(0, 40, 9);
        let response = app.post_events(0, &events).await;
        assert_eq!(response.status(), 413);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "payload_too_large");
    }
);

both_modes!(bulk_checks_are_stored_but_make_no_visit_and_heartbeats_update_the_device, |app| {
    let mut f = app.factory(0, 10);
    let now = time::OffsetDateTime::now_utc();
    let events = vec![f.bulk_check(now), f.bulk_check(now), f.heartbeat(now)];
    assert_eq!(app.post_events(0, &events).await.status(), 202);
    eventually(WAIT, "applied", || async { app.store().raw_event_count().await.unwrap() == 2 }).await;
    eventually(WAIT, "heartbeat applied", || async {
        app.store().device(app.clinics[0].device).await.unwrap().unwrap().last_heartbeat.is_some()
    })
    .await;
    assert_eq!(app.store().visit_count().await.unwrap(), 0);
    let device = app.store().device(app.clinics[0].device).await.unwrap().unwrap();
    assert!(device.last_seen_at.is_some());
    assert!(device.agent_version.as_deref().unwrap().starts_with("sim-"));
    assert_eq!(device.health(time::OffsetDateTime::now_utc()), onshi_domain::DeviceHealth::Online);
});

both_modes!(the_device_token_negative_suite_is_all_401, |app| {
    use base64::Engine;
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    let b64 = |v: &serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let events = serde_json::to_string(&onshi_domain::EventBatch { events: app.receptions(0, 1, 9) }).unwrap();
    let url = format!("{}/api/v1/events", app.base_url());
    let status = |token: String| {
        let request = app.client.post(&url).header("Content-Type", "application/json").body(events.clone());
        async move { request.bearer_auth(token).send().await.unwrap().status().as_u16() }
    };
    let secret = secrecy::ExposeSecret::expose_secret(app.config.jwt_secret.as_ref().unwrap()).to_owned();
    let key = EncodingKey::from_secret(secret.as_bytes());
    let c = &app.clinics[0];
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = |patch: &dyn Fn(&mut serde_json::Value)| {
        let mut v = serde_json::json!({
            "iss": "onshi", "aud": "onshi-ingest", "sub": c.device.to_string(), "tnt": app.tenant.to_string(),
            "cln": c.clinic.id.to_string(), "typ": "device", "iat": now, "exp": now + 300,
        });
        patch(&mut v);
        v
    };
    let sign = |v: serde_json::Value| encode(&Header::new(Algorithm::HS256), &v, &key).unwrap();

    // The control: a hand-made token with the right claims is accepted.
    assert_eq!(status(sign(claims(&|_| {}))).await, 202);
    let cases: Vec<(&str, String)> = vec![
        ("alg none", format!("{}.{}.", b64(&serde_json::json!({"alg": "none", "typ": "JWT"})), b64(&claims(&|_| {})))),
        ("expired beyond leeway", sign(claims(&|v| v["exp"] = (now - 120).into()))),
        (
            "no exp",
            sign(claims(&|v| {
                v.as_object_mut().unwrap().remove("exp");
            })),
        ),
        (
            "no aud",
            sign(claims(&|v| {
                v.as_object_mut().unwrap().remove("aud");
            })),
        ),
        ("wrong aud", sign(claims(&|v| v["aud"] = "onshi-pages".into()))),
        (
            "no iss",
            sign(claims(&|v| {
                v.as_object_mut().unwrap().remove("iss");
            })),
        ),
        ("wrong iss", sign(claims(&|v| v["iss"] = "someone".into()))),
        ("future nbf", sign(claims(&|v| v["nbf"] = (now + 600).into()))),
        ("not a device token", sign(claims(&|v| v["typ"] = "refresh".into()))),
        ("another tenant's claim", sign(claims(&|v| v["tnt"] = onshi_domain::TenantId::new().to_string().into()))),
        ("HS512 with the same key", encode(&Header::new(Algorithm::HS512), &claims(&|_| {}), &key).unwrap()),
        ("tampered payload", {
            let good = sign(claims(&|_| {}));
            let parts: Vec<&str> = good.split('.').collect();
            let forged = b64(&claims(&|v| v["cln"] = app.clinics[1].clinic.id.to_string().into()));
            format!("{}.{}.{}", parts[0], forged, parts[2])
        }),
    ];
    for (name, token) in cases {
        assert_eq!(status(token).await, 401, "{name}");
    }
});

both_modes!(a_code_registered_by_two_groups_is_confirmed_only_by_a_result_file, |app| {
    // Group B registers group A's clinic code: allowed, and nobody is told about the other group.
    let tenant_b = app.adapters().store.system().create_tenant("別法人 B").await.unwrap();
    let owner_b = app.user_in(tenant_b, Role::Owner, &[]).await;
    let mut b = app.browser();
    b.sign_in(&owner_b).await;
    let a_clinic = &app.clinics[0].clinic;
    let r = b.post("/clinics", &[("code", a_clinic.code.as_str()), ("name", "Bの新クリニック")]).await;
    assert!(r.status == 303 || r.status == 200, "{}: {}", r.status, r.body);
    let store_b = app.adapters().store.tenant(onshi_store::TenantScope::operator(tenant_b));
    let b_clinic = store_b.clinics().await.unwrap().pop().unwrap();
    assert_eq!(b_clinic.code, a_clinic.code);
    assert!(!b_clinic.code_confirmed);
    let page = b.get(&format!("/clinics/{}", b_clinic.id)).await;
    assert!(page.body.contains("data-testid=\"code-unconfirmed\""), "B sees its code unconfirmed");
    assert!(!page.body.contains(&a_clinic.name) && !page.body.contains(&app.tenant.to_string()));
    // Operators see the double registration as a count.
    assert_eq!(app.adapters().store.shared_clinic_codes().await.unwrap(), 1);

    // A's agent delivers a result file carrying the code: A's clinic is confirmed, B's is not.
    let events = app.receptions(0, 3, 41);
    assert_eq!(app.post_events(0, &events).await.status(), 202);
    eventually(WAIT, "applied", || async { app.store().raw_event_count().await.unwrap() == 3 }).await;
    let a_store = app.store();
    let confirmed = a_store.clinics().await.unwrap().into_iter().find(|c| c.id == a_clinic.id).unwrap();
    assert!(confirmed.code_confirmed);
    assert!(!store_b.clinics().await.unwrap().pop().unwrap().code_confirmed);
    let (mut a, _) = app.signed_in(Role::Owner).await;
    let page = a.get(&format!("/clinics/{}", a_clinic.id)).await;
    assert!(!page.body.contains("code-unconfirmed"));
});

both_modes!(a_patient_counts_once_a_month_and_turns_myna_when_next_seen_with_the_card, |app| {
    // Each reception is its own request, as agents send them: every one a group of its own, so the
    // month's counts are carried from group to group through the stored patient-months.
    let at = |day: u8, hour: u8| {
        time::PrimitiveDateTime::new(
            time::Date::from_calendar_date(2026, time::Month::October, day).unwrap(),
            time::Time::from_hms(hour, 0, 0).unwrap(),
        )
        .assume_offset(time::macros::offset!(+9))
    };
    let sent = [("P1", at(5, 9), false), ("P2", at(5, 10), true), ("P1", at(20, 9), true), ("P3", at(20, 10), false)];
    let mut before_last = time::OffsetDateTime::now_utc();
    for (n, (patient, at, myna)) in sent.into_iter().enumerate() {
        before_last = time::OffsetDateTime::now_utc();
        assert_eq!(app.post_events(0, &[valid_visit(app, patient, at, myna)]).await.status(), 202);
        eventually(WAIT, "applied", || async { app.store().raw_event_count().await.unwrap() == n as u64 + 1 }).await;
    }
    let october = onshi_domain::YearMonth::parse("2026-10").unwrap();
    let sorted = |mut usage: Vec<onshi_store::MonthlyUsage>| {
        usage.sort_by_key(|u| u.clinic);
        usage
    };
    let usage = sorted(app.store().monthly_usage(october).await.unwrap());
    let clinic = usage.iter().find(|u| u.clinic == app.clinics[0].clinic.id).unwrap();
    // P1 once (first with a 資格確認書, then with マイナ保険証: counted as a マイナ保険証 patient), P2, P3.
    assert_eq!((clinic.patients, clinic.myna_patients), (3, 2), "{usage:?}");
    app.store().rebuild_rollups().await.unwrap();
    assert_eq!(sorted(app.store().monthly_usage(october).await.unwrap()), usage, "the rollup matches a rebuild");
    // The agent was heard from (receptions only, no heartbeat), and the clinic's code is confirmed.
    let device = app.store().device(app.clinics[0].device).await.unwrap().unwrap();
    assert!(device.last_seen_at.is_some_and(|seen| seen >= before_last), "moved on with each request: {device:?}");
    assert!(device.last_heartbeat.is_none());
    let clinics = app.store().clinics().await.unwrap();
    assert!(clinics.iter().find(|c| c.id == app.clinics[0].clinic.id).unwrap().code_confirmed);
});
