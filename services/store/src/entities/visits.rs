use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "visits")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub clinic_id: Uuid,
    pub visit_key: String,
    pub visit_date: TimeDate,
    pub patient_ref: Option<String>,
    pub first_at: TimeDateTimeWithTimeZone,
    pub last_at: TimeDateTimeWithTimeZone,
    pub method: String,
    pub identity_check: Option<String>,
    pub myna: bool,
    pub result: String,
    pub consent_medication: Option<bool>,
    pub consent_diagnosis: Option<bool>,
    pub consent_checkup: Option<bool>,
    pub consent_surgery: Option<bool>,
    pub confirmations: i32,
    pub updated_at: TimeDateTimeWithTimeZone,
    /// The 保険者番号 of a visit whose latest result is not valid (migration 22).
    pub insurer_number: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
