//! The agent's configuration, loaded once: compiled-in defaults (`agent.default.toml`, every key commented)
//! < a TOML file < `ONSHI_AGENT_*` environment variables, then validated.

use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;

pub const DEFAULTS_TOML: &str = include_str!("../agent.default.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration could not be read: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("configuration key `{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
}

/// How many result files (`*.xml`) a folder holds now, or why it cannot be read: the one test of a
/// watched folder, for `run` (which refuses one that fails it) and `check` (which says why).
pub fn result_files(folder: &Path) -> std::io::Result<usize> {
    Ok(std::fs::read_dir(folder)?
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x.eq_ignore_ascii_case("xml")))
        .count())
}

/// The machine's own places for the agent's configuration file and data folder (XDG on Linux, the known
/// folders on Windows, ~/Library on macOS), so `enroll` and `run` work from any current folder.
pub struct Places {
    pub config_file: PathBuf,
    pub data_dir: PathBuf,
}

impl Places {
    pub fn of_this_machine() -> Option<Self> {
        use etcetera::{AppStrategy, AppStrategyArgs, choose_app_strategy};
        let strategy = choose_app_strategy(AppStrategyArgs {
            top_level_domain: "jp".into(),
            author: "Onshi".into(),
            app_name: "onshi-agent".into(),
        })
        .ok()?;
        Some(Self { config_file: strategy.in_config_dir("agent.toml"), data_dir: strategy.data_dir() })
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct AgentConfig {
    pub data_dir: PathBuf,
    pub watch: Vec<PathBuf>,
    /// Folders with the レセコン's claims files (`*.UKE`).
    pub uke_watch: Vec<PathBuf>,
    pub rescan_secs: u64,
    pub stable_ms: u64,
    pub settle_secs: u64,
    pub max_outbox_bytes: u64,
    pub batch_size: usize,
    pub retry_min_ms: u64,
    pub retry_max_ms: u64,
    pub revoked_recheck_secs: u64,
    pub heartbeat_secs: u64,
    pub reader_probe: Option<String>,
    pub network_probes: Vec<String>,
    pub server: Option<String>,
    pub log_level: String,
    /// The configuration file this was read from, when there was one (for advice that names it).
    #[serde(skip)]
    pub file: Option<PathBuf>,
}

impl AgentConfig {
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let file = Self::file_to_read(file);
        let mut config = Self::from_figment(
            Figment::from(Toml::string(DEFAULTS_TOML))
                .merge(Toml::file(&file))
                .merge(Env::prefixed("ONSHI_AGENT_").filter(|k| k.as_str() != "config")),
        )?;
        config.file = file.exists().then_some(file);
        Ok(config)
    }

    /// The configuration file: `--config`, else `$ONSHI_AGENT_CONFIG`, else `./agent.toml` when present,
    /// else the machine's own place (where `enroll` writes it).
    pub fn file_to_read(explicit: Option<&Path>) -> PathBuf {
        explicit
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("ONSHI_AGENT_CONFIG").map(PathBuf::from))
            .or_else(|| Some(PathBuf::from("agent.toml")).filter(|p| p.exists()))
            .or_else(|| Places::of_this_machine().map(|p| p.config_file))
            .unwrap_or_else(|| PathBuf::from("agent.toml"))
    }

    /// Defaults with the given data folder and watched folders (tests, the demo).
    pub fn with(data_dir: impl Into<PathBuf>, watch: Vec<PathBuf>) -> Result<Self, ConfigError> {
        let mut config = Self::from_figment(Figment::from(Toml::string(DEFAULTS_TOML)))?;
        config.data_dir = data_dir.into();
        config.watch = watch;
        config.validate()?;
        Ok(config)
    }

    pub fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        let mut config: Self = figment.extract().map_err(Box::new)?;
        if config.data_dir.as_os_str().is_empty() {
            config.data_dir =
                Places::of_this_machine().map(|p| p.data_dir).unwrap_or_else(|| PathBuf::from("onshi-agent-data"));
        }
        config.validate()?;
        Ok(config)
    }

    /// Every watched folder that cannot be read, with why.
    pub fn missing_folders(&self) -> Vec<(PathBuf, String)> {
        self.watch
            .iter()
            .filter_map(|folder| result_files(folder).err().map(|e| (folder.clone(), e.to_string())))
            .collect()
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: &str| Err(ConfigError::Invalid { key, reason: reason.to_owned() });
        if self.rescan_secs == 0 || self.rescan_secs > 3600 {
            return invalid("rescan_secs", "must be between 1 and 3600");
        }
        if self.stable_ms == 0 || self.stable_ms > 60_000 {
            return invalid("stable_ms", "must be between 1 and 60000");
        }
        if self.batch_size == 0 || self.batch_size > onshi_domain::event::MAX_BATCH_EVENTS {
            return invalid("batch_size", "must be between 1 and 1000");
        }
        if self.retry_min_ms < 10 || self.retry_min_ms > self.retry_max_ms {
            return invalid("retry_min_ms", "must be at least 10 and at most retry_max_ms");
        }
        if self.retry_max_ms > 600_000 {
            return invalid("retry_max_ms", "must be at most 600000 (ten minutes)");
        }
        if self.revoked_recheck_secs == 0 || self.revoked_recheck_secs > 3600 {
            return invalid("revoked_recheck_secs", "must be between 1 and 3600");
        }
        if self.heartbeat_secs == 0 || self.heartbeat_secs > 3600 {
            return invalid("heartbeat_secs", "must be between 1 and 3600");
        }
        if self.max_outbox_bytes < 64 * 1024 {
            return invalid("max_outbox_bytes", "must be at least 65536");
        }
        for probe in self.reader_probe.iter().chain(&self.network_probes) {
            if !(probe.starts_with("tcp://") || probe.starts_with("http://") || probe.starts_with("https://")) {
                return invalid("network_probes", "probes start with tcp://, http:// or https://");
            }
        }
        Ok(())
    }

    pub fn rescan(&self) -> Duration {
        Duration::from_secs(self.rescan_secs)
    }

    pub fn stable(&self) -> Duration {
        Duration::from_millis(self.stable_ms)
    }

    /// The first delivery retry waits about this long; later ones double.
    pub fn retry_min(&self) -> Duration {
        Duration::from_millis(self.retry_min_ms)
    }

    /// No delivery retry waits longer than this.
    pub fn retry_max(&self) -> Duration {
        Duration::from_millis(self.retry_max_ms)
    }

    /// How long a refused device waits before its next delivery attempt.
    pub fn revoked_recheck(&self) -> Duration {
        Duration::from_secs(self.revoked_recheck_secs)
    }

    pub fn outbox_path(&self) -> PathBuf {
        self.data_dir.join("outbox.db")
    }

    pub fn quarantine_dir(&self) -> PathBuf {
        self.data_dir.join("quarantine")
    }
}
