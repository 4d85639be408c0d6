//! For the year-long clinic view (issue 16):
//! - `reception_daily` keeps receptions per JST hour (`hour_00` … `hour_23`) beside the day's counters,
//!   filled here from `reception_hourly`. The weekday-by-hour chart was the hourly table's only reader: a
//!   year of one clinic is ≈ 1,100 daily rows instead of ≈ 9,000 hourly ones (written interleaved with every
//!   other clinic's, so each cost a page read), and the worker upserts one rollup table per group instead
//!   of two. Twenty-four columns rather than an array, so both databases add to them in the same
//!   `ON CONFLICT` statement.
//!   `reception_hourly` stays, no longer read or written, because workers of the previous release still
//!   write it during a rolling upgrade (migrations are additive, docs/operations.md); the next release drops
//!   it. Days those workers apply during the upgrade get no hours: `onshi rollups rebuild` afterwards.
//! - `visits_not_valid`: a partial index on the visits whose result is not valid (a few percent), in the
//!   order the clinic page lists them (newest first, 50 at most): it read and sorted every visit of the
//!   period to find them, 12 ms for a year.
//!

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::ConnectionTrait;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000023_daily_hours"
    }
}

#[derive(DeriveIden)]
enum ReceptionDaily {
    Table,
}

fn hour_column(hour: usize) -> String {
    format!("hour_{hour:02}")
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one column at a time.
        for hour in 0..24 {
            manager
                .alter_table(
                    Table::alter()
                        .table(ReceptionDaily::Table)
                        .add_column(ColumnDef::new(Alias::new(hour_column(hour))).integer().not_null().default(0))
                        .to_owned(),
                )
                .await?;
        }
        let set = (0..24).map(|h| format!("{0} = s.{0}", hour_column(h))).collect::<Vec<_>>().join(", ");
        let sums = (0..24)
            .map(|h| format!("SUM(CASE WHEN hour = {h} THEN receptions ELSE 0 END) AS {}", hour_column(h)))
            .collect::<Vec<_>>()
            .join(", ");
        let db = manager.get_connection();
        // `UPDATE … FROM` is PostgreSQL's and SQLite's (3.33+) alike.
        db.execute_unprepared(&format!(
            "UPDATE reception_daily SET {set} FROM (SELECT tenant_id, clinic_id, day, method, {sums} \
             FROM reception_hourly GROUP BY tenant_id, clinic_id, day, method) AS s \
             WHERE reception_daily.tenant_id = s.tenant_id AND reception_daily.clinic_id = s.clinic_id \
             AND reception_daily.day = s.day AND reception_daily.method = s.method"
        ))
        .await?;
        // On PostgreSQL `visits` is partitioned by month: an index on the parent is made on every partition.
        db.execute_unprepared(
            "CREATE INDEX visits_not_valid ON visits (tenant_id, clinic_id, last_at) WHERE result <> 'valid'",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared("DROP INDEX IF EXISTS visits_not_valid").await?;
        for hour in 0..24 {
            manager
                .alter_table(
                    Table::alter().table(ReceptionDaily::Table).drop_column(Alias::new(hour_column(hour))).to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
