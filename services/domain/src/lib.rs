//! The Onshi domain: identifiers, the event schema shared by the edge agent and the cloud, and the pure
//! rules that turn events into receptions (受付).
//!
//! Nothing here does I/O. Parsers live at the edge of this crate ("parse, don't validate"): once a value
//! has one of these types it is known to be well formed, so stores and handlers never re-check it.

pub mod access;
pub mod audit_action;
pub mod calendar;
pub mod claims;
pub mod codes;
pub mod device_alert;
pub mod event;
pub mod feed;
pub mod followup;
pub mod health;
pub mod hours;
pub mod ids;
pub mod ingest;
pub mod jst;
pub mod month;
pub mod mynumber;
pub mod onboarding;
pub mod outage;
pub mod radar;
pub mod retention;
pub mod rollup;
pub mod schema;
pub mod sealed;
pub mod visit;
pub mod webhook;

pub use access::{ApiScope, ClinicAccess, Permission, Role};
pub use audit_action::AuditAction;
pub use claims::{ClaimReceipt, ClaimVisit, ClaimedCode, ClaimedVisitKind, ClaimsFile, Day, Payer};
pub use codes::{CodeError, FacilityKind, InsurerNumber, MedicalInstitutionCode};
pub use event::{
    AgentEvent, ConfirmationMethod, Consents, EventBatch, EventPayload, FieldError, Heartbeat, IdentityCheck,
    PatientRef, QualificationCheck, QualificationResult, QuarantineKind, QuarantineNote, TimeSource,
};
pub use health::{Attention, DeviceHealth, HEARTBEAT_INTERVAL_SECS, OFFLINE_AFTER_SECS};
pub use ids::{ApiTokenId, ClinicId, DeviceId, EventId, IdError, TenantId, UserId};
pub use ingest::{ENVELOPE_VERSION, IngestEnvelope};
pub use month::{MonthError, YearMonth};
pub use retention::RetentionBasis;
pub use rollup::{DayDelta, RollupDelta};
pub use visit::Visit;
pub use webhook::WebhookEvent;

/// Types from dependencies that appear in this crate's API, for crates that need no direct dependency.
pub mod reexports {
    pub use time::OffsetDateTime;
}
