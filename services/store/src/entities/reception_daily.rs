use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "reception_daily")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub clinic_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub day: TimeDate,
    #[sea_orm(primary_key, auto_increment = false)]
    pub method: String,
    pub receptions: i32,
    pub myna: i32,
    pub consent_medication: i32,
    pub consent_diagnosis: i32,
    pub consent_checkup: i32,
    pub invalid: i32,
    pub face: i32,
    pub pin: i32,
    pub visual: i32,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
