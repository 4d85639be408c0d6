//! Trace context across the queue. The API puts the W3C `traceparent` of the request's span on the message
//! it publishes (an AMQP header with RabbitMQ, a column with the embedded queue), and the worker makes
//! its span a child of it, so one trace id ties an agent's POST to the worker that applied the batch: in
//! the JSON logs (`trace_id` on every line of the span) and, when OTLP export is configured, in the
//! tracing backend.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The header that carries the context, on HTTP requests and on queue messages.
pub const TRACEPARENT: &str = "traceparent";

/// The `traceparent` of `span`, or `None` when tracing is not set up (tests that start no subscriber).
pub fn traceparent_of(span: &Span) -> Option<String> {
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// The `traceparent` of the current span.
pub fn current_traceparent() -> Option<String> {
    traceparent_of(&Span::current())
}

/// Makes `span` continue the trace in `traceparent` (when it is a valid W3C value; anything else starts a
/// new trace) and records the trace id in the span's `trace_id` field, which must be declared
/// (`trace_id = tracing::field::Empty`).
pub fn continue_trace(span: &Span, traceparent: Option<&str>) {
    if let Some(value) = traceparent {
        let carrier = HashMap::from([(TRACEPARENT.to_owned(), value.to_owned())]);
        let parent = TraceContextPropagator::new().extract(&carrier);
        if parent.span().span_context().is_valid() {
            // Fails only when no OpenTelemetry layer is installed; then there is no trace to continue.
            let _ = span.set_parent(parent);
        }
    }
    let cx = span.context();
    let context = cx.span().span_context().clone();
    if context.is_valid() {
        span.record("trace_id", tracing::field::display(context.trace_id()));
    }
}
