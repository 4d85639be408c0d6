//! Any bytes as a result file: the parser must not panic, must stay within its limits, whatever it accepts
//! must be for the enrolled clinic, and no 個人番号 present in the file may appear in an event.
//! (Event ids and pseudonyms are generated hex and can contain digit runs that merely look like one, so
//! the check is against the numbers actually present in the input.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use onshi_agent::oqs::{ParseContext, parse_file};
use onshi_domain::{EventPayload, MedicalInstitutionCode, mynumber};

/// Maximal runs of exactly twelve ASCII digits in the input that pass the 個人番号 check digit.
fn individual_numbers(data: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(data);
    text.split(|c: char| !c.is_ascii_digit())
        .filter(|run| run.len() == 12 && mynumber::is_individual_number(run))
        .map(str::to_owned)
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let ctx = ParseContext { clinic: MedicalInstitutionCode::parse("1311234560").ok(), pseudonym_key: b"fuzz".to_vec() };
    let planted = individual_numbers(data);
    for name in ["OQSsiquc01res_face_000001_20261125093015.xml", "OQSmuquc02res_000002.xml"] {
        if let Ok(parsed) = parse_file(name, data, &ctx) {
            for event in &parsed.events {
                if let EventPayload::Qualification(q) = &event.payload {
                    assert_eq!(q.institution_code.as_str(), "1311234560");
                    if let Some(code) = &q.error_code {
                        assert!(!mynumber::contains_individual_number(code));
                    }
                }
            }
            let json = serde_json::to_string(&parsed.events).unwrap_or_default();
            for number in &planted {
                assert!(!json.contains(number.as_str()));
            }
        }
    }
});
