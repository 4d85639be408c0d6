//! The live feed of receptions: what a worker publishes once it has applied a group of batches, and what
//! the API relays to signed-in pages as server-sent events. Both sides read this module, so the
//! channel's name and the message's shape are written once.
//!
//! No personal data: a clinic, a count, and each reception's time, method and result (no patient,
//! insurer or name), in the channel's name as in the body.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{ClinicId, ConfirmationMethod, QualificationResult, TenantId};

/// At most this many receptions per note: the newest ones (a page shows a short list).
pub const RECEPTIONS_PER_NOTE: usize = 10;

/// The channel on which a tenant's live updates are published.
pub fn channel(tenant: TenantId) -> String {
    format!("feed:{tenant}")
}

/// One clinic's part of a published message: how many visits the group touched there, and its newest
/// receptions, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClinicNote {
    pub clinic: ClinicId,
    pub visits: usize,
    #[serde(default)]
    pub receptions: Vec<Reception>,
}

/// A reception as the feed shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reception {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub method: ConfirmationMethod,
    pub result: QualificationResult,
}

/// The message body for a group's notes: a JSON array, one note per clinic.
pub fn encode(notes: &[ClinicNote]) -> Result<String, serde_json::Error> {
    serde_json::to_string(notes)
}

/// The notes of a published message: an array (a group's), or a single note as workers before the
/// array published. Each note is read on its own and one that does not read is skipped (say a newer
/// worker's method during a rolling upgrade), not the whole message; a body that is neither reads as no
/// notes. The feed is a courtesy: a page misses one update rather than the stream breaking.
pub fn decode(body: &[u8]) -> Vec<ClinicNote> {
    let notes = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Array(notes)) => notes,
        Ok(note) => vec![note],
        Err(_) => return Vec::new(),
    };
    notes.into_iter().filter_map(|note| serde_json::from_value(note).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_and_a_single_note_read_back_and_anything_else_reads_as_nothing() {
        let note = ClinicNote {
            clinic: ClinicId::new(),
            visits: 2,
            receptions: vec![Reception {
                at: time::macros::datetime!(2026-12-07 09:15 +09:00),
                method: ConfirmationMethod::MynaCard,
                result: QualificationResult::Valid,
            }],
        };
        let body = encode(std::slice::from_ref(&note)).unwrap_or_default();
        assert_eq!(decode(body.as_bytes()), vec![note.clone()]);
        // The shape pages read: a clinic id string, a count, receptions with an RFC 3339 time.
        let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        assert_eq!(json[0]["clinic"], note.clinic.to_string());
        assert_eq!(json[0]["receptions"][0]["at"], "2026-12-07T09:15:00+09:00");
        assert_eq!(json[0]["receptions"][0]["method"], "myna_card");
        let single = serde_json::to_string(&note).unwrap_or_default();
        assert_eq!(decode(single.as_bytes()), vec![note]);
        assert!(decode(b"not json").is_empty());
        assert!(decode(br#"{"clinic":"nope","visits":1}"#).is_empty());
        // A note that does not read is skipped, not the message.
        let mixed = format!(r#"[{{"clinic":"{}","visits":1,"receptions":[{{"at":null}}]}},{single}]"#, ClinicId::new());
        assert_eq!(decode(mixed.as_bytes()).len(), 1);
    }
}
