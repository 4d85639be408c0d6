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
    /// Receptions per JST hour (the weekday-by-hour chart).
    pub hour_00: i32,
    pub hour_01: i32,
    pub hour_02: i32,
    pub hour_03: i32,
    pub hour_04: i32,
    pub hour_05: i32,
    pub hour_06: i32,
    pub hour_07: i32,
    pub hour_08: i32,
    pub hour_09: i32,
    pub hour_10: i32,
    pub hour_11: i32,
    pub hour_12: i32,
    pub hour_13: i32,
    pub hour_14: i32,
    pub hour_15: i32,
    pub hour_16: i32,
    pub hour_17: i32,
    pub hour_18: i32,
    pub hour_19: i32,
    pub hour_20: i32,
    pub hour_21: i32,
    pub hour_22: i32,
    pub hour_23: i32,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
