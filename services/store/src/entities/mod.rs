//! sea-orm entities, one module per table. They are private to the store crate: callers get domain
//! types back from the scoped repositories, never a row they could re-query without a tenant.

pub(crate) mod api_tokens;
pub(crate) mod audit_heads;
pub(crate) mod audit_log;
pub(crate) mod billing_exports;
pub(crate) mod billing_months;
pub(crate) mod billing_reviews;
pub(crate) mod claim_days;
pub(crate) mod claim_files;
pub(crate) mod claim_receipts;
pub(crate) mod clinic_billing;
pub(crate) mod clinics;
pub(crate) mod device_alerts;
pub(crate) mod device_uptime;
pub(crate) mod devices;
pub(crate) mod email_tokens;
pub(crate) mod enrollment_codes;
pub(crate) mod followups;
pub(crate) mod mail_outbox;
pub(crate) mod monthly_patients;
pub(crate) mod monthly_usage;
pub(crate) mod official_usage;
pub(crate) mod radar_notices;
pub(crate) mod raw_events;
pub(crate) mod reception_daily;
pub(crate) mod recovery_codes;
pub(crate) mod tenants;
pub(crate) mod usage_alerts;
pub(crate) mod user_logins;
pub(crate) mod users;
pub(crate) mod visits;
pub(crate) mod webhook_deliveries;
pub(crate) mod webhook_endpoints;
pub(crate) mod weekly_summaries;
