//! The expiry radar (#18 goal 3): what a clinic enters about its 資格確認端末 and what its agents report
//! become warnings on the fleet page, e-mails at 90/30/7 days and past (once each), and the weekly summary.

use onshi_domain::{EventPayload, Role};

use crate::both_modes;
use crate::helpers::{WAIT, eventually};

both_modes!(
    the_radar_warns_before_the_certificate_and_the_os_run_out,
    |config| {
        config.radar_poll_ms = 200;
        crate::mailbox::route_mail_here(config);
    },
    |app| {
        let sink = crate::mailbox::sink();
        let (mut owner, _) = app.signed_in(Role::Owner).await;
        let manager = app.user(Role::Manager).await;
        let clinic = app.clinics[0].clinic.clone();
        let path = format!("/clinics/{}/terminal", clinic.id);

        // What cannot be read is refused with the reason.
        let r = owner.post(&path, &[("cert_expires", "2027/01/01"), ("os", "")]).await;
        assert_eq!(r.status, 422);
        assert!(r.body.contains("data-testid=\"terminal-error\""));
        assert_eq!(owner.post(&path, &[("cert_expires", ""), ("os", "windows-95")]).await.status, 422);

        // The certificate runs out in 20 days and the terminal runs Windows 10.
        let today = onshi_domain::jst::date_of(time::OffsetDateTime::now_utc());
        let expires = (today + time::Duration::days(20)).to_string();
        assert_eq!(owner.post(&path, &[("cert_expires", expires.as_str()), ("os", "win10")]).await.status, 303);
        // Its agent is an old version and the terminal's clock runs two minutes ahead.
        let mut hb = app.factory(0, 3).heartbeat(time::OffsetDateTime::now_utc());
        if let EventPayload::Heartbeat(h) = &mut hb.payload {
            h.agent_version = "0.0.1".to_owned();
            h.clock_skew_secs = Some(120);
        }
        assert_eq!(app.post_events(0, &[hb]).await.status(), 202);
        eventually(WAIT, "heartbeat written", || async {
            app.store().devices().await.unwrap().iter().any(|d| d.agent_version.as_deref() == Some("0.0.1"))
        })
        .await;

        let page = owner.get("/fleet?lang=ja").await.body;
        let radar = page.split("data-testid=\"radar\"").nth(1).unwrap().split("</section>").next().unwrap();
        for expected in
            ["電子証明書", "あと20日", "30日以内", "Windows 10 Home / Pro", "対応が必要", "0.0.1", "120 秒進んで"]
        {
            assert!(radar.contains(expected), "{expected} in {radar}");
        }
        // The other clinics have no expiry entered, and the page says which.
        let missing = radar.split("data-testid=\"no-expiry\"").nth(1).unwrap();
        assert!(missing.contains(&app.clinics[1].clinic.name) && !missing.contains(&clinic.name));

        // Dated warnings are e-mailed to the managers, once each.
        let cert = sink.wait_for(&manager.email, "電子証明書の有効期限（").await;
        assert!(cert.contains("あと 20 日") && cert.contains("/fleet"), "{cert}");
        let os = sink.wait_for(&manager.email, "OS（Windows 10 Home / Pro）のサポート終了").await;
        assert!(os.contains("日前に終了"), "{os}");
        tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
        let mails = sink.all_to(&manager.email);
        let count = |needle: &str| mails.iter().filter(|m| m.contains(needle) && !m.contains("週間まとめ")).count();
        assert_eq!(count("電子証明書の有効期限（"), 1, "the certificate is told once per stage");
        assert_eq!(count("のサポート終了"), 1);
        assert_eq!(count("エージェントの更新"), 0, "versions are on the page and in the summary, not mailed each");

        // The weekly summary goes out on the first look after Monday 08:00 JST (never at night), once a week.
        let local = time::OffsetDateTime::now_utc().to_offset(onshi_domain::jst::JST);
        if local.hour() >= 8 {
            // The watch's first look sent this week's summary, usually before anyone but the owner existed
            // (on a loaded machine, after the manager and the heartbeat too): forget it was sent, as if a
            // week had passed, and the next look sends one more with everything above.
            let summaries = || {
                let all = sink.all_to(&manager.email).into_iter();
                all.filter(|m| m.contains("週間まとめ（") && m.contains("エージェントの更新")).collect::<Vec<_>>()
            };
            let before = summaries().len();
            app.execute_as_owner("DELETE FROM weekly_summaries", vec![]).await;
            eventually(WAIT, "a new weekly summary", || async { summaries().len() > before }).await;
            let summary = summaries().pop().unwrap_or_default();
            let other = &app.clinics[1].clinic.name;
            for expected in [
                "電子証明書の有効期限（",
                "Windows 10 Home / Pro",
                "エージェントの更新",
                "電子証明書の有効期限が未入力",
                other.as_str(),
                "weekly summary",
            ] {
                assert!(summary.contains(expected), "{expected} in {summary}");
            }
            tokio::time::sleep(std::time::Duration::from_millis(600)).await;
            assert_eq!(summaries().len(), before + 1, "once a week: one more, not one per look");
        }
        let audit =
            app.store().audit_entries(&onshi_store::AuditFilter { limit: 1000, ..Default::default() }).await.unwrap();
        for action in ["clinic.terminal", "radar.notice"] {
            assert!(audit.iter().any(|e| e.action == action), "{action} audited");
        }
    }
);
