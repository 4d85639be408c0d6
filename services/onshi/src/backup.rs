//! `onshi backup` and `onshi restore`: a consistent copy of the database and the object store, and a
//! restore that proves itself.
//!
//! A backup is a folder:
//! - `manifest.json`: when, from which backend and schema version, and for every table its row count and a
//!   checksum of its rows, and for every object its SHA-256;
//! - `database.pgdump` (PostgreSQL, `pg_dump --format=custom`) or `database.sqlite3` (SQLite, `VACUUM INTO`);
//! - `objects/<key>`: every object of the store.
//!
//! On PostgreSQL the dump and the checksums read the same snapshot: the checksums run in a REPEATABLE READ
//! transaction that exports its snapshot, and `pg_dump --snapshot` uses it. The manifest also carries the
//! SHA-256 of the database file itself.
//!
//! A restore is all or nothing. It refuses a target that already holds tables or objects, then verifies
//! the whole backup before it writes anything (the database file against its checksum, every object
//! against its own), so a damaged backup is named file by file and leaves the target untouched. It then
//! copies the objects, loads the database in one transaction (PostgreSQL: `pg_restore
//! --single-transaction`; SQLite: a verified copy renamed into place), and recomputes every checksum
//! against the manifest. If any of these steps fails, what was written is removed again (the objects
//! put, the tables and functions created) and the target is as empty as it was, so a retry with a good
//! backup works. Run both with the schema owner's connection (`database_migration_url`), which must
//! bypass row-level security to see every tenant.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use onshi_config::Config;
use onshi_objects::ObjectBackend;
use onshi_store::Store;
use sea_orm::{AccessMode, ConnectionTrait, DatabaseBackend, IsolationLevel, Statement, TransactionTrait};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const MANIFEST: &str = "manifest.json";
const PG_DUMP_FILE: &str = "database.pgdump";
const SQLITE_FILE: &str = "database.sqlite3";
const FORMAT: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    // Sources are not repeated in the messages: the CLI prints the whole chain.
    #[error("{path}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("database")]
    Db(#[from] sea_orm::DbErr),
    #[error("database")]
    Store(#[from] onshi_store::StoreError),
    #[error("object store")]
    Objects(#[from] onshi_objects::ObjectError),
    #[error("{tool} failed ({status}): {stderr}")]
    Tool { tool: &'static str, status: String, stderr: String },
    #[error("{tool} could not be started (is it installed and on PATH?)")]
    ToolMissing { tool: &'static str, source: std::io::Error },
    #[error("{path}: not a backup of a supported format: {reason}")]
    Manifest { path: PathBuf, reason: String },
    #[error("the backup is of a {backup} database but the target is {target}")]
    BackendMismatch { backup: String, target: String },
    #[error("the target database already holds {tables} table(s); restore into a fresh, empty database")]
    TargetNotEmpty { tables: i64 },
    #[error("the target object store already holds {objects} object(s); restore into an empty bucket or folder")]
    ObjectsNotEmpty { objects: usize },
    #[error("{dir}: already exists and is not empty; back up into a new folder")]
    OutputNotEmpty { dir: PathBuf },
    #[error("object {key}: the backup copy does not match its checksum")]
    ObjectCorrupt { key: String },
    #[error("{path}: the database file does not match its checksum in the manifest; the backup is damaged")]
    DatabaseCorrupt { path: PathBuf },
    #[error("the restored data does not match the backup ({}); the target was emptied again", .mismatches.join("; "))]
    Mismatch { mismatches: Vec<String> },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io { path: path.to_owned(), source }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TableSum {
    pub rows: i64,
    /// `md5:` (PostgreSQL: MD5 over the sorted MD5s of the rows' text) or `sha256:` (SQLite: the same with
    /// SHA-256 over each row's quoted values). Compared only with a sum from the same backend.
    pub checksum: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub created_at: String,
    pub database: String,
    pub schema_version: Option<String>,
    /// SHA-256 (hex) of the database file (`database.pgdump` or `database.sqlite3`). Absent in backups
    /// made before it was recorded; those are restored without this check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_sha256: Option<String>,
    pub tables: BTreeMap<String, TableSum>,
    /// Object key → SHA-256 (hex).
    pub objects: BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
pub struct RestoreReport {
    pub tables: usize,
    pub rows: i64,
    pub objects: usize,
    /// Tables whose count or checksum differs from the manifest, with both values.
    pub mismatches: Vec<String>,
}

impl RestoreReport {
    pub fn verified(&self) -> bool {
        self.mismatches.is_empty()
    }
}

/// Writes a backup of the configured database and object store into `dir` (created; must be empty).
pub async fn backup(config: &Config, dir: &Path) -> Result<Manifest, BackupError> {
    if dir.exists() && std::fs::read_dir(dir).map_err(io(dir))?.next().is_some() {
        return Err(BackupError::OutputNotEmpty { dir: dir.to_owned() });
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let url = config.effective_migration_url();
    let store = Store::connect(url.expose_secret(), 4).await?;
    let db = store.connection();
    let (database, tables) = match store.backend() {
        DatabaseBackend::Postgres => {
            let txn = db.begin_with_config(Some(IsolationLevel::RepeatableRead), Some(AccessMode::ReadOnly)).await?;
            let snapshot: String = txn
                .query_one_raw(Statement::from_string(DatabaseBackend::Postgres, "SELECT pg_export_snapshot() AS s"))
                .await?
                .map(|r| r.try_get("", "s"))
                .transpose()?
                .unwrap_or_default();
            let file = dir.join(PG_DUMP_FILE);
            let (dbname, password) = libpq_target(url.expose_secret());
            let mut dump = tokio::process::Command::new("pg_dump");
            dump.arg("--format=custom")
                .arg(format!("--snapshot={snapshot}"))
                .arg(format!("--file={}", file.display()))
                .arg(format!("--dbname={dbname}"));
            if let Some(password) = password {
                dump.env("PGPASSWORD", password);
            }
            let dump = dump.output();
            // The dump and the sums run side by side on the same snapshot; the transaction stays open until
            // both are done, which keeps the snapshot importable.
            let (dump, sums) = tokio::join!(dump, table_sums(&txn));
            let dump = dump.map_err(|source| BackupError::ToolMissing { tool: "pg_dump", source })?;
            if !dump.status.success() {
                return Err(BackupError::Tool {
                    tool: "pg_dump",
                    status: dump.status.to_string(),
                    stderr: String::from_utf8_lossy(&dump.stderr).trim().to_owned(),
                });
            }
            let sums = sums?;
            txn.commit().await?;
            ("postgres", sums)
        }
        _ => {
            let file = dir.join(SQLITE_FILE);
            db.execute_raw(Statement::from_sql_and_values(
                DatabaseBackend::Sqlite,
                "VACUUM INTO $1",
                [file.display().to_string().into()],
            ))
            .await?;
            // Sums of the copy itself: VACUUM INTO is one consistent read, so the copy is the snapshot.
            // Opened read-only and without the store's pragmas, so the copy stays byte for byte as written.
            let copy = sea_orm::Database::connect(format!("sqlite://{}?mode=ro", file.display())).await?;
            let sums = table_sums(&copy).await?;
            copy.close().await?;
            ("sqlite", sums)
        }
    };
    let schema_version = schema_version(db).await?;
    let file = dir.join(if database == "postgres" { PG_DUMP_FILE } else { SQLITE_FILE });
    let database_sha256 = Some(file_sha256(&file)?);

    let objects = crate::startup::object_store(config).await?;
    let mut object_sums = BTreeMap::new();
    let keys = objects.list("").await?;
    let mut progress = crate::progress::Progress::new("backup: objects", Some(keys.len() as u64));
    for key in keys {
        progress.advance(1);
        let Some(bytes) = objects.get(&key).await? else { continue }; // removed while we listed
        let path = dir.join("objects").join(&key);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&path, &bytes).map_err(io(&path))?;
        object_sums.insert(key, hex::encode(Sha256::digest(&bytes)));
    }
    progress.finish();

    let manifest = Manifest {
        format: FORMAT,
        created_at: time::OffsetDateTime::now_utc().to_string(),
        database: database.to_owned(),
        schema_version,
        database_sha256,
        tables,
        objects: object_sums,
    };
    let path = dir.join(MANIFEST);
    let json = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| BackupError::Manifest { path: path.clone(), reason: e.to_string() })?;
    std::fs::write(&path, json).map_err(io(&path))?;
    db.clone().close().await?;
    Ok(manifest)
}

pub fn read_manifest(dir: &Path) -> Result<Manifest, BackupError> {
    let path = dir.join(MANIFEST);
    let bytes = std::fs::read(&path).map_err(io(&path))?;
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| BackupError::Manifest { path: path.clone(), reason: e.to_string() })?;
    if manifest.format != FORMAT {
        return Err(BackupError::Manifest { path, reason: format!("format {} (expected {FORMAT})", manifest.format) });
    }
    Ok(manifest)
}

/// SHA-256 (hex) of a file, read in chunks (a dump can be large).
fn file_sha256(path: &Path) -> Result<String, BackupError> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(io(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Restores the backup in `dir` into the configured (empty) database and object store, all or nothing
/// (see the module header), and verifies it.
pub async fn restore(config: &Config, dir: &Path) -> Result<RestoreReport, BackupError> {
    let manifest = read_manifest(dir)?;
    // The backend of the connection restore uses, which may be set without database_url (a restore job).
    let url = config.effective_migration_url();
    let target = if url.expose_secret().starts_with("sqlite:") { "sqlite" } else { "postgres" };
    if manifest.database != target {
        return Err(BackupError::BackendMismatch { backup: manifest.database.clone(), target: target.to_owned() });
    }

    // 1. Nothing is written before the target is known empty and the whole backup checks out.
    let objects = crate::startup::object_store(config).await?;
    let existing = objects.list("").await?.len();
    if existing > 0 {
        return Err(BackupError::ObjectsNotEmpty { objects: existing });
    }
    let sqlite_target = sqlite_path(config);
    if target == "postgres" || sqlite_target.exists() {
        let store = Store::connect(url.expose_secret(), 1).await?;
        let tables = count_tables(store.connection()).await?;
        store.connection().clone().close().await?;
        if tables > 0 {
            return Err(BackupError::TargetNotEmpty { tables });
        }
    }
    let database_file = dir.join(if target == "postgres" { PG_DUMP_FILE } else { SQLITE_FILE });
    if let Some(expected) = &manifest.database_sha256
        && file_sha256(&database_file)? != *expected
    {
        return Err(BackupError::DatabaseCorrupt { path: database_file });
    }
    // Hashed in chunks, not held: a backup's objects need not fit in memory.
    let mut progress = crate::progress::Progress::new("restore: checking objects", Some(manifest.objects.len() as u64));
    for (key, sum) in &manifest.objects {
        progress.advance(1);
        if file_sha256(&dir.join("objects").join(key))? != *sum {
            return Err(BackupError::ObjectCorrupt { key: key.clone() });
        }
    }
    progress.finish();

    // 2. Write; on any failure remove what was written. (What is written is checked again after.)
    let mut written: Vec<String> = Vec::new();
    let outcome = async {
        let mut progress =
            crate::progress::Progress::new("restore: writing objects", Some(manifest.objects.len() as u64));
        for key in manifest.objects.keys() {
            let path = dir.join("objects").join(key);
            let bytes = std::fs::read(&path).map_err(io(&path))?;
            objects.put(key, bytes, "application/octet-stream").await?;
            written.push(key.clone());
            progress.advance(1);
        }
        progress.finish();
        let loading = crate::progress::Progress::new("restore: loading the database", None);
        if target == "postgres" {
            pg_restore(url.expose_secret(), &database_file).await?;
        } else {
            sqlite_restore(&database_file, &sqlite_target, &manifest).await?;
        }
        loading.finish();
        verify(url.expose_secret(), &objects, &manifest).await
    }
    .await;
    match outcome {
        Ok(report) => Ok(report),
        Err(e) => {
            tracing::warn!(error = %onshi_telemetry::Chain(&e), "restore failed; removing what it wrote");
            for key in &written {
                if let Err(undo) = objects.delete(key).await {
                    tracing::error!(error = %undo, %key, "could not remove a restored object; remove it by hand");
                }
            }
            if target == "postgres" {
                if let Err(undo) = empty_postgres(url.expose_secret()).await {
                    tracing::error!(error = %undo, "could not empty the target database; drop and recreate it");
                }
            } else if sqlite_target.exists()
                && let Err(undo) = std::fs::remove_file(&sqlite_target)
            {
                tracing::error!(error = %undo, "could not remove the restored SQLite file");
            }
            Err(e)
        }
    }
}

/// Loads a custom-format dump in one transaction: it is in the database whole, or not at all.
async fn pg_restore(url: &str, file: &Path) -> Result<(), BackupError> {
    let (dbname, password) = libpq_target(url);
    let mut restore = tokio::process::Command::new("pg_restore");
    restore.args(["--no-owner", "--exit-on-error", "--single-transaction"]).arg(format!("--dbname={dbname}")).arg(file);
    if let Some(password) = password {
        restore.env("PGPASSWORD", password);
    }
    let out = restore.output().await.map_err(|source| BackupError::ToolMissing { tool: "pg_restore", source })?;
    if !out.status.success() {
        return Err(BackupError::Tool {
            tool: "pg_restore",
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

/// Copies the SQLite file beside the target, checks the copy's sums, then renames it into place (a
/// rename within one folder is atomic): the target path never holds a partial database.
async fn sqlite_restore(source: &Path, target: &Path, manifest: &Manifest) -> Result<(), BackupError> {
    let parent = target.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let staging = parent.join(format!(".restore-{}.sqlite3", uuid::Uuid::new_v4().simple()));
    std::fs::copy(source, &staging).map_err(io(source))?;
    let checked = async {
        let copy = sea_orm::Database::connect(format!("sqlite://{}?mode=ro", staging.display())).await?;
        let sums = table_sums(&copy).await;
        copy.close().await?;
        let mismatches = compare(&manifest.tables, &sums?);
        if mismatches.is_empty() { Ok(()) } else { Err(BackupError::Mismatch { mismatches }) }
    }
    .await;
    match checked {
        Ok(()) => std::fs::rename(&staging, target).map_err(io(target)),
        Err(e) => {
            let _ = std::fs::remove_file(&staging);
            Err(e)
        }
    }
}

/// Removes everything a failed restore created in a PostgreSQL target that was empty before: the
/// schema is dropped and created again as a new database has it.
async fn empty_postgres(url: &str) -> Result<(), BackupError> {
    let store = Store::connect(url, 1).await?;
    let db = store.connection();
    // As PostgreSQL 15 creates it: owned by the database owner, usable by everyone.
    db.execute_unprepared(
        "DROP SCHEMA public CASCADE; CREATE SCHEMA public; ALTER SCHEMA public OWNER TO pg_database_owner; \
         GRANT USAGE ON SCHEMA public TO PUBLIC",
    )
    .await?;
    db.clone().close().await?;
    Ok(())
}

fn compare(expected: &BTreeMap<String, TableSum>, found: &BTreeMap<String, TableSum>) -> Vec<String> {
    let mut mismatches = Vec::new();
    for (table, want) in expected {
        match found.get(table) {
            Some(got) if got == want => {}
            Some(got) => mismatches.push(format!(
                "{table}: backup {} rows {}, restored {} rows {}",
                want.rows, want.checksum, got.rows, got.checksum
            )),
            None => mismatches.push(format!("{table}: missing after restore")),
        }
    }
    for table in found.keys().filter(|t| !expected.contains_key(*t)) {
        mismatches.push(format!("{table}: not in the backup"));
    }
    mismatches
}

/// Recomputes what is now in the target (not what was copied) against the manifest.
async fn verify(
    url: &str,
    objects: &onshi_objects::ObjectStore,
    manifest: &Manifest,
) -> Result<RestoreReport, BackupError> {
    let store = Store::connect(url, 2).await?;
    let restored = table_sums(store.connection()).await;
    store.connection().clone().close().await?;
    let restored = restored?;
    let mut mismatches = compare(&manifest.tables, &restored);
    for (key, sum) in &manifest.objects {
        match objects.get(key).await? {
            Some(bytes) if hex::encode(Sha256::digest(&bytes)) == *sum => {}
            _ => mismatches.push(format!("object {key}: missing or different after restore")),
        }
    }
    if !mismatches.is_empty() {
        return Err(BackupError::Mismatch { mismatches });
    }
    Ok(RestoreReport {
        tables: restored.len(),
        rows: restored.values().map(|t| t.rows).sum(),
        objects: manifest.objects.len(),
        mismatches,
    })
}

/// The connection URL for pg_dump/pg_restore without its password, and the password apart: arguments are
/// visible to every user of the host in `ps`, the environment of a process is not.
fn libpq_target(url: &str) -> (String, Option<String>) {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            let password = parsed.password().map(|p| {
                url::form_urlencoded::parse(format!("p={p}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_else(|| p.to_owned())
            });
            let _ = parsed.set_password(None);
            (parsed.to_string(), password)
        }
        Err(_) => (url.to_owned(), None),
    }
}

/// The SQLite file the configuration points at.
pub fn sqlite_path(config: &Config) -> PathBuf {
    let url = config.effective_migration_url();
    let path = url.expose_secret().trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    PathBuf::from(path.split('?').next().unwrap_or(path))
}

async fn count_tables<C: ConnectionTrait>(db: &C) -> Result<i64, BackupError> {
    let sql = match db.get_database_backend() {
        DatabaseBackend::Postgres => "SELECT count(*)::bigint AS n FROM pg_tables WHERE schemaname = 'public'",
        _ => "SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
    };
    let row = db.query_one_raw(Statement::from_string(db.get_database_backend(), sql)).await?;
    Ok(row.map(|r| r.try_get::<i64>("", "n")).transpose()?.unwrap_or(0))
}

async fn schema_version<C: ConnectionTrait>(db: &C) -> Result<Option<String>, BackupError> {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT max(version) AS v FROM seaql_migrations",
        ))
        .await?;
    Ok(row.and_then(|r| r.try_get::<Option<String>>("", "v").ok().flatten()))
}

/// Row count and checksum of every table (on PostgreSQL, partitioned tables as a whole).
pub async fn table_sums<C: ConnectionTrait>(db: &C) -> Result<BTreeMap<String, TableSum>, BackupError> {
    let backend = db.get_database_backend();
    let list = match backend {
        DatabaseBackend::Postgres => {
            "SELECT c.relname::text AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY 1"
        }
        _ => "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY 1",
    };
    let names: Vec<String> = db
        .query_all_raw(Statement::from_string(backend, list))
        .await?
        .iter()
        .map(|r| r.try_get("", "name"))
        .collect::<Result<_, _>>()?;
    let mut sums = BTreeMap::new();
    for name in names {
        let sum = match backend {
            DatabaseBackend::Postgres => {
                let row = db
                    .query_one_raw(Statement::from_string(
                        backend,
                        format!(
                            "SELECT count(*)::bigint AS n, \
                             coalesce(md5(string_agg(md5(t::text), '' ORDER BY md5(t::text))), '') AS sum \
                             FROM \"{name}\" t"
                        ),
                    ))
                    .await?;
                let (rows, sum) = match row {
                    Some(r) => (r.try_get::<i64>("", "n")?, r.try_get::<String>("", "sum")?),
                    None => (0, String::new()),
                };
                TableSum { rows, checksum: format!("md5:{sum}") }
            }
            _ => sqlite_sum(db, &name).await?,
        };
        sums.insert(name, sum);
    }
    Ok(sums)
}

async fn sqlite_sum<C: ConnectionTrait>(db: &C, table: &str) -> Result<TableSum, BackupError> {
    let backend = DatabaseBackend::Sqlite;
    let columns: Vec<String> = db
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            "SELECT name FROM pragma_table_info($1) ORDER BY cid",
            [table.into()],
        ))
        .await?
        .iter()
        .map(|r| r.try_get("", "name"))
        .collect::<Result<_, _>>()?;
    let expr = columns.iter().map(|c| format!("quote(\"{c}\")")).collect::<Vec<_>>().join(" || '|' || ");
    let rows =
        db.query_all_raw(Statement::from_string(backend, format!("SELECT {expr} AS r FROM \"{table}\""))).await?;
    let mut hashes: Vec<[u8; 32]> = rows
        .iter()
        .map(|r| r.try_get::<String>("", "r").map(|text| Sha256::digest(text.as_bytes()).into()))
        .collect::<Result<_, _>>()?;
    hashes.sort_unstable();
    let mut all = Sha256::new();
    for h in &hashes {
        all.update(h);
    }
    Ok(TableSum {
        rows: i64::try_from(hashes.len()).unwrap_or(i64::MAX),
        checksum: format!("sha256:{}", hex::encode(all.finalize())),
    })
}

#[cfg(test)]
mod tests {
    use super::libpq_target;

    #[test]
    fn the_password_leaves_the_url() {
        let (url, password) = libpq_target("postgres://onshi_owner:s%40cret@db:5432/onshi?sslmode=require");
        assert_eq!(url, "postgres://onshi_owner@db:5432/onshi?sslmode=require");
        assert_eq!(password.as_deref(), Some("s@cret"));
        assert_eq!(libpq_target("postgres://postgres@127.0.0.1/x"), ("postgres://postgres@127.0.0.1/x".into(), None));
    }
}
