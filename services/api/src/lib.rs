//! The HTTP face of Onshi Cloud (actix-web): the agents' ingest API, health checks and the pages.
//!
//! A request flows route → handler (parse into domain types, check the caller's scope) → domain (pure
//! rules) → store. Handlers hold no SQL and no business rules. Every error leaves through [`ApiError`],
//! which is the one place that maps errors to HTTP statuses and JSON bodies.

pub mod auth;
pub mod device_cache;
pub mod error;
#[cfg(test)]
mod fixtures;
pub mod mail;
mod routes;
pub mod web;

use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::middleware::DefaultHeaders;
use actix_web::{App, HttpServer};
use onshi_cache::Cache;
use onshi_objects::ObjectStore;
use onshi_queue::Queue;
use onshi_store::Store;

pub use auth::{DeviceClaims, DeviceKeys};
pub use device_cache::{DeviceAuthCache, announce_revocation};
pub use error::ApiError;
pub use mail::Mailer;
pub use routes::health::{Ops, WorkerWatch, serve_ops};
pub use routes::{ROUTES, RouteSpec, openapi_document, webhook_url_problem};
pub use web::guard::{API_TOKEN_PREFIX, Access, Origins};
pub use web::session::Sessions;

/// Everything a handler may use, shared by all workers of the server.
pub struct AppState {
    pub store: Store,
    pub queue: Queue,
    /// Publishes accepted batches, concurrent requests' batches in one message (`onshi_queue::Coalescing`).
    pub publisher: onshi_queue::Coalescing,
    pub cache: Cache,
    pub objects: ObjectStore,
    pub device_keys: DeviceKeys,
    /// Devices authenticated within `device_cache::TTL`, forgotten on a revocation (`device_cache`).
    pub device_cache: Arc<DeviceAuthCache>,
    pub ingest_batches_per_device_per_sec: u32,
    /// Integration API requests per API token and clock minute.
    pub api_requests_per_token_per_minute: u32,
    /// Webhook endpoints may be on loopback/private addresses and plain http (tests only).
    pub webhook_allow_private_targets: bool,
    pub max_body_bytes: usize,
    pub sessions: Sessions,
    pub mailer: Mailer,
    /// Where people reach the pages; e-mail links start with it.
    pub public_url: String,
    /// Which page origins may post forms (from configuration, never from the request).
    pub origins: web::guard::Origins,
    /// Proxies whose X-Forwarded-For gives the client address.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    pub login_limits: LoginLimits,
    /// Which adapters are in use, for /readyz.
    pub modes: onshi_config::Modes,
    /// Required by /metrics when set.
    pub metrics_token: Option<secrecy::SecretString>,
    /// The reception-addon rules, loaded and validated once at start-up.
    pub rules: Arc<onshi_rules::RuleSet>,
    /// The in-process queue consumer, when this process runs one (health endpoints report it).
    pub worker: Option<routes::health::WorkerWatch>,
}

/// Failed sign-ins allowed per account and per client address within `window`.
#[derive(Debug, Clone, Copy)]
pub struct LoginLimits {
    pub per_account: u64,
    pub per_address: u64,
    pub window: std::time::Duration,
}

/// Registers every route. Kept apart from `serve` so tests and the binary build the same app.
pub fn configure(cfg: &mut actix_web::web::ServiceConfig) {
    routes::configure(cfg);
}

/// What a request no route serves answers: 405 with `Allow` when the path is served with other methods,
/// else the API's 404 body (browsers get either as a page).
async fn no_route(req: actix_web::HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    let allowed = routes::allowed_methods(req.path());
    if allowed.is_empty() {
        Err(ApiError::NotFound)
    } else {
        Err(ApiError::MethodNotAllowed { allow: allowed.join(", ") })
    }
}

/// Starts the HTTP server on an already bound listener (port 0 in tests).
pub fn serve(state: Arc<AppState>, listener: std::net::TcpListener) -> std::io::Result<Server> {
    let ops = actix_web::web::Data::new(Ops {
        store: state.store.clone(),
        queue: state.queue.clone(),
        cache: state.cache.clone(),
        objects: state.objects.clone(),
        modes: state.modes,
        metrics_token: state.metrics_token.clone(),
        worker: state.worker.clone(),
    });
    let data = actix_web::web::Data::from(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(ops.clone())
            .app_data(web::input::query_config())
            .app_data(web::input::form_config())
            .app_data(web::input::path_config())
            .wrap(actix_web::middleware::ErrorHandlers::new().default_handler(web::error_page::html_for_browsers))
            .wrap(security_headers())
            .wrap(actix_web::middleware::from_fn(web::observe::observe))
            .configure(configure)
            .default_service(actix_web::web::to(no_route))
    })
    .listen(listener)?
    // The binary owns Ctrl-C / SIGTERM and stops the server and the worker in order.
    .disable_signals()
    .shutdown_timeout(10)
    .run();
    Ok(server)
}

fn security_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add(("X-Content-Type-Options", "nosniff"))
        // same-origin, not no-referrer: with no-referrer browsers send `Origin: null` on form POSTs, which
        // the CSRF check must refuse. Nothing is sent to other sites either way.
        .add(("Referrer-Policy", "same-origin"))
        .add(("X-Frame-Options", "DENY"))
        .add(("Strict-Transport-Security", "max-age=31536000; includeSubDomains"))
        .add((
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'; form-action 'self'",
        ))
}
