//! Nothing lost while a dependency is away. A separate `onshi worker` process reaches RabbitMQ and
//! PostgreSQL through the test's fault proxies; each link is cut in the middle of a stream of batches
//! and restored, and every accepted event is applied exactly once within 60 s of the link's return,
//! while nobody restarts the worker. Its health endpoints say what is wrong while it is wrong.
//!
//! The proxies only touch this worker's own connections, so the other tests sharing the broker and the
//! database server are not disturbed (stopping the broker itself would be).

use std::process::Stdio;
use std::time::Duration;

use crate::faults::FaultProxy;
use crate::helpers::*;

/// `url` with its `host:port` replaced by the proxy on loopback.
fn via(url: &str, proxy: &FaultProxy) -> String {
    let at = url.rfind('@').map_or_else(|| url.find("://").unwrap() + 3, |i| i + 1);
    let end = url[at..].find('/').map_or(url.len(), |i| at + i);
    format!("{}127.0.0.1:{}{}", &url[..at], proxy.port, &url[end..])
}

fn port_of(url: &str) -> u16 {
    let at = url.rfind('@').map_or_else(|| url.find("://").unwrap() + 3, |i| i + 1);
    let end = url[at..].find('/').map_or(url.len(), |i| at + i);
    url[at..end].rsplit_once(':').and_then(|(_, p)| p.parse().ok()).unwrap()
}

/// The worker's `/readyz`: its status and the named checks.
async fn readiness(client: &reqwest::Client, port: u16) -> Option<(u16, serde_json::Value)> {
    let r = client.get(format!("http://127.0.0.1:{port}/readyz")).send().await.ok()?;
    let status = r.status().as_u16();
    Some((status, r.json().await.ok()?))
}

/// Six batches of ten receptions over the three clinics, each accepted (202).
async fn post_round(app: &TestApp, round: u64) -> Vec<Vec<onshi_domain::AgentEvent>> {
    let mut batches = Vec::new();
    for i in 0..6u64 {
        let batch = app.receptions((i % 3) as usize, 10, round * 100 + i);
        assert_eq!(app.post_events((i % 3) as usize, &batch).await.status(), 202);
        batches.push(batch);
    }
    batches
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full mode: needs PostgreSQL, RabbitMQ, Redis and S3 (scripts/test runs it)"]
async fn a_worker_rides_out_broker_and_database_outages_without_a_restart() {
    let tweak = |c: &mut onshi_config::Config| {
        // The default limit: an outage must not spend it.
        c.delivery_limit = 5;
        c.worker_prefetch = 8;
    };
    let app = spawn_app_opts(Mode::Full, tweak, false).await;
    let c = &app.config;
    let amqp = c.amqp_url.as_ref().map(|s| secrecy::ExposeSecret::expose_secret(s).to_owned()).unwrap();
    let db = c.database_url.as_ref().map(|s| secrecy::ExposeSecret::expose_secret(s).to_owned()).unwrap();
    let redis = c.redis_url.as_ref().map(|s| secrecy::ExposeSecret::expose_secret(s).to_owned()).unwrap();
    let s3 = c.s3_endpoint.clone().unwrap();
    let broker = FaultProxy::start(port_of(&amqp)).await;
    let database = FaultProxy::start(port_of(&db)).await;
    let cache = FaultProxy::start(port_of(&redis)).await;
    let objects = FaultProxy::start(port_of(&s3)).await;
    let ops = free_port();
    let mut worker = tokio::process::Command::new(env!("CARGO_BIN_EXE_onshi"))
        .arg("worker")
        .env_clear()
        .envs(process_env(c))
        .env("ONSHI_AMQP_URL", via(&amqp, &broker))
        .env("ONSHI_DATABASE_URL", via(&db, &database))
        .env("ONSHI_REDIS_URL", via(&redis, &cache))
        .env("ONSHI_S3_ENDPOINT", via(&s3, &objects))
        .env("ONSHI_WORKER_LISTEN", format!("127.0.0.1:{ops}"))
        .env("ONSHI_LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start onshi worker");
    let http = reqwest::Client::new();
    eventually(WAIT, "the worker is ready", || async { readiness(&http, ops).await.is_some_and(|(s, _)| s == 200) })
        .await;

    let mut posted: Vec<Vec<onshi_domain::AgentEvent>> = Vec::new();

    // 1. The broker link dies mid-stream. The API still accepts (it reaches the broker directly).
    posted.extend(post_round(&app, 1).await);
    broker.cut();
    posted.extend(post_round(&app, 2).await);
    eventually(WAIT, "the worker reports its consumer down", || async {
        readiness(&http, ops).await.is_some_and(|(s, body)| s == 503 && body["checks"]["consumer"] == false)
    })
    .await;
    posted.extend(post_round(&app, 3).await);
    // The outage lasts a while (pacing, not waiting for a result): several reconnect attempts fail.
    tokio::time::sleep(Duration::from_secs(6)).await;
    broker.restore();
    let total = |p: &Vec<Vec<onshi_domain::AgentEvent>>| p.iter().map(|b| b.len() as u64).sum::<u64>();
    let so_far = total(&posted);
    eventually(Duration::from_secs(60), "everything applied after the broker's return", || async {
        app.store().raw_event_count().await.unwrap() == so_far
    })
    .await;

    // 2. The database link dies mid-stream: messages are held, not returned, so none is dead-lettered.
    posted.extend(post_round(&app, 4).await);
    database.cut();
    posted.extend(post_round(&app, 5).await);
    eventually(WAIT, "the worker reports its database down", || async {
        readiness(&http, ops).await.is_some_and(|(s, body)| s == 503 && body["checks"]["database"] == false)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    posted.extend(post_round(&app, 6).await);
    database.restore();
    let so_far = total(&posted);
    eventually(Duration::from_secs(60), "everything applied after the database's return", || async {
        app.store().raw_event_count().await.unwrap() == so_far
    })
    .await;

    // 3. The object store (raw-batch archive) goes away: held like the database, applied on its return.
    objects.cut();
    posted.extend(post_round(&app, 7).await);
    eventually(WAIT, "the worker reports its object store down", || async {
        readiness(&http, ops).await.is_some_and(|(s, body)| s == 503 && body["checks"]["objects"] == false)
    })
    .await;
    assert!(app.store().raw_event_count().await.unwrap() < total(&posted), "nothing applied without its archive");
    objects.restore();

    // 4. Redis goes away: it only carries live updates and the usage watch's window, so batches go on.
    cache.cut();
    posted.extend(post_round(&app, 8).await);
    let so_far = total(&posted);
    eventually(Duration::from_secs(60), "applied while Redis is away", || async {
        app.store().raw_event_count().await.unwrap() == so_far
    })
    .await;
    cache.restore();

    let expected: u64 = posted.iter().map(|b| reception_count(b)).sum();
    assert_applied_exactly_once(&app, total(&posted), expected, Duration::from_secs(60)).await;
    assert!(worker.try_wait().unwrap().is_none(), "the worker never exited");
    let metrics = http.get(format!("http://127.0.0.1:{ops}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("onshi_worker_consumer_up 1"), "{metrics}");
    let reconnects = metrics
        .lines()
        .find_map(|l| l.strip_prefix("onshi_worker_reconnects_total "))
        .and_then(|n| n.trim().parse::<u64>().ok());
    assert!(reconnects.is_some_and(|n| n >= 1), "reconnects counted: {reconnects:?}");
    eventually(WAIT, "ready again", || async { readiness(&http, ops).await.is_some_and(|(s, _)| s == 200) }).await;
    worker.start_kill().ok();
    worker.wait().await.ok();
    app.teardown().await;
}
