use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_endpoints")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub url: String,
    pub description: String,
    pub event_types: Json,
    pub secret: String,
    pub previous_secret: Option<String>,
    pub previous_secret_until: Option<TimeDateTimeWithTimeZone>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub failing_since: Option<TimeDateTimeWithTimeZone>,
    pub created_by: Option<Uuid>,
    pub created_at: TimeDateTimeWithTimeZone,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
