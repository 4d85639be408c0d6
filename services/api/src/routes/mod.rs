mod agent;
mod health;
mod ingest;
mod pages;

use actix_web::web;

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/api/v1/events", web::post().to(ingest::post_events))
        .route("/api/v1/agent/enroll", web::post().to(agent::enroll))
        .route("/api/v1/agent/token", web::post().to(agent::token))
        .route("/", web::get().to(pages::visits))
        .route("/static/app.css", web::get().to(pages::stylesheet));
}
