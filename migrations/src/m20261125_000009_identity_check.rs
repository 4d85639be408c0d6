//! How a マイナ保険証 holder was identified (顔認証 / 暗証番号 / 目視), on visits and in the hourly rollup.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261125_000009_identity_check"
    }
}

#[derive(DeriveIden)]
enum Visits {
    Table,
    IdentityCheck,
}

#[derive(DeriveIden)]
enum ReceptionHourly {
    Table,
    Face,
    Pin,
    Visual,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        manager
            .alter_table(
                Table::alter()
                    .table(Visits::Table)
                    .add_column(ColumnDef::new(Visits::IdentityCheck).string_len(16).null())
                    .to_owned(),
            )
            .await?;
        for col in [ReceptionHourly::Face, ReceptionHourly::Pin, ReceptionHourly::Visual] {
            manager
                .alter_table(
                    Table::alter()
                        .table(ReceptionHourly::Table)
                        .add_column(ColumnDef::new(col).integer().not_null().default(0))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for col in [ReceptionHourly::Face, ReceptionHourly::Pin, ReceptionHourly::Visual] {
            manager.alter_table(Table::alter().table(ReceptionHourly::Table).drop_column(col).to_owned()).await?;
        }
        manager.alter_table(Table::alter().table(Visits::Table).drop_column(Visits::IdentityCheck).to_owned()).await
    }
}
