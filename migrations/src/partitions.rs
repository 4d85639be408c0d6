//! Monthly partitions of the large tables (PostgreSQL only). Created ahead by `onshi partitions ensure`
//! (run by `onshi migrate` and a monthly CronJob); a month without its partition lands in the table's
//! DEFAULT partition and is moved into its month when that partition is created, so an insert never fails
//! for want of a partition. Old partitions are dropped only once empty (`drop_empty_before`): the retention
//! job deletes rows tenant by tenant, each under its own legal floor, and a month goes when every tenant's
//! rows have gone.
//!
//! Names are `<table>_p<YYYY>_<MM>`; months are JST calendar months.

use sea_orm_migration::prelude::DbErr;
use sea_orm_migration::sea_orm::{ConnectionTrait, Statement, TransactionSession, TransactionTrait};

pub struct PartitionedTable {
    pub name: &'static str,
    /// The partition key.
    pub key: &'static str,
    /// Whether the key is a `date` (visits) or a `timestamptz` (raw events): bounds are written so.
    pub key_is_date: bool,
    pub primary_key: &'static str,
    pub foreign_keys: &'static [&'static str],
}

pub const PARTITIONED: &[PartitionedTable] = &[
    PartitionedTable {
        name: "raw_events",
        key: "occurred_at",
        key_is_date: false,
        primary_key: "tenant_id, device_id, event_id, occurred_at",
        foreign_keys: &["(tenant_id) REFERENCES tenants (id)"],
    },
    PartitionedTable {
        name: "visits",
        key: "visit_date",
        key_is_date: true,
        primary_key: "id, visit_date",
        foreign_keys: &["(tenant_id) REFERENCES tenants (id)", "(clinic_id) REFERENCES clinics (id)"],
    },
];

/// A calendar month, (year, month 1-12).
pub type Month = (i32, u8);

/// The first month with partitions: the start of the claims the rules engine evaluates.
pub const FIRST_MONTH: Month = (2022, 10);

pub fn next_month((y, m): Month) -> Month {
    if m == 12 { (y + 1, 1) } else { (y, m + 1) }
}

pub fn add_months(mut month: Month, n: u32) -> Month {
    for _ in 0..n {
        month = next_month(month);
    }
    month
}

/// The month of a (JST) date.
pub fn month_of_date(date: time::Date) -> Month {
    (date.year(), u8::from(date.month()))
}

/// The current JST month plus `n`.
pub fn months_from_now(n: u32) -> Month {
    let jst = time::OffsetDateTime::now_utc().to_offset(time::macros::offset!(+9));
    add_months(month_of_date(jst.date()), n)
}

pub fn partition_name(table: &str, (y, m): Month) -> String {
    format!("{table}_p{y:04}_{m:02}")
}

fn bound(table: &PartitionedTable, (y, m): Month) -> String {
    if table.key_is_date { format!("'{y:04}-{m:02}-01'") } else { format!("'{y:04}-{m:02}-01 00:00:00+09'") }
}

/// Creates every missing monthly partition of every partitioned table from `from` to `to` inclusive, moving
/// rows the DEFAULT partition holds for that month into it. Returns the partitions created.
pub async fn ensure<C>(db: &C, from: Month, to: Month) -> Result<Vec<String>, DbErr>
where
    C: ConnectionTrait + TransactionTrait,
{
    let mut created = Vec::new();
    for table in PARTITIONED {
        let mut month = from;
        while month <= to {
            let name = partition_name(table.name, month);
            if !exists(db, &name).await? {
                create(db, table, month, &name).await?;
                created.push(name);
            }
            month = next_month(month);
        }
    }
    Ok(created)
}

async fn exists<C: ConnectionTrait>(db: &C, name: &str) -> Result<bool, DbErr> {
    Ok(flag(db, "SELECT to_regclass($1) IS NOT NULL AS flag", vec![name.into()]).await? == Some(true))
}

async fn create<C>(db: &C, table: &PartitionedTable, month: Month, name: &str) -> Result<(), DbErr>
where
    C: ConnectionTrait + TransactionTrait,
{
    let t = table.name;
    let (lo, hi) = (bound(table, month), bound(table, next_month(month)));
    let key = table.key;
    let txn = db.begin().await?;
    // Attaching scans the default partition under lock; moving its rows for the month first makes the
    // attach valid, and the whole step is one transaction.
    txn.execute_unprepared(&format!("CREATE TABLE {name} (LIKE {t} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")).await?;
    txn.execute_unprepared(&format!(
        "WITH moved AS (DELETE FROM {t}_default WHERE {key} >= {lo} AND {key} < {hi} RETURNING *) \
         INSERT INTO {name} SELECT * FROM moved"
    ))
    .await?;
    txn.execute_unprepared(&format!("ALTER TABLE {t} ATTACH PARTITION {name} FOR VALUES FROM ({lo}) TO ({hi})"))
        .await?;
    secure(&txn, name).await?;
    txn.commit().await
}

/// Builds the unique index `index` on partitioned `table` one partition at a time, for a table too large to
/// index in one statement: `CREATE INDEX` on the parent holds every partition's writes until it has indexed
/// them all. Here a partition that holds rows is indexed `CONCURRENTLY` (its writes go on), an empty one
/// plainly (nothing to wait for), and each partition's index is attached to the parent's. Must run outside
/// a transaction. Resumable: a partition already covered is skipped, and an index left invalid by an
/// interrupted build is dropped and built again.
///
/// PostgreSQL marks the parent's index valid only during an explicit `ALTER INDEX … ATTACH PARTITION` that
/// finds every partition covered; a partition attached meanwhile (`ensure`) gets a copy of the index but no
/// such check. So one partition's index is attached last, in a transaction that first locks the table
/// against new partitions (SHARE UPDATE EXCLUSIVE: rows keep flowing) and covers any that appeared.
pub async fn build_index<C>(db: &C, table: &str, index: &str, columns: &str) -> Result<(), DbErr>
where
    C: ConnectionTrait + TransactionTrait,
{
    db.execute_unprepared(&format!("CREATE UNIQUE INDEX IF NOT EXISTS {index} ON ONLY {table} ({columns})")).await?;
    let mut uncovered = Vec::new();
    for (parent, child) in list(db).await? {
        if parent == table && !covered(db, index, &child).await? {
            uncovered.push(child);
        }
    }
    let last = uncovered.pop();
    for child in &uncovered {
        let own = partition_index(db, table, index, columns, child).await?;
        db.execute_unprepared(&format!("ALTER INDEX {index} ATTACH PARTITION {own}")).await?;
    }
    let last = match last {
        Some(child) => Some((partition_index(db, table, index, columns, &child).await?, child)),
        None => None,
    };

    let txn = db.begin().await?;
    txn.execute_unprepared(&format!("LOCK TABLE {table} IN SHARE UPDATE EXCLUSIVE MODE")).await?;
    for (parent, child) in list(&txn).await? {
        let held = last.as_ref().is_some_and(|(_, c)| *c == child);
        if parent == table && !held && !covered(&txn, index, &child).await? {
            // A partition created since the list above: new, so indexed plainly inside the lock.
            let own = partition_index_name(table, index, &child);
            txn.execute_unprepared(&format!("CREATE UNIQUE INDEX {own} ON {child} ({columns})")).await?;
            txn.execute_unprepared(&format!("ALTER INDEX {index} ATTACH PARTITION {own}")).await?;
        }
    }
    if let Some((own, _)) = &last {
        txn.execute_unprepared(&format!("ALTER INDEX {index} ATTACH PARTITION {own}")).await?;
    }
    let valid = flag(&txn, VALID, vec![index.into()]).await? == Some(true);
    txn.commit().await?;
    if valid {
        return Ok(());
    }
    // Every partition covered, yet never checked: a partition still uncovered when an earlier run stopped
    // was dropped since. Nothing is left to attach, so the check cannot run again.
    Err(DbErr::Migration(format!(
        "index {index} covers every partition of {table} but is not marked valid; drop it \
         (DROP INDEX {index}, which drops its partitions' copies) and run the migration again"
    )))
}

const VALID: &str = "SELECT indisvalid AS flag FROM pg_index WHERE indexrelid = to_regclass($1)";

/// Whether partition `child` has an index attached to the partitioned index `index`.
async fn covered<C: ConnectionTrait>(db: &C, index: &str, child: &str) -> Result<bool, DbErr> {
    let sql = "SELECT EXISTS (SELECT 1 FROM pg_inherits h JOIN pg_index i ON i.indexrelid = h.inhrelid \
               WHERE h.inhparent = to_regclass($1) AND i.indrelid = to_regclass($2)) AS flag";
    Ok(flag(db, sql, vec![index.into(), child.into()]).await? == Some(true))
}

/// `visits_p2026_11_clinic_day_key` for `visits_clinic_day_key` on `visits_p2026_11`.
fn partition_index_name(table: &str, index: &str, child: &str) -> String {
    format!("{child}_{}", index.strip_prefix(table).unwrap_or(index).trim_start_matches('_'))
}

/// Makes partition `child`'s own copy of `index` (not attached): kept if a valid one exists, rebuilt if an
/// interrupted build left it invalid; `CONCURRENTLY` where the partition has rows.
async fn partition_index<C: ConnectionTrait>(
    db: &C,
    table: &str,
    index: &str,
    columns: &str,
    child: &str,
) -> Result<String, DbErr> {
    let own = partition_index_name(table, index, child);
    let found = flag(db, VALID, vec![own.as_str().into()]).await?;
    if found == Some(true) {
        return Ok(own);
    }
    if found == Some(false) {
        db.execute_unprepared(&format!("DROP INDEX CONCURRENTLY {own}")).await?;
    }
    let rows = flag(db, &format!("SELECT EXISTS (SELECT 1 FROM {child}) AS flag"), vec![]).await?;
    let how = if rows == Some(true) { "CONCURRENTLY " } else { "" };
    db.execute_unprepared(&format!("CREATE UNIQUE INDEX {how}{own} ON {child} ({columns})")).await?;
    Ok(own)
}

/// The boolean column `flag` of a query's one row, if it returned one.
async fn flag<C: ConnectionTrait>(
    db: &C,
    sql: &str,
    values: Vec<sea_orm_migration::sea_orm::Value>,
) -> Result<Option<bool>, DbErr> {
    let row = db.query_one_raw(Statement::from_sql_and_values(db.get_database_backend(), sql, values)).await?;
    row.map(|r| r.try_get::<bool>("", "flag")).transpose()
}

/// Closes a partition to the application role. Queries through the parent are checked against the
/// parent's privileges and policy only, so the partition itself needs neither; but the schema's default
/// privileges would grant the role every new table, and a partition read directly would bypass the
/// tenant policy. The policy is repeated on the partition as a second lock.
pub async fn secure<C: ConnectionTrait>(db: &C, partition: &str) -> Result<(), DbErr> {
    let app = crate::APP_ROLE;
    db.execute_unprepared(&format!("REVOKE ALL ON {partition} FROM {app}")).await?;
    crate::tenant_policy(db, partition).await
}

/// The monthly partitions that exist, per table, oldest first.
pub async fn list<C: ConnectionTrait>(db: &C) -> Result<Vec<(String, String)>, DbErr> {
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT p.relname::text AS parent, c.relname::text AS child FROM pg_inherits i \
             JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent \
             WHERE p.relname IN ('raw_events', 'visits') ORDER BY 1, 2",
        ))
        .await?;
    rows.iter().map(|r| Ok((r.try_get("", "parent")?, r.try_get("", "child")?))).collect()
}

/// Drops monthly partitions before `before` that hold no row. Returns the partitions dropped.
pub async fn drop_empty_before<C: ConnectionTrait>(db: &C, before: Month) -> Result<Vec<String>, DbErr> {
    let mut dropped = Vec::new();
    for (_, child) in list(db).await? {
        let Some(month) = month_of(&child) else { continue };
        if month >= before {
            continue;
        }
        let empty = flag(db, &format!("SELECT NOT EXISTS (SELECT 1 FROM {child}) AS flag"), vec![]).await?;
        if empty == Some(true) {
            db.execute_unprepared(&format!("DROP TABLE {child}")).await?;
            dropped.push(child);
        }
    }
    Ok(dropped)
}

/// The month of a partition name (`visits_p2026_11`), or None for the default partition.
pub fn month_of(name: &str) -> Option<Month> {
    let (_, suffix) = name.rsplit_once("_p")?;
    let (y, m) = suffix.split_once('_')?;
    Some((y.parse().ok()?, m.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_and_names() {
        assert_eq!(next_month((2026, 12)), (2027, 1));
        assert_eq!(add_months((2022, 10), 15), (2024, 1));
        assert_eq!(partition_name("visits", (2026, 6)), "visits_p2026_06");
        assert_eq!(month_of("raw_events_p2026_06"), Some((2026, 6)));
        assert_eq!(month_of("raw_events_default"), None);
        assert_eq!(bound(&PARTITIONED[0], (2026, 6)), "'2026-06-01 00:00:00+09'");
        assert_eq!(bound(&PARTITIONED[1], (2026, 6)), "'2026-06-01'");
    }
}
