use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "claim_days")]
pub struct Model {
    pub tenant_id: Uuid,
    pub clinic_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub receipt_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub service_date: TimeDate,
    pub patient_ref: Option<String>,
    /// 初診 or 再診; none for a day with addon codes only.
    pub kind: Option<String>,
    pub codes: Json,
    pub addons: Json,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
