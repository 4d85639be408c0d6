//! Building the application from a `Config`.

use std::net::TcpListener;
use std::sync::Arc;

use std::time::Duration;

use onshi_api::{AppState, DeviceKeys, LoginLimits, Mailer, Sessions, WorkerWatch};
use onshi_cache::{Cache, MemoryCache, RedisCache};
use onshi_config::Config;
use onshi_objects::{LocalStore, ObjectStore, S3Settings, S3Store};
use onshi_queue::{ConsumerHealth, EmbeddedQueue, Queue, RabbitQueue};
use onshi_store::Store;
use onshi_worker::Worker;
use secrecy::ExposeSecret;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("database")]
    Store(#[from] onshi_store::StoreError),
    #[error("{0} migration(s) pending: run `onshi migrate` first")]
    PendingMigrations(usize),
    #[error("message queue")]
    Queue(#[from] onshi_queue::QueueError),
    #[error("cache")]
    Cache(#[from] onshi_cache::CacheError),
    #[error("object store")]
    Objects(#[from] onshi_objects::ObjectError),
    #[error("could not listen on {addr}")]
    Listen { addr: String, source: std::io::Error },
    #[error("mail settings (smtp_url / mail_from)")]
    Mail(#[source] onshi_api::mail::MailError),
    #[error("rules file {path}: {reason}")]
    Rules { path: String, reason: String },
}

impl StartupError {
    /// A dependency that did not answer (it may come up), as opposed to settings or a schema that are
    /// wrong (waiting will not help).
    pub fn is_transient(&self) -> bool {
        match self {
            StartupError::Store(e) => e.is_transient(),
            StartupError::Queue(_) | StartupError::Cache(_) | StartupError::Objects(_) => true,
            _ => false,
        }
    }
}

/// Loads and validates the reception-addon rules once: the configured file, or the built-in rules.
pub fn load_rules(file: Option<&std::path::Path>) -> Result<onshi_rules::RuleSet, StartupError> {
    match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| StartupError::Rules { path: path.display().to_string(), reason: e.to_string() })?;
            onshi_rules::RuleSet::from_toml(&text)
                .map_err(|e| StartupError::Rules { path: path.display().to_string(), reason: e.to_string() })
        }
        None => onshi_rules::RuleSet::builtin()
            .map_err(|e| StartupError::Rules { path: "(built-in)".to_owned(), reason: e.to_string() }),
    }
}

/// The four adapters, connected.
#[derive(Clone)]
pub struct Adapters {
    pub store: Store,
    pub queue: Queue,
    pub cache: Cache,
    pub objects: ObjectStore,
    /// The rules, loaded once with the adapters so that API and workers judge by the same set.
    pub rules: std::sync::Arc<onshi_rules::RuleSet>,
}

impl Adapters {
    /// Connects every adapter the configuration selects. SQLite databases are migrated here (the
    /// embedded mode has no deployment step); PostgreSQL must already be migrated.
    pub async fn connect(config: &Config) -> Result<Self, StartupError> {
        let modes = config.modes();
        let store =
            Store::connect(config.effective_database_url().expose_secret(), config.database_max_connections).await?;
        if modes.postgres {
            let pending = store.pending_migrations().await?;
            if pending > 0 {
                return Err(StartupError::PendingMigrations(pending));
            }
        } else {
            store.migrate().await?;
        }
        let queue = match &config.amqp_url {
            Some(url) => Queue::Rabbit(
                RabbitQueue::connect(url.expose_secret(), &config.queue_name, config.delivery_limit).await?,
            ),
            None => Queue::Embedded(EmbeddedQueue::new(
                store.connection().clone(),
                &config.queue_name,
                config.delivery_limit,
            )),
        };
        let cache = match &config.redis_url {
            Some(url) => Cache::Redis(RedisCache::connect(url.expose_secret(), &config.cache_prefix).await?),
            None => Cache::Memory(MemoryCache::new()),
        };
        let objects = object_store(config).await?;
        tracing::info!(
            database = if modes.postgres { "postgres" } else { "sqlite" },
            queue = queue.kind(),
            cache = cache.kind(),
            objects = objects.kind(),
            "adapters connected"
        );
        let rules = std::sync::Arc::new(load_rules(config.rules_file.as_deref())?);
        Ok(Self { store, queue, cache, objects, rules })
    }

    /// A worker over these adapters, reporting its consumer's state to `health`.
    pub fn worker(&self, config: &Config, health: Arc<ConsumerHealth>) -> Worker {
        let watch = match mailer(config) {
            Ok(_) => Some(std::sync::Arc::new(crate::alerts::UsageWatch::new(
                self.store.clone(),
                self.cache.clone(),
                config.public_url.clone(),
                self.rules.clone(),
            )) as std::sync::Arc<dyn onshi_worker::AfterApply>),
            Err(e) => {
                tracing::warn!(error = %onshi_telemetry::Chain(&e), "mail settings invalid: usage alerts are off");
                None
            }
        };
        Worker {
            after_apply: watch,
            store: self.store.clone(),
            queue: self.queue.clone(),
            cache: self.cache.clone(),
            objects: self.objects.clone(),
            archive_raw_batches: config.archive_raw_batches,
            prefetch: config.worker_prefetch,
            heartbeat_flush: Duration::from_millis(config.heartbeat_flush_ms),
            health,
            quick_way_off_until: Default::default(),
        }
    }
}

/// The object store the configuration selects: S3 (bucket created if missing) or a folder in data_dir.
pub async fn object_store(config: &Config) -> Result<ObjectStore, onshi_objects::ObjectError> {
    Ok(match &config.s3_endpoint {
        Some(endpoint) => {
            let secret = config.s3_secret_access_key.as_ref().map(|s| s.expose_secret().to_owned()).unwrap_or_default();
            let s3 = S3Store::new(&S3Settings {
                endpoint,
                region: &config.s3_region,
                bucket: &config.s3_bucket,
                access_key_id: config.s3_access_key_id.as_deref().unwrap_or_default(),
                secret_access_key: &secret,
                path_style: config.s3_path_style,
            });
            s3.ensure_bucket().await?;
            ObjectStore::S3(s3)
        }
        None => ObjectStore::Local(LocalStore::new(config.data_dir.join("objects"))?),
    })
}

/// The mail transport: SMTP when `smtp_url` is set, else `.eml` files in `data_dir/mail`.
pub fn mailer(config: &Config) -> Result<Mailer, onshi_api::mail::MailError> {
    match &config.smtp_url {
        Some(url) => Mailer::smtp(url.expose_secret(), &config.mail_from),
        None => Mailer::folder(config.data_dir.join("mail"), &config.mail_from),
    }
}

/// The signing secret from configuration, or a random one for a single embedded process.
fn signing_secret(config: &Config) -> Vec<u8> {
    match &config.jwt_secret {
        Some(secret) => secret.expose_secret().as_bytes().to_vec(),
        None => {
            tracing::warn!("jwt_secret is not set: using a random key; device tokens will not survive a restart");
            (0..32).map(|_| rand::random::<u8>()).collect()
        }
    }
}

/// The device-token keys from configuration, or a random key for a single embedded process.
pub fn device_keys(config: &Config) -> DeviceKeys {
    keys_from(config, &signing_secret(config))
}

fn keys_from(config: &Config, secret: &[u8]) -> DeviceKeys {
    DeviceKeys::new(secret, &config.jwt_issuer, &config.jwt_audience, config.device_token_ttl_secs)
}

pub struct Options {
    /// Run a worker inside this process (always with the embedded queue, which is in-process).
    pub with_worker: bool,
}

/// A running API (and, when asked, an in-process worker).
pub struct Application {
    pub port: u16,
    pub adapters: Adapters,
    pub device_keys: DeviceKeys,
    server: actix_web::dev::Server,
    worker: Option<JoinHandle<()>>,
    shutdown: CancellationToken,
    /// Cancelled once the server has stopped: what serves requests (the device cache's revocations).
    serving: CancellationToken,
}

impl Application {
    pub async fn build(config: &Config, adapters: Adapters, options: Options) -> Result<Self, StartupError> {
        let addr = config.listen.clone();
        let listener =
            TcpListener::bind(&addr).map_err(|source| StartupError::Listen { addr: addr.clone(), source })?;
        let port = listener.local_addr().map_err(|source| StartupError::Listen { addr, source })?.port();
        let secret = signing_secret(config);
        let device_keys = keys_from(config, &secret);
        let mailer = mailer(config).map_err(StartupError::Mail)?;
        let sessions = Sessions::new(
            adapters.cache.clone(),
            Duration::from_secs(config.session_idle_secs),
            Duration::from_secs(config.session_max_secs),
            &secret,
        );
        let with_worker = options.with_worker || matches!(adapters.queue, Queue::Embedded(_));
        let watch = with_worker.then(|| worker_watch(config));
        let shutdown = CancellationToken::new();
        // Revocations are followed for as long as the server serves, which outlasts the worker's stop.
        let serving = CancellationToken::new();
        let device_cache = Arc::new(onshi_api::DeviceAuthCache::new());
        tokio::spawn(device_cache.clone().follow(adapters.cache.clone(), serving.clone()));
        let state = Arc::new(AppState {
            store: adapters.store.clone(),
            queue: adapters.queue.clone(),
            publisher: onshi_queue::Coalescing::start(adapters.queue.clone()),
            cache: adapters.cache.clone(),
            objects: adapters.objects.clone(),
            device_keys: device_keys.clone(),
            device_cache,
            ingest_batches_per_device_per_sec: config.ingest_batches_per_device_per_sec,
            api_requests_per_token_per_minute: config.api_requests_per_token_per_minute,
            webhook_allow_private_targets: config.webhook_allow_private_targets,
            max_body_bytes: config.max_body_bytes,
            modes: config.modes(),
            metrics_token: config.metrics_token.clone(),
            rules: adapters.rules.clone(),
            sessions,
            mailer,
            public_url: config.public_url.clone(),
            origins: onshi_api::Origins::new(&config.public_url, &config.allowed_origins),
            trusted_proxies: config.trusted_proxies.clone(),
            login_limits: LoginLimits {
                per_account: config.login_failures_per_account,
                per_address: config.login_failures_per_address,
                window: Duration::from_secs(config.login_window_secs),
            },
            worker: watch.clone(),
        });
        let server = onshi_api::serve(state, listener)
            .map_err(|source| StartupError::Listen { addr: config.listen.clone(), source })?;
        let worker = watch.map(|w| {
            spawn_watches(&adapters, config, &shutdown);
            tokio::spawn(adapters.worker(config, w.health).run(shutdown.clone()))
        });
        Ok(Self { port, adapters, device_keys, server, worker, shutdown, serving })
    }

    /// Runs in the background (tests, demo); the handle stops it.
    pub fn spawn(self) -> RunningApp {
        let handle = self.server.handle();
        let shutdown = self.shutdown.clone();
        // Should the server end on its own (it does not, short of a bug), the worker and watches end too.
        let task = tokio::spawn(async move {
            let result = self.server.await;
            self.serving.cancel();
            self.shutdown.cancel();
            result.map_err(|source| StartupError::Listen { addr: "server".into(), source })
        });
        RunningApp {
            port: self.port,
            adapters: self.adapters,
            device_keys: self.device_keys,
            handle,
            task,
            worker: self.worker,
            shutdown,
        }
    }
}

pub struct RunningApp {
    pub port: u16,
    pub adapters: Adapters,
    pub device_keys: DeviceKeys,
    handle: actix_web::dev::ServerHandle,
    task: JoinHandle<Result<(), StartupError>>,
    worker: Option<JoinHandle<()>>,
    shutdown: CancellationToken,
}

impl RunningApp {
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Serves until Ctrl-C or SIGTERM, then stops gracefully.
    pub async fn run_until_signal(self) {
        wait_for_signal().await;
        tracing::info!("stopping");
        self.stop().await;
    }

    /// Graceful stop: the worker settles its in-flight messages, then the server drains.
    ///
    /// The worker and the watches are told to stop first, and the worker is waited for (at most about
    /// 20 s: its drain and its last heartbeat write are bounded), while the server still serves and
    /// follows revocations. Database connections are opened on whichever thread needs one, and a server
    /// thread's connections die with its runtime: with the server stopped first, a graceful stop that
    /// waited for open live-feed streams left the worker and watches failing on dead connections for as
    /// long ("A Tokio 1.x context was found, but it is being shutdown", seen at the end of every bench run).
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(worker) = self.worker.take()
            && let Err(e) = worker.await
        {
            tracing::error!(error = %onshi_telemetry::Chain(&e), "worker task panicked");
        }
        self.handle.stop(true).await;
        let _ = self.task.await;
    }
}

/// Runs a standalone worker until Ctrl-C / SIGTERM, with /healthz, /readyz and /metrics on
/// `worker_listen`.
pub async fn run_worker(config: &Config) -> Result<(), StartupError> {
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("stopping worker");
        stop.cancel();
    });
    // A dependency that is down at start is waited for, as one that goes down later is: a worker never
    // exits because something it needs is not there yet. Bad settings still stop it at once.
    let mut pause = Duration::from_secs(1);
    let adapters = loop {
        match Adapters::connect(config).await {
            Ok(a) => break a,
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %onshi_telemetry::Chain(&e), "dependencies not reachable yet; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    () = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(Duration::from_secs(30));
            }
            Err(e) => return Err(e),
        }
    };
    let addr = config.worker_listen.clone();
    let listener = TcpListener::bind(&addr).map_err(|source| StartupError::Listen { addr: addr.clone(), source })?;
    let watch = worker_watch(config);
    let ops = onshi_api::Ops {
        store: adapters.store.clone(),
        queue: adapters.queue.clone(),
        cache: adapters.cache.clone(),
        objects: adapters.objects.clone(),
        modes: config.modes(),
        metrics_token: config.metrics_token.clone(),
        worker: Some(watch.clone()),
    };
    let ops_server = onshi_api::serve_ops(ops, listener).map_err(|source| StartupError::Listen { addr, source })?;
    let ops_handle = ops_server.handle();
    tokio::spawn(ops_server);
    spawn_watches(&adapters, config, &shutdown);
    adapters.worker(config, watch.health).run(shutdown).await;
    ops_handle.stop(true).await;
    Ok(())
}

/// What a worker process keeps up beside applying batches: audit anchoring, webhooks, alerts, the radar
/// and the e-mail outbox they write to (sent only when mail is configured usably; without it the news is
/// on the pages and in webhooks only).
fn spawn_watches(adapters: &Adapters, config: &Config, shutdown: &CancellationToken) {
    // Built once: the watches only need to know whether mail goes out; the sender holds the transport.
    let mailer = mailer(config)
        .inspect_err(|e| tracing::warn!(error = %onshi_telemetry::Chain(&e), "mail settings invalid: alerts and notices are not e-mailed"))
        .ok();
    let mail = mailer.is_some();
    tokio::spawn(anchoring(adapters, config, shutdown.clone()));
    tokio::spawn(webhook_sender(adapters, config, mail).run(shutdown.clone()));
    tokio::spawn(alert_watch(adapters, config, mail).run(shutdown.clone()));
    tokio::spawn(radar_watch(adapters, config, mail).run(shutdown.clone()));
    if let Some(mailer) = mailer {
        let sender = crate::mail_sender::MailSender {
            store: adapters.store.clone(),
            mailer,
            backoff: config.mail_backoff_secs.clone(),
            poll: Duration::from_millis(config.mail_poll_ms),
        };
        tokio::spawn(sender.run(shutdown.clone()));
    }
}

/// The webhook deliveries and agent-outage announcements a worker process keeps up (`crate::webhooks`).
fn webhook_sender(adapters: &Adapters, config: &Config, mail: bool) -> crate::webhooks::WebhookSender {
    crate::webhooks::WebhookSender {
        store: adapters.store.clone(),
        mail,
        public_url: config.public_url.clone(),
        allow_private: config.webhook_allow_private_targets,
        backoff: config.webhook_backoff_secs.clone(),
        poll: Duration::from_millis(config.webhook_poll_ms),
    }
}

/// The alerts that know opening hours a worker process keeps up (`crate::device_alerts`).
fn alert_watch(adapters: &Adapters, config: &Config, mail: bool) -> crate::device_alerts::AlertWatch {
    crate::device_alerts::AlertWatch {
        store: adapters.store.clone(),
        mail,
        public_url: config.public_url.clone(),
        poll: Duration::from_millis(config.alert_poll_ms),
        wide: Default::default(),
    }
}

/// The expiry radar's e-mails and the weekly summary a worker process keeps up (`crate::radar`).
fn radar_watch(adapters: &Adapters, config: &Config, mail: bool) -> crate::radar::RadarWatch {
    crate::radar::RadarWatch {
        store: adapters.store.clone(),
        mail,
        public_url: config.public_url.clone(),
        poll: Duration::from_millis(config.radar_poll_ms),
    }
}

/// The audit anchoring a worker process keeps up (see `crate::anchor`).
fn anchoring(adapters: &Adapters, config: &Config, stop: CancellationToken) -> impl Future<Output = ()> + use<> {
    crate::anchor::keep_anchoring(
        adapters.store.clone(),
        adapters.objects.clone(),
        anchor_key(config),
        Duration::from_secs(config.audit_anchor_secs),
        stop,
    )
}

/// The anchor signing key from the configured secret (none in a demo without one).
pub fn anchor_key(config: &Config) -> crate::anchor::AnchorKey {
    crate::anchor::AnchorKey::from_secret(config.jwt_secret.as_ref().map(|s| s.expose_secret().as_bytes()))
}

/// A fresh consumer state with the configured limits.
fn worker_watch(config: &Config) -> WorkerWatch {
    WorkerWatch {
        health: Arc::new(ConsumerHealth::new()),
        idle_limit: Duration::from_secs(config.worker_idle_secs),
        down_grace: Duration::from_secs(config.worker_down_grace_secs),
    }
}

pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
