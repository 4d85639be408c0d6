//! The first schema: tenants, clinics, users, devices, raw events, visits, and the embedded queue's tables.
//!
//! Every tenant-owned table carries `tenant_id`, and every index that serves a tenant's reads starts with
//! it. Raw events are append-only: the key (tenant, device, event id) is the agent's idempotency key.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261125_000001_foundation"
    }
}

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
    Name,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Clinics {
    Table,
    Id,
    TenantId,
    InstitutionCode,
    Name,
    FacilityKind,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    TenantId,
    Email,
    DisplayName,
    Role,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Devices {
    Table,
    Id,
    TenantId,
    ClinicId,
    Name,
    Status,
    AgentVersion,
    LastSeenAt,
    LastHeartbeat,
    CreatedAt,
}

#[derive(DeriveIden)]
enum RawEvents {
    Table,
    TenantId,
    DeviceId,
    EventId,
    ClinicId,
    BatchId,
    Kind,
    OccurredAt,
    ReceivedAt,
    ContentHash,
    Payload,
}

#[derive(DeriveIden)]
enum Visits {
    Table,
    Id,
    TenantId,
    ClinicId,
    VisitKey,
    VisitDate,
    PatientRef,
    FirstAt,
    LastAt,
    Method,
    Myna,
    Result,
    ConsentMedication,
    ConsentDiagnosis,
    ConsentCheckup,
    ConsentSurgery,
    Confirmations,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum QueueMessages {
    Table,
    Id,
    Queue,
    Payload,
    Attempts,
    CreatedAt,
}

#[derive(DeriveIden)]
enum QueueDeadLetters {
    Table,
    Id,
    Queue,
    Payload,
    Attempts,
    Reason,
    DeadAt,
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
        manager
            .create_table(
                Table::create()
                    .table(Tenants::Table)
                    .col(ColumnDef::new(Tenants::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Tenants::Name).string().not_null())
                    .col(ColumnDef::new(Tenants::CreatedAt).timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Clinics::Table)
                    .col(ColumnDef::new(Clinics::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Clinics::TenantId).uuid().not_null())
                    .col(ColumnDef::new(Clinics::InstitutionCode).string_len(10).not_null())
                    .col(ColumnDef::new(Clinics::Name).string().not_null())
                    .col(ColumnDef::new(Clinics::FacilityKind).string_len(16).not_null())
                    .col(ColumnDef::new(Clinics::CreatedAt).timestamp_with_time_zone().not_null())
                    .foreign_key(&mut tenant_fk(Clinics::Table, Clinics::TenantId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("clinics_tenant_code")
                    .table(Clinics::Table)
                    .col(Clinics::TenantId)
                    .col(Clinics::InstitutionCode)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(ColumnDef::new(Users::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Users::TenantId).uuid().not_null())
                    .col(ColumnDef::new(Users::Email).string().not_null())
                    .col(ColumnDef::new(Users::DisplayName).string().not_null())
                    .col(ColumnDef::new(Users::Role).string_len(32).not_null())
                    .col(ColumnDef::new(Users::CreatedAt).timestamp_with_time_zone().not_null())
                    .foreign_key(&mut tenant_fk(Users::Table, Users::TenantId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(Index::create().name("users_email").table(Users::Table).col(Users::Email).unique().to_owned())
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Devices::Table)
                    .col(ColumnDef::new(Devices::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Devices::TenantId).uuid().not_null())
                    .col(ColumnDef::new(Devices::ClinicId).uuid().not_null())
                    .col(ColumnDef::new(Devices::Name).string().not_null())
                    .col(ColumnDef::new(Devices::Status).string_len(16).not_null())
                    .col(ColumnDef::new(Devices::AgentVersion).string_len(32).null())
                    .col(ColumnDef::new(Devices::LastSeenAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(Devices::LastHeartbeat).json().null())
                    .col(ColumnDef::new(Devices::CreatedAt).timestamp_with_time_zone().not_null())
                    .foreign_key(&mut tenant_fk(Devices::Table, Devices::TenantId))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Devices::Table, Devices::ClinicId)
                            .to(Clinics::Table, Clinics::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("devices_tenant_clinic")
                    .table(Devices::Table)
                    .col(Devices::TenantId)
                    .col(Devices::ClinicId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(RawEvents::Table)
                    .col(ColumnDef::new(RawEvents::TenantId).uuid().not_null())
                    .col(ColumnDef::new(RawEvents::DeviceId).uuid().not_null())
                    .col(ColumnDef::new(RawEvents::EventId).uuid().not_null())
                    .col(ColumnDef::new(RawEvents::ClinicId).uuid().not_null())
                    .col(ColumnDef::new(RawEvents::BatchId).uuid().not_null())
                    .col(ColumnDef::new(RawEvents::Kind).string_len(32).not_null())
                    .col(ColumnDef::new(RawEvents::OccurredAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(RawEvents::ReceivedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(RawEvents::ContentHash).string_len(64).not_null())
                    .col(ColumnDef::new(RawEvents::Payload).json().not_null())
                    .primary_key(
                        Index::create().col(RawEvents::TenantId).col(RawEvents::DeviceId).col(RawEvents::EventId),
                    )
                    .foreign_key(&mut tenant_fk(RawEvents::Table, RawEvents::TenantId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("raw_events_tenant_clinic_time")
                    .table(RawEvents::Table)
                    .col(RawEvents::TenantId)
                    .col(RawEvents::ClinicId)
                    .col(RawEvents::OccurredAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Visits::Table)
                    .col(ColumnDef::new(Visits::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Visits::TenantId).uuid().not_null())
                    .col(ColumnDef::new(Visits::ClinicId).uuid().not_null())
                    .col(ColumnDef::new(Visits::VisitKey).string_len(160).not_null())
                    .col(ColumnDef::new(Visits::VisitDate).date().not_null())
                    .col(ColumnDef::new(Visits::PatientRef).string_len(64).null())
                    .col(ColumnDef::new(Visits::FirstAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(Visits::LastAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(Visits::Method).string_len(32).not_null())
                    .col(ColumnDef::new(Visits::Myna).boolean().not_null())
                    .col(ColumnDef::new(Visits::Result).string_len(32).not_null())
                    .col(ColumnDef::new(Visits::ConsentMedication).boolean().null())
                    .col(ColumnDef::new(Visits::ConsentDiagnosis).boolean().null())
                    .col(ColumnDef::new(Visits::ConsentCheckup).boolean().null())
                    .col(ColumnDef::new(Visits::ConsentSurgery).boolean().null())
                    .col(ColumnDef::new(Visits::Confirmations).integer().not_null())
                    .col(ColumnDef::new(Visits::UpdatedAt).timestamp_with_time_zone().not_null())
                    .foreign_key(&mut tenant_fk(Visits::Table, Visits::TenantId))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Visits::Table, Visits::ClinicId)
                            .to(Clinics::Table, Clinics::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("visits_tenant_clinic_key")
                    .table(Visits::Table)
                    .col(Visits::TenantId)
                    .col(Visits::ClinicId)
                    .col(Visits::VisitKey)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("visits_tenant_clinic_date")
                    .table(Visits::Table)
                    .col(Visits::TenantId)
                    .col(Visits::ClinicId)
                    .col(Visits::VisitDate)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(QueueMessages::Table)
                    .col(ColumnDef::new(QueueMessages::Id).big_integer().not_null().auto_increment().primary_key())
                    .col(ColumnDef::new(QueueMessages::Queue).string().not_null())
                    .col(ColumnDef::new(QueueMessages::Payload).blob().not_null())
                    .col(ColumnDef::new(QueueMessages::Attempts).integer().not_null())
                    .col(ColumnDef::new(QueueMessages::CreatedAt).timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("queue_messages_queue_id")
                    .table(QueueMessages::Table)
                    .col(QueueMessages::Queue)
                    .col(QueueMessages::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(QueueDeadLetters::Table)
                    .col(ColumnDef::new(QueueDeadLetters::Id).big_integer().not_null().primary_key())
                    .col(ColumnDef::new(QueueDeadLetters::Queue).string().not_null())
                    .col(ColumnDef::new(QueueDeadLetters::Payload).blob().not_null())
                    .col(ColumnDef::new(QueueDeadLetters::Attempts).integer().not_null())
                    .col(ColumnDef::new(QueueDeadLetters::Reason).string().not_null())
                    .col(ColumnDef::new(QueueDeadLetters::DeadAt).timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            QueueDeadLetters::Table.into_iden(),
            QueueMessages::Table.into_iden(),
            Visits::Table.into_iden(),
            RawEvents::Table.into_iden(),
            Devices::Table.into_iden(),
            Users::Table.into_iden(),
            Clinics::Table.into_iden(),
            Tenants::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
