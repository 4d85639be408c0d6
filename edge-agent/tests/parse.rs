//! The result-file parser against generated files in both encodings, truncated files, hostile XML and
//! arbitrary bytes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use onshi_agent::oqs::{FileEncoding, ParseContext, ParseError, TimeSource, parse_file};
use onshi_agent::simulate::{Confirmation, Outcome, Person, bulk_file, confirmation_file};
use onshi_domain::{
    ConfirmationMethod, EventPayload, MedicalInstitutionCode, PatientRef, QualificationResult, mynumber,
};
use proptest::prelude::*;
use time::macros::datetime;

const CODE: &str = "1311234560";

fn ctx() -> ParseContext {
    ParseContext { clinic: Some(MedicalInstitutionCode::parse(CODE).unwrap()), pseudonym_key: b"tenant-key".to_vec() }
}

fn person() -> Person {
    Person {
        insurer: "06139999".into(),
        symbol: "１２３".into(),
        number: "0012345".into(),
        branch: "00".into(),
        name: "髙橋　﨑子".into(),
        kana: "ﾀｶﾊｼ ｻｷｺ".into(),
        birthdate: "19800101".into(),
    }
}

fn confirmation(card: bool, outcome: Outcome) -> Confirmation {
    Confirmation {
        at: datetime!(2026-11-25 09:30:15 +09:00),
        clinic_code: CODE.into(),
        card,
        person: person(),
        outcome,
        consents: if card { [Some(true), Some(false), Some(true), None] } else { [None; 4] },
        limit_certificate: card,
    }
}

fn qualification(payload: &EventPayload) -> &onshi_domain::QualificationCheck {
    match payload {
        EventPayload::Qualification(q) => q,
        _ => panic!("not a qualification"),
    }
}

#[test]
fn a_card_read_in_either_encoding_becomes_the_same_event() {
    let mut seen = Vec::new();
    for encoding in [FileEncoding::Utf8, FileEncoding::ShiftJis] {
        let file = confirmation_file(&confirmation(true, Outcome::Valid), encoding, 1);
        let parsed = parse_file(&file.name, &file.bytes, &ctx()).unwrap();
        assert_eq!(parsed.encoding, encoding);
        assert_eq!(parsed.events.len(), 1);
        let event = &parsed.events[0];
        assert_eq!(event.occurred_at, datetime!(2026-11-25 09:30:15 +09:00));
        let q = qualification(&event.payload);
        assert_eq!(q.method, ConfirmationMethod::MynaCard);
        assert_eq!(q.result, QualificationResult::Valid);
        assert!(!q.batch);
        assert_eq!(q.consents.medication, Some(true));
        assert_eq!(q.consents.diagnosis, Some(false));
        assert_eq!(q.consents.checkup, Some(true));
        assert_eq!(q.consents.surgery, None);
        assert!(q.limit_certificate);
        // The pseudonym is of the identifiers, normalised: half-width 記号 gives the same person.
        let expected = PatientRef::pseudonymize(b"tenant-key", "06139999", "123", "0012345", "00");
        assert_eq!(q.patient.as_ref(), Some(&expected));
        seen.push(q.clone());
    }
    assert_eq!(seen[0], seen[1]);
}

#[test]
fn a_numbers_query_is_not_a_myna_use() {
    let file = confirmation_file(&confirmation(false, Outcome::Invalid), FileEncoding::Utf8, 2);
    let parsed = parse_file(&file.name, &file.bytes, &ctx()).unwrap();
    let q = qualification(&parsed.events[0].payload);
    assert_eq!(q.method, ConfirmationMethod::NumberQuery);
    assert!(!q.method.is_myna());
    assert_eq!(q.result, QualificationResult::Invalid);
    assert_eq!(q.consents, onshi_domain::Consents::default());
}

#[test]
fn several_candidates_are_never_matched_to_a_patient() {
    let file = confirmation_file(&confirmation(false, Outcome::Multiple), FileEncoding::Utf8, 3);
    let q = parse_file(&file.name, &file.bytes, &ctx()).unwrap().events.remove(0);
    let q = qualification(&q.payload);
    assert_eq!(q.result, QualificationResult::Multiple);
    assert!(q.patient.is_none());
}

#[test]
fn results_that_are_not_valid_carry_the_insurer_and_valid_ones_do_not() {
    let insurer = |card: bool, outcome: Outcome| {
        let file = confirmation_file(&confirmation(card, outcome), FileEncoding::ShiftJis, 7);
        let parsed = parse_file(&file.name, &file.bytes, &ctx()).unwrap();
        qualification(&parsed.events[0].payload).insurer.as_ref().map(|i| i.as_str().to_owned())
    };
    assert_eq!(insurer(true, Outcome::Valid), None, "nothing extra leaves for a valid result");
    assert_eq!(insurer(true, Outcome::Invalid).as_deref(), Some("06139999"));
    assert_eq!(insurer(false, Outcome::NewQualification).as_deref(), Some("06139999"));
    assert_eq!(insurer(false, Outcome::Multiple).as_deref(), Some("06139999"), "candidates that agree");
    // Nobody found: the insurer the query asked about; a card read asked for none.
    assert_eq!(insurer(false, Outcome::NotFound).as_deref(), Some("06139999"));
    assert_eq!(insurer(true, Outcome::NotFound), None);
    assert_eq!(insurer(false, Outcome::Error("EQCS3001")).as_deref(), Some("06139999"));
}

#[test]
fn a_terminal_error_keeps_its_code() {
    let file = confirmation_file(&confirmation(true, Outcome::Error("EQCS3001")), FileEncoding::ShiftJis, 4);
    let parsed = parse_file(&file.name, &file.bytes, &ctx()).unwrap();
    let q = qualification(&parsed.events[0].payload);
    assert_eq!(q.result, QualificationResult::Error);
    assert_eq!(q.error_code.as_deref(), Some("EQCS3001"));
    assert!(q.patient.is_none());
}

#[test]
fn a_bulk_result_yields_one_batch_event_per_patient() {
    let list: Vec<_> = (0..4).map(|_| confirmation(false, Outcome::Valid)).collect();
    let file = bulk_file(&list, FileEncoding::Utf8, 5);
    let parsed = parse_file(&file.name, &file.bytes, &ctx()).unwrap();
    assert_eq!(parsed.events.len(), 4);
    assert!(parsed.events.iter().all(|e| qualification(&e.payload).batch));
    let ids: std::collections::HashSet<_> = parsed.events.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), 4);
}

#[test]
fn the_same_bytes_always_give_the_same_event_ids() {
    let file = confirmation_file(&confirmation(true, Outcome::Valid), FileEncoding::Utf8, 6);
    let a = parse_file(&file.name, &file.bytes, &ctx()).unwrap();
    // Same content under another name (the 電子カルテ moved it to its trash folder): same identity.
    let b = parse_file(&file.name.replace("000006", "999999"), &file.bytes, &ctx()).unwrap();
    assert_eq!(a.content_hash, b.content_hash);
    assert_eq!(a.events[0].id, b.events[0].id);
}

#[test]
fn every_proper_prefix_of_a_file_is_refused() {
    for encoding in [FileEncoding::Utf8, FileEncoding::ShiftJis] {
        for file in [
            confirmation_file(&confirmation(true, Outcome::Valid), encoding, 7),
            bulk_file(&[confirmation(false, Outcome::Valid), confirmation(false, Outcome::Invalid)], encoding, 8),
        ] {
            let end = file.bytes.windows(9).rposition(|w| w == b"</XmlMsg>").unwrap() + 9;
            for cut in 0..end {
                assert!(parse_file(&file.name, &file.bytes[..cut], &ctx()).is_err(), "{} accepted at {cut}", file.name);
            }
            assert!(parse_file(&file.name, &file.bytes, &ctx()).is_ok());
        }
    }
}

#[test]
fn encoding_mismatches_are_refused_with_a_reason() {
    let utf8 = confirmation_file(&confirmation(true, Outcome::Valid), FileEncoding::Utf8, 9);
    let text = String::from_utf8(utf8.bytes.clone()).unwrap();
    // UTF-8 bytes labelled Shift_JIS.
    let relabelled = text.replacen("encoding=\"UTF-8\"", "encoding=\"MS932\"", 1);
    assert!(matches!(parse_file(&utf8.name, relabelled.as_bytes(), &ctx()), Err(ParseError::Encoding(_))));
    // Declaration and CharacterCodeIdentifier disagree.
    let wrong_ident = text.replace("<CharacterCodeIdentifier>0<", "<CharacterCodeIdentifier>1<");
    assert!(matches!(parse_file(&utf8.name, wrong_ident.as_bytes(), &ctx()), Err(ParseError::EncodingMismatch { .. })));
    // Shift_JIS bytes labelled UTF-8.
    let sjis = confirmation_file(&confirmation(true, Outcome::Valid), FileEncoding::ShiftJis, 10);
    let mut bytes = sjis.bytes.clone();
    let label = b"Shift_JIS\"";
    let at = bytes.windows(label.len()).position(|w| w == label).unwrap();
    bytes.splice(at..at + label.len() - 1, b"UTF-8".iter().copied());
    assert!(matches!(parse_file(&sjis.name, &bytes, &ctx()), Err(ParseError::Encoding(_))));
}

#[test]
fn a_file_of_another_clinic_is_refused() {
    let mut c = confirmation(true, Outcome::Valid);
    c.clinic_code = "1311234561".into();
    let file = confirmation_file(&c, FileEncoding::Utf8, 11);
    let err = parse_file(&file.name, &file.bytes, &ctx()).unwrap_err();
    assert_eq!(err, ParseError::WrongClinic { found: "1311234561".into() });
}

#[test]
fn hostile_xml_is_refused() {
    let name = "OQSsiquc01res_face_000001_20261125093015.xml";
    let laughs = format!(
        "<?xml version=\"1.0\"?><!DOCTYPE XmlMsg [<!ENTITY a \"{}\">{}]><XmlMsg>&a9;</XmlMsg>",
        "x".repeat(10),
        (1..10).map(|i| format!("<!ENTITY a{i} \"{}\">", format!("&a{};", i - 1).repeat(10))).collect::<String>()
    );
    assert_eq!(parse_file(name, laughs.as_bytes(), &ctx()).unwrap_err(), ParseError::DocType);
    let xxe = "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><XmlMsg>&e;</XmlMsg>";
    assert_eq!(parse_file(name, xxe.as_bytes(), &ctx()).unwrap_err(), ParseError::DocType);
    let deep = format!("<XmlMsg>{}{}</XmlMsg>", "<a>".repeat(100_000), "</a>".repeat(100_000));
    assert_eq!(parse_file(name, deep.as_bytes(), &ctx()).unwrap_err(), ParseError::TooDeep);
    let huge = vec![b' '; 17 * 1024 * 1024];
    assert!(matches!(parse_file(name, &huge, &ctx()), Err(ParseError::TooLarge(_))));
}

#[test]
fn no_individual_number_leaves_in_any_event() {
    // A check-digit-valid 個人番号 planted in every free-text place of the file.
    let digits: Vec<u32> = "12345678901".chars().map(|c| c.to_digit(10).unwrap()).collect();
    let sum: u32 =
        digits.iter().rev().enumerate().map(|(i, d)| d * if i < 6 { i as u32 + 2 } else { i as u32 - 4 }).sum();
    let check = if sum % 11 <= 1 { 0 } else { 11 - sum % 11 };
    let number = format!("12345678901{check}");
    assert!(mynumber::is_individual_number(&number));
    let mut c = confirmation(true, Outcome::Error("EQCS3001"));
    c.person.name = format!("髙橋 {number}");
    c.person.number = number.clone();
    let file = confirmation_file(&c, FileEncoding::Utf8, 12);
    let text = String::from_utf8(file.bytes).unwrap().replace("EQCS3001", &number);
    let parsed = parse_file(&file.name, text.as_bytes(), &ctx()).unwrap();
    let json = serde_json::to_string(&parsed.events).unwrap();
    assert!(!mynumber::contains_individual_number(&json), "{json}");
    assert!(!json.contains(&number));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = parse_file("OQSsiquc01res_face_000001_20261125093015.xml", &bytes, &ctx());
    }

    #[test]
    fn any_damage_to_a_valid_file_is_either_refused_or_still_for_this_clinic(
        flip in 0usize..1500, value in any::<u8>()
    ) {
        let file = confirmation_file(&confirmation(true, Outcome::Valid), FileEncoding::Utf8, 13);
        let mut bytes = file.bytes.clone();
        let i = flip % bytes.len();
        bytes[i] = value;
        if let Ok(parsed) = parse_file(&file.name, &bytes, &ctx()) {
            for e in parsed.events {
                prop_assert_eq!(&qualification(&e.payload).institution_code.to_string(), CODE);
            }
        }
    }
}

// ---- When it happened: the header's time, else the file name's, else refused.

/// A card read whose header time is replaced by `element` (nothing, or an empty element).
fn without_header_time(encoding: FileEncoding, element: &str) -> Vec<u8> {
    let file = confirmation_file(&confirmation(true, Outcome::Valid), encoding, 20);
    let text = match encoding {
        FileEncoding::Utf8 => String::from_utf8(file.bytes).unwrap(),
        FileEncoding::ShiftJis => encoding_rs::SHIFT_JIS.decode(&file.bytes).0.into_owned(),
    };
    let text = text.replace("<ProcessExecutionTime>20261125093015</ProcessExecutionTime>", element);
    assert!(!text.contains("<ProcessExecutionTime>2026"), "the header time was not removed");
    match encoding {
        FileEncoding::Utf8 => text.into_bytes(),
        FileEncoding::ShiftJis => encoding_rs::SHIFT_JIS.encode(&text).0.into_owned(),
    }
}

#[test]
fn the_header_time_is_used_when_the_header_has_one() {
    let file = confirmation_file(&confirmation(true, Outcome::Valid), FileEncoding::Utf8, 21);
    // The name says another time; the header wins.
    for name in [file.name.clone(), "OQSsiquc01res_face_000003_20261126052802.xml".to_owned()] {
        let parsed = parse_file(&name, &file.bytes, &ctx()).unwrap();
        assert_eq!(parsed.time_source, TimeSource::Header);
        assert_eq!(parsed.events[0].occurred_at, datetime!(2026-11-25 09:30:15 +09:00));
    }
}

#[test]
fn without_a_header_time_the_file_name_gives_it() {
    let at = datetime!(2026-11-26 05:28:02 +09:00);
    for encoding in [FileEncoding::Utf8, FileEncoding::ShiftJis] {
        for element in [
            "",
            "<ProcessExecutionTime></ProcessExecutionTime>",
            "<ProcessExecutionTime/>",
            "<ProcessExecutionTime> </ProcessExecutionTime>",
        ] {
            let bytes = without_header_time(encoding, element);
            for name in ["OQSsiquc01res_face_000003_20261126052802.xml", "OQSsiquc01res_20261126052802000001.xml"] {
                let parsed = parse_file(name, &bytes, &ctx()).unwrap_or_else(|e| panic!("{name} {element:?}: {e}"));
                assert_eq!(parsed.time_source, TimeSource::FileName, "{name}");
                assert_eq!(parsed.events.len(), 1);
                assert_eq!(parsed.events[0].occurred_at, at, "{name}");
            }
        }
    }
    // A bulk answer too, for each of its events.
    let list: Vec<_> = (0..3).map(|_| confirmation(false, Outcome::Valid)).collect();
    let bulk = bulk_file(&list, FileEncoding::Utf8, 22);
    let text = String::from_utf8(bulk.bytes)
        .unwrap()
        .replace("<ProcessExecutionTime>20261125093015</ProcessExecutionTime>", "");
    let parsed = parse_file("OQSmuquc02res_20261126052802000022.xml", text.as_bytes(), &ctx()).unwrap();
    assert_eq!(parsed.time_source, TimeSource::FileName);
    assert!(parsed.events.iter().all(|e| e.occurred_at == at));
}

#[test]
fn a_time_from_the_name_is_part_of_the_results_identity() {
    // The same document under two names with different times is two confirmations, not one: were their
    // ids equal, the cloud would see one id with two different times and refuse the second as a conflict.
    let bytes = without_header_time(FileEncoding::Utf8, "");
    let a = parse_file("OQSsiquc01res_face_000003_20261126052802.xml", &bytes, &ctx()).unwrap();
    let b = parse_file("OQSsiquc01res_face_000004_20261126052803.xml", &bytes, &ctx()).unwrap();
    assert_ne!(a.content_hash, b.content_hash);
    assert_ne!(a.events[0].id, b.events[0].id);
    // The same name again (the trash folder keeps it): the same result.
    let c = parse_file("OQSsiquc01res_face_000003_20261126052802.xml", &bytes, &ctx()).unwrap();
    assert_eq!(a.events, c.events);
}

#[test]
fn a_file_with_no_time_anywhere_is_refused() {
    let bytes = without_header_time(FileEncoding::Utf8, "<ProcessExecutionTime></ProcessExecutionTime>");
    for name in ["OQSsiquc01res_12345.xml", "OQSsiquc01res_face_000003.xml", "OQSsiquc01res_99999999999999.xml"] {
        assert_eq!(parse_file(name, &bytes, &ctx()).unwrap_err(), ParseError::NoTime, "{name}");
    }
    // A header time that is there but is not a time is refused as such, whatever the name says.
    let file = confirmation_file(&confirmation(true, Outcome::Valid), FileEncoding::Utf8, 23);
    let text = String::from_utf8(file.bytes).unwrap().replace(">20261125093015<", ">2026-11-25<");
    assert_eq!(
        parse_file(&file.name, text.as_bytes(), &ctx()).unwrap_err(),
        ParseError::Invalid("ProcessExecutionTime")
    );
}

// ---- One result, one identity: bytes that do not change the document do not change the events.

#[test]
fn whitespace_and_bytes_outside_the_root_do_not_change_a_results_identity() {
    let file = confirmation_file(&confirmation(true, Outcome::Valid), FileEncoding::Utf8, 24);
    let original = parse_file(&file.name, &file.bytes, &ctx()).unwrap();
    let text = String::from_utf8(file.bytes.clone()).unwrap();
    let mut with_bom = vec![0xEF, 0xBB, 0xBF];
    with_bom.extend_from_slice(&file.bytes);
    let variants: Vec<(&str, Vec<u8>)> = vec![
        ("trailing CRLF", [file.bytes.as_slice(), b"\r\n"].concat()),
        ("trailing blanks", [file.bytes.as_slice(), b"\n\n  \t\r\n"].concat()),
        ("CRLF line ends", text.replace('\n', "\r\n").into_bytes()),
        ("no indentation", text.lines().map(str::trim).collect::<String>().into_bytes()),
        ("a byte order mark", with_bom),
        ("a comment after the root", format!("{text}\n<!-- copied by the EMR -->\n").into_bytes()),
        ("blanks around a value", text.replace("<InsurerNumber>06139999<", "<InsurerNumber> 06139999 <").into_bytes()),
    ];
    for (what, bytes) in variants {
        assert_ne!(bytes, file.bytes, "{what}");
        let parsed = parse_file(&file.name, &bytes, &ctx()).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(parsed.content_hash, original.content_hash, "{what}");
        assert_eq!(parsed.events, original.events, "{what}");
    }
}

#[test]
fn a_re_encoded_result_keeps_its_identity() {
    let c = confirmation(true, Outcome::Valid);
    let utf8 = confirmation_file(&c, FileEncoding::Utf8, 25);
    let sjis = confirmation_file(&c, FileEncoding::ShiftJis, 25);
    assert_eq!(utf8.name, sjis.name);
    assert_ne!(utf8.bytes, sjis.bytes);
    let a = parse_file(&utf8.name, &utf8.bytes, &ctx()).unwrap();
    let b = parse_file(&sjis.name, &sjis.bytes, &ctx()).unwrap();
    assert_eq!((a.encoding, b.encoding), (FileEncoding::Utf8, FileEncoding::ShiftJis));
    assert_eq!(a.content_hash, b.content_hash);
    assert_eq!(a.events, b.events);
}

#[test]
fn any_change_to_the_document_is_another_result() {
    let file = confirmation_file(&confirmation(true, Outcome::Valid), FileEncoding::Utf8, 26);
    let original = parse_file(&file.name, &file.bytes, &ctx()).unwrap();
    let text = String::from_utf8(file.bytes.clone()).unwrap();
    for (what, changed) in [
        ("another second", text.replace(">20261125093015<", ">20261125093016<")),
        (
            "a value no event uses",
            text.replace("<ArbitraryFileIdentifier/>", "<ArbitraryFileIdentifier>x</ArbitraryFileIdentifier>"),
        ),
        (
            "a value moved to the next element",
            text.replace("<Sex1>1</Sex1>\n        <Birthdate>", "<Sex1></Sex1>\n        <Birthdate>1"),
        ),
    ] {
        assert_ne!(changed, text, "{what}");
        let parsed = parse_file(&file.name, changed.as_bytes(), &ctx()).unwrap();
        assert_ne!(parsed.content_hash, original.content_hash, "{what}");
        assert_ne!(parsed.events[0].id, original.events[0].id, "{what}");
    }
    // The same document named as another kind of file is another result too (its events differ).
    let as_single = parse_file("OQSsiquc01res_20261125093015000026.xml", &file.bytes, &ctx()).unwrap();
    assert_ne!(as_single.content_hash, original.content_hash);
}
