//! The clinic's レセ電 in the cloud: a month's claims arrive through the agent's route, settle 初診/再診,
//! show the clinic's カルテ番号 to billing staff, and compare what was claimed with what the engine grants;
//! the same file twice changes nothing, a corrected file replaces its month, a later file's receipt for
//! the same patient and month replaces the earlier one; everything audited.

use onshi_domain::{
    AuditAction, ClaimReceipt, ClaimVisit, ClaimedCode, ClaimedVisitKind, ClaimsFile, Day, EventBatch, EventPayload,
    PatientRef, Payer, Role, YearMonth,
};
use time::macros::{date, datetime};

use crate::both_modes;
use crate::helpers::*;

fn patient(n: &str) -> PatientRef {
    PatientRef::pseudonymize(b"test-key", "06139999", "", n, "00")
}

fn receipt(
    no: u32,
    n: &str,
    chart: &str,
    key: &[u8],
    visits: &[(time::Date, bool)],
    addons: &[(&str, time::Date)],
) -> ClaimReceipt {
    ClaimReceipt {
        receipt_no: no,
        service_month: YearMonth::new(2025, 3).unwrap(),
        receipt_type: "1112".into(),
        outpatient: true,
        patient: Some(patient(n)),
        online_confirmed: true,
        chart: onshi_domain::sealed::seal_chart_number(key, chart),
        points: 100,
        visits: visits
            .iter()
            .map(|(d, first)| ClaimVisit {
                date: Day(*d),
                kind: if *first { ClaimedVisitKind::First } else { ClaimedVisitKind::Revisit },
                codes: vec![if *first { "111000110" } else { "112007410" }.into()],
            })
            .collect(),
        addons: addons.iter().map(|(c, d)| ClaimedCode { code: (*c).into(), dates: vec![Day(*d)] }).collect(),
    }
}

fn file(app: &TestApp, claim_month: YearMonth, sha: char, receipts: Vec<ClaimReceipt>) -> ClaimsFile {
    ClaimsFile {
        institution_code: app.clinics[0].clinic.code.clone(),
        claim_month,
        payer: Payer::ShiharaiKikin,
        volume: 1,
        file_sha256: sha.to_string().repeat(64),
        total_points: receipts.iter().map(|r| r.points).sum(),
        receipts,
    }
}

async fn send(app: &TestApp, route: &str, claims: ClaimsFile) -> reqwest::Response {
    let event = onshi_domain::AgentEvent {
        id: onshi_domain::EventId::new(),
        occurred_at: datetime!(2025-04-01 00:00 +09:00),
        payload: EventPayload::Claims(claims),
    };
    app.client
        .post(format!("{}/api/v1/{route}", app.base_url()))
        .bearer_auth(app.token(0))
        .json(&EventBatch { events: vec![event] })
        .send()
        .await
        .unwrap()
}

async fn imports(app: &TestApp) -> Vec<serde_json::Value> {
    let filter = onshi_store::AuditFilter { action_prefix: Some("uke.".into()), limit: 50, ..Default::default() };
    let entries = app.store().audit_entries(&filter).await.unwrap();
    entries.iter().map(|e| serde_json::from_str(&e.details).unwrap()).collect()
}

both_modes!(claims_settle_kinds_show_chart_numbers_and_differences_and_corrections_replace, |app| {
    webhook_outbox(app, &[onshi_domain::WebhookEvent::UkeImported, onshi_domain::WebhookEvent::BillingMonthClosed])
        .await;
    let events = vec![
        valid_visit(app, "00000001", datetime!(2025-03-03 09:10 +09:00), true),
        valid_visit(app, "00000002", datetime!(2025-03-05 10:00 +09:00), false),
        valid_visit(app, "00000001", datetime!(2025-03-10 11:30 +09:00), true),
    ];
    assert_eq!(app.post_events(0, &events).await.status(), 202);
    eventually(WAIT, "applied", || async { app.store().raw_event_count().await.unwrap() == 3 }).await;
    let key = app.store().chart_key().await.unwrap().expect("the group has a key");

    let clinic = app.clinics[0].clinic.id;
    let base = format!("/billing/{clinic}/2025-03");
    let (mut b, _) = app.signed_in(Role::Billing).await;
    let r = b
        .post(
            &format!("/billing/{clinic}/standards"),
            &[("from", "2024-01-01"), ("standard", "online_claims"), ("standard", "oqs"), ("standard", "notices")],
        )
        .await;
    assert_eq!(r.status, 303);
    let before = b.get(&base).await;
    assert!(before.body.contains("区分未確定 (2)"), "both first visits are guesses before the claims");
    assert!(before.body.contains("onshi-agent uke import"), "the page says how to import the claims");

    // The claims: patient 1 a 初診 then a 再診 with both addons; patient 2 a 再診 (not the 初診 our data
    // guessed) claimed with the 初診 addon's code: a 過剰算定, and its 再診 addon a 算定漏れ.
    let month = YearMonth::new(2025, 4).unwrap();
    let claims = file(
        app,
        month,
        'a',
        vec![
            receipt(
                1,
                "00000001",
                "000123",
                &key,
                &[(date!(2025 - 03 - 03), true), (date!(2025 - 03 - 10), false)],
                &[("111703270", date!(2025 - 03 - 03)), ("112708970", date!(2025 - 03 - 10))],
            ),
            receipt(
                2,
                "00000002",
                "000234",
                &key,
                &[(date!(2025 - 03 - 05), false)],
                &[("111703270", date!(2025 - 03 - 05))],
            ),
        ],
    );
    // Claims have their own route; the events route refuses them, and a chart number in clear is refused.
    assert_eq!(send(app, "events", claims.clone()).await.status(), 422);
    let mut clear = claims.clone();
    clear.receipts[0].chart = Some("000123".into());
    let refused = send(app, "claims", clear).await;
    assert_eq!(refused.status(), 422);
    assert!(refused.text().await.unwrap().contains("receipts[0].chart"));
    let accepted = send(app, "claims", claims.clone()).await;
    assert_eq!(accepted.status(), 202, "{}", accepted.text().await.unwrap());
    eventually(WAIT, "imported", || async { imports(app).await.len() == 1 }).await;

    let page = b.get(&base).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("区分未確定 (0)"), "the claims settle 初診/再診: {}", page.body);
    assert!(page.body.contains(">000123<") && page.body.contains(">000234<"), "カルテ番号 shown to billing");
    assert!(!page.body.contains("onshi-agent uke import"));
    assert_eq!(extract(&page.body, "data-testid=\"claims-excess\">", "<").unwrap(), "1", "{}", page.body);
    assert_eq!(extract(&page.body, "data-testid=\"claims-missing\">", "<").unwrap(), "1");
    assert!(page.body.contains("レセ電と不一致 (1)"));
    let differing = b.get(&format!("{base}?filter=claims_differ")).await;
    assert!(differing.body.contains(">000234<") && !differing.body.contains(">000123<"));
    let (_, csv) = b.client_get_bytes(&format!("{base}/differences.csv")).await;
    let csv = String::from_utf8(csv).unwrap();
    assert!(csv.contains("000234") && csv.contains("過剰算定: 111703270") && csv.contains("算定漏れ"), "{csv}");
    assert!(!csv.contains("000123"), "only the visits that differ: {csv}");
    // The chart number is for billing pages only.
    let (mut manager, _) = app.signed_in(Role::Manager).await;
    assert!(!manager.get(&format!("/clinics/{clinic}/receptions")).await.body.contains("000123"));

    // The same file again: nothing changes.
    assert_eq!(send(app, "claims", claims.clone()).await.status(), 202);
    // A corrected file for the same month replaces it whole: patient 2 now claims the 再診 addon.
    let mut corrected = claims.clone();
    corrected.file_sha256 = "b".repeat(64);
    corrected.receipts[1].addons[0].code = "112708970".into();
    assert_eq!(send(app, "claims", corrected).await.status(), 202);
    eventually(WAIT, "replaced", || async { imports(app).await.len() == 2 }).await;
    let page = b.get(&base).await;
    assert!(page.body.contains("レセ電と不一致 (0)"), "{}", page.body);
    let audit = imports(app).await;
    assert!(audit.iter().any(|d| d["replaced_files"] == 1 && d["receipts"] == 2), "{audit:?}");

    // A later month's file resubmits patient 1's March receipt (返戻): it replaces that receipt only.
    let mut resubmitted = file(
        app,
        YearMonth::new(2025, 5).unwrap(),
        'c',
        vec![receipt(
            1,
            "00000001",
            "000123",
            &key,
            &[(date!(2025 - 03 - 03), true)],
            &[("111703270", date!(2025 - 03 - 03))],
        )],
    );
    resubmitted.receipts[0].points = 90;
    resubmitted.total_points = 90;
    assert_eq!(send(app, "claims", resubmitted).await.status(), 202);
    eventually(WAIT, "resubmitted", || async { imports(app).await.len() == 3 }).await;
    let audit = imports(app).await;
    assert!(audit.iter().any(|d| d["superseded_receipts"] == 1 && d["replaced_files"] == 0), "{audit:?}");
    let page = b.get(&base).await;
    assert!(page.body.contains("レセ電と不一致 (1)"), "patient 1's 再診 addon is no longer claimed: {}", page.body);

    // An older file imported late (a backfill of the April claims) does not undo the later resubmission.
    let mut backfill = file(
        app,
        month,
        'e',
        vec![receipt(
            1,
            "00000001",
            "000123",
            &key,
            &[(date!(2025 - 03 - 03), true), (date!(2025 - 03 - 10), false)],
            &[("111703270", date!(2025 - 03 - 03)), ("112708970", date!(2025 - 03 - 10))],
        )],
    );
    backfill.payer = Payer::Kokuho;
    assert_eq!(send(app, "claims", backfill).await.status(), 202);
    eventually(WAIT, "backfilled", || async { imports(app).await.len() == 4 }).await;
    let audit = imports(app).await;
    assert!(audit.iter().any(|d| d["kept_from_later_files"] == 1 && d["superseded_receipts"] == 0), "{audit:?}");
    assert!(b.get(&base).await.body.contains("レセ電と不一致 (1)"), "the resubmitted receipt still stands");
    // Each import was announced to webhooks once (the identical resend was not), in the same transaction.
    assert_eq!(webhook_events(app).await, ["uke.imported"; 4]);
});

both_modes!(three_figures_of_the_rate_side_by_side_with_the_calibrated_outlook, |app| {
    // September 2026: ten patients at the terminal, six with マイナ保険証 (estimate 60%).
    let mut events = Vec::new();
    for n in 1..=10 {
        let at = datetime!(2026-09-07 09:00 +09:00) + time::Duration::minutes(n);
        events.push(valid_visit(app, &format!("{n:08}"), at, n <= 6));
    }
    // August: ten patients, five with マイナ保険証 (50%; a month of fewer would not count towards the
    // calibration). Today: four patients, two with マイナ保険証 (50%).
    events.push(valid_visit(app, "00000001", datetime!(2026-08-04 09:00 +09:00), true));
    events.push(valid_visit(app, "00000007", datetime!(2026-08-04 09:10 +09:00), false));
    for n in 1..=8 {
        let at = datetime!(2026-08-05 09:00 +09:00) + time::Duration::minutes(n);
        events.push(valid_visit(app, &format!("{:08}", 30 + n), at, n <= 4));
    }
    let now = time::OffsetDateTime::now_utc();
    for n in 1..=4 {
        events.push(valid_visit(app, &format!("{:08}", 20 + n), now - time::Duration::minutes(n as i64), n <= 2));
    }
    assert_eq!(app.post_events(0, &events).await.status(), 202);
    eventually(WAIT, "applied", || async { app.store().raw_event_count().await.unwrap() == events.len() as u64 }).await;

    // The October claims: fifteen 外来 receipts for September (the ten, and five seen without a 資格確認)
    // and one 入院 receipt that the rate does not count: claims-based 6/15 = 40%.
    let key = app.store().chart_key().await.unwrap().unwrap();
    let mut receipts: Vec<ClaimReceipt> = (1..=15)
        .map(|n| {
            let mut r =
                receipt(n, &format!("{n:08}"), &format!("{n:06}"), &key, &[(date!(2026 - 09 - 07), false)], &[]);
            r.service_month = YearMonth::new(2026, 9).unwrap();
            r
        })
        .collect();
    let mut inpatient = receipts[0].clone();
    inpatient.receipt_no = 16;
    inpatient.receipt_type = "1111".into();
    inpatient.outpatient = false;
    inpatient.patient = Some(patient("00000099"));
    receipts.push(inpatient);
    assert_eq!(send(app, "claims", file(app, YearMonth::new(2026, 10).unwrap(), 'd', receipts)).await.status(), 202);
    eventually(WAIT, "imported", || async { imports(app).await.len() == 1 }).await;

    // The official figures for the group, pasted: one unknown clinic refuses the whole list.
    let code = app.clinics[0].clinic.code.to_string();
    let (mut b, _) = app.signed_in(Role::Billing).await;
    let bad = format!("{code},2026-09,520,6,16,37.5%,2026-11-14\n2719999999,2026-09,1,1,2,50%");
    let r = b.post("/billing/official-usage", &[("text", bad.as_str())]).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("2 件目") && r.body.contains("2719999999"), "{}", r.body);
    let clinic = app.clinics[0].clinic.id;
    let scope = app.store().clinic_scope(clinic, &onshi_domain::ClinicAccess::All).await.unwrap().unwrap();
    assert!(app.store().official_usage(&scope).await.unwrap().is_empty(), "nothing saved from a refused list");
    let good = format!("{code},2026-09,520,6,16,37.5%,2026-11-14\n{code}\t2026年8月\t30%");
    let r = b.post("/billing/official-usage", &[("text", good.as_str())]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    // The engine reads the official figure.
    let settings = app.store().billing_settings(&scope).await.unwrap();
    assert_eq!(settings.usage_rates.get(&YearMonth::new(2026, 9).unwrap()), Some(&0.375));
    // Saving the settings keeps the official figures where they are: nothing copied into the settings.
    use sea_orm::ConnectionTrait;
    let audit = test_audit(AuditAction::BillingStandards, "-");
    app.store().set_billing_settings(&scope, &settings, &audit).await.unwrap();
    let db = app.owner_db().await;
    let postgres = db.get_database_backend() == sea_orm::DatabaseBackend::Postgres;
    let typed_rows = if postgres {
        "SELECT count(*) FROM clinic_billing WHERE settings::jsonb ? 'usage_rates'"
    } else {
        "SELECT count(*) FROM clinic_billing WHERE json_type(settings, '$.usage_rates') IS NOT NULL"
    };
    assert_eq!(scalar(&db, typed_rows).await, 0);
    // Rates typed before official figures had their own table lived in the billing settings. The upgrade
    // (migration m20261207_000026) makes each an official figure without a notice; a month that has one
    // with its notice keeps it; running it twice changes nothing.
    let legacy = serde_json::json!({"standards": [], "oqs_usage_rates": {"2024-11": 0.4},
        "usage_rates": {"2026-07": 0.33, "2026-09": 0.2}})
    .to_string();
    let sql = if postgres {
        "UPDATE clinic_billing SET settings = $1::json WHERE clinic_id = $2"
    } else {
        "UPDATE clinic_billing SET settings = ? WHERE clinic_id = ?"
    };
    let legacy = sea_orm::Statement::from_sql_and_values(
        db.get_database_backend(),
        sql,
        [legacy.into(), clinic.as_uuid().into()],
    );
    assert_eq!(db.execute_raw(legacy).await.unwrap().rows_affected(), 1);
    for _ in 0..2 {
        onshi_migrations::move_typed_rates(&db).await.unwrap();
    }
    assert_eq!(scalar(&db, typed_rows).await, 0, "the copy in the settings is gone");
    let official = app.store().official_usage(&scope).await.unwrap();
    let july = &official[&YearMonth::new(2026, 7).unwrap()];
    assert_eq!((july.rate, july.notified_on, july.users), (0.33, None, None));
    assert_eq!(official[&YearMonth::new(2026, 9).unwrap()].rate, 0.375, "the figure with its notice wins");
    let settings = app.store().billing_settings(&scope).await.unwrap();
    assert_eq!(settings.usage_rates.get(&YearMonth::new(2026, 7).unwrap()), Some(&0.33));
    assert_eq!(settings.oqs_usage_rates.get(&YearMonth::new(2024, 11).unwrap()), Some(&0.4), "kept");
    db.close().await.ok();

    let (mut m, _) = app.signed_in(Role::Manager).await;
    let page = m.get(&format!("/dashboard/clinics/{clinic}")).await;
    assert_eq!(page.status, 200);
    let july = extract(&page.body, "data-month=\"2026-07\">", "</tr>").expect("July has an official figure");
    assert!(july.contains("data-testid=\"fig-official\">33.0%"), "{july}");
    let september = extract(&page.body, "data-month=\"2026-09\">", "</tr>").unwrap();
    assert!(september.contains(">60.0%<br><span class=\"small\">6/10<"), "{september}");
    assert!(september.contains(">40.0%<br><span class=\"small\">6/15<"), "{september}");
    assert!(september.contains(">37.5%<br><span class=\"small\">6/16 · 通知 2026-11-14<"), "{september}");
    assert!(september.contains("推計は公式値より22.5ポイント高い"), "{september}");
    assert!(september.contains("レセプト実績は公式値と2.5ポイント違う"), "{september}");
    // Why is said once under the table, not in every month's row.
    assert!(!september.contains("分母"), "{september}");
    assert_eq!(page.body.matches("推計と公式値: 推計の分母は").count(), 1, "{}", page.body);
    // Calibration from August (0.30 ÷ 0.50) and September (0.375 ÷ 0.60): 0.6125, range 0.60 to 0.625.
    let calibration = extract(&page.body, "data-testid=\"calibration\">", "</p>").unwrap();
    assert!(
        calibration.contains("0.61") && calibration.contains("0.60〜0.62") && calibration.contains("2か月"),
        "{calibration}"
    );
    // The group page reads the official figures too.
    assert_eq!(m.get("/dashboard").await.status, 200);
    let outlook = extract(&page.body, "data-testid=\"calibrated-outlook\">", "</p>").unwrap();
    assert!(outlook.contains("30.6%") && outlook.contains("推計（補正後）"), "{outlook}");
    // The headline is that likely figure, with the same-day estimate beside it.
    assert_eq!(extract(&page.body, "data-testid=\"likely\">", "<").unwrap(), "30.6%");
});

both_modes!(the_real_agent_imports_a_claims_file_by_hand_and_from_a_watched_folder, |app| {
    let scope =
        app.store().clinic_scope(app.clinics[0].clinic.id, &onshi_domain::ClinicAccess::All).await.unwrap().unwrap();
    let code = app.store().create_enrollment_code(&scope, time::Duration::minutes(10)).await.unwrap();
    let pc = ClinicPc::new();
    let (status, out) = pc.enroll(&app.base_url(), &code);
    assert_eq!(status, 0, "{out}");
    let clinic_code = app.clinics[0].clinic.code.to_string();

    // By hand: a refused file names itself and the reason; a good one is delivered now; again, nothing.
    let uke = pc.cwd.path().join("RECEIPTC.UKE");
    let (status, out) = pc.run(&[
        "uke",
        "synth",
        uke.to_str().unwrap(),
        "--clinic",
        &clinic_code,
        "--month",
        "2026-11",
        "--receipts",
        "40",
    ]);
    assert_eq!(status, 0, "{out}");
    let bytes = std::fs::read(&uke).unwrap();
    let cut = pc.cwd.path().join("CUT.UKE");
    std::fs::write(&cut, &bytes[..bytes.len() - 40]).unwrap();
    let (status, out) = pc.run(&["uke", "import", cut.to_str().unwrap()]);
    assert_ne!(status, 0);
    assert!(out.contains("CUT.UKE") && out.contains("refused"), "{out}");
    let (status, out) = pc.run(&["uke", "import", uke.to_str().unwrap()]);
    assert_eq!(status, 0, "{out}");
    assert!(out.contains("imported and delivered: 40 receipts"), "{out}");
    eventually(WAIT, "imported", || async { imports(app).await.len() == 1 }).await;
    let (status, out) = pc.run(&["uke", "import", uke.to_str().unwrap()]);
    assert_eq!(status, 0);
    assert!(out.contains("already imported"), "{out}");

    // From a watched folder: the レセコン writes next month's file; the running agent imports it.
    let folder = pc.folder("receipt");
    std::fs::create_dir_all(&folder).unwrap();
    let mut running = tokio::process::Command::from(pc.command(&["run"]))
        .env("ONSHI_AGENT_UKE_WATCH", format!("[\"{}\"]", folder.display()))
        .env("ONSHI_AGENT_SETTLE_SECS", "0")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let next = folder.join("RECEIPTC.UKE");
    let (status, out) = pc.run(&[
        "uke",
        "synth",
        next.to_str().unwrap(),
        "--clinic",
        &clinic_code,
        "--month",
        "2026-12",
        "--receipts",
        "25",
        "--seed",
        "2",
    ]);
    assert_eq!(status, 0, "{out}");
    eventually(WAIT, "imported from the folder", || async { imports(app).await.len() == 2 }).await;
    running.kill().await.ok();
    let audit = imports(app).await;
    assert!(audit.iter().any(|d| d["receipts"] == 25 && d["claim_month"] == "2026-12"), "{audit:?}");
});
