//! The cheaper paths of issue 16 keep what the expensive ones guaranteed: heartbeats coalesced in the
//! cache still record every state change, batches applied together count a repeated event once, and
//! the daily rollup always equals the hourly one it summarises.

use onshi_domain::EventPayload;
use onshi_store::QueuedBatch;

use crate::both_modes;
use crate::helpers::*;

both_modes!(heartbeats_coalesced_between_two_writes_keep_each_state, |app| {
    let device = app.clinics[0].device;
    // Whole seconds: PostgreSQL keeps microseconds.
    let t0 = (time::OffsetDateTime::now_utc() - time::Duration::minutes(5)).replace_nanosecond(0).unwrap();
    // Up, then the reader fails ten seconds later, then up again: in one request, so the writer takes
    // them in one round (newest per state: the degraded one and the later of the two "up").
    let mut beats = Vec::new();
    for (offset, reader) in [(0, true), (10, false), (20, true)] {
        let mut hb = app.factory(0, offset as u64).heartbeat(t0 + time::Duration::seconds(offset));
        if let EventPayload::Heartbeat(h) = &mut hb.payload {
            h.reader_ok = Some(reader);
            h.network_ok = Some(true);
        }
        beats.push(hb);
    }
    let response = app.post_events(0, &beats).await;
    assert_eq!(response.status(), 202);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["accepted"], 3);
    eventually(WAIT, "heartbeats written", || async {
        let u = app.store().uptime(&[device], t0 - time::Duration::hours(1), time::OffsetDateTime::now_utc()).await;
        u.unwrap().len() == 2
    })
    .await;
    let intervals =
        app.store().uptime(&[device], t0 - time::Duration::hours(1), time::OffsetDateTime::now_utc()).await.unwrap();
    assert!(!intervals[0].healthy, "the degradation is kept: {intervals:?}");
    assert_eq!((intervals[0].from - t0).whole_seconds(), 10);
    assert!(intervals[1].healthy);
    assert_eq!((intervals[1].from - t0).whole_seconds(), 20);
    // The device shows its newest heartbeat, and it was seen.
    let stored = app.store().device(device).await.unwrap().unwrap();
    assert_eq!(stored.last_heartbeat.and_then(|h| h.reader_ok), Some(true));
    assert!(stored.last_seen_at.is_some());
    // Nothing went through the queue: no raw event, no applied batch needed.
    assert_eq!(app.store().raw_event_count().await.unwrap(), 0);
});

both_modes!(batches_applied_together_count_a_repeated_event_once, |app| {
    let c = &app.clinics[1];
    let auth = app.adapters().store.system().device_auth(app.tenant, c.clinic.id, c.device).await.unwrap().unwrap();
    let events = app.receptions(1, 3, 21);
    // The same resend queued twice (both passed the API's look-up before either was applied), and a
    // batch with one new event: one transaction for all three.
    let first = QueuedBatch::accepted(&auth, uuid::Uuid::now_v7(), events.clone());
    let again = QueuedBatch::accepted(&auth, uuid::Uuid::now_v7(), events.clone());
    let other = QueuedBatch::accepted(&auth, uuid::Uuid::now_v7(), app.receptions(1, 1, 22));
    let outcomes = app.store().apply_batches(&[first, again, other]).await.unwrap();
    assert_eq!(
        outcomes.iter().map(|o| (o.new_events, o.duplicate_events)).collect::<Vec<_>>(),
        [(3, 0), (0, 3), (1, 0)]
    );
    assert_eq!(app.store().raw_event_count().await.unwrap(), 4);
    let today = onshi_domain::jst::date_of(time::OffsetDateTime::now_utc());
    let visits = app.store().visits_on(&c.clinic, today).await.unwrap();
    let confirmations: u32 = visits.iter().map(|v| v.confirmations).sum();
    assert_eq!(confirmations, 4, "each event confirms once: {visits:?}");
});

both_modes!(the_daily_rollup_counts_each_visit_once_in_its_hour_and_is_rebuilt_the_same, |app| {
    let clinic = &app.clinics[0].clinic;
    let events = app.receptions(0, 40, 31);
    assert_eq!(app.post_events(0, &events).await.status(), 202);
    eventually(WAIT, "applied", || async { app.store().raw_event_count().await.unwrap() == 40 }).await;
    let today = onshi_domain::jst::date_of(time::OffsetDateTime::now_utc());
    let from = today - time::Duration::days(2);
    let rollup = || async { app.store().daily(clinic, from, today).await.unwrap() };
    let rows = rollup().await;
    let receptions: i64 = rows.iter().map(|r| r.receptions).sum();
    assert!(receptions > 0);
    for r in &rows {
        assert_eq!(r.hours.iter().sum::<i64>(), r.receptions, "a day's hours add up to its receptions: {r:?}");
    }
    // Each visit is in the hour (JST) of its first confirmation, on its day and method.
    let mut expected: std::collections::BTreeMap<(time::Date, usize), i64> = Default::default();
    for day in [today.previous_day().unwrap(), today] {
        for v in app.store().visits_on(clinic, day).await.unwrap() {
            let hour = v.first_at.to_offset(onshi_domain::jst::JST).hour();
            *expected.entry((day, usize::from(hour))).or_default() += 1;
        }
    }
    let mut seen: std::collections::BTreeMap<(time::Date, usize), i64> = Default::default();
    for r in &rows {
        for (hour, n) in r.hours.iter().enumerate().filter(|(_, n)| **n != 0) {
            *seen.entry((r.day, hour)).or_default() += n;
        }
    }
    assert_eq!(seen, expected);
    app.store().rebuild_rollups().await.unwrap();
    assert_eq!(rollup().await, rows, "rebuilt from the visits, the same");
});

both_modes!(a_group_waiting_for_its_archive_holds_up_no_other_group_of_its_clinic, |app| {
    let c = &app.clinics[0];
    let auth = app.adapters().store.system().device_auth(app.tenant, c.clinic.id, c.device).await.unwrap().unwrap();
    let store = app.store();
    let now = time::OffsetDateTime::now_utc();
    let batch =
        |patient: &str| QueuedBatch::accepted(&auth, uuid::Uuid::now_v7(), vec![valid_visit(app, patient, now, true)]);
    let today = onshi_domain::jst::date_of(now);
    let receptions =
        || async { store.daily(&c.clinic, today, today).await.unwrap().iter().map(|r| r.receptions).sum::<i64>() };

    // A group whose archive failed leaves nothing behind: no raw event, no visit, no count.
    assert_eq!(store.apply_batches_if(&[batch("P-lost")], std::future::ready(false)).await.unwrap(), None);
    assert_eq!((store.raw_event_count().await.unwrap(), store.visit_count().await.unwrap()), (0, 0));
    assert_eq!(receptions().await, 0);
    if !app.adapters().store.is_postgres() {
        return; // SQLite has one writer: the worker uploads first there and never waits inside a transaction.
    }

    // Group A of the clinic waits for its upload inside its transaction; group B of the same clinic (other
    // patients, the same agent, the same day's counters) must not wait for A's upload to commit.
    let (reached, at_upload) = tokio::sync::oneshot::channel::<()>();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let upload = async move {
        let _ = reached.send(());
        released.await.is_ok()
    };
    let (a, b) = ([batch("P-A")], [batch("P-B")]);
    let first = store.apply_batches_if(&a, upload);
    let second = async {
        at_upload.await.unwrap();
        let second = tokio::time::timeout(std::time::Duration::from_secs(10), store.apply_batches(&b)).await;
        let _ = release.send(());
        second
    };
    let (first, second) = tokio::join!(first, second);
    let second = second.expect("group B waited for group A's upload").unwrap();
    assert_eq!(second[0].new_events, 1);
    assert_eq!(first.unwrap().map(|o| o[0].new_events), Some(1), "A commits once its upload is done");
    assert_eq!(store.raw_event_count().await.unwrap(), 2);
    assert_eq!(receptions().await, 2, "both groups counted");
});

/// A batch of the test tenant from its first clinic's device, as the ingest handler would queue it.
fn envelope(
    app: &TestApp,
    clinic: onshi_domain::ClinicId,
    events: Vec<onshi_domain::AgentEvent>,
) -> onshi_domain::IngestEnvelope {
    onshi_domain::IngestEnvelope {
        version: onshi_domain::ENVELOPE_VERSION,
        batch_id: uuid::Uuid::now_v7(),
        tenant: app.tenant,
        clinic,
        device: app.clinics[0].device,
        received_at: time::OffsetDateTime::now_utc(),
        events,
    }
}

both_modes!(a_batch_that_can_never_apply_is_dead_lettered_alone_from_its_group, |app| {
    use onshi_queue::{Headers, MessageQueue};
    let queue = &app.adapters().queue;
    let envelope = |clinic, events| envelope(app, clinic, events);
    // Same tenant, published back to back so the worker takes them as one group: a clinic that does not
    // exist (a foreign key that can never hold) between two good batches.
    let good = [app.receptions(0, 2, 31), app.receptions(0, 3, 32)];
    let bad = envelope(onshi_domain::ClinicId::new(), app.receptions(0, 1, 33));
    for message in
        [envelope(app.clinics[0].clinic.id, good[0].clone()), bad, envelope(app.clinics[0].clinic.id, good[1].clone())]
    {
        queue.publish(&serde_json::to_vec(&message).unwrap(), &Headers::default()).await.unwrap();
    }
    eventually(WAIT, "the bad batch dead-lettered", || async { queue.dead_letter_count().await.unwrap() == 1 }).await;
    eventually(WAIT, "both good batches applied", || async { app.store().raw_event_count().await.unwrap() == 5 }).await;
    eventually(WAIT, "main queue empty", || async { queue.depth().await.unwrap() == 0 }).await;
});

both_modes!(a_message_of_several_batches_returns_each_on_its_own_when_one_cannot_apply, |app| {
    use onshi_queue::{Headers, MessageQueue, parts};
    let queue = &app.adapters().queue;
    let envelope = |clinic, events| serde_json::to_vec(&envelope(app, clinic, events)).unwrap();
    let clinic = app.clinics[0].clinic.id;
    // As the API publishes concurrent requests: one message, several batches. In the first, a clinic
    // that does not exist (a foreign key that can never hold) between two good batches; in the second,
    // a part that is not an envelope at all.
    let (good, bad) =
        (envelope(clinic, app.receptions(0, 2, 41)), envelope(onshi_domain::ClinicId::new(), app.receptions(0, 1, 42)));
    let (later, garbage) = (envelope(clinic, app.receptions(0, 3, 43)), b"not an envelope".to_vec());
    let last = envelope(clinic, app.receptions(0, 1, 44));
    let none = Headers::default();
    for message in [vec![&good, &bad, &last], vec![&later, &garbage]] {
        let joined: Vec<(&[u8], &Headers)> = message.iter().map(|p| (p.as_slice(), &none)).collect();
        let (payload, headers) = parts::join(&joined);
        queue.publish(&payload, &headers).await.unwrap();
    }
    eventually(WAIT, "every good batch applied", || async { app.store().raw_event_count().await.unwrap() == 6 }).await;
    eventually(WAIT, "the two bad parts dead-lettered, each alone", || async {
        queue.dead_letter_count().await.unwrap() == 2
    })
    .await;
    eventually(WAIT, "main queue empty", || async { queue.depth().await.unwrap() == 0 }).await;
    // Applied once each, though the good batches of the first message came back as duplicates (the queue's
    // depth leaves out messages in flight, so a duplicate may still be on its way: wait, then hold).
    let today = onshi_domain::jst::date_of(time::OffsetDateTime::now_utc());
    let confirmations = || async {
        let mut sum = 0;
        for day in [today.previous_day().unwrap(), today] {
            let visits = app.store().visits_on(&app.clinics[0].clinic, day).await.unwrap();
            sum += visits.iter().map(|v| v.confirmations).sum::<u32>();
        }
        sum
    };
    eventually(WAIT, "six confirmations", || async { confirmations().await == 6 }).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(confirmations().await, 6, "each event confirms once");
    assert_eq!(queue.dead_letter_count().await.unwrap(), 2, "the good batches were not dead-lettered with the bad");
});
