//! Values this crate's unit tests build alike.

use onshi_domain::{ClinicId, DeviceId};
use time::OffsetDateTime;

/// An active agent named 受付 of `clinic`, enrolled at `enrolled_at` and never heard from since.
pub(crate) fn agent(clinic: ClinicId, enrolled_at: OffsetDateTime) -> onshi_store::Device {
    onshi_store::Device {
        id: DeviceId::new(),
        clinic,
        name: "受付".to_owned(),
        status: onshi_store::DeviceStatus::Active,
        agent_version: None,
        last_seen_at: None,
        last_heartbeat: None,
        offline_announced_at: None,
        enrolled_at,
    }
}
