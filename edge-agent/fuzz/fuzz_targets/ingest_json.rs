//! Any bytes as an ingest request body: decoding and validation must not panic, and an accepted batch
//! must survive a serialise/parse round trip unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use onshi_domain::{EventBatch, MedicalInstitutionCode};

fuzz_target!(|data: &[u8]| {
    if let Ok(batch) = EventBatch::from_json(data) {
        let code = MedicalInstitutionCode::parse("1311234560").ok();
        if let Some(code) = code {
            let _ = batch.validate(&code, time_now());
        }
        let again = serde_json::to_vec(&batch).unwrap_or_default();
        assert_eq!(EventBatch::from_json(&again).ok(), Some(batch));
    }
});

fn time_now() -> onshi_domain::reexports::OffsetDateTime {
    onshi_domain::reexports::OffsetDateTime::now_utc()
}
