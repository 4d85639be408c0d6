//! Tenancy, signup, sign-in with two factors, roles, sessions, CSRF, throttling, API tokens and the
//! audit log, driven through the pages like a browser would.

use onshi_api::{Access, ROUTES};
use onshi_domain::{AuditAction, Permission, Role};

use crate::both_modes;
use crate::helpers::*;
use crate::mailbox::{link_path, sink};

fn with_smtp(config: &mut onshi_config::Config) {
    crate::mailbox::route_mail_here(config);
}

/// A concrete path for a route pattern, with every `{param}` replaced by `id`.
fn fill(path: &str, id: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').unwrap() + start;
        out.push_str(id);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

both_modes!(a_group_signs_up_verifies_enrols_two_factor_and_onboards, |config| { with_smtp(config) }, |app| {
    let mut b = app.browser();
    let email = format!("owner-{}@example.jp", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let password = "Sakura-Clinic-Group-2026!";
    assert_eq!(b.get("/signup").await.status, 200);
    let r = b
        .post(
            "/signup",
            &[
                ("group", "医療法人 テスト会"),
                ("name", "山田 花子"),
                ("email", &email),
                ("password", "short"),
                ("password2", "short"),
            ],
        )
        .await;
    assert_eq!(r.status, 422, "a weak password is refused with the form again");
    assert!(r.body.contains("10文字以上"));
    let r = b
        .post(
            "/signup",
            &[
                ("group", "医療法人 テスト会"),
                ("name", "山田 花子"),
                ("email", &email),
                ("password", password),
                ("password2", password),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    // Not verified yet: the address is not claimed, so the password alone signs in to nothing (the same
    // answer as any unknown address).
    let r = b.post("/signin", &[("email", &email), ("password", password)]).await;
    assert_eq!(r.status, 422);
    assert!(!b.cookies.contains_key("__Host-onshi_session"));

    let mail = sink().wait_for(&email, "/verify-email/").await;
    let verify = link_path(&mail, "/verify-email/");
    assert_eq!(b.get(&verify).await.status, 200, "opening the link only shows a button");
    let r = b.post(&verify, &[]).await;
    assert_eq!((r.status, r.location()), (303, "/signin?done=verified"));
    assert_eq!(b.post(&verify, &[]).await.status, 404, "a link works once");

    // Password, then forced TOTP enrolment: nothing else is reachable in between.
    let r = b.post("/signin", &[("email", &email), ("password", password)]).await;
    assert_eq!((r.status, r.location()), (303, "/account/totp/setup"));
    for path in ["/", "/onboarding", "/staff", "/audit", "/account"] {
        let r = b.get(path).await;
        assert_eq!((r.status, r.location()), (303, "/account/totp/setup"), "{path} before the second factor");
    }
    let setup = b.get("/account/totp/setup").await;
    let qr = extract(&setup.body, "data-testid=\"totp-qr\"", "</figure>").unwrap();
    assert!(qr.contains("<svg") && qr.contains("<path"), "a QR code drawn on the page: {qr}");
    let secret = extract(&setup.body, "data-testid=\"totp-secret\">", "<").unwrap();
    let secret = onshi_identity::TotpSecret::from_base32(&secret).unwrap();
    let r = b.post("/account/totp/setup", &[("code", "000000")]).await;
    assert_eq!(r.status, 422);
    let now = time::OffsetDateTime::now_utc().unix_timestamp() as u64;
    let r = b.post("/account/totp/setup", &[("code", &secret.code_at(now).unwrap())]).await;
    // The recovery codes come with the authenticator, shown once, then the owner's 利用率 page.
    assert_eq!(r.status, 200, "{}", r.body);
    let codes = extract(&r.body, "data-testid=\"recovery-codes\">", "</ol>").unwrap();
    assert_eq!(codes.matches("<li>").count(), 10, "{codes}");
    assert!(r.body.contains("href=\"/dashboard\""), "continue to the owner's 利用率 page");
    assert_eq!(b.get("/dashboard").await.status, 200, "signed in with both factors");

    // Onboarding: a bad 医療機関コード is refused with the reason, a good one becomes a clinic.
    let r = b.get("/onboarding").await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("data-testid=\"step-clinics\""));
    let r = b.post("/clinics", &[("code", "9912345678"), ("name", "テスト医院"), ("start", "")]).await;
    assert_eq!(r.status, 422);
    let r = b.post("/clinics", &[("code", "1311234560"), ("name", "テスト内科"), ("start", "2027-04-01")]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let clinic_path = r.location().to_owned();
    let page = b.get(&clinic_path).await;
    assert_eq!(page.status, 200);
    for due in ["2027-01-01", "2027-02-01", "2027-03-01", "2027-03-25"] {
        assert!(page.body.contains(due), "deadline {due} on the clinic page");
    }
    let r = b.post(&format!("{clinic_path}/enrollment-codes"), &[]).await;
    assert_eq!(r.status, 200);
    let code = extract(&r.body, "data-testid=\"enrollment-code\">", "<").unwrap();
    assert_eq!(code.len(), 14, "a readable one-time code: {code}");
    assert!(!b.get(&clinic_path).await.body.contains(&code), "the code is shown once");

    // Staff invitation by e-mail, accepted with a password; the new user then needs their own TOTP.
    let staff_email = format!("staff-{}@example.jp", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let clinic_id = clinic_path.trim_start_matches("/clinics/");
    let r = b
        .post(
            "/staff/invite",
            &[("name", "受付 太郎"), ("email", &staff_email), ("role", "clinic_staff"), ("clinic", clinic_id)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mail = sink().wait_for(&staff_email, "/invite/").await;
    let invite = link_path(&mail, "/invite/");
    let mut staff = app.browser();
    assert_eq!(staff.get(&invite).await.status, 200);
    let r = staff.post(&invite, &[("password", "Uketsuke-Desk-0001"), ("password2", "Uketsuke-Desk-0001")]).await;
    assert_eq!((r.status, r.location()), (303, "/signin?done=invite"));
    let r = staff.post("/signin", &[("email", &staff_email), ("password", "Uketsuke-Desk-0001")]).await;
    assert_eq!((r.status, r.location()), (303, "/account/totp/setup"));

    // English on request, remembered in a cookie.
    let r = b.get("/onboarding?lang=en").await;
    assert!(r.body.contains("Onboarding checklist"));
    assert!(b.get("/onboarding").await.body.contains("Onboarding checklist"));
});

both_modes!(two_factor_cannot_be_skipped_on_any_path, |config| { with_smtp(config) }, |app| {
    let user = app.user(Role::Owner).await;
    let mut b = app.browser();
    let r = b.post("/signin", &[("email", &user.email), ("password", &user.password)]).await;
    assert_eq!((r.status, r.location()), (303, "/signin/totp"));
    for route in ROUTES.iter().filter(|r| matches!(r.access, Access::Session | Access::Perm(_))) {
        let path = fill(route.path, &onshi_domain::ClinicId::new().to_string());
        let r = if route.method == "get" { b.get(&path).await } else { b.post(&path, &[]).await };
        assert_eq!(
            (r.status, r.location()),
            (303, "/signin/totp"),
            "{} {} with the password only",
            route.method,
            route.path
        );
    }
    // A wrong or replayed code does not complete the sign-in.
    assert_eq!(b.post("/signin/totp", &[("code", "123456")]).await.status, 422);

    // Password reset proves the mailbox, not the second factor: the code is still required, and the
    // reset ends at the sign-in page, never in a session.
    let mut r2 = app.browser();
    assert_eq!(r2.post("/password/forgot", &[("email", &user.email)]).await.status, 200);
    let mail = sink().wait_for(&user.email, "/password/reset/").await;
    let reset = link_path(&mail, "/password/reset/");
    let form = r2.get(&reset).await;
    assert!(form.body.contains("name=\"code\""), "the reset form asks for the second factor");
    let r = r2
        .post(&reset, &[("password", "A-New-Password-2026"), ("password2", "A-New-Password-2026"), ("code", "000000")])
        .await;
    assert_eq!(r.status, 422);
    // A form refused for its password does not use up a right code: the same code then works.
    let code = user.next_code();
    let r = r2.post(&reset, &[("password", "A-New-Password-2026"), ("password2", "mistyped"), ("code", &code)]).await;
    assert_eq!(r.status, 422);
    let r = r2
        .post(&reset, &[("password", "A-New-Password-2026"), ("password2", "A-New-Password-2026"), ("code", &code)])
        .await;
    assert_eq!((r.status, r.location()), (303, "/signin?done=reset"));
    assert!(!r2.cookies.contains_key("__Host-onshi_session"));
    // The old password no longer works; the new one leads to the TOTP step again.
    let mut r3 = app.browser();
    let r = r3.post("/signin", &[("email", &user.email), ("password", &user.password)]).await;
    assert_eq!(r.status, 422);
    let r = r3.post("/signin", &[("email", &user.email), ("password", "A-New-Password-2026")]).await;
    assert_eq!(r.location(), "/signin/totp");
    // API tokens cannot be used on pages, and pages' cookies do not work on the token API.
    let r = b.get("/api/v1/clinics").await;
    assert_eq!(r.status, 401);
});

both_modes!(every_form_needs_its_csrf_token_and_our_origin, |app| {
    let (mut b, _) = app.signed_in(Role::Owner).await;
    let posts: Vec<_> = ROUTES
        .iter()
        .filter(|r| r.method == "post" && !matches!(r.access, Access::Open | Access::Device | Access::Token(_)))
        .collect();
    assert!(posts.len() >= 20, "the sweep covers the forms: {}", posts.len());
    let token = b.csrf().await;
    for route in posts {
        let path = fill(route.path, &onshi_domain::ClinicId::new().to_string());
        let r = b.post_raw(&path, &[("email", "x@example.jp")], None).await;
        assert_eq!(r.status, 403, "POST {} without a CSRF token", route.path);
        let r = b.post_raw(&path, &[("csrf", "0".repeat(64).as_str())], None).await;
        assert_eq!(r.status, 403, "POST {} with a wrong CSRF token", route.path);
        let r = b.post_raw(&path, &[("csrf", token.as_str())], Some("https://evil.example")).await;
        assert_eq!(r.status, 403, "POST {} from another origin", route.path);
    }
    // The origin is compared with configuration, not with what the request says its host is (#15.4).
    let fields = [("csrf", token.as_str()), ("current", "wrong"), ("password", "x"), ("password2", "x")];
    for headers in [
        vec![("X-Forwarded-Host", "evil.example")],
        vec![("Host", "evil.example")],
        vec![("Forwarded", "host=evil.example;proto=http")],
    ] {
        let r = b.post_with_headers("/account/password", &fields, Some("http://evil.example"), &headers).await;
        assert_eq!(r.status, 403, "{headers:?}");
    }
    // Our configured origin gets past the check (to the form's own answer: the current password is wrong).
    let ours = onshi_config::origin_of(&app.config.public_url).unwrap();
    assert_eq!(b.post_with_headers("/account/password", &fields, Some(&ours), &[]).await.status, 422);
    // The session survived all that: the right token from our origin works.
    assert_eq!(b.get("/account").await.status, 200);
});

both_modes!(the_permission_matrix_holds_route_by_route, |app| {
    for role in Role::ALL {
        let clinics = if role == Role::ClinicStaff { vec![app.clinics[0].clinic.id] } else { vec![] };
        let user = app.user_in(app.tenant, role, &clinics).await;
        let mut b = app.browser();
        b.sign_in(&user).await;
        for route in ROUTES {
            let Access::Perm(permission) = route.access else { continue };
            // An id that exists nowhere: an allowed caller gets past the guard to "not found" (or a form
            // error), a denied one stops at 403.
            let path = fill(route.path, &onshi_domain::ClinicId::new().to_string());
            if route.path == "/feed" {
                // An event stream never ends: judge it by its status alone.
                let status = b.open_stream(&path).await.status().as_u16();
                assert_eq!(status == 403, !role.allows(permission), "{role:?} on the live feed: {status}");
                continue;
            }
            let r = if route.method == "get" { b.get(&path).await } else { b.post(&path, &[]).await };
            if role.allows(permission) {
                // The exact answer past the guard: an unknown id is 404, a page is 200, an empty form
                // is refused as a bad request. A 500 is never "allowed".
                let expected = if route.path.contains('{') {
                    404
                } else if route.method == "get" {
                    200
                } else {
                    400
                };
                assert_eq!(r.status, expected, "{role:?} may {} {}", route.method, route.path);
            } else {
                assert_eq!(r.status, 403, "{role:?} may not {} {}", route.method, route.path);
                assert!(!r.body.contains(&app.clinics[0].clinic.name));
            }
        }
    }
    // Denials are audited.
    let entries = app
        .store()
        .audit_entries(&onshi_store::AuditFilter {
            action_prefix: Some("access.denied".into()),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!entries.is_empty());
    // Only owners and auditors read the audit log; the auditor's home is the log.
    let (mut auditor, _) = app.signed_in(Role::Auditor).await;
    assert_eq!(auditor.get("/").await.location(), "/audit");
    assert!(Role::Auditor.allows(Permission::ViewAudit) && !Role::Auditor.allows(Permission::ViewReceptions));
});

both_modes!(another_tenants_ids_are_not_found_on_every_route, |app| {
    // Tenant B with a clinic, a device, a user and an API token.
    let system = app.adapters().store.system();
    let tenant_b = system.create_tenant("別法人 B").await.unwrap();
    let store_b = app.adapters().store.tenant(onshi_store::TenantScope::operator(tenant_b));
    let code = onshi_domain::MedicalInstitutionCode::parse("2711234562").unwrap();
    let clinic_b = store_b.create_clinic(&code, "B法人の秘密クリニック").await.unwrap();
    let device_b = store_b.create_device(&clinic_b, "B端末").await.unwrap();
    let user_b = app.user_in(tenant_b, Role::Manager, &[]).await;
    let token_b = store_b
        .create_api_token(
            user_b.id,
            "B token",
            &[onshi_domain::ApiScope::ClinicsRead],
            &"ab".repeat(32),
            None,
            &test_audit(AuditAction::ApiTokenCreate, "-"),
        )
        .await
        .unwrap();
    let audit = test_audit(AuditAction::WebhookCreate, "-");
    let hook_b = store_b
        .create_webhook_endpoint(
            "https://b.example.com/hook",
            "B",
            &[onshi_domain::WebhookEvent::DeviceOffline],
            &onshi_identity::webhook::new_secret(),
            user_b.id,
            &audit,
        )
        .await
        .unwrap();
    store_b.enqueue_webhook_test(hook_b, &audit).await.unwrap();
    let delivery_b = store_b.webhook_deliveries(1).await.unwrap()[0].id;
    let b_ids = [
        clinic_b.id.to_string(),
        device_b.id.to_string(),
        user_b.id.to_string(),
        token_b.to_string(),
        hook_b.to_string(),
        delivery_b.to_string(),
    ];

    let (mut a, _) = app.signed_in(Role::Owner).await;
    let mut checked = 0;
    for route in ROUTES.iter().filter(|r| r.path.contains('{') && matches!(r.access, Access::Perm(_) | Access::Session))
    {
        for id in &b_ids {
            let path = fill(route.path, id);
            let r = if route.method == "get" {
                a.get(&path).await
            } else {
                a.post(&path, &[("role", "billing"), ("start", "2027-01-01")]).await
            };
            assert!(matches!(r.status, 403 | 404), "{} {} with B's id {id}: {}", route.method, route.path, r.status);
            assert!(!r.body.contains("B法人") && !r.body.contains("B端末"), "{} leaks B's data", route.path);
            checked += 1;
        }
    }
    assert!(checked >= 40, "{checked} requests");
    // B's rows are untouched.
    assert_eq!(store_b.device(device_b.id).await.unwrap().unwrap().status, onshi_store::DeviceStatus::Active);
    assert_eq!(store_b.user(user_b.id).await.unwrap().unwrap().role, Role::Manager);
    let hooks_b = store_b.webhook_endpoints().await.unwrap();
    assert!(hooks_b[0].enabled && hooks_b[0].previous_secret_until.is_none(), "B's endpoint untouched");
    assert_eq!(store_b.webhook_deliveries(10).await.unwrap().len(), 1, "nothing replayed or tested in B");
    // Lists show only A's rows.
    let staff = a.get("/staff").await.body;
    assert!(!staff.contains(&user_b.email));
    let onboarding = a.get("/onboarding").await.body;
    assert!(!onboarding.contains("B法人の秘密クリニック"));
});

both_modes!(clinic_staff_reach_no_other_clinic_on_any_clinic_route, |app| {
    // A clinic_staff member assigned to clinic 0 names clinic 1 on every clinic-level route.
    let mine = app.clinics[0].clinic.id;
    let other = &app.clinics[1].clinic;
    let user = app.user_in(app.tenant, Role::ClinicStaff, &[mine]).await;
    let mut b = app.browser();
    b.sign_in(&user).await;
    let mut checked = 0;
    for route in ROUTES.iter().filter(|r| r.path.contains("{clinic}")) {
        let path = fill(route.path, &other.id.to_string());
        let expected = match route.access {
            Access::Perm(p) if !Role::ClinicStaff.allows(p) => 403,
            Access::Token(_) => 401,
            _ => 404,
        };
        let r =
            if route.method == "get" { b.get(&path).await } else { b.post(&path, &[("start", "2027-01-01")]).await };
        assert_eq!(r.status, expected, "{} {} for another clinic", route.method, route.path);
        assert!(!r.body.contains(&other.name), "{} shows the other clinic", route.path);
        checked += 1;
    }
    assert!(checked >= 10, "{checked} clinic routes");
    // Their own clinic answers, and the lists name only it.
    assert_eq!(b.get(&format!("/clinics/{mine}/receptions")).await.status, 200);
    assert_eq!(b.get(&format!("/dashboard/clinics/{mine}")).await.status, 200);
    for list in ["/", "/dashboard"] {
        let page = b.get(list).await;
        assert_eq!(page.status, 200, "{list}");
        assert!(!page.body.contains(&other.name), "{list} lists the other clinic");
        assert!(page.body.contains(&app.clinics[0].clinic.name), "{list} lists their own clinic");
    }
});

both_modes!(failed_sign_ins_are_throttled_without_telling_which_accounts_exist, |app| {
    let user = app.user(Role::Billing).await;
    let mut b = app.browser();
    let wrong = b.post("/signin", &[("email", &user.email), ("password", "not-the-password")]).await;
    let unknown = b.post("/signin", &[("email", "nobody-here@example.jp"), ("password", "not-the-password")]).await;
    assert_eq!(wrong.status, unknown.status);
    let message = |r: &Reply| extract(&r.body, "role=\"alert\">", "<").unwrap();
    assert_eq!(message(&wrong), message(&unknown), "one message for both");
    for _ in 0..4 {
        b.post("/signin", &[("email", &user.email), ("password", "not-the-password")]).await;
    }
    // Five failures: even the right password now gets 429 for this account.
    let r = b.post("/signin", &[("email", &user.email), ("password", &user.password)]).await;
    assert_eq!(r.status, 429);
    // The failures are in the audit log, without the password.
    let entries = app
        .store()
        .audit_entries(&onshi_store::AuditFilter {
            action_prefix: Some("signin".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(entries.iter().filter(|e| e.result == "failure").count() >= 5);
    assert!(entries.iter().all(|e| !e.details.contains("not-the-password")));
});

both_modes!(sessions_end_on_signout_password_change_disable_and_role_change, |app| {
    // Sign-out: the old cookie no longer works.
    let (mut b, _) = app.signed_in(Role::Billing).await;
    let old = b.cookies.clone();
    assert_eq!(b.post("/signout", &[]).await.status, 303);
    b.cookies = old;
    assert_eq!(b.get("/account").await.location(), "/signin");

    // Password change: other browsers are signed out, this one continues.
    let user = app.user(Role::Manager).await;
    let (mut one, mut two) = (app.browser(), app.browser());
    one.sign_in(&user).await;
    two.sign_in(&user).await;
    let r = one
        .post(
            "/account/password",
            &[
                ("current", &user.password),
                ("password", "Changed-Password-2026"),
                ("password2", "Changed-Password-2026"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(one.get("/account").await.status, 200);
    assert_eq!(two.get("/account").await.location(), "/signin");

    // Disable and role change by an owner end the target's sessions at once.
    let (mut owner, _) = app.signed_in(Role::Owner).await;
    let target = app.user(Role::Manager).await;
    let mut t = app.browser();
    t.sign_in(&target).await;
    assert_eq!(owner.post(&format!("/staff/{}/role", target.id), &[("role", "billing")]).await.status, 303);
    assert_eq!(t.get("/account").await.location(), "/signin");
    let mut t2 = app.browser();
    t2.sign_in(&target).await;
    assert_eq!(t2.get("/staff").await.status, 403, "now billing");
    assert_eq!(owner.post(&format!("/staff/{}/disable", target.id), &[]).await.status, 303);
    assert_eq!(t2.get("/account").await.location(), "/signin");
    let r = app.browser().post("/signin", &[("email", &target.email), ("password", &target.password)]).await;
    assert_eq!(r.status, 422, "a disabled account cannot sign in");
    // A manager cannot touch an owner.
    let (mut manager, _) = app.signed_in(Role::Manager).await;
    let owner_user = app.user(Role::Owner).await;
    assert_eq!(manager.post(&format!("/staff/{}/disable", owner_user.id), &[]).await.status, 403);
});

both_modes!(api_tokens_are_scoped_revocable_and_shown_once, |app| {
    let (mut owner, _) = app.signed_in(Role::Owner).await;
    let r = owner
        .post("/settings/api-tokens", &[("name", "レセコン連携"), ("scope", "clinics:read"), ("days", "30")])
        .await;
    assert_eq!(r.status, 200);
    let token = extract(&r.body, "data-testid=\"api-token\">", "<").unwrap();
    assert!(token.starts_with("onshi_pat_"));
    assert!(!owner.get("/settings/api-tokens").await.body.contains(&token), "shown once");
    let client = reqwest::Client::new();
    let get = |path: &str, token: &str| client.get(format!("{}{path}", app.base_url())).bearer_auth(token).send();
    let r = get("/api/v1/clinics", &token).await.unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["clinics"].as_array().unwrap().len(), 3);
    // Out of scope.
    let path = format!("/api/v1/clinics/{}/receptions?date=2026-11-25", app.clinics[0].clinic.id);
    assert_eq!(get(&path, &token).await.unwrap().status(), 403);
    assert_eq!(get("/api/v1/audit", &token).await.unwrap().status(), 403);
    // Tampered and unknown tokens.
    let mut tampered = token.clone();
    tampered.pop();
    tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
    assert_eq!(get("/api/v1/clinics", &tampered).await.unwrap().status(), 401);
    assert_eq!(get("/api/v1/clinics", "onshi_pat_nonsense").await.unwrap().status(), 401);
    // Revoked.
    let page = owner.get("/settings/api-tokens").await.body;
    let id = extract(&page, "/settings/api-tokens/", "/revoke").unwrap();
    assert_eq!(owner.post(&format!("/settings/api-tokens/{id}/revoke"), &[]).await.status, 303);
    assert_eq!(get("/api/v1/clinics", &token).await.unwrap().status(), 401);
});

both_modes!(the_audit_log_records_access_and_verify_catches_tampering, |app| {
    let (mut owner, user) = app.signed_in(Role::Owner).await;
    assert_eq!(owner.get("/").await.status, 200);
    let audit = owner.get("/audit?action=signin").await;
    assert_eq!(audit.status, 200);
    assert!(audit.body.contains(&user.email));
    // A recorded id reads with the name people know it by, the id beside it.
    let clinic = &app.clinics[0].clinic;
    assert_eq!(owner.get(&format!("/clinics/{}/receptions?date=2026-11-25", clinic.id)).await.status, 200);
    let audit = owner.get("/audit?action=receptions.view").await;
    assert!(
        audit
            .body
            .contains(&format!("{} <span class=\"small muted\">receptions:{}:2026-11-25", clinic.name, clinic.id)),
        "{}",
        audit.body
    );
    let csv = owner.get("/audit.csv").await;
    assert_eq!(csv.status, 200);
    assert!(csv.body.starts_with('\u{feff}'), "Excel-safe UTF-8 with BOM");
    assert!(csv.headers["content-type"].to_str().unwrap().starts_with("text/csv"));
    let actions: Vec<_> =
        app.store().audit_entries(&onshi_store::AuditFilter { limit: 1000, ..Default::default() }).await.unwrap();
    for expected in ["signin.password", "signin", "receptions.view", "audit.view", "audit.export"] {
        assert!(actions.iter().any(|e| e.action == expected), "{expected} is audited");
    }

    let store = &app.adapters().store;
    let report = store.verify_audit().await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(report.rows > 5);

    // The application itself cannot change or delete an entry.
    let db = store.connection();
    use sea_orm::ConnectionTrait;
    let update = db.execute_unprepared("UPDATE audit_log SET actor = 'someone else'").await;
    assert!(update.is_err(), "UPDATE on audit_log must be refused");
    assert!(db.execute_unprepared("DELETE FROM audit_log").await.is_err(), "DELETE on audit_log must be refused");

    // Someone with more rights than the application alters a row: verify names it.
    match app.mode {
        Mode::Full => {
            let owner_db = app.owner_db().await;
            owner_db.execute_unprepared("UPDATE audit_log SET actor = 'intruder' WHERE seq = 2").await.unwrap();
            owner_db.close().await.ok();
        }
        Mode::Embedded => {
            db.execute_unprepared("DROP TRIGGER audit_log_no_UPDATE").await.unwrap();
            db.execute_unprepared("UPDATE audit_log SET actor = 'intruder' WHERE seq = 2").await.unwrap();
        }
    }
    let report = store.verify_audit().await.unwrap();
    assert!(report.problems.iter().any(|p| p.contains("seq 2") && p.contains("altered")), "{:?}", report.problems);
});

both_modes!(deleting_the_newest_audit_entries_and_rolling_the_head_back_is_caught_by_the_anchors, |app| {
    use onshi_objects::ObjectBackend;
    use sea_orm::ConnectionTrait;
    let (mut owner, _) = app.signed_in(Role::Owner).await;
    assert_eq!(owner.get("/audit").await.status, 200);
    let store = &app.adapters().store;
    let objects = &app.adapters().objects;
    let key = onshi::startup::anchor_key(&app.config);
    assert!(onshi::anchor::write(store, objects, &key, None).await.unwrap().is_some());
    let anchored = onshi::anchor::read(objects, &key).await.unwrap();
    assert_eq!((anchored.anchors, anchored.problems.len(), anchored.unsigned), (1, 0, false));
    assert!(store.verify_audit_anchored(&anchored.heads).await.unwrap().problems.is_empty());

    // Someone with the database owner's rights removes the tenant chain's newest two entries and rolls its
    // head back to the entry before them: the chain alone still verifies.
    let chain = app.tenant.as_uuid().to_string();
    let head = &anchored.heads[&chain];
    assert!(head.seq > 3);
    let keep = head.seq - 2;
    let owner_url = secrecy::ExposeSecret::expose_secret(&app.config.effective_migration_url()).to_owned();
    let db = sea_orm::Database::connect(&owner_url).await.unwrap();
    if app.mode == Mode::Embedded {
        db.execute_unprepared("DROP TRIGGER audit_log_no_DELETE").await.unwrap();
    }
    db.execute_unprepared(&format!("DELETE FROM audit_log WHERE chain = '{chain}' AND seq > {keep}")).await.unwrap();
    db.execute_unprepared(&format!(
        "UPDATE audit_heads SET seq = {keep}, hash = (SELECT hash FROM audit_log WHERE chain = '{chain}' AND seq = {keep}) \
         WHERE chain = '{chain}'"
    ))
    .await
    .unwrap();
    db.close().await.ok();
    assert!(store.verify_audit().await.unwrap().problems.is_empty(), "undetectable without anchors");
    let report = store.verify_audit_anchored(&anchored.heads).await.unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains(&chain) && p.contains(&format!("entry {}", head.seq)) && p.contains("gone")),
        "{:?}",
        report.problems
    );

    // An anchor rewritten to match the truncated chain fails its signature.
    let name = objects.list("audit-anchors/").await.unwrap().pop().unwrap();
    let mut anchor: serde_json::Value = serde_json::from_slice(&objects.get(&name).await.unwrap().unwrap()).unwrap();
    let mut body: serde_json::Value = serde_json::from_str(anchor["body"].as_str().unwrap()).unwrap();
    body["heads"][&chain]["seq"] = serde_json::json!(keep);
    anchor["body"] = serde_json::Value::String(body.to_string());
    objects.put(&name, serde_json::to_vec(&anchor).unwrap(), "application/json").await.unwrap();
    let forged = onshi::anchor::read(objects, &key).await.unwrap();
    assert!(forged.problems.iter().any(|p| p.contains("signature")), "{:?}", forged.problems);
});

both_modes!(
    strangers_cannot_lock_anyone_out,
    |config| {
        with_smtp(config);
        // The tests' requests come from 127.0.0.1 as if through a proxy there, so X-Forwarded-For sets the
        // client address.
        config.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    },
    |app| {
        let victim = app.user(Role::Billing).await;
        let colleague = app.user(Role::Manager).await;
        let from = |ip: &'static str| [("X-Forwarded-For", ip)];
        let mut stranger = app.browser();
        let fields = |email: &str, password: &str| {
            vec![("email".to_owned(), email.to_owned()), ("password".to_owned(), password.to_owned())]
        };
        let post = async |b: &mut Browser, email: &str, password: &str, ip: &'static str| {
            let csrf = b.csrf().await;
            let f = fields(email, password);
            let mut all: Vec<(&str, &str)> = vec![("csrf", csrf.as_str())];
            all.extend(f.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            b.post_with_headers("/signin", &all, None, &from(ip)).await
        };
        // A stranger at 203.0.113.9 guesses the victim's password until blocked there.
        for _ in 0..5 {
            assert_eq!(post(&mut stranger, &victim.email, "guess", "203.0.113.9").await.status, 422);
        }
        assert_eq!(post(&mut stranger, &victim.email, "guess", "203.0.113.9").await.status, 429);
        // The victim, elsewhere, signs in with the right password.
        let mut own = app.browser();
        let r = post(&mut own, &victim.email, &victim.password, "198.51.100.7").await;
        assert_eq!((r.status, r.location()), (303, "/signin/totp"), "{}", r.body);
        // A colleague behind the stranger's address (a shared clinic NAT) is not blocked either.
        let mut desk = app.browser();
        let r = post(&mut desk, &colleague.email, &colleague.password, "203.0.113.9").await;
        assert_eq!((r.status, r.location()), (303, "/signin/totp"), "{}", r.body);

        // Reset requests naming the victim never count against sign-in, and send at most three e-mails.
        let mut spammer = app.browser();
        for _ in 0..8 {
            let csrf = spammer.csrf().await;
            let r = spammer
                .post_with_headers(
                    "/password/forgot",
                    &[("csrf", &csrf), ("email", &victim.email)],
                    None,
                    &from("192.0.2.5"),
                )
                .await;
            assert_eq!(r.status, 200, "the same page every time");
        }
        let mut again = app.browser();
        let r = post(&mut again, &victim.email, &victim.password, "192.0.2.5").await;
        assert_eq!((r.status, r.location()), (303, "/signin/totp"), "{}", r.body);
        sink().wait_for(&victim.email, "/password/reset/").await;
        assert!(sink().count_to(&victim.email) <= 3, "{} reset e-mails", sink().count_to(&victim.email));
    }
);

both_modes!(
    addresses_are_claimed_by_proving_them_not_by_signing_up_or_inviting,
    |config| { with_smtp(config) },
    |app| {
        let x = format!("x-{}@example.jp", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let invite = async |b: &mut Browser, email: &str| {
            b.post("/staff/invite", &[("name", "事務 花子"), ("email", email), ("role", "billing")]).await
        };
        // Group A and group B both invite x: neither is told anything about the other.
        let (mut a, _) = app.signed_in(Role::Owner).await;
        let tenant_b = app.adapters().store.system().create_tenant("別法人 B").await.unwrap();
        let owner_b = app.user_in(tenant_b, Role::Owner, &[]).await;
        let mut b = app.browser();
        b.sign_in(&owner_b).await;
        let (ra, rb) = (invite(&mut a, &x).await, invite(&mut b, &x).await);
        assert_eq!((ra.status, rb.status), (200, 200), "{}", rb.body);
        let sent = |r: &Reply| extract(&r.body, "role=\"status\">", "<");
        assert_eq!(sent(&ra), sent(&rb), "the same message in both groups");
        // x accepts A's invitation: the address is now claimed. B's then says so, to x only.
        let mut links = Vec::new();
        for _ in 0..100 {
            links = sink().all_to(&x).iter().map(|m| link_path(m, "/invite/")).collect();
            if links.len() == 2 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(links.len(), 2);
        let accept = [("password", "Kakunin-Hanako-2026"), ("password2", "Kakunin-Hanako-2026")];
        let mut x_browser = app.browser();
        let first = x_browser.post(&links[0], &accept).await;
        assert_eq!((first.status, first.location()), (303, "/signin?done=invite"), "{}", first.body);
        let second = x_browser.post(&links[1], &accept).await;
        assert_eq!(second.status, 409, "{}", second.body);
        assert!(second.body.contains("既にアカウントがあります"));

        // Signing up with x reads exactly like signing up with a free address; x's owner gets a note.
        let signup = async |email: &str| {
            let mut s = app.browser();
            let password = "Shinki-Touroku-2026";
            s.post(
                "/signup",
                &[
                    ("group", "医療法人 乗っ取り会"),
                    ("name", "誰か"),
                    ("email", email),
                    ("password", password),
                    ("password2", password),
                ],
            )
            .await
        };
        let free = format!("free-{}@example.jp", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let (taken, fresh) = (signup(&x).await, signup(&free).await);
        assert_eq!((taken.status, fresh.status), (200, 200));
        let h1 = |r: &Reply| extract(&r.body, "<h1>", "<");
        assert_eq!(h1(&taken), h1(&fresh));
        sink().wait_for(&x, "/password/forgot").await;

        // An unverified signup holds nothing: group A invites its address and the invitation is accepted;
        // following the old verification link afterwards says the address is taken.
        let y = format!("y-{}@example.jp", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        assert_eq!(signup(&y).await.status, 200);
        let verify = link_path(&sink().wait_for(&y, "/verify-email/").await, "/verify-email/");
        assert_eq!(invite(&mut a, &y).await.status, 200);
        let invited = link_path(&sink().wait_for(&y, "/invite/").await, "/invite/");
        let r = app.browser().post(&invited, &accept).await;
        assert_eq!((r.status, r.location()), (303, "/signin?done=invite"), "{}", r.body);
        let r = app.browser().post(&verify, &[]).await;
        assert_eq!(r.status, 409, "{}", r.body);
    }
);

both_modes!(a_lost_authenticator_is_replaced_by_a_one_time_recovery_code, |app| {
    let (mut b, user) = app.signed_in(Role::Manager).await;
    let r = b.post("/account/recovery-codes", &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let list = extract(&r.body, "data-testid=\"recovery-codes\">", "</ol>").unwrap();
    let codes: Vec<String> =
        list.split("<li>").skip(1).map(|c| c.split("</li>").next().unwrap().trim().to_owned()).collect();
    assert_eq!(codes.len(), 10);
    assert!(b.get("/account").await.body.contains("<strong>10</strong>"));
    assert_eq!(b.post("/signout", &[]).await.status, 303);

    // Password, then a recovery code typed in lower case without hyphens: signed in, told, one fewer left.
    let mut phone_lost = app.browser();
    let r = phone_lost.post("/signin", &[("email", &user.email), ("password", &user.password)]).await;
    assert_eq!(r.location(), "/signin/totp");
    let typed = codes[0].to_lowercase().replace('-', "");
    let r = phone_lost.post("/signin/totp", &[("recovery", &typed)]).await;
    assert_eq!((r.status, r.location()), (303, "/account?recovered=1"), "{}", r.body);
    let account = phone_lost.get("/account?recovered=1").await;
    assert!(account.body.contains("回復コードでサインインしました") && account.body.contains("<strong>9</strong>"));

    // The same code a second time, or a made-up one, is refused and counted.
    let mut again = app.browser();
    again.post("/signin", &[("email", &user.email), ("password", &user.password)]).await;
    assert_eq!(again.post("/signin/totp", &[("recovery", &codes[0])]).await.status, 422);
    assert_eq!(again.post("/signin/totp", &[("recovery", "ABCD-EFGH-JKMN-PQRS")]).await.status, 422);
    let audit = app
        .store()
        .audit_entries(&onshi_store::AuditFilter {
            action_prefix: Some("signin".into()),
            limit: 50,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        audit.iter().any(|e| e.details.contains("recovery_code") && e.details.contains("\"recovery_codes_left\":9"))
    );
    assert_eq!(audit.iter().filter(|e| e.action == "signin.recovery_code").count(), 2);
    // A new set replaces the old one: an unused old code stops working.
    let r = phone_lost.post("/account/recovery-codes", &[]).await;
    assert_eq!(r.status, 200);
    let mut later = app.browser();
    later.post("/signin", &[("email", &user.email), ("password", &user.password)]).await;
    assert_eq!(later.post("/signin/totp", &[("recovery", &codes[1])]).await.status, 422);
});
