//! 資格無効 follow-up (#18 goal 4): receptions whose result was not valid, by week, counted by insurer and
//! result, repeat patients by pseudonym, what to do, statuses set many at once, CSV, and the weekly summary.

use onshi_domain::{
    AgentEvent, ConfirmationMethod, Consents, EventId, EventPayload, InsurerNumber, PatientRef, QualificationCheck,
    QualificationResult, Role,
};

use crate::both_modes;
use crate::helpers::{TestApp, WAIT, eventually, extract};

fn result(
    app: &TestApp,
    at: time::OffsetDateTime,
    patient: Option<&str>,
    result: QualificationResult,
    insurer: &str,
) -> AgentEvent {
    AgentEvent {
        id: EventId::new(),
        occurred_at: at,
        payload: EventPayload::Qualification(QualificationCheck {
            institution_code: app.clinics[0].clinic.code.clone(),
            method: ConfirmationMethod::NumberQuery,
            identity_check: None,
            batch: false,
            error_code: None,
            result,
            patient: patient.map(|p| PatientRef::pseudonymize(b"test-key", insurer, "", p, "00")),
            insurer: InsurerNumber::parse(insurer),
            consents: Consents::default(),
            limit_certificate: false,
            time_source: Default::default(),
        }),
    }
}

both_modes!(
    the_desk_works_through_a_weeks_invalid_results_by_insurer,
    |config| {
        config.radar_poll_ms = 200;
        crate::mailbox::route_mail_here(config);
    },
    |app| {
        use time::macros::datetime;
        let clinic = app.clinics[0].clinic.clone();
        // The week of Monday 2026-10-05: patient a twice 無効 (協会けんぽ-like insurer), somebody not found under
        // another insurer, one valid reception, and a check digit that does not match.
        let events = [
            result(app, datetime!(2026-10-06 10:00 +09:00), Some("a"), QualificationResult::Invalid, "06139992"),
            result(app, datetime!(2026-10-08 11:00 +09:00), Some("a"), QualificationResult::Invalid, "06139992"),
            result(app, datetime!(2026-10-07 09:30 +09:00), None, QualificationResult::NotFound, "01130012"),
            result(app, datetime!(2026-10-07 09:40 +09:00), Some("c"), QualificationResult::Valid, "06139992"),
            result(
                app,
                datetime!(2026-10-09 15:00 +09:00),
                Some("d"),
                QualificationResult::InvalidNewQualification,
                "01130013",
            ),
            // Yesterday, for the weekly summary.
            result(
                app,
                time::OffsetDateTime::now_utc() - time::Duration::days(1),
                Some("e"),
                QualificationResult::Invalid,
                "06139992",
            ),
        ];
        assert_eq!(app.post_events(0, &events).await.status(), 202);
        eventually(WAIT, "visits written", || async {
            app.store().recent_visits(&clinic, 100).await.unwrap().len() >= 6
        })
        .await;

        let (mut desk, desk_user) = app.signed_in(Role::Billing).await;
        let path = format!("/clinics/{}/followups", clinic.id);
        let page = desk.get(&format!("{path}?week=2026-10-07&lang=ja")).await;
        assert_eq!(page.status, 200);
        let body = page.body;
        assert!(body.contains("2026-10-05 〜 2026-10-11"), "any day picks its Monday");
        assert!(body.contains("4 件（未対応 4）"), "the valid reception is not a case");
        let by_insurer = extract(&body, "data-testid=\"by-insurer\"", "</table>").unwrap();
        let row = |insurer: &str| extract(&by_insurer, &format!("<td class=\"full\">{insurer}</td>"), "</tr>").unwrap();
        assert!(row("06139992").ends_with("<td class=\"num\" data-label=\"計\">2</td>"), "{by_insurer}");
        // Each count is labelled with its result, so a phone shows it as a card rather than a wide table.
        assert!(row("01130012").contains("\">1</td>") && row("01130012").contains("data-label=\""), "{by_insurer}");
        assert!(body.contains("検証番号が合いません"), "01130013 fails its check digit");
        let repeats = extract(&body, "data-testid=\"repeats\">", "</p>").unwrap();
        assert!(repeats.contains("#1 ×2"), "{repeats}");
        assert!(body.contains("同じ方 #1・1回目") && body.contains("同じ方 #1・2回目"));
        let pseudonym = onshi_domain::PatientRef::pseudonymize(b"test-key", "06139992", "", "a", "00");
        assert!(!body.contains(&pseudonym.as_str()[..8]), "pages never show a pseudonym");
        assert!(body.contains("資格確認書") && body.contains("入力誤り"), "a script for each result");
        assert!(!body.contains("\"c\""), "no valid reception listed");

        // Two statuses changed at once; the others left as they were.
        let ids: Vec<String> = body.split("data-case=\"").skip(1).map(|s| s[..36].to_owned()).collect();
        assert_eq!(ids.len(), 4);
        let mut fields: Vec<(String, String)> = vec![("week".into(), "2026-10-05".into())];
        for (i, id) in ids.iter().enumerate() {
            let status = match i {
                0 => "resolved",
                1 => "henrei_risk",
                _ => "open",
            };
            fields.push((format!("status:{id}"), status.into()));
            fields.push((format!("was:{id}"), "open".into()));
        }
        let borrowed: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let r = desk.post(&path, &borrowed).await;
        assert_eq!(r.status, 303, "{}", r.body);
        let body = desk.get(&format!("{path}?week=2026-10-05")).await.body;
        assert!(body.contains(&format!("data-case=\"{}\" data-status=\"resolved\"", ids[0])));
        assert!(body.contains(&format!("data-case=\"{}\" data-status=\"henrei_risk\"", ids[1])));
        assert!(body.contains("4 件（未対応 2）"));
        let audit =
            app.store().audit_entries(&onshi_store::AuditFilter { limit: 1000, ..Default::default() }).await.unwrap();
        let set = audit.iter().find(|e| e.action == "followup.status").unwrap();
        let details: serde_json::Value = serde_json::from_str(&set.details).unwrap();
        assert_eq!(details["changes"].as_array().unwrap().len(), 2, "only what changed");
        assert_eq!(set.actor, desk_user.email);
        let bad = [("week", "2026-10-05"), ("status:00000000-0000-0000-0000-000000000000", "done")];
        assert_eq!(desk.post(&path, &bad).await.status, 400);

        // The same as CSV, audited.
        let csv = desk.get(&format!("{path}?week=2026-10-05&format=csv")).await;
        assert_eq!(csv.status, 200);
        let text = String::from_utf8_lossy(csv.body.as_bytes()).to_string();
        assert!(text.contains("保険者番号") && text.contains("06139992") && text.contains("解決"), "{text}");
        let audit =
            app.store().audit_entries(&onshi_store::AuditFilter { limit: 1000, ..Default::default() }).await.unwrap();
        assert!(audit.iter().any(|e| e.action == "followups.export"));
        // Nobody outside the group reaches it.
        assert_eq!(desk.get(&format!("/clinics/{}/followups", onshi_domain::ClinicId::new())).await.status, 404);

        // The weekly summary counts the last seven days per clinic (sent again as if a week had passed).
        let manager = app.user(Role::Manager).await;
        let local = time::OffsetDateTime::now_utc().to_offset(onshi_domain::jst::JST);
        if local.hour() >= 8 {
            app.execute_as_owner("DELETE FROM weekly_summaries", vec![]).await;
            let line = format!("{}: 1 件（未対応 1）: 無効 1", clinic.name);
            crate::mailbox::sink().wait_for_all(&manager.email, &["資格無効のフォローアップ（直近7日）", &line]).await;
        }
    }
);
