//! Persistence for the cloud: sea-orm on PostgreSQL (full mode) or SQLite (embedded mode), one code path.
//!
//! Two doors, on purpose:
//! - [`Store::tenant`] gives a [`TenantStore`]: every read and write it offers is filtered by that tenant.
//!   Request handlers and workers use nothing else for tenant data.
//! - [`Store::system`] gives [`SystemStore`]: the few operations that exist before a tenant is known
//!   (creating a tenant, resolving a device token's tenant for verification). It is deliberately small.
//!
//! The entities are private, so no caller can write an unscoped query against a tenant table.

mod accounts;
mod audit;
mod billing;
mod claims;
mod clinics;
#[cfg(feature = "counters")]
mod counters;
mod credentials;
mod device_alerts;
mod devices;
mod entities;
mod error;
mod followups;
mod heartbeats;
mod ingest;
mod mail_outbox;
mod outage;
mod radar;
mod recovery;
mod retention;
mod rollups;
mod secrets;
mod system;
mod tenant;
mod uptime;
mod usage_alerts;
mod visits;
mod webhooks;

use std::time::Duration;

use onshi_migrations::MigratorTrait;
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseBackend, DatabaseConnection};

pub use accounts::{ApiToken, EmailPurpose, NewUser, SignIn, User, UserStatus};
pub use audit::{AuditEntry, AuditFilter, AuditRecord, AuditReport, AuditResult, ChainHead};
pub use billing::{BillingVisit, ClosedMonth, ExportRecord, StoredReview, VisitTime};
pub use claims::{ClaimDay, ClaimsUsage, OfficialFigure};
pub use clinics::{Clinic, ClinicScope};
pub use credentials::{DeviceAuth, EmailLink, TokenAuth};
pub use device_alerts::DeviceAlert;
pub use devices::{Device, DeviceStatus};
pub use error::StoreError;
pub use followups::FollowUpCase;
pub use heartbeats::{LatestHeartbeat, PENDING_HEARTBEATS};
pub use ingest::{ApplyOutcome, QueuedBatch, QueuedBatchError};
pub use mail_outbox::{DueMail, MailFailure, MailFate, NewMail};
pub use radar::radar_of;
pub use retention::Purge;
pub use rollups::{DailyRow, MonthlyUsage};
pub use system::{Enrollment, SystemStore};
pub use tenant::TenantStore;
pub use uptime::Uptime;
pub use visits::{VisitCursor, VisitFilter, VisitRow};
pub use webhooks::{
    DeliveryOutcome, DeliveryStatus, DisabledEndpoint, DisabledReason, DueDelivery, Transitions, WebhookDelivery,
    WebhookEndpoint,
};

/// A tenant whose identity has been established: by a credential checked in `credentials` (a session, a
/// device token or secret, an API token, an e-mailed link), by a batch the ingest path queued
/// ([`QueuedBatch::scope`]), by creating the tenant, or by an operator naming it
/// ([`TenantScope::operator`]). Holding one is the permission to touch that tenant's rows; code outside
/// this crate cannot make one from an id it was sent. See `docs/architecture.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantScope(onshi_domain::TenantId);

impl TenantScope {
    pub(crate) fn new(tenant: onshi_domain::TenantId) -> Self {
        Self(tenant)
    }

    /// For operator commands (`onshi` subcommands, the demo seed, benchmarks, maintenance) that act on a
    /// tenant named by whoever runs them with the service's own database credentials. Request handlers and
    /// workers never call this; a test in the api crate checks that.
    pub fn operator(tenant: onshi_domain::TenantId) -> Self {
        Self(tenant)
    }

    pub fn tenant_id(&self) -> onshi_domain::TenantId {
        self.0
    }
}

#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({:?})", self.db.get_database_backend())
    }
}

impl Store {
    /// Connects and, for SQLite, makes sure the folder exists and the journal is durable.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            let file = path.split('?').next().unwrap_or(path);
            if let Some(dir) = std::path::Path::new(file).parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(StoreError::DataDir)?;
            }
        }
        let mut options = ConnectOptions::new(url.to_owned());
        options
            .max_connections(max_connections)
            .min_connections(1)
            .connect_timeout(Duration::from_secs(10))
            .acquire_timeout(Duration::from_secs(10))
            .sqlx_logging(false)
            // sqlx pings every connection it hands out by default: one more round trip (and a wake-up
            // of a database process) for each single reception's resend look-up. A connection in use
            // within the last seconds is alive or fails its statement like any outage (503, or the
            // worker's retry); only one idle for longer, which a restart or a firewall may have cut
            // unnoticed, is pinged first.
            .test_before_acquire_if_idle_for(Duration::from_secs(5))
            // A 202 promises the batch survives a crash: WAL with a full fsync per commit.
            .map_sqlx_sqlite_opts(|o| {
                o.journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full)
                    .busy_timeout(Duration::from_secs(10))
                    .foreign_keys(true)
            });
        let db = Database::connect(options).await.map_err(StoreError::Connect)?;
        Ok(Self { db })
    }

    /// Applies every pending migration.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        onshi_migrations::Migrator::up(&self.db, None).await.map_err(StoreError::Migrate)
    }

    /// Migrations not yet applied. Full-mode processes refuse to start while any are pending, so that
    /// replicas never race to migrate; `onshi migrate` (a deployment step) applies them.
    ///
    /// Read-only: sea-orm's own check creates its bookkeeping table first, which the application role
    /// (rightly) may not do.
    pub async fn pending_migrations(&self) -> Result<usize, StoreError> {
        use sea_orm::{ConnectionTrait, Statement};
        let applied: std::collections::HashSet<String> = match self
            .db
            .query_all_raw(Statement::from_string(
                self.db.get_database_backend(),
                "SELECT version FROM seaql_migrations",
            ))
            .await
        {
            Ok(rows) => rows.iter().filter_map(|r| r.try_get::<String>("", "version").ok()).collect(),
            // No bookkeeping table yet: nothing is applied.
            Err(_) => Default::default(),
        };
        Ok(onshi_migrations::Migrator::migrations().iter().filter(|m| !applied.contains(m.name())).count())
    }

    pub fn backend(&self) -> DatabaseBackend {
        self.db.get_database_backend()
    }

    /// Whether this is PostgreSQL (row locks, many writers at once) rather than SQLite (one writer).
    pub fn is_postgres(&self) -> bool {
        self.backend() == DatabaseBackend::Postgres
    }

    /// The connection, for adapters that keep their own tables in the same database (the embedded
    /// queue). Not for tenant data.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    pub fn tenant(&self, scope: TenantScope) -> TenantStore<'_> {
        TenantStore::new(&self.db, scope)
    }

    pub fn system(&self) -> SystemStore<'_> {
        SystemStore::new(&self.db)
    }

    /// Recomputes every audit chain (`onshi audit verify`), without anchors.
    pub async fn verify_audit(&self) -> Result<AuditReport, StoreError> {
        audit::verify(&self.db, &Default::default()).await
    }

    /// Recomputes every audit chain and checks it against the newest anchored head of each chain.
    pub async fn verify_audit_anchored(
        &self,
        anchors: &std::collections::BTreeMap<String, ChainHead>,
    ) -> Result<AuditReport, StoreError> {
        audit::verify(&self.db, anchors).await
    }

    /// Every audit chain's head (for anchoring).
    pub async fn audit_heads(&self) -> Result<std::collections::BTreeMap<String, ChainHead>, StoreError> {
        audit::heads(&self.db).await
    }

    /// A cheap round trip, for readiness checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.db.execute_unprepared("SELECT 1").await.map(|_| ()).map_err(StoreError::Db)
    }

    /// Active agents across all tenants: (heard from within `silent_after`, not heard from). Counts only,
    /// for the metrics endpoint; on PostgreSQL through a function that returns no tenant's rows.
    /// How many 医療機関コード are registered by more than one group (for `/metrics`; a count only).
    pub async fn shared_clinic_codes(&self) -> Result<u64, StoreError> {
        let backend = self.db.get_database_backend();
        let sql = match backend {
            DatabaseBackend::Postgres => "SELECT onshi_clinic_codes_shared() AS n",
            _ => {
                "SELECT count(*) AS n FROM (SELECT institution_code FROM clinics GROUP BY institution_code \
                 HAVING count(DISTINCT tenant_id) > 1) shared"
            }
        };
        let row = self
            .db
            .query_one_raw(sea_orm::Statement::from_string(backend, sql))
            .await?
            .ok_or(StoreError::NotFound { what: "shared clinic codes" })?;
        let n: i64 = row.try_get("", "n")?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    pub async fn agent_counts(&self, silent_after: std::time::Duration) -> Result<(u64, u64), StoreError> {
        let backend = self.db.get_database_backend();
        let (sql, value): (&str, sea_orm::Value) = match backend {
            DatabaseBackend::Postgres => (
                "SELECT reporting, silent FROM onshi_agent_counts($1)",
                i32::try_from(silent_after.as_secs()).unwrap_or(i32::MAX).into(),
            ),
            // Bound as a timestamp so it is encoded exactly as the stored values are.
            _ => (
                "SELECT coalesce(sum(CASE WHEN last_seen_at >= $1 THEN 1 ELSE 0 END), 0) AS reporting, \
                 coalesce(sum(CASE WHEN last_seen_at IS NULL OR last_seen_at < $1 THEN 1 ELSE 0 END), 0) AS silent \
                 FROM devices WHERE status = 'active'",
                (time::OffsetDateTime::now_utc() - silent_after).into(),
            ),
        };
        let row = self
            .db
            .query_one_raw(sea_orm::Statement::from_sql_and_values(backend, sql, [value]))
            .await?
            .ok_or(StoreError::NotFound { what: "agent counts" })?;
        let reporting: i64 = row.try_get("", "reporting")?;
        let silent: i64 = row.try_get("", "silent")?;
        Ok((u64::try_from(reporting).unwrap_or(0), u64::try_from(silent).unwrap_or(0)))
    }
}

/// Begins a transaction in which PostgreSQL's row-level security sees `tenant` (and only it): the
/// setting is made with `set_config(..., true)`, so it ends with the transaction and can never leak to
/// the next user of a pooled connection. Every tenant-scoped query runs inside one of these. SQLite has no
/// row-level security; there the type layer (`TenantScope`) is the only guard.
pub(crate) async fn begin_tenant(
    db: &DatabaseConnection,
    tenant: uuid::Uuid,
    write: bool,
) -> Result<sea_orm::DatabaseTransaction, StoreError> {
    use sea_orm::TransactionTrait;
    let txn = if write { begin_write(db).await? } else { db.begin().await? };
    set_tenant(&txn, tenant).await?;
    Ok(txn)
}

/// Sets the transaction's tenant for row-level security (PostgreSQL only). Used directly only where a
/// transaction learns its tenant midway: a look-up by e-mail address or enrollment code comes first.
pub(crate) async fn set_tenant(txn: &sea_orm::DatabaseTransaction, tenant: uuid::Uuid) -> Result<(), StoreError> {
    if txn.get_database_backend() == DatabaseBackend::Postgres {
        txn.execute_raw(sea_orm::Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            "SELECT set_config('app.tenant_id', $1, true)",
            [tenant.to_string().into()],
        ))
        .await?;
    }
    Ok(())
}

/// Begins a transaction that will write. On SQLite it is `BEGIN IMMEDIATE`: the write lock is taken at the
/// start, where the busy timeout applies, instead of on the first write, where a concurrent commit makes
/// SQLite fail at once with "database is locked". PostgreSQL ignores the option.
pub async fn begin_write<C: sea_orm::TransactionTrait>(db: &C) -> Result<C::Transaction, sea_orm::DbErr> {
    db.begin_with_options(sea_orm::TransactionOptions {
        sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate),
        ..Default::default()
    })
    .await
}

/// The text key of a date's month, as month columns store it (`YYYY-MM`).
pub(crate) fn month_key(date: time::Date) -> String {
    onshi_domain::YearMonth::of(date).to_string()
}
