//! Each adapter's contract, checked against whichever backend the mode selects.

use std::time::Duration;

use futures_util::StreamExt;
use onshi_cache::CacheBackend;
use onshi_objects::ObjectBackend;
use onshi_queue::{EmbeddedQueue, Headers, MessageConsumer, MessageQueue, Queue, RabbitQueue};
use secrecy::ExposeSecret;

use crate::both_modes;
use crate::helpers::*;

/// A second queue of the app's kind, with its own name, so a test can consume it alone.
async fn fresh_queue(app: &TestApp, delivery_limit: u32) -> Queue {
    let name = format!("onshi.it.contract.{}", uuid::Uuid::new_v4().simple());
    match &app.adapters().queue {
        Queue::Rabbit(_) => {
            let url = app.config.amqp_url.as_ref().unwrap().expose_secret().to_owned();
            Queue::Rabbit(RabbitQueue::connect(&url, &name, delivery_limit).await.unwrap())
        }
        Queue::Embedded(_) => {
            Queue::Embedded(EmbeddedQueue::new(app.adapters().store.connection().clone(), &name, delivery_limit))
        }
    }
}

async fn drop_queue(queue: Queue) {
    if let Queue::Rabbit(q) = queue {
        q.delete().await.unwrap();
    }
}

both_modes!(queue_delivers_in_order_and_ack_removes, |app| {
    let queue = fresh_queue(app, 3).await;
    // Odd messages carry trace context, even ones none: both must come back as sent.
    let traceparent = |i: u8| (i % 2 == 1).then(|| format!("00-{:032x}-{:016x}-01", u128::from(i) + 1, 7));
    for i in 0..5u8 {
        queue.publish(&[i], &Headers { traceparent: traceparent(i) }).await.unwrap();
    }
    let mut consumer = queue.consume(10).await.unwrap();
    for i in 0..5u8 {
        let delivery = consumer.next().await.unwrap().unwrap();
        assert_eq!(delivery.payload, vec![i]);
        assert_eq!(delivery.delivery_count, 1);
        assert_eq!(delivery.headers.traceparent, traceparent(i));
        delivery.ack().await.unwrap();
    }
    eventually(WAIT, "queue empty after acks", || async { queue.depth().await.unwrap() == 0 }).await;
    assert_eq!(queue.dead_letter_count().await.unwrap(), 0);
    drop(consumer);
    drop_queue(queue).await;
});

both_modes!(coalescing_shares_messages_between_concurrent_publishes_and_each_part_keeps_its_trace, |app| {
    let queue = fresh_queue(app, 3).await;
    let publisher = onshi_queue::Coalescing::start(queue.clone());
    let traceparent = |i: usize| (i % 2 == 1).then(|| format!("00-{:032x}-{:016x}-01", i + 1, 7));
    let sent: Vec<_> = (0..50usize)
        .map(|i| publisher.publish(format!(r#"{{"n":{i}}}"#).into_bytes(), Headers { traceparent: traceparent(i) }))
        .collect();
    // Each returns only once its message is confirmed.
    for result in futures_util::future::join_all(sent).await {
        result.unwrap();
    }
    let mut consumer = queue.consume(100).await.unwrap();
    let (mut messages, mut received) = (0, std::collections::BTreeMap::new());
    while received.len() < 50 {
        let delivery = tokio::time::timeout(WAIT, consumer.next()).await.unwrap().unwrap().unwrap();
        messages += 1;
        for (part, headers) in onshi_queue::parts::split(&delivery.payload, &delivery.headers) {
            let n: serde_json::Value = serde_json::from_slice(part).unwrap();
            let n = n["n"].as_u64().unwrap() as usize;
            assert_eq!(headers.traceparent, traceparent(n), "part {n} keeps its own trace context");
            assert!(received.insert(n, ()).is_none(), "part {n} delivered once");
        }
        delivery.ack().await.unwrap();
    }
    assert!(messages < 50, "concurrent publishes shared messages: {messages} messages for 50 payloads");
    drop(consumer);
    drop_queue(queue).await;
});

both_modes!(queue_dead_letters_a_message_returned_past_the_limit, |app| {
    let queue = fresh_queue(app, 2).await;
    queue.publish(b"always fails", &Headers::default()).await.unwrap();
    let mut consumer = queue.consume(1).await.unwrap();
    // Delivered once, returned twice (the limit), delivered a third time and returned: dead.
    for expected in 1..=3u32 {
        let delivery = tokio::time::timeout(WAIT, consumer.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(delivery.payload, b"always fails");
        assert_eq!(delivery.delivery_count, expected);
        delivery.retry().await.unwrap();
    }
    eventually(WAIT, "message dead-lettered", || async { queue.dead_letter_count().await.unwrap() == 1 }).await;
    assert_eq!(queue.depth().await.unwrap(), 0);
    // Nothing is delivered any more.
    assert!(tokio::time::timeout(Duration::from_millis(700), consumer.next()).await.is_err());
    drop(consumer);
    drop_queue(queue).await;
});

both_modes!(a_poison_message_ends_in_the_dead_letter_queue_instead_of_looping, |app| {
    let queue = &app.adapters().queue;
    queue.publish(b"this is not an envelope", &Headers::default()).await.unwrap();
    // An envelope for a tenant that does not exist can never apply (foreign key): dead at once.
    let mut events = app.receptions(0, 1, 11);
    let envelope = onshi_domain::IngestEnvelope {
        version: onshi_domain::ENVELOPE_VERSION,
        batch_id: uuid::Uuid::now_v7(),
        tenant: onshi_domain::TenantId::new(),
        clinic: app.clinics[0].clinic.id,
        device: app.clinics[0].device,
        received_at: time::OffsetDateTime::now_utc(),
        events: std::mem::take(&mut events),
    };
    queue.publish(&serde_json::to_vec(&envelope).unwrap(), &Headers::default()).await.unwrap();
    eventually(WAIT, "both poison messages dead-lettered", || async { queue.dead_letter_count().await.unwrap() == 2 })
        .await;
    eventually(WAIT, "main queue empty", || async { queue.depth().await.unwrap() == 0 }).await;
    // The worker is still healthy: a good batch goes through.
    let good = app.receptions(0, 3, 12);
    assert_eq!(app.post_events(0, &good).await.status(), 202);
    eventually(WAIT, "good batch applied", || async { app.store().raw_event_count().await.unwrap() == 3 }).await;
});

both_modes!(cache_counts_windows_expires_and_publishes, |app| {
    let cache = &app.adapters().cache;
    let key = format!("it:{}", uuid::Uuid::new_v4().simple());
    assert_eq!(cache.incr_window(&key, Duration::from_secs(1)).await.unwrap(), 1);
    assert_eq!(cache.incr_window(&key, Duration::from_secs(1)).await.unwrap(), 2);
    // A counter reads back as decimal text in both backends (sign-in throttling reads it).
    let read = cache.get(&key).await.unwrap();
    assert!(read.is_none() || read == Some(b"2".to_vec()), "{read:?}");
    eventually(WAIT, "window resets", || async { cache.incr_window(&key, Duration::from_secs(1)).await.unwrap() == 1 })
        .await;

    let k2 = format!("it:{}", uuid::Uuid::new_v4().simple());
    assert_eq!(cache.get(&k2).await.unwrap(), None);
    cache.set(&k2, b"value", Duration::from_secs(1)).await.unwrap();
    assert_eq!(cache.get(&k2).await.unwrap(), Some(b"value".to_vec()));
    eventually(WAIT, "value expires", || async { cache.get(&k2).await.unwrap().is_none() }).await;
    cache.set(&k2, b"again", Duration::from_secs(60)).await.unwrap();
    cache.delete(&k2).await.unwrap();
    assert_eq!(cache.get(&k2).await.unwrap(), None);

    let channel = format!("it-feed-{}", uuid::Uuid::new_v4().simple());
    let mut subscription = cache.subscribe(&channel).await.unwrap();
    cache.publish(&channel, b"hello").await.unwrap();
    let got = tokio::time::timeout(WAIT, subscription.next()).await.unwrap();
    assert_eq!(got, Some(b"hello".to_vec()));
});

both_modes!(cache_map_keeps_the_latest_per_field_within_a_window, |app| {
    let cache = &app.adapters().cache;
    let map = format!("it-map:{}", uuid::Uuid::new_v4().simple());
    let counter = format!("it-rl:{}", uuid::Uuid::new_v4().simple());
    let window = Some(onshi_cache::Window { key: &counter, length: Duration::from_secs(30), limit: 2 });
    let field = |f: &str, v: &str| vec![(f.to_owned(), v.as_bytes().to_vec())];
    assert!(cache.map_set(&map, &field("a", "1"), window).await.unwrap());
    assert!(cache.map_set(&map, &[field("a", "2"), field("b", "1")].concat(), window).await.unwrap());
    assert!(!cache.map_set(&map, &field("a", "3"), window).await.unwrap(), "the third in the window is refused");
    assert_eq!(cache.get(&counter).await.unwrap(), Some(b"3".to_vec()), "the refused one was counted");
    assert!(cache.map_set(&map, &field("c", "1"), None).await.unwrap(), "no window, no limit");
    let mut taken = cache.take_map(&map).await.unwrap();
    taken.sort();
    assert_eq!(taken, [field("a", "2"), field("b", "1"), field("c", "1")].concat(), "the refused write left no trace");
    assert!(cache.take_map(&map).await.unwrap().is_empty(), "taking empties the map");
});

both_modes!(object_store_puts_gets_lists_and_deletes, |app| {
    let objects = &app.adapters().objects;
    let prefix = format!("it/{}", uuid::Uuid::new_v4().simple());
    assert_eq!(objects.get(&format!("{prefix}/missing.csv")).await.unwrap(), None);
    objects.put(&format!("{prefix}/b.csv"), "受付,1\n".as_bytes().to_vec(), "text/csv").await.unwrap();
    objects.put(&format!("{prefix}/a.csv"), b"x".to_vec(), "text/csv").await.unwrap();
    objects.put(&format!("{prefix}/a.csv"), b"y".to_vec(), "text/csv").await.unwrap();
    assert_eq!(objects.get(&format!("{prefix}/a.csv")).await.unwrap(), Some(b"y".to_vec()));
    assert_eq!(
        objects.list(&format!("{prefix}/")).await.unwrap(),
        vec![format!("{prefix}/a.csv"), format!("{prefix}/b.csv")]
    );
    objects.delete(&format!("{prefix}/a.csv")).await.unwrap();
    assert_eq!(objects.list(&format!("{prefix}/")).await.unwrap(), vec![format!("{prefix}/b.csv")]);
    assert!(objects.put("../escape", b"no".to_vec(), "text/plain").await.is_err());
});

both_modes!(accepted_batches_are_archived_as_received, |app| {
    let events = app.receptions(2, 4, 13);
    let response = app.post_events(2, &events).await;
    assert_eq!(response.status(), 202);
    let batch_id: serde_json::Value = response.json().await.unwrap();
    let batch_id = uuid::Uuid::parse_str(batch_id["batch_id"].as_str().unwrap()).unwrap();
    let objects = &app.adapters().objects;
    let prefix = format!("raw/{}/", app.tenant);
    eventually(WAIT, "archive written", || async { !objects.list(&prefix).await.unwrap().is_empty() }).await;
    let keys = objects.list(&prefix).await.unwrap();
    let key =
        keys.iter().find(|k| k.ends_with(&format!("{}.json", batch_id.simple()))).expect("archived under its batch id");
    let stored: onshi_domain::IngestEnvelope =
        serde_json::from_slice(&objects.get(key).await.unwrap().unwrap()).unwrap();
    assert_eq!(stored.events, events);

    // A heartbeat-only batch updates the device but is not archived: it is no evidence of anything.
    let mut factory = app.factory(2, 14);
    let heartbeat = factory.heartbeat(time::OffsetDateTime::now_utc());
    let response = app.post_events(2, &[heartbeat]).await;
    assert_eq!(response.status(), 202);
    let body: serde_json::Value = response.json().await.unwrap();
    let heartbeat_batch = uuid::Uuid::parse_str(body["batch_id"].as_str().unwrap()).unwrap().simple().to_string();
    let device = app.clinics[2].device;
    eventually(WAIT, "heartbeat applied", || async {
        app.store().device(device).await.unwrap().is_some_and(|d| d.agent_version.is_some())
    })
    .await;
    assert!(!objects.list(&prefix).await.unwrap().iter().any(|k| k.contains(&heartbeat_batch)));
});
