//! Any bytes as a result file: the parser must not panic, must stay within its limits, and whatever it
//! accepts must be for the enrolled clinic and carry no 個人番号.
#![no_main]

use libfuzzer_sys::fuzz_target;
use onshi_agent::oqs::{ParseContext, parse_file};
use onshi_domain::{EventPayload, MedicalInstitutionCode, mynumber};

fuzz_target!(|data: &[u8]| {
    let ctx = ParseContext { clinic: MedicalInstitutionCode::parse("1311234560").ok(), pseudonym_key: b"fuzz".to_vec() };
    for name in ["OQSsiquc01res_face_000001_20261125093015.xml", "OQSmuquc02res_000002.xml"] {
        if let Ok(parsed) = parse_file(name, data, &ctx) {
            for event in &parsed.events {
                if let EventPayload::Qualification(q) = &event.payload {
                    assert_eq!(q.institution_code.as_str(), "1311234560");
                }
            }
            let json = serde_json::to_string(&parsed.events).unwrap_or_default();
            assert!(!mynumber::contains_individual_number(&json));
        }
    }
});
