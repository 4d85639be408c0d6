//! The message that carries one accepted batch from the API to the workers, through the queue.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::event::AgentEvent;
use crate::ids::{ClinicId, DeviceId, TenantId};

/// Version of the envelope format; a worker refuses (dead-letters) versions it does not know.
pub const ENVELOPE_VERSION: u16 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngestEnvelope {
    pub version: u16,
    pub batch_id: Uuid,
    pub tenant: TenantId,
    pub clinic: ClinicId,
    pub device: DeviceId,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    pub events: Vec<AgentEvent>,
}

impl AgentEvent {
    /// SHA-256 over the event's canonical JSON. Two sends of one event id with different content are a
    /// client bug that must be refused (409), not silently merged.
    pub fn content_hash(&self) -> String {
        // Serialising a struct we own cannot fail; an empty hash would simply never match.
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(Sha256::digest(bytes))
    }
}
