//! Configuration for the cloud services: one struct, loaded once at start-up.
//!
//! Defaults come from `onshi.default.toml` (compiled in, every key commented), then an optional TOML file,
//! then `ONSHI_*` environment variables. `Config::load` validates the result and names the key at fault.
//! Credentials are `SecretString`s: they print as `[REDACTED]` in `Debug` and in logs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// The defaults, as shipped. Also the reference documentation of every key.
pub const DEFAULTS_TOML: &str = include_str!("../onshi.default.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration could not be read: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("configuration key `{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub listen: String,
    pub data_dir: PathBuf,
    pub log_format: LogFormat,
    pub log_level: String,

    pub database_url: Option<SecretString>,
    pub database_migration_url: Option<SecretString>,
    pub database_max_connections: u32,

    pub amqp_url: Option<SecretString>,
    pub queue_name: String,
    pub delivery_limit: u32,
    pub worker_prefetch: u16,
    pub worker_idle_secs: u64,
    pub heartbeat_flush_ms: u64,
    pub worker_down_grace_secs: u64,
    pub audit_anchor_secs: u64,

    pub redis_url: Option<SecretString>,
    pub cache_prefix: String,

    pub s3_endpoint: Option<String>,
    pub s3_bucket: String,
    pub s3_region: String,
    pub s3_path_style: bool,
    pub s3_access_key_id: Option<String>,
    pub s3_secret_access_key: Option<SecretString>,

    pub jwt_secret: Option<SecretString>,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    pub device_token_ttl_secs: u64,

    pub ingest_batches_per_device_per_sec: u32,
    pub api_requests_per_token_per_minute: u32,
    pub webhook_allow_private_targets: bool,
    pub webhook_backoff_secs: Vec<u64>,
    pub webhook_poll_ms: u64,
    /// How often a worker looks at agents in trouble for alerts that know opening hours.
    pub alert_poll_ms: u64,
    /// How often a worker reads the expiry radar (warnings by e-mail, the weekly summary).
    pub radar_poll_ms: u64,
    /// Delays before each retry of a system e-mail the mail server did not take.
    pub mail_backoff_secs: Vec<u64>,
    /// How often a worker looks for system e-mail due for sending.
    pub mail_poll_ms: u64,
    pub max_body_bytes: usize,
    pub archive_raw_batches: bool,
    /// A reception-addon rules file to use instead of the built-in one (validated at start-up).
    pub rules_file: Option<std::path::PathBuf>,

    pub public_url: String,
    pub allowed_origins: Vec<String>,
    pub trusted_proxies: Vec<std::net::IpAddr>,
    pub smtp_url: Option<SecretString>,
    pub mail_from: String,
    pub session_idle_secs: u64,
    pub session_max_secs: u64,
    pub login_failures_per_account: u64,
    pub login_failures_per_address: u64,
    pub login_window_secs: u64,

    pub worker_listen: String,
    pub metrics_token: Option<SecretString>,
    pub otlp_endpoint: Option<String>,
    pub service_name: Option<String>,
}

/// Which adapters a configuration selects; printed at start-up and shown by `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Modes {
    pub postgres: bool,
    pub rabbitmq: bool,
    pub redis: bool,
    pub s3: bool,
}

impl Modes {
    pub fn is_embedded(&self) -> bool {
        !(self.postgres || self.rabbitmq || self.redis || self.s3)
    }
}

impl Config {
    /// Loads defaults < `file` (or `ONSHI_CONFIG`, or `./onshi.toml` when present) < `ONSHI_*` env.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let file = file
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("ONSHI_CONFIG").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("onshi.toml"));
        let figment = Figment::from(Toml::string(DEFAULTS_TOML))
            .merge(Toml::file(file))
            // ONSHI_TEST_* belong to the test harness, ONSHI_CONFIG names the file itself.
            .merge(Env::prefixed("ONSHI_").filter(|k| !k.as_str().starts_with("test_") && k.as_str() != "config"));
        Self::from_figment(figment)
    }

    /// Defaults only, with everything embedded under `data_dir`. For tests and the demo.
    pub fn embedded(data_dir: impl Into<PathBuf>) -> Result<Self, ConfigError> {
        let mut config = Self::from_figment(Figment::from(Toml::string(DEFAULTS_TOML)))?;
        config.data_dir = data_dir.into();
        Ok(config)
    }

    pub fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        let config: Config = figment.extract().map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: &str| Err(ConfigError::Invalid { key, reason: reason.to_owned() });
        if self.listen.parse::<SocketAddr>().is_err() {
            return invalid("listen", "must be an address such as 127.0.0.1:8080");
        }
        if self.worker_listen.parse::<SocketAddr>().is_err() {
            return invalid("worker_listen", "must be an address such as 127.0.0.1:9091");
        }
        if let Some(endpoint) = &self.otlp_endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return invalid("otlp_endpoint", "must be an http:// or https:// URL");
        }
        if self.delivery_limit == 0 {
            return invalid("delivery_limit", "must be at least 1");
        }
        if self.worker_idle_secs == 0 {
            return invalid("worker_idle_secs", "must be at least 1");
        }
        if self.audit_anchor_secs == 0 {
            return invalid("audit_anchor_secs", "must be at least 1");
        }
        if self.worker_down_grace_secs == 0 {
            return invalid("worker_down_grace_secs", "must be at least 1");
        }
        if !(50..=30_000).contains(&self.heartbeat_flush_ms) {
            return invalid("heartbeat_flush_ms", "must be between 50 and 30000 (offline is judged after 60 s)");
        }
        if self.worker_prefetch == 0 {
            return invalid("worker_prefetch", "must be at least 1");
        }
        if self.database_max_connections == 0 {
            return invalid("database_max_connections", "must be at least 1");
        }
        if self.queue_name.is_empty() || self.queue_name.len() > 200 {
            return invalid("queue_name", "must be 1 to 200 characters");
        }
        if let Some(url) = &self.database_url {
            let url = url.expose_secret();
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://") || url.starts_with("sqlite:")) {
                return invalid("database_url", "must start with postgres://, postgresql:// or sqlite:");
            }
        }
        if let Some(url) = &self.amqp_url {
            let url = url.expose_secret();
            if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
                return invalid("amqp_url", "must start with amqp:// or amqps://");
            }
        }
        if let Some(url) = &self.redis_url {
            let url = url.expose_secret();
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return invalid("redis_url", "must start with redis:// or rediss://");
            }
        }
        if let Some(endpoint) = &self.s3_endpoint {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                return invalid("s3_endpoint", "must start with http:// or https://");
            }
            if self.s3_access_key_id.is_none() || self.s3_secret_access_key.is_none() {
                return invalid("s3_endpoint", "needs s3_access_key_id and s3_secret_access_key");
            }
            if self.s3_bucket.is_empty() {
                return invalid("s3_bucket", "must not be empty");
            }
        }
        match &self.jwt_secret {
            Some(secret) if secret.expose_secret().len() < 32 => {
                return invalid("jwt_secret", "must be at least 32 bytes");
            }
            None if self.database_url.is_some() => {
                return invalid(
                    "jwt_secret",
                    "is required with database_url, so every API process verifies the same device tokens",
                );
            }
            _ => {}
        }
        if self.device_token_ttl_secs < 60 || self.device_token_ttl_secs > 86_400 {
            return invalid("device_token_ttl_secs", "must be between 60 and 86400");
        }
        if self.ingest_batches_per_device_per_sec == 0 {
            return invalid("ingest_batches_per_device_per_sec", "must be at least 1");
        }
        // A retry schedule: 1 to 20 delays, each 1 s to 7 days.
        let schedule_ok =
            |delays: &[u64]| (1..=20).contains(&delays.len()) && delays.iter().all(|d| (1..=7 * 86_400).contains(d));
        if !schedule_ok(&self.webhook_backoff_secs) {
            return invalid("webhook_backoff_secs", "1 to 20 delays, each 1 s to 7 days");
        }
        if self.webhook_poll_ms < 50 || self.webhook_poll_ms > 60_000 {
            return invalid("webhook_poll_ms", "must be between 50 and 60000");
        }
        if self.alert_poll_ms < 50 || self.alert_poll_ms > 300_000 {
            return invalid("alert_poll_ms", "must be between 50 and 300000");
        }
        if !schedule_ok(&self.mail_backoff_secs) {
            return invalid("mail_backoff_secs", "1 to 20 delays, each 1 s to 7 days");
        }
        if self.mail_poll_ms < 50 || self.mail_poll_ms > 60_000 {
            return invalid("mail_poll_ms", "must be between 50 and 60000");
        }
        if self.radar_poll_ms < 50 || self.radar_poll_ms > 86_400_000 {
            return invalid("radar_poll_ms", "must be between 50 and 86400000");
        }
        if self.api_requests_per_token_per_minute == 0 {
            return invalid("api_requests_per_token_per_minute", "must be at least 1");
        }
        if self.max_body_bytes < 1024 {
            return invalid("max_body_bytes", "must be at least 1024");
        }
        if let Some(url) = &self.database_migration_url {
            let url = url.expose_secret();
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return invalid("database_migration_url", "must start with postgres:// or postgresql://");
            }
        }
        if let Some(bad) = self.allowed_origins.iter().find(|o| origin_of(o).as_deref() != Some(o.as_str())) {
            return invalid("allowed_origins", &format!("{bad:?} is not an origin such as https://onshi.example.jp"));
        }
        if !(self.public_url.starts_with("http://") || self.public_url.starts_with("https://")) {
            return invalid("public_url", "must start with http:// or https://");
        }
        if let Some(url) = &self.smtp_url {
            let url = url.expose_secret();
            if !(url.starts_with("smtp://") || url.starts_with("smtps://")) {
                return invalid("smtp_url", "must start with smtp:// or smtps://");
            }
        }
        if self.session_idle_secs < 60 || self.session_idle_secs > self.session_max_secs {
            return invalid("session_idle_secs", "must be at least 60 and at most session_max_secs");
        }
        if self.session_max_secs > 86_400 {
            return invalid("session_max_secs", "must be at most 86400 (one day)");
        }
        if self.login_failures_per_account == 0 || self.login_failures_per_address == 0 {
            return invalid("login_failures_per_account", "limits must be at least 1");
        }
        if self.login_window_secs < 60 {
            return invalid("login_window_secs", "must be at least 60");
        }
        Ok(())
    }

    pub fn listen_addr(&self) -> SocketAddr {
        // validate() guarantees it parses; fall back to the documented default rather than panic.
        self.listen.parse().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8080)))
    }

    pub fn modes(&self) -> Modes {
        Modes {
            postgres: self.database_url.as_ref().is_some_and(|u| !u.expose_secret().starts_with("sqlite:")),
            rabbitmq: self.amqp_url.is_some(),
            redis: self.redis_url.is_some(),
            s3: self.s3_endpoint.is_some(),
        }
    }

    /// The URL `onshi migrate` (and `onshi audit verify`) connect with: the owner of the schema, where
    /// the application itself connects as the restricted `onshi_app` role.
    pub fn effective_migration_url(&self) -> SecretString {
        self.database_migration_url.clone().unwrap_or_else(|| self.effective_database_url())
    }

    /// The database URL to connect to: the configured one, or SQLite in `data_dir`.
    pub fn effective_database_url(&self) -> SecretString {
        match &self.database_url {
            Some(url) => url.clone(),
            None => {
                let path = self.data_dir.join("onshi.db");
                SecretString::from(format!("sqlite://{}?mode=rwc", path.display()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use figment::providers::Serialized;

    #[test]
    fn the_shipped_defaults_are_valid_and_embedded() {
        let config = Config::embedded("/tmp/x").unwrap();
        assert!(config.modes().is_embedded());
        assert_eq!(config.listen_addr().to_string(), "127.0.0.1:8080");
        assert!(config.effective_database_url().expose_secret().starts_with("sqlite:///tmp/x/onshi.db"));
    }

    #[test]
    fn a_url_switches_its_adapter_to_full_mode() {
        let figment = Figment::from(Toml::string(DEFAULTS_TOML))
            .merge(Serialized::default("amqp_url", "amqp://guest:guest@127.0.0.1:5672/%2f"));
        let config = Config::from_figment(figment).unwrap();
        let modes = config.modes();
        assert!(modes.rabbitmq && !modes.postgres && !modes.redis && !modes.s3);
    }

    #[test]
    fn postgres_without_a_jwt_secret_is_refused_by_name() {
        let figment =
            Figment::from(Toml::string(DEFAULTS_TOML)).merge(Serialized::default("database_url", "postgres://x@y/z"));
        let err = Config::from_figment(figment).unwrap_err().to_string();
        assert!(err.contains("jwt_secret"), "{err}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let figment = Figment::from(Toml::string(DEFAULTS_TOML)).merge(Serialized::default("listen", "nowhere"));
        let err = Config::from_figment(figment).unwrap_err().to_string();
        assert!(err.contains("`listen`"), "{err}");
    }

    #[test]
    fn secrets_do_not_appear_in_debug_output() {
        let figment = Figment::from(Toml::string(DEFAULTS_TOML))
            .merge(Serialized::default("jwt_secret", "super-secret-value-that-is-long-enough"))
            .merge(Serialized::default("amqp_url", "amqp://user:hunter2@mq/%2f"));
        let config = Config::from_figment(figment).unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains("super-secret") && !debug.contains("hunter2"), "{debug}");
    }
}

/// The origin (`scheme://host[:port]`, lower case, no path) of an http(s) URL, as browsers send it in
/// `Origin`; `None` for anything else.
pub fn origin_of(url: &str) -> Option<String> {
    let url = url.trim().to_ascii_lowercase();
    let (scheme, rest) = url.split_once("://")?;
    if !matches!(scheme, "http" | "https") {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let authority = match (scheme, authority.rsplit_once(':')) {
        ("http", Some((host, "80"))) | ("https", Some((host, "443"))) => host,
        _ => authority,
    };
    Some(format!("{scheme}://{authority}"))
}

#[cfg(test)]
mod origin_tests {
    use super::origin_of;

    #[test]
    fn origins_are_scheme_host_and_port_without_default_ports_or_paths() {
        assert_eq!(origin_of("https://Onshi.example.jp/").as_deref(), Some("https://onshi.example.jp"));
        assert_eq!(origin_of("https://onshi.example.jp:443/x").as_deref(), Some("https://onshi.example.jp"));
        assert_eq!(origin_of("http://127.0.0.1:8080").as_deref(), Some("http://127.0.0.1:8080"));
        for bad in ["onshi.example.jp", "ftp://x", "https://", "https://user@evil.example"] {
            assert_eq!(origin_of(bad), None, "{bad}");
        }
    }
}
