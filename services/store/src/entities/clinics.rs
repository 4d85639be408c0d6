use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "clinics")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub institution_code: String,
    pub name: String,
    pub facility_kind: String,
    /// Planned (or actual) start of オン資 operation, for the onboarding deadlines.
    pub oqs_start_date: Option<TimeDate>,
    pub created_at: TimeDateTimeWithTimeZone,
    /// When a result file carrying the clinic's code first arrived from one of its agents (migration 12).
    pub code_confirmed_at: Option<TimeDateTimeWithTimeZone>,
    /// `onshi_domain::hours::OpeningHours`; `None` until the clinic sets its own (migration 20).
    pub opening_hours: Option<Json>,
    pub alert_after_minutes: Option<i32>,
    /// The 資格確認端末's electronic certificate expiry and operating system (migration 21).
    pub terminal_cert_expires: Option<TimeDate>,
    pub terminal_os: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
