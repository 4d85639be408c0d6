use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "claim_files")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub clinic_id: Uuid,
    pub device_id: Uuid,
    pub event_id: Uuid,
    pub claim_month: String,
    pub payer: String,
    pub volume: i16,
    pub file_sha256: String,
    pub receipts: i32,
    pub total_points: i64,
    pub imported_at: TimeDateTimeWithTimeZone,
    pub replaced_by: Option<Uuid>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
