use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "billing_reviews")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub visit_id: Uuid,
    pub tenant_id: Uuid,
    pub clinic_id: Uuid,
    pub month: String,
    pub status: String,
    pub kind: Option<String>,
    pub info_obtained: Option<bool>,
    pub exclude: bool,
    pub reason: String,
    pub user_id: Uuid,
    pub at: TimeDateTimeWithTimeZone,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
