//! The visits' unique key reordered to (tenant, clinic, visit_date, visit_key), replacing both the old key
//! (tenant, clinic, visit_key, visit_date) and the (tenant, clinic, visit_date) index.
//!
//! Why: the worker looks up a batch's stored visits by clinic, date and key. With the key last, the look-up
//! for "many visits of few clinics" probes the index exactly instead of reading every visit those clinics
//! had that day and filtering by key (4–6 ms at 2,300 visits a clinic-day; docs/benchmarks.md, 2026-12-07).
//! The pages' date ranges per clinic use the same index by its prefix, so the date index goes, and every
//! visit insert maintains one index fewer. What is unique does not change: a visit key already contains
//! its date (`onshi_domain::visit`).
//!
//! On PostgreSQL a database without visits gets the index in one statement. One with visits gets it
//! partition by partition (`partitions::build_index`): a partition with rows is indexed concurrently, so
//! receptions keep being written while a large table is indexed. That needs no surrounding transaction;
//! each step can be repeated, so a migration interrupted half-way resumes where it stopped.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseBackend, Statement};

use crate::partitions;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261207_000025_visit_day_key"
    }
}

pub const VISIT_DAY_KEY: &str = "visits_clinic_day_key";
pub const VISIT_DAY_KEY_COLUMNS: &str = "tenant_id, clinic_id, visit_date, visit_key";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let (new, columns) = (VISIT_DAY_KEY, VISIT_DAY_KEY_COLUMNS);
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            let started = db
                .query_one_raw(Statement::from_string(
                    DatabaseBackend::Postgres,
                    format!("SELECT EXISTS (SELECT 1 FROM visits) OR to_regclass('{new}') IS NOT NULL AS big"),
                ))
                .await?
                .map(|r| r.try_get::<bool>("", "big"))
                .transpose()?
                .unwrap_or(true);
            if started {
                partitions::build_index(db, "visits", new, columns).await?;
            } else {
                db.execute_unprepared(&format!("CREATE UNIQUE INDEX {new} ON visits ({columns})")).await?;
            }
        } else {
            db.execute_unprepared(&format!("CREATE UNIQUE INDEX IF NOT EXISTS {new} ON visits ({columns})")).await?;
        }
        db.execute_unprepared("DROP INDEX IF EXISTS visits_tenant_clinic_key").await?;
        db.execute_unprepared("DROP INDEX IF EXISTS visits_tenant_clinic_date").await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        // The keys as they were: PostgreSQL's includes the partition key, SQLite's plain table's did not.
        let old_key = if manager.get_database_backend() == DatabaseBackend::Postgres {
            "tenant_id, clinic_id, visit_key, visit_date"
        } else {
            "tenant_id, clinic_id, visit_key"
        };
        // Without a transaction, as `up`: each statement can be repeated after an interruption.
        db.execute_unprepared(&format!(
            "CREATE UNIQUE INDEX IF NOT EXISTS visits_tenant_clinic_key ON visits ({old_key})"
        ))
        .await?;
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS visits_tenant_clinic_date ON visits (tenant_id, clinic_id, visit_date)",
        )
        .await?;
        db.execute_unprepared(&format!("DROP INDEX IF EXISTS {VISIT_DAY_KEY}")).await?;
        Ok(())
    }

    /// Concurrent index builds cannot run in a transaction; every step of `up` can be repeated instead.
    fn use_transaction(&self) -> Option<bool> {
        Some(false)
    }
}
