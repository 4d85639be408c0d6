//! Operator endpoints, served by the API and by each standalone worker (`worker_listen`):
//! - `/healthz` (liveness): the process answers. Checks no dependency, so a database outage does not make
//!   Kubernetes restart every pod at once. The one exception is a process with a queue consumer whose
//!   consumer has been down, or stalled with messages waiting, for `worker_down_grace_secs` beyond its
//!   limits: it reconnects on its own, and this is the last resort for a consumer stuck in a way it
//!   cannot see.
//! - `/readyz` (readiness): every dependency answered within a deadline, and a process with a queue
//!   consumer has it attached and not stalled (`worker_idle_secs`); 503 with the failing ones named.
//! - `/metrics`: Prometheus text, with gauges of shared state sampled at scrape time.

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use onshi_cache::{Cache, CacheBackend};
use onshi_objects::{ObjectBackend, ObjectStore};
use onshi_queue::{ConsumerHealth, ConsumerState, MessageQueue, Queue};
use onshi_store::Store;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

/// What the operator endpoints look at: the adapters, whichever process holds them.
#[derive(Clone)]
pub struct Ops {
    pub store: Store,
    pub queue: Queue,
    pub cache: Cache,
    pub objects: ObjectStore,
    pub modes: onshi_config::Modes,
    pub metrics_token: Option<SecretString>,
    /// The queue consumer this process runs, if it runs one.
    pub worker: Option<WorkerWatch>,
}

/// A queue consumer to report on, with its limits.
#[derive(Clone)]
pub struct WorkerWatch {
    pub health: std::sync::Arc<ConsumerHealth>,
    /// Idle this long with messages waiting: stalled, not ready.
    pub idle_limit: Duration,
    /// Down or stalled this much longer: not live.
    pub down_grace: Duration,
}

impl WorkerWatch {
    fn state(&self, ready_messages: Option<u64>) -> ConsumerState {
        self.health.state(ready_messages, self.idle_limit)
    }

    /// Whether the orchestrator should replace the process.
    fn beyond_grace(&self, ready_messages: Option<u64>) -> bool {
        match self.state(ready_messages) {
            ConsumerState::Consuming => false,
            ConsumerState::Down => self.health.in_state_for() > self.down_grace,
            ConsumerState::Stalled => {
                self.health.idle_secs().unwrap_or(0) > (self.idle_limit + self.down_grace).as_secs()
            }
        }
    }
}

/// How long one dependency may take to answer a readiness probe.
const CHECK_DEADLINE: Duration = Duration::from_secs(2);
/// An agent not heard from for this long counts as silent in `onshi_agents`.
const SILENT_AFTER: Duration = Duration::from_secs(300);

pub(crate) async fn healthz(ops: web::Data<Ops>) -> HttpResponse {
    if let Some(worker) = &ops.worker {
        let ready = tokio::time::timeout(CHECK_DEADLINE, ops.queue.depth()).await.ok().and_then(Result::ok);
        if worker.beyond_grace(ready) {
            return HttpResponse::ServiceUnavailable()
                .json(json!({ "status": "unhealthy", "reason": "queue consumer down or stalled beyond its grace" }));
        }
    }
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

async fn within<T, E>(check: impl Future<Output = Result<T, E>>) -> bool {
    matches!(tokio::time::timeout(CHECK_DEADLINE, check).await, Ok(Ok(_)))
}

/// One round of dependency checks. The queue check is its depth, which the metrics reuse.
struct Checks {
    database: bool,
    queue_depth: Option<u64>,
    cache: bool,
    objects: bool,
    /// The process's consumer, when it runs one.
    consumer: Option<ConsumerState>,
}

impl Checks {
    fn named(&self) -> Vec<(&'static str, bool)> {
        let mut named = vec![
            ("database", self.database),
            ("queue", self.queue_depth.is_some()),
            ("cache", self.cache),
            ("objects", self.objects),
        ];
        if let Some(state) = self.consumer {
            named.push(("consumer", state == ConsumerState::Consuming));
        }
        named
    }
}

impl Ops {
    /// Each dependency, checked concurrently, each within the deadline.
    async fn checks(&self) -> Checks {
        let (database, queue_depth, cache, objects) = tokio::join!(
            within(self.store.ping()),
            tokio::time::timeout(CHECK_DEADLINE, self.queue.depth()),
            within(self.cache.get("readyz")),
            within(self.objects.get("readyz/probe")),
        );
        let queue_depth = queue_depth.ok().and_then(Result::ok);
        let consumer = self.worker.as_ref().map(|w| w.state(queue_depth));
        Checks { database, queue_depth, cache, objects, consumer }
    }
}

pub(crate) async fn readyz(ops: web::Data<Ops>) -> HttpResponse {
    let checks = ops.checks().await.named();
    let ready = checks.iter().all(|(_, ok)| *ok);
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "checks": checks.iter().map(|(name, ok)| (name.to_string(), json!(ok))).collect::<serde_json::Map<_, _>>(),
        "adapters": {
            "database": if ops.modes.postgres { "postgres" } else { "sqlite" },
            "queue": ops.queue.kind(),
            "cache": ops.cache.kind(),
            "objects": ops.objects.kind(),
        },
    });
    if ready { HttpResponse::Ok().json(body) } else { HttpResponse::ServiceUnavailable().json(body) }
}

pub(crate) async fn metrics(req: HttpRequest, ops: web::Data<Ops>) -> HttpResponse {
    if let Some(token) = &ops.metrics_token {
        let presented = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !constant_time_eq(presented.as_bytes(), token.expose_secret().as_bytes()) {
            return HttpResponse::Unauthorized()
                .insert_header(("WWW-Authenticate", "Bearer"))
                .json(json!({ "error": "unauthorized", "message": "a valid metrics token is required" }));
        }
    }
    let m = onshi_telemetry::metrics();
    let checks = ops.checks().await;
    for (name, ok) in checks.named() {
        m.dependency_up.with_label_values(&[name]).set(i64::from(ok));
    }
    if let Some(worker) = &ops.worker {
        m.worker_consumer_up.set(i64::from(worker.health.is_up()));
        m.worker_idle_seconds.set(worker.health.idle_secs().map_or(0, |s| i64::try_from(s).unwrap_or(i64::MAX)));
    }
    if let Some(depth) = checks.queue_depth {
        m.queue_messages.with_label_values(&["main"]).set(i64::try_from(depth).unwrap_or(i64::MAX));
    }
    if let Ok(dead) = ops.queue.dead_letter_count().await {
        m.queue_messages.with_label_values(&["dead_letter"]).set(i64::try_from(dead).unwrap_or(i64::MAX));
    }
    match ops.store.shared_clinic_codes().await {
        Ok(n) => m.clinic_codes_shared.set(i64::try_from(n).unwrap_or(i64::MAX)),
        Err(e) => tracing::warn!(error = %onshi_telemetry::Chain(&e), "shared clinic codes unavailable for metrics"),
    }
    match ops.store.agent_counts(SILENT_AFTER).await {
        Ok((reporting, silent)) => {
            m.agents.with_label_values(&["reporting"]).set(i64::try_from(reporting).unwrap_or(i64::MAX));
            m.agents.with_label_values(&["silent"]).set(i64::try_from(silent).unwrap_or(i64::MAX));
        }
        Err(e) => tracing::warn!(error = %onshi_telemetry::Chain(&e), "agent counts unavailable for metrics"),
    }
    HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(m.render())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use sha2::Digest;
    // Comparing digests keeps the time independent of where the inputs differ and of their lengths.
    let (da, db) = (sha2::Sha256::digest(a), sha2::Sha256::digest(b));
    da.iter().zip(db.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A server with only the operator endpoints, for a standalone worker process.
pub fn serve_ops(ops: Ops, listener: std::net::TcpListener) -> std::io::Result<actix_web::dev::Server> {
    let data = web::Data::new(ops);
    Ok(actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(data.clone())
            .wrap(actix_web::middleware::from_fn(crate::web::observe::observe))
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
            .route("/metrics", web::get().to(metrics))
    })
    .workers(1)
    .listen(listener)?
    .disable_signals()
    .shutdown_timeout(5)
    .run())
}
