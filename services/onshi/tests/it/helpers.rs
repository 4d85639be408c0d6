//! `spawn_app()` and friends.

use std::future::Future;
use std::time::Duration;

use onshi::demo::{DemoClinic, EventFactory, seed};
use onshi::startup::{Adapters, Application, Options, RunningApp};
use onshi_config::Config;
use onshi_domain::{AgentEvent, AuditAction, EventBatch, TenantId};
use onshi_store::{TenantScope, TenantStore};
use sea_orm::{ConnectionTrait, Database};
use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;

/// What a test's own writes to the store are audited as: `action` by "test" on `target`.
pub fn test_audit(action: AuditAction, target: &str) -> onshi_store::AuditEntry {
    onshi_store::AuditEntry::new(None, "test", action, target, onshi_store::AuditResult::Success)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Embedded,
    Full,
}

/// Generates `mod $name { embedded, full }` from one scenario body. The body sees `app: &TestApp`.
#[macro_export]
macro_rules! both_modes {
    ($name:ident, |$app:ident| $body:block) => {
        $crate::both_modes!($name, |_config| {}, |$app| $body);
    };
    ($name:ident, |$config:ident| $tweak:block, |$app:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[allow(unused_imports)]
            use $crate::helpers::*;

            async fn scenario($app: &TestApp) $body

            fn tweak($config: &mut onshi_config::Config) $tweak

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() {
                let app = spawn_app_with(Mode::Embedded, tweak).await;
                scenario(&app).await;
                app.teardown().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[ignore = "full mode: needs PostgreSQL, RabbitMQ, Redis and S3 (scripts/test runs it)"]
            async fn full() {
                let app = spawn_app_with(Mode::Full, tweak).await;
                scenario(&app).await;
                app.teardown().await;
            }
        }
    };
}

pub struct TestApp {
    pub mode: Mode,
    pub config: Config,
    pub app: Option<RunningApp>,
    pub client: reqwest::Client,
    pub tenant: TenantId,
    pub clinics: Vec<DemoClinic>,
    resources: Resources,
    _data_dir: tempfile::TempDir,
}

/// What a full-mode test created and must remove.
#[derive(Default)]
struct Resources {
    admin_database_url: Option<String>,
    database: Option<String>,
}

/// The same database URL with the application role as user.
pub fn app_role_url(owner_url: &str) -> String {
    let (scheme, rest) = owner_url.split_once("://").unwrap_or(("postgres", owner_url));
    let host = rest.rsplit_once('@').map(|(_, h)| h).unwrap_or(rest);
    format!("{scheme}://{}@{host}", onshi_migrations::APP_ROLE)
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn unique(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

pub async fn spawn_app(mode: Mode) -> TestApp {
    spawn_app_with(mode, |_| {}).await
}

/// Builds a config for `mode`, lets the test adjust it, seeds a tenant with three clinics and starts the
/// app on a random port. `None` when full mode is not configured here (and not required).
pub async fn spawn_app_with(mode: Mode, tweak: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_opts(mode, tweak, true).await
}

/// As `spawn_app_with`; `with_worker: false` leaves applying batches to workers the test runs itself
/// (honoured in full mode; the embedded queue always has its in-process worker).
pub async fn spawn_app_opts(mode: Mode, tweak: impl FnOnce(&mut Config), with_worker: bool) -> TestApp {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::embedded(data_dir.path()).expect("default config");
    config.listen = "127.0.0.1:0".to_owned();
    config.jwt_secret = Some(SecretString::from(format!("test-secret-{}", uuid::Uuid::new_v4())));
    config.delivery_limit = 2;
    // Alerts and notices go through the e-mail outbox; the tests wait for them in the SMTP sink.
    config.mail_poll_ms = 100;
    let mut resources = Resources::default();

    if mode == Mode::Full {
        let vars = (
            env("ONSHI_TEST_DATABASE_URL"),
            env("ONSHI_TEST_AMQP_URL"),
            env("ONSHI_TEST_REDIS_URL"),
            env("ONSHI_TEST_S3_ENDPOINT"),
        );
        // Full-mode tests are `#[ignore]`d by default, so they show by name as ignored where the services
        // are not there; asked for (`--include-ignored`, as scripts/test does), they must run.
        let (Some(db_url), Some(amqp), Some(redis), Some(s3)) = vars else {
            panic!(
                "full mode asked for, but ONSHI_TEST_DATABASE_URL/AMQP_URL/REDIS_URL/S3_ENDPOINT are not all set \
                 (scripts/test sets them)"
            );
        };
        // A database of our own, dropped at teardown.
        let name = unique("onshi_it_");
        let admin = Database::connect(&db_url).await.expect("connect to PostgreSQL");
        admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.expect("create test database");
        admin.close().await.ok();
        let base = db_url.rsplit_once('/').map(|(b, _)| b.to_owned()).unwrap_or(db_url.clone());
        let owner_url = format!("{base}/{name}");
        // The application connects as the restricted role the first migration creates; the test
        // plays the deployment step with the owner (here the superuser).
        let app_url = app_role_url(&owner_url);
        resources.admin_database_url = Some(db_url);
        resources.database = Some(name);
        config.database_url = Some(SecretString::from(app_url));
        config.database_migration_url = Some(SecretString::from(owner_url));
        config.amqp_url = Some(SecretString::from(amqp));
        config.queue_name = unique("onshi.it.");
        config.redis_url = Some(SecretString::from(redis));
        config.cache_prefix = unique("onshi-it-");
        config.heartbeat_flush_ms = 200;
        config.s3_endpoint = Some(s3);
        config.s3_bucket = unique("onshi-it-").replace('_', "-");
        config.s3_region = "us-east-1".to_owned();
        config.s3_access_key_id = env("ONSHI_TEST_S3_ACCESS_KEY_ID");
        config.s3_secret_access_key = env("ONSHI_TEST_S3_SECRET_ACCESS_KEY").map(SecretString::from);
    }
    tweak(&mut config);
    config.validate().expect("test config is valid");

    if mode == Mode::Full {
        // Full mode has a deployment step for migrations; the test plays that part.
        let store = onshi_store::Store::connect(config.effective_migration_url().expose_secret(), 2)
            .await
            .expect("connect test database");
        store.migrate().await.expect("migrate test database");
        store
            .connection()
            .execute_unprepared(&format!("ALTER ROLE {} LOGIN", onshi_migrations::APP_ROLE))
            .await
            .expect("let the application role log in");
        store.connection().clone().close().await.ok();
    }
    let adapters = Adapters::connect(&config).await.expect("adapters connect");
    let (tenant, clinics) = seed(&adapters.store).await.expect("seed");
    let app = Application::build(&config, adapters, Options { with_worker }).await.expect("app builds").spawn();
    TestApp {
        mode,
        config,
        app: Some(app),
        client: test_client(reqwest::Client::builder()),
        tenant,
        clinics,
        resources,
        _data_dir: data_dir,
    }
}

impl TestApp {
    pub fn running(&self) -> &RunningApp {
        self.app.as_ref().expect("app is running")
    }

    pub fn base_url(&self) -> String {
        self.running().base_url()
    }

    pub fn adapters(&self) -> &Adapters {
        &self.running().adapters
    }

    /// Revokes an agent as a manager would (audited).
    pub async fn revoke_device(&self, device: onshi_domain::DeviceId) {
        let store = self.store();
        let found = store.device(device).await.unwrap().unwrap();
        let clinic = store.clinic_scope(found.clinic, &onshi_domain::ClinicAccess::All).await.unwrap().unwrap();
        let entry = test_audit(AuditAction::AgentRevoke, "-");
        store.revoke_device(&clinic, device, &entry).await.unwrap();
        onshi_api::announce_revocation(&self.adapters().cache, device).await;
    }

    pub fn store(&self) -> TenantStore<'_> {
        self.adapters().store.tenant(TenantScope::operator(self.tenant))
    }

    pub fn token(&self, clinic: usize) -> String {
        let c = &self.clinics[clinic];
        self.running().device_keys.mint(self.tenant, c.clinic.id, c.device).expect("mint")
    }

    /// A deterministic event generator for a clinic.
    pub fn factory(&self, clinic: usize, seed: u64) -> EventFactory {
        EventFactory::new(self.clinics[clinic].clinic.code.clone(), b"test-key", 50, seed)
    }

    pub fn receptions(&self, clinic: usize, n: usize, seed: u64) -> Vec<AgentEvent> {
        let mut f = self.factory(clinic, seed);
        let now = OffsetDateTime::now_utc();
        (0..n).map(|i| f.reception(now - time::Duration::seconds(i as i64))).collect()
    }

    /// A connection as the database's owner, past the application role's row-level security: for
    /// checks across tenants and for changing what the application may not. Close it when done.
    pub async fn owner_db(&self) -> sea_orm::DatabaseConnection {
        sea_orm::Database::connect(secrecy::ExposeSecret::expose_secret(&self.config.effective_migration_url()))
            .await
            .unwrap()
    }

    /// Runs one statement as the database's owner (past the application role's limits: moving times,
    /// forgetting what was sent). Written with `$1`, `$2`, …; SQLite gets `?`.
    pub async fn execute_as_owner(&self, sql: &str, values: Vec<sea_orm::Value>) {
        use sea_orm::ConnectionTrait;
        let db = self.owner_db().await;
        let backend = db.get_database_backend();
        let mut statement = sql.to_owned();
        if backend != sea_orm::DatabaseBackend::Postgres {
            for n in (1..=values.len()).rev() {
                statement = statement.replace(&format!("${n}"), "?");
            }
        }
        db.execute_raw(sea_orm::Statement::from_sql_and_values(backend, statement, values)).await.unwrap();
        db.close().await.ok();
    }

    pub async fn post_events(&self, clinic: usize, events: &[AgentEvent]) -> reqwest::Response {
        self.post_raw(clinic, serde_json::to_string(&EventBatch { events: events.to_vec() }).unwrap()).await
    }

    pub async fn post_raw(&self, clinic: usize, body: String) -> reqwest::Response {
        self.client
            .post(format!("{}/api/v1/events", self.base_url()))
            .bearer_auth(self.token(clinic))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request reaches the server")
    }

    /// Stops and starts the app on the same data (database file, queue, bucket).
    pub async fn restart(&mut self) {
        if let Some(app) = self.app.take() {
            app.stop().await;
        }
        let adapters = Adapters::connect(&self.config).await.expect("adapters reconnect");
        let app = Application::build(&self.config, adapters, Options { with_worker: true })
            .await
            .expect("app rebuilds")
            .spawn();
        self.app = Some(app);
    }

    pub async fn teardown(mut self) {
        let adapters = self.app.as_ref().map(|a| a.adapters.clone());
        if let Some(app) = self.app.take() {
            app.stop().await;
        }
        if let Some(adapters) = adapters {
            if let onshi_queue::Queue::Rabbit(q) = &adapters.queue {
                q.delete().await.ok();
            }
            if let onshi_cache::Cache::Redis(c) = &adapters.cache {
                c.clear().await.ok();
            }
            if let onshi_objects::ObjectStore::S3(s) = &adapters.objects {
                s.destroy_bucket().await.ok();
            }
            adapters.store.connection().clone().close().await.ok();
        }
        if let (Some(admin), Some(db)) = (&self.resources.admin_database_url, &self.resources.database)
            && let Ok(conn) = Database::connect(admin.as_str()).await
        {
            conn.execute_unprepared(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).await.ok();
        }
    }
}

/// Polls `check` until it returns true or `timeout` passes. Tests wait for conditions, never for time.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub const WAIT: Duration = Duration::from_secs(30);

/// Events of `events` that make a visit (not bulk checks).
pub fn reception_count(events: &[AgentEvent]) -> u64 {
    events.iter().filter(|e| matches!(&e.payload, onshi_domain::EventPayload::Qualification(q) if !q.batch)).count()
        as u64
}

/// A person with an account, for browser tests.
#[derive(Clone)]
pub struct TestUser {
    pub id: onshi_domain::UserId,
    pub email: String,
    pub password: String,
    pub totp: onshi_identity::TotpSecret,
    logins: std::sync::Arc<std::sync::atomic::AtomicI64>,
}

impl TestUser {
    /// A fresh TOTP code. A code (a 30 s step) is accepted once per user, so successive sign-ins use
    /// the steps the ±1 window allows: previous, current, next.
    pub fn next_code(&self) -> String {
        let n = self.logins.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        assert!(n < 3, "a test user can sign in at most three times within 30 s");
        // Near the end of a step the previous-step code would be out of the ±1 window by the time the
        // server checks it: start from a fresh step instead.
        let into_step = OffsetDateTime::now_utc().unix_timestamp().rem_euclid(30);
        if into_step >= 25 {
            std::thread::sleep(std::time::Duration::from_secs((30 - into_step) as u64 + 1));
        }
        let t = OffsetDateTime::now_utc().unix_timestamp() + 30 * (n - 1);
        self.totp.code_at(t as u64).unwrap()
    }
}

impl TestApp {
    /// Creates an active, verified user with TOTP in `tenant`.
    pub async fn user_in(
        &self,
        tenant: TenantId,
        role: onshi_domain::Role,
        clinics: &[onshi_domain::ClinicId],
    ) -> TestUser {
        let email = format!("{}-{}@example.jp", role.as_str(), &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let password = format!("pw-{}-long-enough", uuid::Uuid::new_v4().simple());
        let phc = onshi_identity::hash_password(&password, &email).unwrap();
        let store = self.adapters().store.tenant(TenantScope::operator(tenant));
        let entry = test_audit(AuditAction::StaffInvite, "-");
        let id = store
            .add_user(
                &onshi_store::NewUser {
                    email: &email,
                    display_name: "テスト 利用者",
                    role,
                    clinics,
                    password_hash: Some(&phc),
                },
                &entry,
            )
            .await
            .unwrap();
        store.mark_email_verified(id, &entry).await.unwrap();
        let totp = onshi_identity::TotpSecret::generate();
        store.set_pending_totp(id, totp.base32()).await.unwrap();
        store.enable_totp(id, 0, &entry).await.unwrap();
        TestUser { id, email, password, totp, logins: Default::default() }
    }

    pub async fn user(&self, role: onshi_domain::Role) -> TestUser {
        self.user_in(self.tenant, role, &[]).await
    }

    pub fn browser(&self) -> Browser {
        Browser::new(&self.base_url())
    }

    /// A browser signed in as a new user of `role`.
    pub async fn signed_in(&self, role: onshi_domain::Role) -> (Browser, TestUser) {
        let user = self.user(role).await;
        let mut b = self.browser();
        b.sign_in(&user).await;
        (b, user)
    }
}

/// A minimal browser: keeps cookies (including `__Host-` ones over plain http, as browsers do for
/// localhost), follows nothing by itself, and fills in the CSRF field of the forms it posts.
pub struct Browser {
    base: String,
    client: reqwest::Client,
    pub cookies: std::collections::BTreeMap<String, String>,
}

pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn location(&self) -> &str {
        self.headers.get("location").and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

impl Browser {
    pub fn new(base: &str) -> Self {
        let client = test_client(reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()));
        Self { base: base.to_owned(), client, cookies: Default::default() }
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    async fn finish(&mut self, response: reqwest::Response) -> Reply {
        for set in response.headers().get_all("set-cookie") {
            let set = set.to_str().unwrap();
            let pair = set.split(';').next().unwrap();
            let (k, v) = pair.split_once('=').unwrap();
            if set.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), v.to_owned());
            }
        }
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.text().await.unwrap();
        Reply { status, headers, body }
    }

    pub async fn get(&mut self, path: &str) -> Reply {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .header("Cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.finish(r).await
    }

    /// A GET the page makes by itself (feed.js's update): marked passive.
    pub async fn get_passive(&mut self, path: &str) -> Reply {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .header("Cookie", self.cookie_header())
            .header("X-Onshi-Passive", "1")
            .send()
            .await
            .unwrap();
        self.finish(r).await
    }

    /// A streaming GET (server-sent events): the response, headers read, body not yet.
    pub async fn open_stream(&mut self, path: &str) -> reqwest::Response {
        self.client.get(format!("{}{path}", self.base)).header("Cookie", self.cookie_header()).send().await.unwrap()
    }

    /// A download: content type and bytes.
    pub async fn client_get_bytes(&mut self, path: &str) -> (String, Vec<u8>) {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .header("Cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "GET {path}");
        let ct = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        (ct, r.bytes().await.unwrap().to_vec())
    }

    /// The CSRF token the server expects from this browser now.
    pub async fn csrf(&mut self) -> String {
        let page = self.get("/signin").await;
        extract(&page.body, "name=\"csrf\" value=\"", "\"").expect("a csrf field on the sign-in page")
    }

    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Reply {
        let csrf = self.csrf().await;
        let mut all: Vec<(&str, &str)> = vec![("csrf", csrf.as_str())];
        all.extend_from_slice(fields);
        self.post_raw(path, &all, None).await
    }

    /// A POST exactly as given (no CSRF field added), optionally with an `Origin` header.
    pub async fn post_raw(&mut self, path: &str, fields: &[(&str, &str)], origin: Option<&str>) -> Reply {
        self.post_with_headers(path, fields, origin, &[]).await
    }

    /// As `post_raw`, with extra request headers.
    pub async fn post_with_headers(
        &mut self,
        path: &str,
        fields: &[(&str, &str)],
        origin: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut req = self
            .client
            .post(format!("{}{path}", self.base))
            .header("Cookie", self.cookie_header())
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(fields).unwrap());
        if let Some(o) = origin {
            req = req.header("Origin", o);
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let r = req.send().await.unwrap();
        self.finish(r).await
    }

    /// Password, then TOTP; asserts each step.
    pub async fn sign_in(&mut self, user: &TestUser) {
        let r = self.post("/signin", &[("email", &user.email), ("password", &user.password)]).await;
        assert_eq!((r.status, r.location()), (303, "/signin/totp"), "password step: {}", r.body);
        let code = user.next_code();
        let r = self.post("/signin/totp", &[("code", &code)]).await;
        // Each role lands on its own page.
        assert_eq!(r.status, 303, "totp step: {}", r.body);
        assert!(["/", "/dashboard", "/billing", "/audit"].contains(&r.location()), "totp step: {}", r.location());
    }
}

/// The text between `start` and the next `end`.
/// A client that drops idle connections before the server does: actix closes a keep-alive connection
/// after 5 idle seconds, and a request sent on it just then fails with `IncompleteMessage` (seen as a rare
/// flake after a test paused for a few seconds).
fn test_client(builder: reqwest::ClientBuilder) -> reqwest::Client {
    builder.pool_idle_timeout(Duration::from_secs(2)).build().unwrap()
}

pub fn extract(haystack: &str, start: &str, end: &str) -> Option<String> {
    let from = haystack.find(start)? + start.len();
    let len = haystack[from..].find(end)?;
    Some(haystack[from..from + len].to_owned())
}

/// The environment that points a separate `onshi` process (`serve`, `worker`) at a full-mode test app's
/// services, so several processes share one database, queue, cache and bucket.
pub fn process_env(c: &Config) -> Vec<(&'static str, String)> {
    let secret = |s: &Option<SecretString>| s.as_ref().map(|s| s.expose_secret().to_owned()).unwrap_or_default();
    vec![
        ("PATH", std::env::var("PATH").unwrap_or_default()),
        ("ONSHI_DATABASE_URL", secret(&c.database_url)),
        ("ONSHI_DATABASE_MIGRATION_URL", secret(&c.database_migration_url)),
        ("ONSHI_AMQP_URL", secret(&c.amqp_url)),
        ("ONSHI_QUEUE_NAME", c.queue_name.clone()),
        ("ONSHI_DELIVERY_LIMIT", c.delivery_limit.to_string()),
        ("ONSHI_WORKER_PREFETCH", c.worker_prefetch.to_string()),
        ("ONSHI_HEARTBEAT_FLUSH_MS", c.heartbeat_flush_ms.to_string()),
        ("ONSHI_INGEST_BATCHES_PER_DEVICE_PER_SEC", c.ingest_batches_per_device_per_sec.to_string()),
        ("ONSHI_API_REQUESTS_PER_TOKEN_PER_MINUTE", c.api_requests_per_token_per_minute.to_string()),
        ("ONSHI_REDIS_URL", secret(&c.redis_url)),
        ("ONSHI_CACHE_PREFIX", c.cache_prefix.clone()),
        ("ONSHI_S3_ENDPOINT", c.s3_endpoint.clone().unwrap_or_default()),
        ("ONSHI_S3_BUCKET", c.s3_bucket.clone()),
        ("ONSHI_S3_REGION", c.s3_region.clone()),
        ("ONSHI_S3_ACCESS_KEY_ID", c.s3_access_key_id.clone().unwrap_or_default()),
        ("ONSHI_S3_SECRET_ACCESS_KEY", secret(&c.s3_secret_access_key)),
        ("ONSHI_JWT_SECRET", secret(&c.jwt_secret)),
    ]
}

/// A port that was free a moment ago, for a child process to listen on.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// Waits until `total` events are stored and the queue is empty, then checks "exactly once in effect":
/// every event stored once, every visit-making confirmation counted once, nothing dead-lettered.
pub async fn assert_applied_exactly_once(app: &TestApp, total: u64, confirmations: u64, within: Duration) {
    use onshi_queue::MessageQueue;
    eventually(within, "every event applied", || async { app.store().raw_event_count().await.unwrap() == total }).await;
    eventually(WAIT, "queue drained", || async { app.adapters().queue.depth().await.unwrap() == 0 }).await;
    assert_eq!(app.store().raw_event_count().await.unwrap(), total);
    assert_eq!(app.store().confirmation_count().await.unwrap(), confirmations);
    assert_eq!(app.adapters().queue.dead_letter_count().await.unwrap(), 0);
}

/// The first column of the first row of `sql`, as an integer (counts in raw-SQL checks).
pub async fn scalar(db: &impl ConnectionTrait, sql: &str) -> i64 {
    let row = db.query_one_raw(sea_orm::Statement::from_string(db.get_database_backend(), sql)).await.unwrap().unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

/// A valid qualification check of `patient` at the first clinic: with マイナ保険証 (and consent to share
/// medication and diagnosis information) or with a 資格確認書.
pub fn valid_visit(app: &TestApp, patient: &str, at: time::OffsetDateTime, myna: bool) -> AgentEvent {
    AgentEvent {
        id: onshi_domain::EventId::new(),
        occurred_at: at,
        payload: onshi_domain::EventPayload::Qualification(onshi_domain::QualificationCheck {
            institution_code: app.clinics[0].clinic.code.clone(),
            method: if myna {
                onshi_domain::ConfirmationMethod::MynaCard
            } else {
                onshi_domain::ConfirmationMethod::EligibilityCertificate
            },
            identity_check: None,
            batch: false,
            error_code: None,
            result: onshi_domain::QualificationResult::Valid,
            patient: Some(onshi_domain::PatientRef::pseudonymize(b"test-key", "06139999", "", patient, "00")),
            insurer: None,
            consents: if myna {
                onshi_domain::Consents { medication: Some(true), diagnosis: Some(true), checkup: None, surgery: None }
            } else {
                onshi_domain::Consents::default()
            },
            limit_certificate: false,
            time_source: Default::default(),
        }),
    }
}

/// A clinic PC for the real `onshi-agent` binary: its own home folder (where `enroll` writes the
/// configuration and data, as for the PC's user), a current folder, and the terminal's face/res folders.
pub struct ClinicPc {
    pub bin: std::path::PathBuf,
    pub home: tempfile::TempDir,
    pub cwd: tempfile::TempDir,
    pub terminal: tempfile::TempDir,
}

impl ClinicPc {
    pub fn new() -> Self {
        let bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_onshi")).with_file_name("onshi-agent");
        assert!(bin.exists(), "build the workspace first: {}", bin.display());
        let terminal = tempfile::tempdir().unwrap();
        for folder in ["face", "res"] {
            std::fs::create_dir_all(terminal.path().join(folder)).unwrap();
        }
        Self { bin, home: tempfile::tempdir().unwrap(), cwd: tempfile::tempdir().unwrap(), terminal }
    }

    pub fn folder(&self, name: &str) -> std::path::PathBuf {
        self.terminal.path().join(name)
    }

    /// `onshi-agent ARGS` as this PC's user runs it.
    pub fn command(&self, args: &[&str]) -> std::process::Command {
        let mut c = std::process::Command::new(&self.bin);
        c.args(args)
            .current_dir(self.cwd.path())
            .env("HOME", self.home.path())
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_DATA_HOME")
            .env_remove("ONSHI_AGENT_CONFIG");
        c
    }

    /// Runs it to the end: exit status and everything it printed.
    pub fn run(&self, args: &[&str]) -> (i32, String) {
        let out = self.command(args).output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.code().unwrap_or(-1), text)
    }

    /// The clinic page's first command: enroll with this server and code, watching face and res.
    pub fn enroll(&self, server: &str, code: &str) -> (i32, String) {
        let (face, res) = (self.folder("face"), self.folder("res"));
        self.run(&[
            "enroll",
            "--server",
            server,
            "--code",
            code,
            "--watch",
            face.to_str().unwrap(),
            "--watch",
            res.to_str().unwrap(),
        ])
    }
}

/// A webhook endpoint of the test group subscribed to `events`, at an address that never answers (the
/// deliveries stay in the outbox for the test to look at).
pub async fn webhook_outbox(app: &TestApp, events: &[onshi_domain::WebhookEvent]) -> uuid::Uuid {
    let owner = app.user(onshi_domain::Role::Owner).await;
    let audit = test_audit(AuditAction::WebhookCreate, "-");
    app.store()
        .create_webhook_endpoint(
            "https://hooks.example.invalid/onshi",
            "test outbox",
            events,
            &onshi_identity::webhook::new_secret(),
            owner.id,
            &audit,
        )
        .await
        .unwrap()
}

/// The event types queued for webhooks so far, oldest first.
pub async fn webhook_events(app: &TestApp) -> Vec<String> {
    let mut events: Vec<_> = app.store().webhook_deliveries(1000).await.unwrap();
    events.reverse();
    events.into_iter().map(|d| d.event).collect()
}
