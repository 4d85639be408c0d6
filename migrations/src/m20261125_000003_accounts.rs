//! Accounts, sessions' durable half, integration tokens, the audit log, and row-level security.
//!
//! - `users` is recreated (the foundation's table was never used) with credentials, the second factor and
//!   a session epoch that revokes every session of a user when it changes.
//! - `user_logins` maps an e-mail address to its tenant: sign-in must find the tenant before it can
//!   read the tenant's rows. It holds no credentials.
//! - `audit_log` is hash-chained per tenant (`chain`), with the head of every chain in `audit_heads`.
//!   The application role may insert and read it, never update or delete it (REVOKE on PostgreSQL,
//!   triggers on SQLite).
//! - On PostgreSQL every table with a `tenant_id` gets row-level security, enabled and FORCE'd, with
//!   the policy `tenant_id = onshi_current_tenant()`, which reads `app.tenant_id` as set by the store with
//!   `set_config(..., true)` inside each transaction. The application connects as `onshi_app`: not the
//!   owner, not superuser, not BYPASSRLS. See docs/security.md.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseBackend};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261125_000003_accounts"
    }
}

/// The role the application connects as in full mode.
pub const APP_ROLE: &str = "onshi_app";

/// The tenant tables that existed when this migration was written (later migrations secure their own).
const TENANT_TABLES: &[&str] = &[
    "clinics",
    "users",
    "devices",
    "raw_events",
    "visits",
    "enrollment_codes",
    "user_logins",
    "email_tokens",
    "api_tokens",
    "audit_log",
];

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    TenantId,
    Email,
    DisplayName,
    Role,
    ClinicIds,
    PasswordHash,
    TotpSecret,
    TotpEnabled,
    TotpLastStep,
    EmailVerifiedAt,
    Status,
    SessionEpoch,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum UserLogins {
    Table,
    Email,
    TenantId,
    UserId,
}

#[derive(DeriveIden)]
enum EmailTokens {
    Table,
    TokenHash,
    TenantId,
    UserId,
    Purpose,
    ExpiresAt,
    UsedAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ApiTokens {
    Table,
    Id,
    TenantId,
    CreatedBy,
    Name,
    TokenHash,
    Scopes,
    ExpiresAt,
    LastUsedAt,
    RevokedAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    Id,
    Chain,
    Seq,
    TenantId,
    At,
    ActorId,
    Actor,
    Action,
    Target,
    Result,
    Ip,
    Details,
    PrevHash,
    Hash,
}

#[derive(DeriveIden)]
enum AuditHeads {
    Table,
    Chain,
    Seq,
    Hash,
}

#[derive(DeriveIden)]
enum Clinics {
    Table,
    OqsStartDate,
}

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
}

fn tenant_fk<T: IntoIden + 'static, C: IntoIden + 'static>(table: T, col: C) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(table, col)
        .to(Tenants::Table, Tenants::Id)
        .on_delete(ForeignKeyAction::Restrict)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(Users::Table).to_owned()).await?;
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(ColumnDef::new(Users::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Users::TenantId).uuid().not_null())
                    .col(ColumnDef::new(Users::Email).string().not_null())
                    .col(ColumnDef::new(Users::DisplayName).string().not_null())
                    .col(ColumnDef::new(Users::Role).string_len(32).not_null())
                    .col(ColumnDef::new(Users::ClinicIds).json().not_null())
                    .col(ColumnDef::new(Users::PasswordHash).string().null())
                    .col(ColumnDef::new(Users::TotpSecret).string().null())
                    .col(ColumnDef::new(Users::TotpEnabled).boolean().not_null().default(false))
                    .col(ColumnDef::new(Users::TotpLastStep).big_integer().not_null().default(0))
                    .col(ColumnDef::new(Users::EmailVerifiedAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(Users::Status).string_len(16).not_null())
                    .col(ColumnDef::new(Users::SessionEpoch).integer().not_null().default(0))
                    .col(ColumnDef::new(Users::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(Users::UpdatedAt).timestamp_with_time_zone().not_null())
                    .foreign_key(&mut tenant_fk(Users::Table, Users::TenantId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("users_tenant")
                    .table(Users::Table)
                    .col(Users::TenantId)
                    .col(Users::Email)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(UserLogins::Table)
                    .col(ColumnDef::new(UserLogins::Email).string().not_null().primary_key())
                    .col(ColumnDef::new(UserLogins::TenantId).uuid().not_null())
                    .col(ColumnDef::new(UserLogins::UserId).uuid().not_null())
                    .foreign_key(&mut tenant_fk(UserLogins::Table, UserLogins::TenantId))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(EmailTokens::Table)
                    .col(ColumnDef::new(EmailTokens::TokenHash).string_len(64).not_null().primary_key())
                    .col(ColumnDef::new(EmailTokens::TenantId).uuid().not_null())
                    .col(ColumnDef::new(EmailTokens::UserId).uuid().not_null())
                    .col(ColumnDef::new(EmailTokens::Purpose).string_len(16).not_null())
                    .col(ColumnDef::new(EmailTokens::ExpiresAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(EmailTokens::UsedAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(EmailTokens::CreatedAt).timestamp_with_time_zone().not_null())
                    .foreign_key(&mut tenant_fk(EmailTokens::Table, EmailTokens::TenantId))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ApiTokens::Table)
                    .col(ColumnDef::new(ApiTokens::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(ApiTokens::TenantId).uuid().not_null())
                    .col(ColumnDef::new(ApiTokens::CreatedBy).uuid().not_null())
                    .col(ColumnDef::new(ApiTokens::Name).string().not_null())
                    .col(ColumnDef::new(ApiTokens::TokenHash).string_len(64).not_null().unique_key())
                    .col(ColumnDef::new(ApiTokens::Scopes).json().not_null())
                    .col(ColumnDef::new(ApiTokens::ExpiresAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(ApiTokens::LastUsedAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(ApiTokens::RevokedAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(ApiTokens::CreatedAt).timestamp_with_time_zone().not_null())
                    .foreign_key(&mut tenant_fk(ApiTokens::Table, ApiTokens::TenantId))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AuditLog::Table)
                    .col(ColumnDef::new(AuditLog::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(AuditLog::Chain).string_len(40).not_null())
                    .col(ColumnDef::new(AuditLog::Seq).big_integer().not_null())
                    .col(ColumnDef::new(AuditLog::TenantId).uuid().null())
                    .col(ColumnDef::new(AuditLog::At).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(AuditLog::ActorId).uuid().null())
                    .col(ColumnDef::new(AuditLog::Actor).string().not_null())
                    .col(ColumnDef::new(AuditLog::Action).string_len(64).not_null())
                    .col(ColumnDef::new(AuditLog::Target).string().not_null())
                    .col(ColumnDef::new(AuditLog::Result).string_len(16).not_null())
                    .col(ColumnDef::new(AuditLog::Ip).string_len(64).null())
                    .col(ColumnDef::new(AuditLog::Details).string().not_null())
                    .col(ColumnDef::new(AuditLog::PrevHash).string_len(64).not_null())
                    .col(ColumnDef::new(AuditLog::Hash).string_len(64).not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("audit_log_chain_seq")
                    .table(AuditLog::Table)
                    .col(AuditLog::Chain)
                    .col(AuditLog::Seq)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("audit_log_tenant_at")
                    .table(AuditLog::Table)
                    .col(AuditLog::TenantId)
                    .col(AuditLog::At)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AuditHeads::Table)
                    .col(ColumnDef::new(AuditHeads::Chain).string_len(40).not_null().primary_key())
                    .col(ColumnDef::new(AuditHeads::Seq).big_integer().not_null())
                    .col(ColumnDef::new(AuditHeads::Hash).string_len(64).not_null())
                    .to_owned(),
            )
            .await?;

        manager
            .alter_table(
                Table::alter()
                    .table(Clinics::Table)
                    .add_column(ColumnDef::new(Clinics::OqsStartDate).date().null())
                    .to_owned(),
            )
            .await?;

        let db = manager.get_connection();
        match manager.get_database_backend() {
            DatabaseBackend::Sqlite => {
                for op in ["UPDATE", "DELETE"] {
                    db.execute_unprepared(&format!(
                        "CREATE TRIGGER audit_log_no_{op} BEFORE {op} ON audit_log \
                         BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
                    ))
                    .await?;
                }
            }
            DatabaseBackend::Postgres => {
                for statement in postgres_security_sql() {
                    db.execute_unprepared(&statement).await?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        // Dropping the audit log is not something a rollback may do.
        Err(DbErr::Migration("m20261125_000003_accounts cannot be reverted: it holds the audit log".to_owned()))
    }
}

/// The PostgreSQL side: the application role, its grants, the tenant function and the policies.
fn postgres_security_sql() -> Vec<String> {
    let mut sql = vec![
        format!(
            "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN \
             CREATE ROLE {APP_ROLE} NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE; END IF; END $$"
        ),
        // '' (not NULL) is what the setting reads as after a transaction that set it has ended.
        "CREATE OR REPLACE FUNCTION onshi_current_tenant() RETURNS uuid LANGUAGE sql STABLE AS \
         $$ SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid $$"
            .to_owned(),
        format!("GRANT USAGE ON SCHEMA public TO {APP_ROLE}"),
        format!("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {APP_ROLE}"),
        format!("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {APP_ROLE}"),
        format!(
            "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {APP_ROLE}"
        ),
        format!("REVOKE INSERT, UPDATE, DELETE ON seaql_migrations FROM {APP_ROLE}"),
        format!("REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM {APP_ROLE}"),
        format!("GRANT EXECUTE ON FUNCTION onshi_current_tenant() TO {APP_ROLE}"),
        "ALTER TABLE tenants ENABLE ROW LEVEL SECURITY".to_owned(),
        "ALTER TABLE tenants FORCE ROW LEVEL SECURITY".to_owned(),
        "CREATE POLICY tenant_isolation ON tenants USING (id = onshi_current_tenant()) \
         WITH CHECK (id = onshi_current_tenant())"
            .to_owned(),
    ];
    for table in TENANT_TABLES {
        sql.push(format!("ALTER TABLE {table} ENABLE ROW LEVEL SECURITY"));
        sql.push(format!("ALTER TABLE {table} FORCE ROW LEVEL SECURITY"));
        let policy = match *table {
            // System events (a failed sign-in for an unknown address) have no tenant: they are visible
            // only while no tenant is set.
            "audit_log" => "tenant_id IS NOT DISTINCT FROM onshi_current_tenant()",
            _ => "tenant_id = onshi_current_tenant()",
        };
        sql.push(format!("CREATE POLICY tenant_isolation ON {table} USING ({policy}) WITH CHECK ({policy})"));
    }
    // Two look-ups happen before the tenant is known: an e-mail address at sign-in and the hash of an
    // enrollment code. Reading those two tables is open; writing them still needs the tenant.
    for table in ["user_logins", "enrollment_codes"] {
        sql.push(format!("CREATE POLICY lookup_before_tenant ON {table} FOR SELECT USING (true)"));
    }
    sql
}
