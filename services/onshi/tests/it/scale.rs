//! Horizontal scale on one machine (full mode): two `onshi serve` and two `onshi worker` processes share one
//! PostgreSQL, RabbitMQ, Redis and bucket. A stream of batches goes in through both APIs while one worker is
//! killed mid-stream; every event takes effect exactly once. One batch carries a W3C trace context, which
//! must come out in the worker's JSON logs and, with both services, at an OTLP/HTTP collector.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use tokio::process::{Child, Command};

use crate::helpers::*;

struct Process {
    child: Child,
    port: u16,
}

fn spawn(app: &TestApp, command: &str, log: &Path, otlp: &str) -> Process {
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_onshi"))
        .arg(command)
        .env_clear()
        .envs(process_env(&app.config))
        .env(if command == "worker" { "ONSHI_WORKER_LISTEN" } else { "ONSHI_LISTEN" }, &listen)
        .env("ONSHI_LOG_FORMAT", "json")
        .env("ONSHI_LOG_LEVEL", "info,sqlx=warn,sea_orm=warn,lapin=warn")
        .env("ONSHI_OTLP_ENDPOINT", otlp)
        .env("ONSHI_DATA_DIR", log.parent().unwrap())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .expect("start onshi");
    Process { child, port }
}

async fn ready(client: &reqwest::Client, port: u16) -> bool {
    matches!(client.get(format!("http://127.0.0.1:{port}/readyz")).send().await, Ok(r) if r.status() == 200)
}

async fn metric(client: &reqwest::Client, port: u16, line_prefix: &str) -> f64 {
    let Ok(r) = client.get(format!("http://127.0.0.1:{port}/metrics")).send().await else { return 0.0 };
    let text = r.text().await.unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// A minimal OTLP/HTTP (JSON) collector: keeps every export body.
async fn collector() -> (String, Arc<Mutex<Vec<serde_json::Value>>>, actix_web::dev::ServerHandle) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let store = web::Data::new(received.clone());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = HttpServer::new(move || {
        // Exports of a busy process run to megabytes; the default 256 kB limit would refuse them.
        App::new().app_data(store.clone()).app_data(web::PayloadConfig::new(64 << 20)).route(
            "/v1/traces",
            web::post().to(|body: web::Bytes, store: web::Data<Arc<Mutex<Vec<serde_json::Value>>>>| async move {
                if let Ok(value) = serde_json::from_slice(&body) {
                    store.lock().unwrap().push(value);
                }
                HttpResponse::Ok().content_type("application/json").body("{}")
            }),
        )
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    (format!("http://127.0.0.1:{port}/v1/traces"), received, handle)
}

/// The services (by `service.name`) that exported a span of `trace_id`.
fn services_with_trace(exports: &[serde_json::Value], trace_id: &str) -> std::collections::BTreeSet<String> {
    let mut found = std::collections::BTreeSet::new();
    for export in exports {
        for rs in export["resourceSpans"].as_array().into_iter().flatten() {
            let service = rs["resource"]["attributes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["key"] == "service.name")
                .and_then(|a| a["value"]["stringValue"].as_str())
                .unwrap_or_default()
                .to_owned();
            let spans = rs["scopeSpans"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|s| s["spans"].as_array().into_iter().flatten());
            for span in spans {
                if span["traceId"].as_str().is_some_and(|t| t.eq_ignore_ascii_case(trace_id)) {
                    found.insert(service.clone());
                }
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full mode: needs PostgreSQL, RabbitMQ, Redis and S3 (scripts/test runs it)"]
async fn two_apis_and_two_workers_apply_every_event_exactly_once_while_a_worker_dies() {
    let tweak = |c: &mut onshi_config::Config| {
        c.delivery_limit = 100;
        c.worker_prefetch = 8;
        // The stream is faster than an agent's budget: this test is about exactly-once, not the limiter.
        c.ingest_batches_per_device_per_sec = 1000;
    };
    // The test's own app only sets up the services and reads results; it applies nothing.
    let app = spawn_app_opts(Mode::Full, tweak, false).await;
    let logs = tempfile::tempdir().unwrap();
    let (otlp, exports, collector_handle) = collector().await;
    let apis = [
        spawn(&app, "serve", &logs.path().join("api-a/log"), &otlp),
        spawn(&app, "serve", &logs.path().join("api-b/log"), &otlp),
    ];
    let mut workers = [
        spawn(&app, "worker", &logs.path().join("worker-a/log"), &otlp),
        spawn(&app, "worker", &logs.path().join("worker-b/log"), &otlp),
    ];
    let client = reqwest::Client::new();
    for port in apis.iter().chain(workers.iter()).map(|p| p.port) {
        eventually(Duration::from_secs(60), "process ready", || ready(&client, port)).await;
    }

    // The stream: 90 batches of 20 events, alternating between the two APIs, four in flight at a time.
    let batches: Vec<_> = (0..90).map(|i| (i % 3, app.receptions(i % 3, 20, 9_000 + i as u64))).collect();
    let total = batches.iter().map(|(_, b)| b.len() as u64).sum::<u64>();
    let expected: u64 = batches.iter().map(|(_, b)| reception_count(b)).sum();
    let tokens: Vec<String> = (0..3).map(|c| app.token(c)).collect();
    let api_ports = [apis[0].port, apis[1].port];
    let poster = {
        let client = client.clone();
        let tokens = tokens.clone();
        tokio::spawn(async move {
            let mut accepted = [0usize; 2];
            for chunk in batches.chunks(4).enumerate().collect::<Vec<_>>() {
                let (n, chunk) = chunk;
                let sends = chunk.iter().enumerate().map(|(k, (clinic, events))| {
                    let which = (n * 4 + k) % 2;
                    let request = client
                        .post(format!("http://127.0.0.1:{}/api/v1/events", api_ports[which]))
                        .bearer_auth(&tokens[*clinic])
                        .json(&onshi_domain::EventBatch { events: events.clone() });
                    async move { (which, request.send().await.map(|r| r.status().as_u16())) }
                });
                for (which, status) in futures_util::future::join_all(sends).await {
                    assert_eq!(status.expect("API answers"), 202);
                    accepted[which] += 1;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            accepted
        })
    };

    // Worker A applies part of the stream, then dies without warning (SIGKILL: nothing acked or flushed).
    eventually(Duration::from_secs(60), "worker A applies batches", || async {
        metric(&client, workers[0].port, "onshi_worker_batches_total{outcome=\"applied\"}").await >= 3.0
    })
    .await;
    workers[0].child.start_kill().expect("kill worker A");
    workers[0].child.wait().await.ok();
    assert!(app.store().raw_event_count().await.unwrap() < total, "worker A died before the stream was applied");

    // One batch with a trace context of the caller's, through API B.
    let trace_id = format!("{:032x}", uuid::Uuid::new_v4().as_u128());
    let traced = app.receptions(0, 5, 77_777);
    let response = client
        .post(format!("http://127.0.0.1:{}/api/v1/events", apis[1].port))
        .bearer_auth(&tokens[0])
        .header("traceparent", format!("00-{trace_id}-{:016x}-01", 0x5eed_u64))
        .json(&onshi_domain::EventBatch { events: traced.clone() })
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);

    let accepted = poster.await.unwrap();
    assert!(accepted[0] > 0 && accepted[1] > 0, "both APIs took part: {accepted:?}");
    let total = total + traced.len() as u64;
    let expected = expected + reception_count(&traced);

    assert_applied_exactly_once(&app, total, expected, Duration::from_secs(120)).await;
    assert!(metric(&client, workers[1].port, "onshi_worker_batches_total{outcome=\"applied\"}").await >= 1.0);

    // The trace: the API's request span and the worker's batch span share the caller's trace id, in the
    // JSON logs and at the collector (spans are exported in batches, every few seconds).
    let worker_logs = ["worker-a/log", "worker-b/log"]
        .iter()
        .map(|f| std::fs::read_to_string(logs.path().join(f)).unwrap_or_default())
        .collect::<String>();
    // Concurrent batches creating the same visit wait for each other instead of colliding on its unique key.
    assert!(!worker_logs.contains("23505"), "workers collided on a visit's unique key");
    let line = worker_logs
        .lines()
        .find(|l| l.contains(&trace_id) && l.contains("batch applied"))
        .unwrap_or_else(|| panic!("no worker log line carries trace {trace_id}"));
    let parsed: serde_json::Value = serde_json::from_str(line).expect("worker logs are JSON");
    assert_eq!(parsed["span"]["trace_id"], trace_id.as_str(), "{line}");
    let api_log = std::fs::read_to_string(logs.path().join("api-b/log")).unwrap();
    assert!(api_log.lines().any(|l| l.contains(&trace_id) && l.contains("batch queued")), "API log lacks the trace");
    eventually(Duration::from_secs(30), "spans of both services at the collector", || async {
        let found = services_with_trace(&exports.lock().unwrap(), &trace_id);
        found.contains("onshi-api") && found.contains("onshi-worker")
    })
    .await;

    for mut process in apis.into_iter().chain(workers) {
        process.child.start_kill().ok();
        process.child.wait().await.ok();
    }
    collector_handle.stop(false).await;
    app.teardown().await;
}
