//! The clinic's レセ電 claims, as the agent reduced them (onshi_domain::ClaimsFile): one row per imported
//! file, per receipt and per patient-day; and the official マイナ保険証利用率 figures as 支払基金 notifies
//! them, per clinic and month.
//!
//! A file replaced by a corrected one for the same month keeps its row (`replaced_by`) for the audit
//! trail; its receipts and days are deleted with the replacement, in the same transaction.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261201_000016_claims"
    }
}

#[derive(DeriveIden)]
enum ClaimFiles {
    Table,
    Id,
    TenantId,
    ClinicId,
    DeviceId,
    EventId,
    ClaimMonth,
    Payer,
    Volume,
    FileSha256,
    Receipts,
    TotalPoints,
    ImportedAt,
    ReplacedBy,
}

#[derive(DeriveIden)]
enum ClaimReceipts {
    Table,
    Id,
    TenantId,
    ClinicId,
    FileId,
    ServiceMonth,
    ReceiptNo,
    ReceiptType,
    Outpatient,
    PatientRef,
    OnlineConfirmed,
    ChartSealed,
    Points,
}

#[derive(DeriveIden)]
enum ClaimDays {
    Table,
    TenantId,
    ClinicId,
    ReceiptId,
    ServiceDate,
    PatientRef,
    Kind,
    Codes,
    Addons,
}

#[derive(DeriveIden)]
enum OfficialUsage {
    Table,
    TenantId,
    ClinicId,
    Month,
    Uses,
    Users,
    Receipts,
    Rate,
    NotifiedOn,
    EnteredBy,
    EnteredAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ClaimFiles::Table)
                    .col(ColumnDef::new(ClaimFiles::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(ClaimFiles::TenantId).uuid().not_null())
                    .col(ColumnDef::new(ClaimFiles::ClinicId).uuid().not_null())
                    .col(ColumnDef::new(ClaimFiles::DeviceId).uuid().not_null())
                    .col(ColumnDef::new(ClaimFiles::EventId).uuid().not_null())
                    .col(ColumnDef::new(ClaimFiles::ClaimMonth).string_len(7).not_null())
                    .col(ColumnDef::new(ClaimFiles::Payer).string_len(16).not_null())
                    .col(ColumnDef::new(ClaimFiles::Volume).small_integer().not_null())
                    .col(ColumnDef::new(ClaimFiles::FileSha256).string_len(64).not_null())
                    .col(ColumnDef::new(ClaimFiles::Receipts).integer().not_null())
                    .col(ColumnDef::new(ClaimFiles::TotalPoints).big_integer().not_null())
                    .col(ColumnDef::new(ClaimFiles::ImportedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(ClaimFiles::ReplacedBy).uuid().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("claim_files_content")
                    .table(ClaimFiles::Table)
                    .col(ClaimFiles::TenantId)
                    .col(ClaimFiles::ClinicId)
                    .col(ClaimFiles::FileSha256)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // One current file per clinic, 請求年月, payer and volume: two workers applying two versions of a
        // file at once cannot both stay current (the second fails, is retried, and replaces the first).
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX claim_files_current ON claim_files (tenant_id, clinic_id, claim_month, payer, volume) \
                 WHERE replaced_by IS NULL",
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ClaimReceipts::Table)
                    .col(ColumnDef::new(ClaimReceipts::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(ClaimReceipts::TenantId).uuid().not_null())
                    .col(ColumnDef::new(ClaimReceipts::ClinicId).uuid().not_null())
                    .col(ColumnDef::new(ClaimReceipts::FileId).uuid().not_null())
                    .col(ColumnDef::new(ClaimReceipts::ServiceMonth).string_len(7).not_null())
                    .col(ColumnDef::new(ClaimReceipts::ReceiptNo).integer().not_null())
                    .col(ColumnDef::new(ClaimReceipts::ReceiptType).string_len(4).not_null())
                    .col(ColumnDef::new(ClaimReceipts::Outpatient).boolean().not_null())
                    .col(ColumnDef::new(ClaimReceipts::PatientRef).string_len(64).null())
                    .col(ColumnDef::new(ClaimReceipts::OnlineConfirmed).boolean().not_null())
                    .col(ColumnDef::new(ClaimReceipts::ChartSealed).string_len(512).null())
                    .col(ColumnDef::new(ClaimReceipts::Points).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        for (name, cols) in [
            (
                "claim_receipts_month",
                vec![ClaimReceipts::TenantId, ClaimReceipts::ClinicId, ClaimReceipts::ServiceMonth],
            ),
            ("claim_receipts_file", vec![ClaimReceipts::FileId]),
        ] {
            let mut index = Index::create();
            index.name(name).table(ClaimReceipts::Table);
            for c in cols {
                index.col(c);
            }
            manager.create_index(index.to_owned()).await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(ClaimDays::Table)
                    .col(ColumnDef::new(ClaimDays::TenantId).uuid().not_null())
                    .col(ColumnDef::new(ClaimDays::ClinicId).uuid().not_null())
                    .col(ColumnDef::new(ClaimDays::ReceiptId).uuid().not_null())
                    .col(ColumnDef::new(ClaimDays::ServiceDate).date().not_null())
                    .col(ColumnDef::new(ClaimDays::PatientRef).string_len(64).null())
                    .col(ColumnDef::new(ClaimDays::Kind).string_len(8).null())
                    .col(ColumnDef::new(ClaimDays::Codes).json().not_null())
                    .col(ColumnDef::new(ClaimDays::Addons).json().not_null())
                    .primary_key(Index::create().col(ClaimDays::ReceiptId).col(ClaimDays::ServiceDate))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("claim_days_date")
                    .table(ClaimDays::Table)
                    .col(ClaimDays::TenantId)
                    .col(ClaimDays::ClinicId)
                    .col(ClaimDays::ServiceDate)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(OfficialUsage::Table)
                    .col(ColumnDef::new(OfficialUsage::TenantId).uuid().not_null())
                    .col(ColumnDef::new(OfficialUsage::ClinicId).uuid().not_null())
                    .col(ColumnDef::new(OfficialUsage::Month).string_len(7).not_null())
                    .col(ColumnDef::new(OfficialUsage::Uses).integer().null())
                    .col(ColumnDef::new(OfficialUsage::Users).integer().null())
                    .col(ColumnDef::new(OfficialUsage::Receipts).integer().null())
                    .col(ColumnDef::new(OfficialUsage::Rate).double().not_null())
                    .col(ColumnDef::new(OfficialUsage::NotifiedOn).date().null())
                    .col(ColumnDef::new(OfficialUsage::EnteredBy).uuid().null())
                    .col(ColumnDef::new(OfficialUsage::EnteredAt).timestamp_with_time_zone().not_null())
                    .primary_key(
                        Index::create()
                            .col(OfficialUsage::TenantId)
                            .col(OfficialUsage::ClinicId)
                            .col(OfficialUsage::Month),
                    )
                    .to_owned(),
            )
            .await?;
        crate::secure_tenant_tables(manager, &["claim_files", "claim_receipts", "claim_days", "official_usage"]).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["official_usage", "claim_days", "claim_receipts", "claim_files"] {
            manager.drop_table(Table::drop().table(Alias::new(table)).to_owned()).await?;
        }
        Ok(())
    }
}
