//! The billing review: each clinic's 届出 and notified 利用率 (the rules engine's clinic input), the
//! clerks' reviews of visits, closed months and exports. All tenant tables, with row-level security.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261125_000004_billing"
    }
}

#[derive(DeriveIden)]
enum ClinicBilling {
    Table,
    ClinicId,
    TenantId,
    Settings,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum BillingReviews {
    Table,
    VisitId,
    TenantId,
    ClinicId,
    Month,
    Status,
    Kind,
    InfoObtained,
    Exclude,
    Reason,
    UserId,
    At,
}

#[derive(DeriveIden)]
enum BillingMonths {
    Table,
    TenantId,
    ClinicId,
    Month,
    ClosedAt,
    ClosedBy,
}

#[derive(DeriveIden)]
enum BillingExports {
    Table,
    Id,
    TenantId,
    ClinicId,
    Month,
    ObjectKey,
    Encoding,
    Rows,
    CreatedBy,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Clinics {
    Table,
    Id,
}

fn fk<T: IntoIden + 'static, C: IntoIden + 'static, U: IntoIden + 'static, D: IntoIden + 'static>(
    from: T,
    col: C,
    to: U,
    to_col: D,
) -> ForeignKeyCreateStatement {
    ForeignKey::create().from(from, col).to(to, to_col).on_delete(ForeignKeyAction::Restrict).to_owned()
}

const TABLES: &[&str] = &["clinic_billing", "billing_reviews", "billing_months", "billing_exports"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ClinicBilling::Table)
                    .col(ColumnDef::new(ClinicBilling::ClinicId).uuid().not_null().primary_key())
                    .col(ColumnDef::new(ClinicBilling::TenantId).uuid().not_null())
                    .col(ColumnDef::new(ClinicBilling::Settings).json().not_null())
                    .col(ColumnDef::new(ClinicBilling::UpdatedAt).timestamp_with_time_zone().not_null())
                    .foreign_key(&mut fk(ClinicBilling::Table, ClinicBilling::TenantId, Tenants::Table, Tenants::Id))
                    .foreign_key(&mut fk(ClinicBilling::Table, ClinicBilling::ClinicId, Clinics::Table, Clinics::Id))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(BillingReviews::Table)
                    .col(ColumnDef::new(BillingReviews::VisitId).uuid().not_null().primary_key())
                    .col(ColumnDef::new(BillingReviews::TenantId).uuid().not_null())
                    .col(ColumnDef::new(BillingReviews::ClinicId).uuid().not_null())
                    .col(ColumnDef::new(BillingReviews::Month).string_len(7).not_null())
                    .col(ColumnDef::new(BillingReviews::Status).string_len(16).not_null())
                    .col(ColumnDef::new(BillingReviews::Kind).string_len(8).null())
                    .col(ColumnDef::new(BillingReviews::InfoObtained).boolean().null())
                    .col(ColumnDef::new(BillingReviews::Exclude).boolean().not_null())
                    .col(ColumnDef::new(BillingReviews::Reason).string().not_null())
                    .col(ColumnDef::new(BillingReviews::UserId).uuid().not_null())
                    .col(ColumnDef::new(BillingReviews::At).timestamp_with_time_zone().not_null())
                    .foreign_key(&mut fk(BillingReviews::Table, BillingReviews::TenantId, Tenants::Table, Tenants::Id))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("billing_reviews_clinic_month")
                    .table(BillingReviews::Table)
                    .col(BillingReviews::TenantId)
                    .col(BillingReviews::ClinicId)
                    .col(BillingReviews::Month)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(BillingMonths::Table)
                    .col(ColumnDef::new(BillingMonths::TenantId).uuid().not_null())
                    .col(ColumnDef::new(BillingMonths::ClinicId).uuid().not_null())
                    .col(ColumnDef::new(BillingMonths::Month).string_len(7).not_null())
                    .col(ColumnDef::new(BillingMonths::ClosedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(BillingMonths::ClosedBy).uuid().not_null())
                    .primary_key(
                        Index::create()
                            .col(BillingMonths::TenantId)
                            .col(BillingMonths::ClinicId)
                            .col(BillingMonths::Month),
                    )
                    .foreign_key(&mut fk(BillingMonths::Table, BillingMonths::TenantId, Tenants::Table, Tenants::Id))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(BillingExports::Table)
                    .col(ColumnDef::new(BillingExports::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(BillingExports::TenantId).uuid().not_null())
                    .col(ColumnDef::new(BillingExports::ClinicId).uuid().not_null())
                    .col(ColumnDef::new(BillingExports::Month).string_len(7).not_null())
                    .col(ColumnDef::new(BillingExports::ObjectKey).string().not_null())
                    .col(ColumnDef::new(BillingExports::Encoding).string_len(16).not_null())
                    .col(ColumnDef::new(BillingExports::Rows).integer().not_null())
                    .col(ColumnDef::new(BillingExports::CreatedBy).uuid().not_null())
                    .col(ColumnDef::new(BillingExports::CreatedAt).timestamp_with_time_zone().not_null())
                    .foreign_key(&mut fk(BillingExports::Table, BillingExports::TenantId, Tenants::Table, Tenants::Id))
                    .to_owned(),
            )
            .await?;
        crate::secure_tenant_tables(manager, TABLES).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            BillingExports::Table.into_iden(),
            BillingMonths::Table.into_iden(),
            BillingReviews::Table.into_iden(),
            ClinicBilling::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
