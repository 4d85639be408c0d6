//! The process's Prometheus metrics, registered once in a registry of our own (not the crate's global
//! default, so a library's metrics cannot leak in). Gauges that describe shared state (queue depth,
//! agents reporting) are sampled by the `/metrics` handler at scrape time rather than kept up to date.

use std::sync::LazyLock;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    /// `onshi_http_request_duration_seconds{method, route, status}`; `route` is the matched pattern
    /// (`/dashboard/clinics/{clinic}`), never the raw path, so no id reaches a label.
    pub http_requests: HistogramVec,
    /// `onshi_ingest_events_total{outcome}`: accepted (new, queued) or duplicate (already stored).
    pub ingest_events: IntCounterVec,
    /// `onshi_ingest_batches_total{outcome}`: accepted or rejected (4xx after authentication).
    pub ingest_batches: IntCounterVec,
    /// `onshi_ingest_messages_total`: queue messages the API published; concurrent requests' batches
    /// share one (`onshi_queue::Coalescing`), so accepted batches per message tells how much.
    pub ingest_messages: IntCounter,
    /// `onshi_worker_batches_total{outcome}`: messages applied, retried, dead_lettered, or split (a
    /// message of several batches not all applied, each sent back on its own).
    pub worker_batches: IntCounterVec,
    /// `onshi_webhook_attempts_total{outcome}`: delivered or failed attempts to send a webhook.
    pub webhook_attempts: IntCounterVec,
    /// `onshi_mail_attempts_total{outcome}`: system e-mail handed to the mail server: sent, retry
    /// (refused or no answer; tried again later) or failed (every retry spent).
    pub mail_attempts: IntCounterVec,
    /// `onshi_worker_events_total{result}`: new or duplicate qualification events applied.
    pub worker_events: IntCounterVec,
    /// `onshi_worker_lag_seconds`: from the API's 202 to the batch being applied.
    pub worker_lag: Histogram,
    /// `onshi_worker_stage_seconds{stage}`: how long each step of handling a group of messages took:
    /// `archive` (the upload to the object store), `apply` (the database transaction, which runs while the
    /// upload does and commits after it), `publish` (the live-feed note), `settle` (acks to the broker).
    /// Where a worker's time goes when it falls behind.
    pub worker_stage: HistogramVec,
    /// `onshi_agent_heartbeats_total`: heartbeats received from agents.
    pub agent_heartbeats: IntCounter,
    /// `onshi_heartbeat_flushes_total`: rounds of the heartbeat writer that wrote something.
    pub heartbeat_flushes: IntCounter,
    /// `onshi_heartbeat_states_total`: agent states (agent and up/degraded) the heartbeat writer wrote.
    pub heartbeat_states: IntCounter,
    /// `onshi_queue_messages{queue}`: main or dead_letter, sampled at scrape.
    pub queue_messages: IntGaugeVec,
    /// `onshi_agents{state}`: active agents whose last contact is recent (reporting) or not (silent).
    pub agents: IntGaugeVec,
    /// `onshi_up{dependency}`: 1 when the dependency answered at the last scrape.
    pub dependency_up: IntGaugeVec,
    /// `onshi_clinic_codes_shared`: 医療機関コード registered by more than one group (sampled at scrape).
    pub clinic_codes_shared: IntGauge,
    /// `onshi_worker_consumer_up`: 1 while this process's queue consumer is attached (sampled at scrape).
    pub worker_consumer_up: IntGauge,
    /// `onshi_worker_reconnects_total`: attempts to attach a consumer after losing (or never having) one.
    pub worker_reconnects: IntCounter,
    /// `onshi_worker_seconds_since_delivery`: while consuming, seconds since the last message arrived.
    pub worker_idle_seconds: IntGauge,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

/// Latency buckets from 1 ms to 10 s: page and ingest requests sit in the low tens of milliseconds.
const LATENCY_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Lag buckets from 10 ms to 1 h: after an outage a backlog may take minutes to drain.
const LAG_BUCKETS: &[f64] = &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0];

impl Metrics {
    #[allow(clippy::expect_used)] // fixed names and labels: a failure is a programming error seen at once
    fn new() -> Self {
        let registry = Registry::new_custom(Some("onshi".to_owned()), None).expect("valid registry prefix");
        let http_requests = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency by route pattern")
                .buckets(LATENCY_BUCKETS.to_vec()),
            &["method", "route", "status"],
        )
        .expect("valid metric");
        let ingest_events = IntCounterVec::new(
            Opts::new("ingest_events_total", "Events received by the ingest API, by outcome"),
            &["outcome"],
        )
        .expect("valid metric");
        let ingest_batches = IntCounterVec::new(
            Opts::new("ingest_batches_total", "Batches received by the ingest API, by outcome"),
            &["outcome"],
        )
        .expect("valid metric");
        let worker_batches = IntCounterVec::new(
            Opts::new("worker_batches_total", "Queue messages settled by workers, by outcome"),
            &["outcome"],
        )
        .expect("valid metric");
        let webhook_attempts = IntCounterVec::new(
            Opts::new("webhook_attempts_total", "Attempts to deliver a webhook, by outcome"),
            &["outcome"],
        )
        .expect("valid metric");
        let mail_attempts = IntCounterVec::new(
            Opts::new("mail_attempts_total", "Attempts to hand a system e-mail to the mail server, by outcome"),
            &["outcome"],
        )
        .expect("valid metric");
        let worker_events = IntCounterVec::new(
            Opts::new("worker_events_total", "Qualification events applied by workers (new or duplicate)"),
            &["result"],
        )
        .expect("valid metric");
        let ingest_messages =
            IntCounter::new("ingest_messages_total", "Queue messages the API published (batches may share one)")
                .expect("valid metric");
        let worker_lag = Histogram::with_opts(
            HistogramOpts::new("worker_lag_seconds", "Time from the API accepting a batch to a worker applying it")
                .buckets(LAG_BUCKETS.to_vec()),
        )
        .expect("valid metric");
        let worker_stage = HistogramVec::new(
            HistogramOpts::new(
                "worker_stage_seconds",
                "Time a worker spent on each step of handling a group of messages",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["stage"],
        )
        .expect("valid metric");
        let agent_heartbeats =
            IntCounter::new("agent_heartbeats_total", "Heartbeats received from agents").expect("valid metric");
        let heartbeat_flushes = IntCounter::new("heartbeat_flushes_total", "Rounds of the heartbeat writer that wrote")
            .expect("valid metric");
        let heartbeat_states =
            IntCounter::new("heartbeat_states_total", "Agent states written by the heartbeat writer")
                .expect("valid metric");
        let queue_messages = IntGaugeVec::new(
            Opts::new("queue_messages", "Messages waiting in the work queue and its dead-letter queue"),
            &["queue"],
        )
        .expect("valid metric");
        let agents =
            IntGaugeVec::new(Opts::new("agents", "Active agents by recent contact"), &["state"]).expect("valid metric");
        let dependency_up =
            IntGaugeVec::new(Opts::new("up", "Whether a dependency answered at the last scrape"), &["dependency"])
                .expect("valid metric");
        let clinic_codes_shared =
            IntGauge::new("clinic_codes_shared", "Medical institution codes registered by more than one clinic group")
                .expect("valid metric");
        let worker_consumer_up =
            IntGauge::new("worker_consumer_up", "Whether this process's queue consumer is attached")
                .expect("valid metric");
        let worker_reconnects =
            IntCounter::new("worker_reconnects_total", "Attempts to attach a queue consumer after losing one")
                .expect("valid metric");
        let worker_idle_seconds =
            IntGauge::new("worker_seconds_since_delivery", "Seconds since the consumer last received a message")
                .expect("valid metric");
        for collector in [
            Box::new(http_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(ingest_events.clone()),
            Box::new(ingest_batches.clone()),
            Box::new(ingest_messages.clone()),
            Box::new(worker_batches.clone()),
            Box::new(webhook_attempts.clone()),
            Box::new(mail_attempts.clone()),
            Box::new(worker_events.clone()),
            Box::new(worker_lag.clone()),
            Box::new(worker_stage.clone()),
            Box::new(agent_heartbeats.clone()),
            Box::new(heartbeat_flushes.clone()),
            Box::new(heartbeat_states.clone()),
            Box::new(queue_messages.clone()),
            Box::new(agents.clone()),
            Box::new(dependency_up.clone()),
            Box::new(clinic_codes_shared.clone()),
            Box::new(worker_consumer_up.clone()),
            Box::new(worker_reconnects.clone()),
            Box::new(worker_idle_seconds.clone()),
        ] {
            registry.register(collector).expect("metric registered once");
        }
        Self {
            registry,
            http_requests,
            ingest_events,
            ingest_batches,
            ingest_messages,
            worker_batches,
            webhook_attempts,
            mail_attempts,
            worker_events,
            worker_lag,
            worker_stage,
            agent_heartbeats,
            heartbeat_flushes,
            heartbeat_states,
            queue_messages,
            agents,
            dependency_up,
            clinic_codes_shared,
            worker_consumer_up,
            worker_reconnects,
            worker_idle_seconds,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for the text format, except on invalid metric names, which the
        // constructor already rules out.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "metrics encoding failed");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// How many of `histogram`'s observations were at most `bound`, which must be one of its bucket bounds
/// (0 otherwise): for a bench that reads the process's own metrics before and after a run.
pub fn observed_within(histogram: &Histogram, bound: f64) -> u64 {
    use prometheus::core::Metric as _;
    let metric = histogram.metric();
    metric
        .get_histogram()
        .get_bucket()
        .iter()
        .find(|b| b.upper_bound() == bound)
        .map_or(0, prometheus::proto::Bucket::cumulative_count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_observations_within_a_bucket_bound() {
        let h = Histogram::with_opts(HistogramOpts::new("t", "t").buckets(vec![0.5, 1.0, 2.5])).unwrap();
        for v in [0.1, 0.7, 0.9, 3.0] {
            h.observe(v);
        }
        assert_eq!((observed_within(&h, 0.5), observed_within(&h, 1.0), observed_within(&h, 2.5)), (1, 3, 3));
        assert_eq!(observed_within(&h, 0.75), 0, "not a bound");
    }

    #[test]
    fn renders_every_family_with_prefix() {
        let m = metrics();
        m.ingest_events.with_label_values(&["accepted"]).inc_by(3);
        m.http_requests.with_label_values(&["GET", "/healthz", "200"]).observe(0.002);
        m.worker_lag.observe(0.3);
        let text = m.render();
        assert!(text.contains("onshi_ingest_events_total{outcome=\"accepted\"} 3"), "{text}");
        assert!(text.contains("onshi_http_request_duration_seconds_bucket{method=\"GET\",route=\"/healthz\""));
        assert!(text.contains("onshi_worker_lag_seconds_count 1"));
    }
}
