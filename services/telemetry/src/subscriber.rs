//! The process's subscriber: an env filter, log lines (JSON in production, compact on a terminal) and an
//! OpenTelemetry layer. The OpenTelemetry layer is always installed, so spans have W3C trace ids that
//! travel to the worker and show up in the logs; spans leave the process only when `otlp_endpoint` is set.

use onshi_config::{Config, LogFormat};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Keeps the tracer provider alive; dropping it flushes the spans still buffered for export.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("onshi: flushing traces at exit failed: {e}");
        }
    }
}

/// Installs the subscriber. `default_service` names the process in traces unless `service_name` is set.
/// With `log_file` (the demo), every log line at `log_level` goes to that file and the terminal shows
/// warnings only. A second call (tests start several apps in one process) leaves the first in place.
pub fn init(config: &Config, default_service: &str, log_file: Option<&std::path::Path>) -> Telemetry {
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log_level));
    let service = config.service_name.clone().unwrap_or_else(|| default_service.to_owned());
    let mut builder =
        SdkTracerProvider::builder().with_resource(Resource::builder().with_service_name(service).build());
    if let Some(endpoint) = &config.otlp_endpoint {
        // JSON over HTTP: any OpenTelemetry collector accepts it on :4318, and it needs no gRPC stack.
        match SpanExporter::builder().with_http().with_protocol(Protocol::HttpJson).with_endpoint(endpoint).build() {
            Ok(exporter) => builder = builder.with_batch_exporter(exporter),
            Err(e) => eprintln!("onshi: otlp_endpoint {endpoint}: exporter not started: {e}"),
        }
    }
    let provider = builder.build();

    // The demo: the whole log in a file, the terminal kept for its banner and for warnings.
    if let Some(path) = log_file {
        let file = path
            .parent()
            .map(std::fs::create_dir_all)
            .transpose()
            .and_then(|_| std::fs::OpenOptions::new().create(true).append(true).open(path));
        match file {
            Ok(file) => {
                let to_file = tracing_subscriber::fmt::layer()
                    .compact()
                    .with_ansi(false)
                    .with_target(true)
                    .with_writer(std::sync::Mutex::new(file))
                    .with_filter(filter());
                let to_terminal = tracing_subscriber::fmt::layer()
                    .compact()
                    .with_target(false)
                    .with_writer(std::io::stderr)
                    .with_filter(tracing_subscriber::filter::LevelFilter::WARN);
                let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("onshi"));
                let installed =
                    tracing_subscriber::registry().with(to_file).with(to_terminal).with(otel).try_init().is_ok();
                return Telemetry { provider: installed.then_some(provider) };
            }
            Err(e) => eprintln!("onshi: log file {}: {e}; logging to the terminal", path.display()),
        }
    }

    let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("onshi"));
    // Logs go to stderr: stdout belongs to command output (`onshi rules eval` prints JSON there).
    let logs = match config.log_format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_target(true)
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Pretty => {
            tracing_subscriber::fmt::layer().compact().with_target(true).with_writer(std::io::stderr).boxed()
        }
    };
    let installed = tracing_subscriber::registry().with(filter()).with(logs).with(otel).try_init().is_ok();
    Telemetry { provider: installed.then_some(provider) }
}
