use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "devices")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub clinic_id: Uuid,
    pub name: String,
    pub status: String,
    pub agent_version: Option<String>,
    pub last_seen_at: Option<TimeDateTimeWithTimeZone>,
    pub last_heartbeat: Option<Json>,
    pub secret_hash: Option<String>,
    pub created_at: TimeDateTimeWithTimeZone,
    pub offline_announced_at: Option<TimeDateTimeWithTimeZone>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
