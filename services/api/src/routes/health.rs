//! Liveness (`/healthz`: the process answers) and readiness (`/readyz`: its dependencies answer).

use actix_web::{HttpResponse, web};
use onshi_queue::MessageQueue;
use serde_json::json;

use crate::AppState;

pub(crate) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

pub(crate) async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let database = state.store.ping().await.is_ok();
    let queue = state.queue.depth().await.is_ok();
    let ready = database && queue;
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "checks": { "database": database, "queue": queue },
        "adapters": {
            "database": if state.modes.postgres { "postgres" } else { "sqlite" },
            "queue": state.queue.kind(),
            "cache": state.cache.kind(),
            "objects": state.objects.kind(),
        },
    });
    if ready { HttpResponse::Ok().json(body) } else { HttpResponse::ServiceUnavailable().json(body) }
}
