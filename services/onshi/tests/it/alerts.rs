//! Alerts that know opening hours (#18): a fault lasting the clinic's wait in opening hours is told once
//! to the group's owners and managers by e-mail, announced as a webhook, audited and listed on the fleet
//! page; its end is told once; nothing while the clinic is closed.

use onshi_domain::device_alert::AlertKind;
use onshi_domain::{EventPayload, Role, WebhookEvent};

use sea_orm::ConnectionTrait;

use crate::both_modes;
use crate::helpers::{TestApp, WAIT, eventually};

fn fast(config: &mut onshi_config::Config) {
    config.alert_poll_ms = 100;
    crate::mailbox::route_mail_here(config);
}

async fn heartbeat(app: &TestApp, seed: u64, reader_ok: bool) {
    let mut hb = app.factory(0, seed).heartbeat(time::OffsetDateTime::now_utc());
    if let EventPayload::Heartbeat(h) = &mut hb.payload {
        h.reader_ok = Some(reader_ok);
    }
    assert_eq!(app.post_events(0, &[hb]).await.status(), 202);
    eventually(WAIT, "heartbeat written", || async {
        app.store()
            .devices()
            .await
            .unwrap()
            .iter()
            .any(|d| d.last_heartbeat.as_ref().and_then(|h| h.reader_ok) == Some(reader_ok))
    })
    .await;
}

fn hours(all_day: bool) -> Vec<(&'static str, &'static str)> {
    let day = if all_day { "00:00-24:00" } else { "" };
    let mut fields: Vec<_> = onshi_domain::hours::DAY_FIELDS.iter().map(|f| (*f, day)).collect();
    if all_day {
        fields.push(("holidays", "1"));
    }
    fields.push(("after", "10"));
    fields
}

both_modes!(
    a_fault_in_opening_hours_is_told_once_and_its_end_once_and_nothing_while_closed,
    |config| { fast(config) },
    |app| {
        let sink = crate::mailbox::sink();
        let (mut owner, _) = app.signed_in(Role::Owner).await;
        let manager = app.user(Role::Manager).await;
        webhook_outbox(app, &[WebhookEvent::AlertRaised, WebhookEvent::AlertResolved]).await;
        let clinic = app.clinics[0].clinic.clone();
        let page = format!("/clinics/{}", clinic.id);

        // Until set, the usual hours apply and the page says which.
        assert!(owner.get(&page).await.body.contains("data-testid=\"hours-default\""));
        // Hours that cannot be read are refused with the day named, and what was typed is kept.
        let mut bad = hours(false);
        bad[0] = ("mon", "25:00-26:00");
        let r = owner.post(&format!("{page}/hours"), &bad).await;
        assert_eq!(r.status, 422, "{}", r.body);
        assert!(r.body.contains("月曜日") && r.body.contains("value=\"25:00-26:00\""), "{}", r.body);
        let mut bad = hours(false);
        bad.retain(|(k, _)| *k != "after");
        bad.push(("after", "0"));
        assert_eq!(owner.post(&format!("{page}/hours"), &bad).await.status, 422);

        // Closed every day: the reader fails, lasts half an hour, and nobody is told.
        assert_eq!(owner.post(&format!("{page}/hours"), &hours(false)).await.status, 303);
        heartbeat(app, 1, false).await;
        let count = "SELECT count(*) AS n FROM device_alerts";
        let tracked = || async {
            let db = app.owner_db().await;
            let backend = db.get_database_backend();
            let row = db.query_one_raw(sea_orm::Statement::from_string(backend, count)).await.unwrap().unwrap();
            db.close().await.ok();
            row.try_get::<i64>("", "n").unwrap()
        };
        eventually(WAIT, "fault tracked", || async { tracked().await == 1 }).await;
        let half_an_hour_ago = time::OffsetDateTime::now_utc() - time::Duration::minutes(30);
        app.execute_as_owner("UPDATE device_alerts SET since = $1", vec![half_an_hour_ago.into()]).await;
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        assert!(app.store().device_alerts(half_an_hour_ago - time::Duration::hours(1)).await.unwrap().is_empty());
        assert!(sink.all_to(&manager.email).iter().all(|m| !m.contains("カードリーダー")), "nothing while closed");

        // Open all day, holidays included: the same fault is told now, once, with what to check.
        assert_eq!(owner.post(&format!("{page}/hours"), &hours(true)).await.status, 303);
        let mail = sink.wait_for(&manager.email, "カードリーダーが応答しません").await;
        assert!(mail.contains("USBケーブル") && mail.contains("/fleet") && mail.contains("card reader"), "{mail}");
        let alerts = app.store().device_alerts(half_an_hour_ago - time::Duration::hours(1)).await.unwrap();
        assert_eq!(alerts.len(), 1);
        assert_eq!((alerts[0].kind, alerts[0].resolved_at), (AlertKind::Reader, None));
        let fleet = owner.get("/fleet").await.body;
        let listed = fleet.split("data-testid=\"alerts\"").nth(1).unwrap();
        assert!(
            listed.contains("data-alert-open=\"true\"") && listed.contains("カードリーダーが応答しません"),
            "{listed}"
        );
        assert!(listed.contains(&clinic.name));

        // Back to normal: told once more.
        heartbeat(app, 2, true).await;
        let over = sink.wait_for(&manager.email, "復旧しました").await;
        assert!(over.contains("カードリーダー"), "{over}");
        tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
        let to_manager = sink.all_to(&manager.email);
        assert_eq!(to_manager.iter().filter(|m| m.contains("確かめること")).count(), 1, "raised once");
        assert_eq!(to_manager.iter().filter(|m| m.contains("復旧しました")).count(), 1, "resolved once");
        let events = webhook_events(app).await;
        assert_eq!(events, ["alert.raised", "alert.resolved"]);
        let payload = app.store().webhook_deliveries(10).await.unwrap();
        assert!(payload.iter().all(|d| d.event.starts_with("alert.")));
        let audit =
            app.store().audit_entries(&onshi_store::AuditFilter { limit: 1000, ..Default::default() }).await.unwrap();
        for action in ["clinic.hours", "device_alert.raised", "device_alert.resolved"] {
            assert!(audit.iter().any(|e| e.action == action), "{action} audited");
        }
        assert!(owner.get("/fleet").await.body.contains("data-alert-open=\"false\""));

        // Silent for twenty minutes: the agent is reported offline at once (the wait has passed).
        app.execute_as_owner(
            "UPDATE devices SET last_seen_at = $1 WHERE last_seen_at IS NOT NULL",
            vec![(time::OffsetDateTime::now_utc() - time::Duration::minutes(20)).into()],
        )
        .await;
        let mail = sink.wait_for(&manager.email, "エージェントから連絡がありません").await;
        assert!(mail.contains("onshi-agent"), "{mail}");
    }
);

both_modes!(
    an_alert_the_mail_server_refuses_is_sent_again_until_it_is_taken_and_only_once,
    |config| {
        fast(config);
        // Retried every 2 s for 40 s: long enough that a slow machine cannot spend it before the sink
        // accepts again.
        config.mail_backoff_secs = vec![2; 20];
    },
    |app| {
        let sink = crate::mailbox::sink();
        let (mut owner, owner_user) = app.signed_in(Role::Owner).await;
        let owner_email = owner_user.email.clone();
        let manager = app.user(Role::Manager).await;
        let page = format!("/clinics/{}", app.clinics[0].clinic.id);
        assert_eq!(owner.post(&format!("{page}/hours"), &hours(true)).await.status, 303);
        // The manager's mailbox is in trouble: the server answers 451 (try again later).
        sink.refuse(&manager.email);
        heartbeat(app, 1, false).await;
        let owner_db = app.owner_db().await;
        count_becomes(&owner_db, "fault tracked", "SELECT count(*) FROM device_alerts", 1).await;
        let half_an_hour_ago = time::OffsetDateTime::now_utc() - time::Duration::minutes(30);
        app.execute_as_owner("UPDATE device_alerts SET since = $1", vec![half_an_hour_ago.into()]).await;

        // The alert is raised; the manager's copy is refused, kept with the server's answer, and tried again.
        count_becomes(
            &owner_db,
            "refused twice and kept",
            "SELECT count(*) FROM mail_outbox WHERE status = 'pending' AND attempts >= 2 AND last_error LIKE '%451%'",
            1,
        )
        .await;
        let about_reader = |m: &String| m.contains("カードリーダーが応答しません");
        assert_eq!(sink.all_to(&manager.email).iter().filter(|m| about_reader(m)).count(), 0);
        let kept: String = {
            let row = owner_db
                .query_one_raw(sea_orm::Statement::from_string(
                    owner_db.get_database_backend(),
                    "SELECT last_error FROM mail_outbox WHERE last_error IS NOT NULL",
                ))
                .await
                .unwrap()
                .unwrap();
            row.try_get_by_index(0).unwrap()
        };
        assert!(!kept.contains(&manager.email.to_ascii_uppercase()) && !kept.contains('@'), "no address kept: {kept}");

        // The server takes it again: the alert arrives once, and the outbox is empty.
        sink.accept(&manager.email);
        let mail = sink.wait_for(&manager.email, "カードリーダーが応答しません").await;
        assert!(mail.contains("確かめること"), "{mail}");
        count_becomes(&owner_db, "outbox empty", "SELECT count(*) FROM mail_outbox", 0).await;
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        assert_eq!(sink.all_to(&manager.email).iter().filter(|m| about_reader(m)).count(), 1, "sent once");

        // The manager's address is now unknown there (550): the end of the fault is not retried for a day
        // but kept as failed after its one attempt, and the owner still gets it.
        sink.reject(&manager.email);
        heartbeat(app, 2, true).await;
        sink.wait_for(&owner_email, "復旧しました").await;
        count_becomes(
            &owner_db,
            "refused for good",
            "SELECT count(*) FROM mail_outbox WHERE status = 'failed' AND attempts = 1 AND last_error LIKE '%550%'",
            1,
        )
        .await;

        // The manager's mailbox is in trouble again when a new fault is raised, and the manager leaves the
        // group while the alert waits for it: it is dropped, never sent to someone who left.
        sink.refuse(&manager.email);
        heartbeat(app, 3, false).await;
        let open = "SELECT count(*) FROM device_alerts WHERE resolved_at IS NULL";
        count_becomes(&owner_db, "second fault tracked", open, 1).await;
        app.execute_as_owner(
            "UPDATE device_alerts SET since = $1 WHERE resolved_at IS NULL",
            vec![half_an_hour_ago.into()],
        )
        .await;
        let waiting = "SELECT count(*) FROM mail_outbox WHERE status = 'pending' AND last_error LIKE '%451%'";
        count_becomes(&owner_db, "refused and waiting", waiting, 1).await;
        app.execute_as_owner(
            "UPDATE users SET status = 'disabled' WHERE email = $1",
            vec![manager.email.clone().into()],
        )
        .await;
        count_becomes(&owner_db, "dropped", "SELECT count(*) FROM mail_outbox WHERE status = 'pending'", 0).await;
        sink.accept(&manager.email);
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let raised = |m: &String| about_reader(m) && m.contains("確かめること");
        assert_eq!(sink.all_to(&manager.email).iter().filter(|m| raised(m)).count(), 1, "not sent after leaving");
        assert_eq!(sink.all_to(&owner_email).iter().filter(|m| raised(m)).count(), 2, "the owner is told both");
        owner_db.close().await.ok();
    }
);

/// Waits until a count, read as the database's owner, is `n`.
async fn count_becomes(db: &sea_orm::DatabaseConnection, what: &str, sql: &str, n: i64) {
    eventually(WAIT, what, || async { crate::helpers::scalar(db, sql).await == n }).await;
}
