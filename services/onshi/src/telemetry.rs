//! Logging. JSON in production (`log_format = "json"`), readable lines on a terminal. Log lines carry
//! ids and counts, never patient data; see docs/security.md.

use onshi_config::{Config, LogFormat};
use tracing_subscriber::EnvFilter;

pub fn init(config: &Config) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log_level));
    // Logs go to stderr: stdout belongs to command output (`onshi rules eval` prints JSON there).
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(true).with_writer(std::io::stderr);
    // A second init (tests start several apps) is not an error worth failing over.
    let _ = match config.log_format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
}
