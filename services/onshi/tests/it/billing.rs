//! The billing review through the pages: receptions arrive as events, the billing clerk sets the clinic's
//! 届出, reviews and adjusts with reasons, exports (UTF-8 with BOM and Shift_JIS) and closes the month.

use onshi_domain::Role;
use time::macros::datetime;

use crate::both_modes;
use crate::helpers::*;

fn rows(html: &str) -> Vec<String> {
    html.split(" data-visit=\"").skip(1).map(|s| s.split("</tr>").next().unwrap().to_owned()).collect()
}

both_modes!(a_month_is_reviewed_adjusted_exported_and_closed_through_the_pages, |app| {
    // March 2025 at one clinic: patient 1 twice with マイナ保険証, patient 2 once with 資格確認書.
    let events = vec![
        valid_visit(app, "00000001", datetime!(2025-03-03 09:10 +09:00), true),
        valid_visit(app, "00000002", datetime!(2025-03-05 10:00 +09:00), false),
        valid_visit(app, "00000001", datetime!(2025-03-10 11:30 +09:00), true),
    ];
    assert_eq!(app.post_events(0, &events).await.status(), 202);
    eventually(WAIT, "applied", || async { app.store().raw_event_count().await.unwrap() == 3 }).await;

    let clinic = app.clinics[0].clinic.id;
    let base = format!("/billing/{clinic}/2025-03");
    let (mut b, _) = app.signed_in(Role::Billing).await;

    // Without the clinic's 届出 nothing is claimable, and the マイナ保険証 visits are 算定漏れ candidates.
    let page = b.get(&base).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(rows(&page.body).len(), 3);
    assert!(page.body.contains("算定漏れ候補 (2)"), "{}", page.body);
    assert_eq!(extract(&page.body, "data-testid=\"total-points\">", "<").unwrap(), "0");

    // The clerk records the 届出 from 2024-01-01: every visit earns 医療情報取得加算 (1点 in 2025-03). Our
    // data begins with these visits, so each patient's first visit is 区分未確定: its addon is provisional
    // and stays out of the total until the kind is settled.
    let r = b
        .post(
            &format!("/billing/{clinic}/standards"),
            &[("from", "2024-01-01"), ("standard", "online_claims"), ("standard", "oqs"), ("standard", "notices")],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let page = b.get(&base).await;
    assert!(page.body.contains("医療情報取得加算（1点）"));
    // The 届出 form starts from the latest 届出, so a change from a later date keeps the rest.
    assert!(page.body.contains("value=\"oqs\" checked") && !page.body.contains("value=\"e_prescription\" checked"));
    assert_eq!(extract(&page.body, "data-testid=\"total-points\">", "<").unwrap(), "1", "only the settled 再診");
    assert!(page.body.contains("data-testid=\"provisional\""), "{}", page.body);
    assert!(page.body.contains("区分未確定 (2)") && page.body.contains("未確認 (3)"), "{}", page.body);
    let ids: Vec<String> = rows(&page.body).iter().map(|r| r.split('"').next().unwrap().to_owned()).collect();
    // Rows are in reception order, and each rule's text is in the legend once.
    assert_eq!(page.body.matches("id=\"rule-shutoku-2024-12-").count(), 2, "初診 and 再診 rules in the legend");

    // One step settles the first visits as 初診 (no reason: a fact we lacked); they still await review.
    let settle = b.post(&format!("{base}/bulk"), &[("scope", "unsettled"), ("action", "first")]).await;
    assert_eq!(settle.status, 303, "{}", settle.body);
    let page = b.get(&base).await;
    assert_eq!(extract(&page.body, "data-testid=\"total-points\">", "<").unwrap(), "3");
    assert!(page.body.contains("区分未確定 (0)") && page.body.contains("未確認 (3)"), "{}", page.body);
    // One day at a time: the strip names the three days; a day shows its visits alone, and a review
    // made there comes back to it.
    let days = extract(&page.body, "data-testid=\"days\">", "</nav>").expect("the days");
    assert_eq!(days.matches("&amp;day=2025-03-").count(), 3, "{days}");
    let fifth = b.get(&format!("{base}?day=2025-03-05")).await;
    let only = rows(&fifth.body);
    assert_eq!(only.len(), 1);
    let id = only[0].split('"').next().unwrap().to_owned();
    // The bulk steps and the filters' counts are of what the page shows: that day's visit, not the month's.
    assert!(fifth.body.contains("data-testid=\"narrowed\"") && fifth.body.contains("未確認 (1)"));
    // Every form sends the day back: the bulk steps' and each row's.
    assert!(fifth.body.matches("name=\"day\" value=\"2025-03-05\"").count() >= 3, "{}", fifth.body);
    let plain = extract(&fifth.body, "data-testid=\"approve-plain\">", "</form>").unwrap();
    assert!(plain.contains("(1)"), "{plain}");
    let day_step = [("scope", "plain"), ("action", "approve"), ("filter", ""), ("day", "2025-03-05")];
    let r = b.post(&format!("{base}/bulk"), &day_step).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(r.location().ends_with("?day=2025-03-05"), "{}", r.location());
    assert!(b.get(&base).await.body.contains("未確認 (2)"));
    let form = [("action", "approve"), ("day", "2025-03-05")];
    let r = b.post(&format!("{base}/visits/{id}/review"), &form).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(r.location().ends_with(&format!("?day=2025-03-05#v-{id}")), "{}", r.location());
    let days = extract(&b.get(&base).await.body, "data-testid=\"days\">", "</nav>").unwrap();
    assert!(days.contains("class=\"done\" title=\"2025-03-05"), "the day is reviewed: {days}");
    // A day outside the month shows the whole month.
    assert_eq!(rows(&b.get(&format!("{base}?day=2025-04-01")).await.body).len(), 3);

    // Approving needs no reason; an adjustment does, changes facts, and the engine recomputes.
    let review = |id: &str| format!("{base}/visits/{id}/review");
    let refused = b.post(&review(&ids[0]), &[("action", "adjust"), ("exclude", "1"), ("reason", "")]).await;
    assert_eq!(refused.status, 400);
    let r = b
        .post(
            &review(&ids[0]),
            &[("action", "adjust"), ("exclude", "1"), ("reason", "算定要件の確認待ち"), ("filter", "needs_review")],
        )
        .await;
    assert_eq!(r.status, 303);
    // Back to the same filter and row.
    let location = r.headers.get("location").unwrap().to_str().unwrap().to_owned();
    assert!(location.ends_with(&format!("?filter=needs_review#v-{}", ids[0])), "{location}");
    assert_eq!(b.post(&review(&ids[1]), &[("action", "approve"), ("reason", "")]).await.status, 303);
    let page = b.get(&base).await;
    assert_eq!(extract(&page.body, "data-testid=\"total-points\">", "<").unwrap(), "2");
    assert!(page.body.contains("算定要件の確認待ち"));
    assert!(page.body.contains("修正済み (1)") && page.body.contains("未確認 (1)"));
    assert!(page.body.contains("区分未確定 (0)"), "approving keeps the settled kind: {}", page.body);
    let filtered = b.get(&format!("{base}?filter=overridden")).await;
    assert_eq!(rows(&filtered.body).len(), 1);
    // Another tenant's or a malformed visit id is not found.
    assert_eq!(
        b.post(&review(&uuid::Uuid::new_v4().to_string()), &[("action", "approve"), ("reason", "x")]).await.status,
        404
    );

    // Export: UTF-8 with BOM, and Shift_JIS; both stored in the object store with a download link.
    assert_eq!(b.post(&format!("{base}/export"), &[("encoding", "utf8")]).await.status, 303);
    assert_eq!(b.post(&format!("{base}/export"), &[("encoding", "sjis")]).await.status, 303);
    let page = b.get(&base).await;
    let links: Vec<String> = page
        .body
        .split("href=\"")
        .skip(1)
        .map(|s| s.split('"').next().unwrap().to_owned())
        .filter(|h| h.contains("/exports/"))
        .collect();
    assert_eq!(links.len(), 2, "{links:?}");
    let mut decoded = Vec::new();
    for link in &links {
        let r = b.client_get_bytes(link).await;
        let ct = r.0;
        let text = if ct.contains("Shift_JIS") {
            let (text, _, bad) = encoding_rs::SHIFT_JIS.decode(&r.1);
            assert!(!bad);
            text.into_owned()
        } else {
            assert!(r.1.starts_with(&[0xEF, 0xBB, 0xBF]), "UTF-8 export starts with a BOM");
            String::from_utf8(r.1.clone()).unwrap()
        };
        assert!(
            text.contains("医療情報取得加算") && text.contains("算定しない") && text.contains("確認済み"),
            "{text}"
        );
        // The columns a レセコン user matches by: JST reception time, patient key, code, the clerk's note.
        assert!(
            text.starts_with("\u{feff}\"受付日時（JST）\",\"患者キー\"") || text.starts_with("\"受付日時（JST）\"")
        );
        assert!(
            text.contains("\"2025-03-03 09:10\"") && text.contains("112708970") && text.contains("算定要件の確認待ち")
        );
        assert_eq!(text.lines().count(), 4, "header and three visits");
        decoded.push(text);
    }
    // The same content; Shift_JIS writes the em dash as the horizontal bar Windows uses.
    let same = |t: &str| t.trim_start_matches('\u{feff}').replace('\u{2014}', "\u{2015}");
    assert_eq!(same(&decoded[0]), same(&decoded[1]));

    // Close the month: with a visit still unreviewed it asks for confirmation first; then no more reviews.
    let refused = b.post(&format!("{base}/close"), &[]).await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(refused.body.contains("未確認の受付が 1 件"), "{}", refused.body);
    assert_eq!(b.post(&format!("{base}/close"), &[("confirm", "yes")]).await.status, 303);
    assert!(b.get(&base).await.body.contains("data-testid=\"closed\""));
    assert_eq!(b.post(&review(&ids[2]), &[("action", "approve"), ("reason", "後から")]).await.status, 409);
    let group = b.get("/billing?month=2025-03").await;
    assert!(group.body.contains("締め済み"));
    let total = extract(&group.body, "グループ合計</th>", "</tr>").unwrap();
    assert!(total.starts_with("<td class=\"num\" data-label=\"受付\">3</td>"), "the group's visits: {total}");

    // A closed month stays as it was closed: the 届出 withdrawn afterwards and a visit arriving late change
    // neither its total nor its export; the late visit is listed apart.
    let withdrawn = b.post(&format!("/billing/{clinic}/standards"), &[("from", "2024-01-01")]).await;
    assert_eq!(withdrawn.status, 303, "{}", withdrawn.body);
    let late = vec![valid_visit(app, "00000003", datetime!(2025-03-20 15:00 +09:00), true)];
    assert_eq!(app.post_events(0, &late).await.status(), 202);
    eventually(WAIT, "late visit applied", || async { app.store().raw_event_count().await.unwrap() == 4 }).await;
    let page = b.get(&base).await;
    assert_eq!(extract(&page.body, "data-testid=\"total-points\">", "<").unwrap(), "2", "closed total unchanged");
    assert_eq!(rows(&page.body).len(), 3);
    assert!(page.body.contains("data-testid=\"late\""), "the late visit is listed apart");
    assert_eq!(b.post(&format!("{base}/export"), &[("encoding", "utf8")]).await.status, 303);
    let page = b.get(&base).await;
    let newest = page
        .body
        .split("href=\"")
        .skip(1)
        .map(|s| s.split('"').next().unwrap().to_owned())
        .filter(|h| h.contains("/exports/"))
        .last()
        .unwrap();
    let again = String::from_utf8(b.client_get_bytes(&newest).await.1).unwrap();
    assert_eq!(same(&again), same(&decoded[0]), "the closed month exports what it was closed with");

    // Reopening is the owner's, with a reason; then the month is recomputed with today's settings.
    assert_eq!(b.post(&format!("{base}/reopen"), &[("reason", "届出の取り下げ")]).await.status, 403);
    let (mut owner, _) = app.signed_in(Role::Owner).await;
    assert_eq!(owner.post(&format!("{base}/reopen"), &[("reason", "")]).await.status, 400);
    assert_eq!(owner.post(&format!("{base}/reopen"), &[("reason", "届出の取り下げ")]).await.status, 303);
    let page = b.get(&base).await;
    assert!(!page.body.contains("data-testid=\"closed\""));
    assert_eq!(extract(&page.body, "data-testid=\"total-points\">", "<").unwrap(), "0", "recomputed without the 届出");
    assert_eq!(rows(&page.body).len(), 4);

    // The audit trail.
    let audit = app
        .store()
        .audit_entries(&onshi_store::AuditFilter {
            action_prefix: Some("billing.".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    for action in [
        "billing.adjust",
        "billing.approve",
        "billing.export",
        "billing.close",
        "billing.reopen",
        "billing.standards",
        "billing.view",
    ] {
        assert!(audit.iter().any(|e| e.action == action), "{action} audited");
    }
    assert!(audit.iter().any(|e| e.details.contains("算定要件の確認待ち")));
    // Clinic staff and managers do not reach billing.
    let (mut staff, _) = app.signed_in(Role::Manager).await;
    assert_eq!(staff.get(&base).await.status, 403);
});

both_modes!(after_the_2026_revision_the_usage_rate_decides_the_new_addon_on_the_page, |app| {
    let events = vec![valid_visit(app, "00000009", datetime!(2026-06-03 09:00 +09:00), true)];
    assert_eq!(app.post_events(0, &events).await.status(), 202);
    eventually(WAIT, "applied", || async { app.store().raw_event_count().await.unwrap() == 1 }).await;
    let clinic = app.clinics[0].clinic.id;
    let base = format!("/billing/{clinic}/2026-06");
    let (mut b, _) = app.signed_in(Role::Owner).await;
    let standards: Vec<(&str, &str)> = [("from", "2024-01-01")]
        .into_iter()
        .chain(
            onshi_rules::Standard::ALL
                .into_iter()
                .filter(|s| *s != onshi_rules::Standard::PediatricSpecial)
                .map(|s| ("standard", s.key())),
        )
        .collect();
    assert_eq!(b.post(&format!("/billing/{clinic}/standards"), &standards).await.status, 303);
    // No rate yet: the month's check says so once, and where to enter it.
    let verdict = |body: &str| extract(body, "data-testid=\"usage-verdict\">", "</section>").unwrap_or_default();
    let check = verdict(&b.get(&base).await.body);
    assert!(check.contains("未入力のため判定できない") && check.contains("href=\"#rates\""), "{check}");

    // 20% in the measuring months: 医療情報取得加算 no longer exists and the new addon needs 30%.
    for month in ["2026-01", "2026-02", "2026-03"] {
        assert_eq!(
            b.post(&format!("/billing/{clinic}/usage-rates"), &[("month", month), ("percent", "20")]).await.status,
            303
        );
    }
    let page = b.get(&base).await;
    assert_eq!(extract(&page.body, "data-testid=\"total-points\">", "<").unwrap(), "0");
    assert!(page.body.contains("基準30.0%未満"), "{}", page.body);
    assert!(!page.body.contains("医療情報取得加算（"));
    let check = verdict(&page.body);
    assert!(check.contains("算定不可") && check.contains("基準30.0%未満"), "{check}");
    assert!(check.contains("この月はどの受付にもこの加算を算定できません") && !check.contains("#rates"), "{check}");
    // The group's month says why the clinic's points are 0, in the same words, beside its name.
    let group = b.get("/billing?month=2026-06").await;
    let unmet = extract(&group.body, "data-testid=\"unmet\">", "</td>").unwrap_or_default();
    assert!(unmet.contains("電子的診療情報連携体制整備加算") && unmet.contains("基準30.0%未満"), "{}", group.body);

    // The notified rate was 35%: the same visit now earns 電子的診療情報連携体制整備加算1.
    assert_eq!(
        b.post(&format!("/billing/{clinic}/usage-rates"), &[("month", "2026-03"), ("percent", "35")]).await.status,
        303
    );
    // Until its 初診 is settled the visit's points stay out of the total, and the group's page says so.
    let group = b.get("/billing?month=2026-06").await;
    let waiting = extract(&group.body, "data-testid=\"provisional\"", "</span>").unwrap_or_default();
    assert!(waiting.contains("ほか未確定 1件・15点"), "{}", group.body);
    // Without a month, the page opens on the month being claimed while claims are due (the 1st to the
    // 10th), and on the month under way after.
    let today = onshi_domain::jst::date_of(time::OffsetDateTime::now_utc());
    let this = onshi_domain::YearMonth::of(today);
    let landing = b.get("/billing").await;
    let title = extract(&landing.body, "<h1>", "</h1>").unwrap();
    // (A request across midnight in Japan proves nothing either way; `landing`'s unit test has the edges.)
    if today != onshi_domain::jst::date_of(time::OffsetDateTime::now_utc()) {
    } else if today.day() <= 10 {
        assert!(title.contains(&this.plus(-1).to_string()), "{title}");
        let claiming = extract(&landing.body, "data-testid=\"claiming\">", "</p>").unwrap();
        assert!(claiming.contains(&format!("{}-10までに提出", today.to_string()[..7].to_owned())), "{claiming}");
        assert!(claiming.contains(&format!("/billing?month={this}")), "{claiming}");
    } else {
        assert!(title.contains(&this.to_string()) && !landing.body.contains("data-testid=\"claiming\""), "{title}");
    }
    // The visit is the patient's first in our data: settled as 初診 by the clerk, it counts.
    assert_eq!(b.post(&format!("{base}/bulk"), &[("scope", "unsettled"), ("action", "first")]).await.status, 303);
    let page = b.get(&base).await;
    assert!(page.body.contains("電子的診療情報連携体制整備加算1（15点）"), "{}", page.body);
    assert_eq!(extract(&page.body, "data-testid=\"total-points\">", "<").unwrap(), "15");
    let check = verdict(&page.body);
    assert!(check.contains("算定可") && check.contains("35.0%（2026-03）が基準30.0%以上"), "{check}");
    assert!(!b.get("/billing?month=2026-06").await.body.contains("data-testid=\"unmet\""), "reached: nothing unmet");
    // The 2026 rules are unverified: the top of the page says so, with the visits and rules concerned.
    let warned = extract(&page.body, "data-testid=\"unverified\">", "</p>").unwrap();
    assert!(warned.contains("この月の1件の判定") && warned.contains("href=\"#rule-renkei-2026-06"), "{warned}");
    // The rules legend gives each rule's note in the page's language (the rules data has both).
    let legend = extract(&page.body, "data-testid=\"legend\">", "</section>").unwrap();
    assert!(legend.contains("届出は新たに必要"), "{legend}");
    let en = b.get(&format!("{base}?lang=en")).await;
    let legend = extract(&en.body, "data-testid=\"legend\">", "</section>").unwrap();
    assert!(legend.contains("A new 届出 is needed") && !legend.contains("届出は新たに必要"), "{legend}");
    // A rate outside 0-100 is refused with the field named.
    let r = b.post(&format!("/billing/{clinic}/usage-rates"), &[("month", "2026-04"), ("percent", "130")]).await;
    assert_eq!(r.status, 400);
    // A browser gets an HTML page that says what to fix.
    assert!(r.headers.get("content-type").is_some_and(|v| v.to_str().unwrap().starts_with("text/html")));
    assert!(r.body.contains("利用率は 0〜100 の数で入力してください"), "{}", r.body);
});

both_modes!(unflagged_visits_are_approved_in_one_step_and_flagged_ones_stay, |app| {
    // April 2025: four patients with マイナ保険証 and one with 資格確認書.
    let events: Vec<_> = (0..5)
        .map(|i| {
            valid_visit(
                app,
                &format!("0000010{i}"),
                datetime!(2025-04-07 09:00 +09:00) + time::Duration::hours(i),
                i < 4,
            )
        })
        .collect();
    assert_eq!(app.post_events(0, &events).await.status(), 202);
    eventually(WAIT, "applied", || async { app.store().raw_event_count().await.unwrap() == 5 }).await;
    let clinic = app.clinics[0].clinic.id;
    let base = format!("/billing/{clinic}/2025-04");
    let (mut b, _) = app.signed_in(Role::Billing).await;
    // First visits in our data: 初診/再診 unsettled, so not approvable in bulk until settled.
    let page = b.get(&base).await;
    assert!(page.body.contains("区分未確定 (5)") && !page.body.contains("data-testid=\"approve-plain\""));
    assert_eq!(b.post(&format!("{base}/bulk"), &[("scope", "unsettled"), ("action", "first")]).await.status, 303);
    // Without a 届出 the マイナ保険証 visits are 算定漏れ candidates: flagged, so not in the bulk step.
    let page = b.get(&base).await;
    assert!(page.body.contains("未確認 (5)") && page.body.contains("算定漏れ候補 (4)"), "{}", page.body);
    let plain = [("scope", "plain"), ("action", "approve")];
    assert_eq!(b.post(&format!("{base}/bulk"), &plain).await.status, 303);
    let page = b.get(&base).await;
    assert!(page.body.contains("未確認 (4)"), "only the unflagged visit was approved: {}", page.body);
    // With the 届出 recorded nothing is flagged: one click approves the rest, no reason needed.
    let r = b
        .post(
            &format!("/billing/{clinic}/standards"),
            &[("from", "2024-01-01"), ("standard", "online_claims"), ("standard", "oqs"), ("standard", "notices")],
        )
        .await;
    assert_eq!(r.status, 303);
    assert_eq!(b.post(&format!("{base}/bulk"), &plain).await.status, 303);
    let page = b.get(&base).await;
    assert!(page.body.contains("未確認 (0)"), "{}", page.body);
    assert!(!page.body.contains("data-testid=\"approve-plain\""), "nothing left to approve");
    let audit = app
        .store()
        .audit_entries(&onshi_store::AuditFilter {
            action_prefix: Some("billing.bulk".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(audit.len(), 3, "settle, then two approvals");
    // Selected rows: an adjustment without a reason is refused whole; with one, every selected row changes.
    let (mut owner, _) = app.signed_in(Role::Owner).await;
    let page = owner.get(&base).await;
    let ids: Vec<String> = rows(&page.body).iter().map(|r| r.split('"').next().unwrap().to_owned()).collect();
    let pick = |extra: &[(&'static str, &'static str)]| {
        let mut form: Vec<(&str, &str)> = vec![("scope", "selected")];
        form.extend_from_slice(extra);
        form
    };
    let mut form = pick(&[("action", "exclude")]);
    form.push(("visit", &ids[0]));
    form.push(("visit", &ids[1]));
    assert_eq!(owner.post(&format!("{base}/bulk"), &form).await.status, 400);
    form.push(("reason", "自費診療"));
    assert_eq!(owner.post(&format!("{base}/bulk"), &form).await.status, 303);
    let page = owner.get(&base).await;
    assert!(page.body.contains("修正済み (2)"), "{}", page.body);
    // A visit of another month or tenant is not found, and nothing is written.
    let mut stranger = pick(&[("action", "approve")]);
    let other = uuid::Uuid::new_v4().to_string();
    stranger.push(("visit", &other));
    assert_eq!(owner.post(&format!("{base}/bulk"), &stranger).await.status, 404);
});

both_modes!(a_reason_many_visits_share_is_read_once_and_approves_its_visits, |app| {
    // July 2024, all 初診 once settled: six patients whose 診療情報 was obtained with マイナ保険証 (医療情報取得加算2)
    // and three with a 資格確認書 (加算1), so two reasons, each given by three or more visits.
    let mut events: Vec<_> = (0..9)
        .map(|i| {
            let at = datetime!(2024-07-08 09:00 +09:00) + time::Duration::minutes(10 * i);
            valid_visit(app, &format!("0000020{i}"), at, i < 6)
        })
        .collect();
    // Two checks that found nobody, each retried a minute later (the visits above): not visits to bill.
    for retried in [0, 7] {
        let mut failed = valid_visit(app, "-", events[retried].occurred_at - time::Duration::minutes(1), true);
        if let onshi_domain::EventPayload::Qualification(check) = &mut failed.payload {
            (check.patient, check.result) = (None, onshi_domain::QualificationResult::NotFound);
        }
        events.push(failed);
    }
    assert_eq!(app.post_events(0, &events).await.status(), 202);
    eventually(WAIT, "applied", || async { app.store().raw_event_count().await.unwrap() == 11 }).await;
    let clinic = app.clinics[0].clinic.id;
    let base = format!("/billing/{clinic}/2024-07");
    let (mut b, _) = app.signed_in(Role::Billing).await;
    let standards =
        [("from", "2024-01-01"), ("standard", "online_claims"), ("standard", "oqs"), ("standard", "notices")];
    assert_eq!(b.post(&format!("/billing/{clinic}/standards"), &standards).await.status, 303);
    assert_eq!(b.post(&format!("{base}/bulk"), &[("scope", "unsettled"), ("action", "first")]).await.status, 303);
    let page = b.get(&base).await;
    let ids: Vec<String> = rows(&page.body).iter().map(|r| r.split('"').next().unwrap().to_owned()).collect();
    assert_eq!(ids.len(), 9, "one line per patient's visit");
    let unidentified = extract(&page.body, "data-testid=\"unidentified\">", "</p>").unwrap();
    assert!(unidentified.contains(": 2件"), "{unidentified}");
    assert!(unidentified.contains("?from=2024-07-01&amp;to=2024-07-31#follow-up"), "that month's list: {unidentified}");
    // One visit approved on its own first: the reason's step then has five left.
    let one = b.post(&format!("{base}/visits/{}/review", ids[0]), &[("action", "approve")]).await;
    assert_eq!(one.status, 303, "{}", one.body);

    let page = b.get(&base).await;
    let card = extract(&page.body, "data-testid=\"reasons\">", "</section>").expect("the shared reasons");
    let first = extract(&card, "id=\"reason-1\"", "</li>").unwrap();
    assert!(first.contains("（6件）") && first.contains("オンライン資格確認等で診療情報を取得"), "{first}");
    assert!(first.contains("確認 (5)"), "five unreviewed visits nothing flags: {first}");
    assert!(!page.body.contains("data-testid=\"unverified\""), "2024's rules are verified");
    assert!(card.contains("id=\"reason-2\"") && card.contains("（3件）"), "{card}");
    // Each row cites its number; the text is on the page once.
    let text = extract(&first, "<br>", "\n").unwrap();
    assert_eq!(page.body.matches(text.as_str()).count(), 1, "{text}");
    let citing = rows(&page.body).iter().filter(|r| r.contains("href=\"#reason-1\"")).count();
    assert_eq!(citing, 6, "six rows cite reason 1");

    // Only its visits, then approve them: back to the same view, and the other reason's visits untouched.
    let key = extract(&first, "data-reason=\"", "\"").unwrap();
    let only = b.get(&format!("{base}?reason_id={key}")).await;
    assert_eq!(rows(&only.body).len(), 6);
    assert!(only.body.contains("data-testid=\"reason-shown\""));
    let approve = [("scope", "reason"), ("action", "approve"), ("reason_id", key.as_str()), ("filter", "")];
    let r = b.post(&format!("{base}/bulk"), &approve).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(r.location().ends_with(&format!("?reason_id={key}")), "{}", r.location());
    let page = b.get(&base).await;
    assert!(page.body.contains("未確認 (3)"), "{}", page.body);
    // The top of the page says how far the review has come, and where closing is.
    let progress = extract(&page.body, "data-testid=\"progress\">", "</p>").unwrap();
    assert!(
        progress.contains("value=\"6\"") && progress.contains("6 / 9件") && progress.contains("#exports"),
        "{progress}"
    );
    let first = extract(&page.body, "id=\"reason-1\"", "</li>").unwrap();
    assert!(!first.contains("data-testid=\"approve-reason\""), "nothing left to approve: {first}");
    // Narrowed to what is left to review, the card counts the reasons' visits there beside the month's, and
    // leaves out the reason with none there; the rows still cite the month's numbers.
    let todo = b.get(&format!("{base}?filter=needs_review")).await;
    let card = extract(&todo.body, "data-testid=\"reasons\">", "</section>").unwrap();
    assert!(!card.contains("id=\"reason-1\""), "{card}");
    assert!(extract(&card, "data-testid=\"reasons-hidden\">", "</p>").unwrap().contains("（1件）"), "{card}");
    assert!(extract(&card, "id=\"reason-2\"", "</li>").unwrap().contains("（この表示 3件・月 3件）"), "{card}");
    assert_eq!(rows(&todo.body).iter().filter(|r| r.contains("href=\"#reason-2\"")).count(), 3);
    // A reason no visit gives any more (changed since the page was drawn) approves nothing.
    let stale = [("scope", "reason"), ("action", "approve"), ("reason_id", "0123456789ab")];
    let r = b.post(&format!("{base}/bulk"), &stale).await;
    assert_eq!(r.status, 400, "{}", r.body);
    // Nor does a step on a page narrowed to such a reason widen to the whole month.
    let stale = [("scope", "unsettled"), ("action", "first"), ("reason_id", "0123456789ab")];
    assert_eq!(b.post(&format!("{base}/bulk"), &stale).await.status, 400);
    assert!(b.get(&base).await.body.contains("未確認 (3)"));
    // An English page gives the reasons in English, from the same decision.
    let en = b.get(&format!("{base}?lang=en")).await;
    let first = extract(&en.body, "id=\"reason-1\"", "</li>").unwrap();
    assert!(
        first
            .contains("医療情報取得加算2 (1 point) claimed: 施設基準 met, medical information obtained through オン資"),
        "{first}"
    );
    assert!(!first.contains("を算定"), "{first}");
    // A month still under way cannot be closed: it would be closed without its remaining visits.
    let this = onshi_domain::YearMonth::of(onshi_domain::jst::date_of(time::OffsetDateTime::now_utc()));
    let now = format!("/billing/{clinic}/{this}");
    let page = b.get(&now).await;
    assert!(page.body.contains("data-testid=\"not-ended\"") && !page.body.contains("/close\""), "{}", page.body);
    let r = b.post(&format!("{now}/close"), &[("confirm", "yes")]).await;
    assert_eq!(r.status, 400, "{}", r.body);
});
