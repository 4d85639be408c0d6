use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "claim_receipts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub clinic_id: Uuid,
    pub file_id: Uuid,
    pub service_month: String,
    pub receipt_no: i32,
    pub receipt_type: String,
    pub outpatient: bool,
    pub patient_ref: Option<String>,
    pub online_confirmed: bool,
    pub chart_sealed: Option<String>,
    pub points: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
