//! Every request: a span that continues the caller's trace (W3C `traceparent`) or starts one, a latency
//! observation in `onshi_http_request_duration_seconds`, and one log line. Both the label and the log
//! carry the route pattern (`/clinics/{clinic}`), never the raw path, so ids stay out of metrics and logs.
//!
//! A handler that panics is contained here: the panic is logged with its route and the client gets a 500
//! (the page or the JSON body like any other error) instead of a dropped connection. Input must never
//! cause one (`web::input` parses with bounds); this is the net under that rule.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use futures_util::FutureExt;
use onshi_telemetry::trace::{TRACEPARENT, continue_trace};
use tracing::Instrument;

pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    // A fixed set of methods: a label made of whatever a client sends would be unbounded.
    let method: &'static str = match req.method().as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "OTHER",
    };
    let route = req.match_pattern().unwrap_or_else(|| "unmatched".to_owned());
    let span = tracing::info_span!("http", method, route = %route, trace_id = tracing::field::Empty);
    let incoming = req.headers().get(TRACEPARENT).and_then(|v| v.to_str().ok()).map(str::to_owned);
    continue_trace(&span, incoming.as_deref());

    let started = Instant::now();
    let result = match std::panic::AssertUnwindSafe(next.call(req).instrument(span.clone())).catch_unwind().await {
        Ok(result) => result,
        Err(_) => {
            span.in_scope(|| tracing::error!(route = %route, "the handler panicked; answered 500"));
            Err(crate::ApiError::internal(HandlerPanicked).into())
        }
    };
    let elapsed = started.elapsed();
    let status = match &result {
        Ok(res) => res.status().as_u16(),
        Err(e) => e.as_response_error().status_code().as_u16(),
    };
    onshi_telemetry::metrics()
        .http_requests
        .with_label_values(&[method, route.as_str(), &status.to_string()])
        .observe(elapsed.as_secs_f64());
    span.in_scope(|| {
        tracing::info!(target: "onshi::http", status, ms = elapsed.as_secs_f64() * 1000.0, "request");
    });
    result
}

#[derive(Debug, thiserror::Error)]
#[error("the request handler panicked")]
struct HandlerPanicked;
