//! 資格無効 follow-up: the 保険者番号 of a visit whose latest result is not valid (`visits.insurer_number`,
//! an insurer's number, not a person's), and the status the desk sets on each such visit (`followups`:
//! resolved, 返戻 risk, unreachable; no row = open).

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000022_followups"
    }
}

#[derive(DeriveIden)]
enum Visits {
    Table,
    InsurerNumber,
}

#[derive(DeriveIden)]
enum Followups {
    Table,
    TenantId,
    ClinicId,
    VisitId,
    VisitDate,
    Status,
    UpdatedBy,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // On PostgreSQL `visits` is partitioned by month; a column added to the parent reaches every partition.
        manager
            .alter_table(
                Table::alter()
                    .table(Visits::Table)
                    .add_column(ColumnDef::new(Visits::InsurerNumber).string_len(8).null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Followups::Table)
                    .col(ColumnDef::new(Followups::TenantId).uuid().not_null())
                    .col(ColumnDef::new(Followups::ClinicId).uuid().not_null())
                    .col(ColumnDef::new(Followups::VisitId).uuid().not_null())
                    .col(ColumnDef::new(Followups::VisitDate).date().not_null())
                    .col(ColumnDef::new(Followups::Status).string_len(16).not_null())
                    .col(ColumnDef::new(Followups::UpdatedBy).uuid().null())
                    .col(ColumnDef::new(Followups::UpdatedAt).timestamp_with_time_zone().not_null())
                    .primary_key(Index::create().col(Followups::TenantId).col(Followups::VisitId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("followups_by_day")
                    .table(Followups::Table)
                    .col(Followups::TenantId)
                    .col(Followups::ClinicId)
                    .col(Followups::VisitDate)
                    .to_owned(),
            )
            .await?;
        crate::secure_tenant_tables(manager, &["followups"]).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(Followups::Table).to_owned()).await?;
        manager.alter_table(Table::alter().table(Visits::Table).drop_column(Visits::InsurerNumber).to_owned()).await?;
        Ok(())
    }
}
