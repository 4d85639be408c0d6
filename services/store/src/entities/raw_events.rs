use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "raw_events")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: Uuid,
    /// The device that sent it first; not part of the key (migration 11): a resend from another device
    /// of the same clinic is the same event.
    pub device_id: Uuid,
    // Key columns in key order (tenant, clinic, event, occurred_at): insert-returning keys come as a tuple
    // in this order.
    #[sea_orm(primary_key, auto_increment = false)]
    pub clinic_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub event_id: Uuid,
    pub batch_id: Uuid,
    pub kind: String,
    /// Part of the key because PostgreSQL partitions the table by it (see migration 10).
    #[sea_orm(primary_key, auto_increment = false)]
    pub occurred_at: TimeDateTimeWithTimeZone,
    pub received_at: TimeDateTimeWithTimeZone,
    pub content_hash: String,
    pub payload: Json,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
