use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "official_usage")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub clinic_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub month: String,
    pub uses: Option<i32>,
    pub users: Option<i32>,
    pub receipts: Option<i32>,
    pub rate: f64,
    pub notified_on: Option<TimeDate>,
    pub entered_by: Option<Uuid>,
    pub entered_at: TimeDateTimeWithTimeZone,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
