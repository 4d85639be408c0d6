//! `XmlMsg` → events. Element names follow the terminal's interface; where producers differ (consent
//! element spellings, nesting of consent blocks) we look elements up by name anywhere below the result.

use onshi_domain::{
    AgentEvent, ConfirmationMethod, Consents, EventId, EventPayload, InsurerNumber, MedicalInstitutionCode, PatientRef,
    QualificationCheck, QualificationResult, TimeSource, mynumber,
};
use sha2::{Digest, Sha256};
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

use super::xml::Element;
use super::{FileEncoding, FileKind, MAX_FILE_BYTES, ParseError, decode, file_name_time, parse_xml};

/// What the parser needs to know about the clinic it runs at.
#[derive(Clone)]
pub struct ParseContext {
    /// The enrolled clinic; a file for another code is refused. `None` only for `onshi-agent parse` on a
    /// machine that is not enrolled.
    pub clinic: Option<MedicalInstitutionCode>,
    /// The tenant's pseudonymisation key (from enrollment).
    pub pseudonym_key: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub kind: FileKind,
    pub encoding: FileEncoding,
    /// The identity of the result, whatever its path and bytes: SHA-256 over the parsed document (see
    /// `result_identity`), so whitespace, bytes outside the root element and the file's encoding do not
    /// count. Equal hashes mean equal events.
    pub content_hash: String,
    pub time_source: TimeSource,
    pub events: Vec<AgentEvent>,
}

pub(crate) fn parse_jst_timestamp(digits: &str) -> Option<OffsetDateTime> {
    if digits.len() != 14 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| digits[r].parse::<u32>().ok();
    let date = Date::from_calendar_date(n(0..4)? as i32, Month::try_from(n(4..6)? as u8).ok()?, n(6..8)? as u8).ok()?;
    let time = Time::from_hms(n(8..10)? as u8, n(10..12)? as u8, n(12..14)? as u8).ok()?;
    Some(PrimitiveDateTime::new(date, time).assume_offset(onshi_domain::jst::JST))
}

/// The identity of a result: SHA-256 over everything its events are made from, and nothing else.
///
/// That is the element tree as the parser reads it: names and trimmed text (every value is read trimmed),
/// in document order, length-prefixed so no two trees feed the same bytes. Left out, because no event
/// depends on them: the XML declaration, comments, attributes, whitespace between elements, anything
/// outside the root element (a trailing CRLF), the encoding of the bytes, and `CharacterCodeIdentifier`,
/// which only names that encoding. Added, because events do depend on them: the file kind (from the name)
/// and, when the header has no time, the time taken from the name.
fn result_identity(kind: FileKind, root: &Element, named_time: Option<OffsetDateTime>) -> String {
    fn feed(hasher: &mut Sha256, element: &Element, skip: &dyn Fn(&Element, &Element) -> bool) {
        let text = element.text.trim();
        hasher.update((element.name.len() as u64).to_be_bytes());
        hasher.update(element.name.as_bytes());
        hasher.update((text.len() as u64).to_be_bytes());
        hasher.update(text.as_bytes());
        let children: Vec<&Element> = element.children.iter().filter(|c| !skip(element, c)).collect();
        hasher.update((children.len() as u64).to_be_bytes());
        for child in children {
            feed(hasher, child, skip);
        }
    }
    let mut hasher = Sha256::new();
    hasher.update(b"onshi-agent/result/v2\0");
    hasher.update([match kind {
        FileKind::Face => b'f',
        FileKind::Single => b's',
        FileKind::Bulk => b'b',
    }]);
    match named_time {
        Some(t) => {
            hasher.update([1]);
            hasher.update(t.unix_timestamp().to_be_bytes());
        }
        None => hasher.update([0]),
    }
    // The tree is at most `xml::MAX_DEPTH` deep, so the recursion is bounded.
    let skip =
        |parent: &Element, child: &Element| parent.name == "MessageHeader" && child.name == "CharacterCodeIdentifier";
    feed(&mut hasher, root, &skip);
    hex::encode(hasher.finalize())
}

/// Event ids derive from the result's identity, so the same result read twice (a rescan, a restart after
/// a crash, the same file in the trash folder, the same document with a trailing CRLF or re-encoded)
/// produces the same ids, and the cloud deduplicates even if the agent's own record of processed files
/// were lost.
fn event_id(content_hash: &str, index: usize) -> EventId {
    let digest = Sha256::new()
        .chain_update(b"onshi-agent/event-id/v2\0")
        .chain_update(content_hash.as_bytes())
        .chain_update((index as u64).to_be_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    EventId::from_uuid(uuid::Builder::from_custom_bytes(bytes).into_uuid())
}

fn flag(value: Option<&str>) -> Option<bool> {
    match value {
        Some("1") => Some(true),
        Some("0") | Some("2") => Some(false), // 2: consent expired (特定疾病) counts as not given
        _ => None,
    }
}

fn consents_of(result: &Element) -> Consents {
    Consents {
        medication: flag(
            result.text_of("PharmacistsInfoConsFlg").or_else(|| result.text_of("PharmaceuticalInfoConsFlg")),
        ),
        diagnosis: flag(result.text_of("DiagnosisInfoConsFlg")),
        checkup: flag(result.text_of("SpecificHealthCheckupsInfoConsFlg")),
        surgery: flag(result.text_of("OperationInfoConsFlg")),
    }
}

/// A terminal code worth passing on: short, plain, and never anything that looks like a 個人番号.
fn clean_code(code: Option<&str>) -> Option<String> {
    let code = code?.trim();
    let ok = !code.is_empty()
        && code.len() <= 32
        && code.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !mynumber::contains_individual_number(code);
    ok.then(|| code.to_owned())
}

fn validity(value: Option<&str>) -> Option<QualificationResult> {
    match value? {
        "1" => Some(QualificationResult::Valid),
        "2" => Some(QualificationResult::Invalid),
        "3" => Some(QualificationResult::InvalidNewQualification),
        "4" => Some(QualificationResult::NotFound),
        "5" => Some(QualificationResult::Multiple),
        _ => None,
    }
}

fn patient_of(ctx: &ParseContext, result: &Element) -> Option<PatientRef> {
    let insurer = result.text_of("InsurerNumber")?;
    let number = result.text_of("InsuredIdentificationNumber")?;
    let symbol = result.text_of("InsuredCardSymbol").unwrap_or("");
    let branch = result.text_of("InsuredBranchNumber").unwrap_or("");
    Some(PatientRef::pseudonymize(&ctx.pseudonym_key, insurer, symbol, number, branch))
}

/// The 保険者番号 of a result that is not valid: the result's own (for several candidates, theirs when they
/// agree); when nobody was found, the one the query asked about (`QualificationConfirmSearchInfo`, the
/// echo of a numbers query). An insurer's number, not a person's: it lets the desk follow results up by
/// insurer without any identifier of the patient leaving the clinic.
fn insurer_of(results: &[&Element], body: Option<&Element>) -> Option<InsurerNumber> {
    let candidates: Vec<InsurerNumber> =
        results.iter().filter_map(|r| r.text_of("InsurerNumber").and_then(InsurerNumber::parse)).collect();
    match candidates.split_first() {
        Some((first, rest)) if rest.iter().all(|n| n == first) => Some(first.clone()),
        Some(_) => None,
        None => body
            .and_then(|b| b.child("QualificationConfirmSearchInfo"))
            .and_then(|s| s.text_of("InsurerNumber"))
            .and_then(InsurerNumber::parse),
    }
}

/// Parses one result file into events. `file_name` decides the kind; the bytes decide everything else.
pub fn parse_file(file_name: &str, bytes: &[u8], ctx: &ParseContext) -> Result<Parsed, ParseError> {
    let kind = FileKind::of(file_name).ok_or(ParseError::NotAResult("file name is not a result file name"))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(ParseError::TooLarge(bytes.len() as u64));
    }
    let (text, encoding) = decode(bytes)?;
    let root = parse_xml(&text)?;
    if root.name != "XmlMsg" {
        return Err(ParseError::NotAResult("root element is not XmlMsg"));
    }
    let header = root.child("MessageHeader").ok_or(ParseError::Missing("MessageHeader"))?;
    let body = root.child("MessageBody");

    match (header.text_of("CharacterCodeIdentifier"), encoding) {
        (Some("0"), FileEncoding::Utf8) | (Some("1"), FileEncoding::ShiftJis) | (None, _) => {}
        (Some(other), declared) => {
            return Err(ParseError::EncodingMismatch {
                declared: declared.label(),
                identifier: other.chars().take(4).collect(),
            });
        }
    }

    let code_text = header.text_of("MedicalInstitutionCode").ok_or(ParseError::Missing("MedicalInstitutionCode"))?;
    let code = MedicalInstitutionCode::parse(code_text).map_err(|_| ParseError::Invalid("MedicalInstitutionCode"))?;
    if let Some(expected) = &ctx.clinic
        && &code != expected
    {
        return Err(ParseError::WrongClinic { found: code.to_string() });
    }
    // The header's time when it has one (a malformed one is refused: the file is not what we think it
    // is); when it has none, the time in the file name; when neither, the file is refused.
    let (occurred_at, time_source) = match header.text_of("ProcessExecutionTime") {
        Some(t) => (parse_jst_timestamp(t).ok_or(ParseError::Invalid("ProcessExecutionTime"))?, TimeSource::Header),
        None => (file_name_time(file_name).ok_or(ParseError::NoTime)?, TimeSource::FileName),
    };
    let content_hash = result_identity(kind, &root, (time_source == TimeSource::FileName).then_some(occurred_at));
    let method = match header.text_of("ReferenceClassification") {
        Some("1") => ConfirmationMethod::MynaCard,
        Some("2") => ConfirmationMethod::NumberQuery,
        // A face file is a card read by definition.
        None if kind == FileKind::Face => ConfirmationMethod::MynaCard,
        None => ConfirmationMethod::NumberQuery,
        Some(_) => return Err(ParseError::Invalid("ReferenceClassification")),
    };

    // 処理中 (SegmentOfResult 2) is not a result yet; the terminal rewrites the file when it is done.
    if header.text_of("SegmentOfResult") == Some("2") {
        return Err(ParseError::NotAResult("processing is still in progress (SegmentOfResult 2)"));
    }
    let failed = header.text_of("SegmentOfResult") == Some("9")
        || body.and_then(|b| b.text_of("ProcessingResultStatus")) == Some("2");
    let error_code = clean_code(header.text_of("ErrorCode"))
        .or_else(|| clean_code(body.and_then(|b| b.text_of("ProcessingResultCode"))));

    let results: Vec<&Element> = body
        .and_then(|b| b.find("ResultList"))
        .map(|list| list.children_named("ResultOfQualificationConfirmation").collect())
        .unwrap_or_default();
    let body_validity = body.and_then(|b| b.child("QualificationValidity")).map(|e| e.text.trim());

    let make = |index: usize, batch: bool, result: QualificationResult, from: Option<&Element>| AgentEvent {
        id: event_id(&content_hash, index),
        occurred_at,
        payload: EventPayload::Qualification(QualificationCheck {
            institution_code: code.clone(),
            method,
            identity_check: None,
            batch,
            result,
            error_code: if result == QualificationResult::Valid { None } else { error_code.clone() },
            patient: from.filter(|_| !matches!(result, QualificationResult::Multiple)).and_then(|r| patient_of(ctx, r)),
            insurer: match result {
                QualificationResult::Valid => None,
                QualificationResult::Multiple if !batch => insurer_of(&results, body),
                _ => insurer_of(from.as_slice(), body),
            },
            consents: from.map(consents_of).unwrap_or_default(),
            limit_certificate: from.is_some_and(|r| r.find("LimitApplicationCertificateRelatedInfo").is_some()),
            time_source,
        }),
    };

    let events = if failed {
        vec![make(0, kind == FileKind::Bulk, QualificationResult::Error, None)]
    } else if kind == FileKind::Bulk {
        if results.is_empty() {
            return Err(ParseError::Missing("ResultOfQualificationConfirmation"));
        }
        results
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let v = validity(r.text_of("QualificationValidity").or(body_validity))
                    .unwrap_or(QualificationResult::Error);
                make(i, true, v, Some(r))
            })
            .collect()
    } else {
        let v = validity(body_validity.or_else(|| results.first().and_then(|r| r.text_of("QualificationValidity"))))
            .ok_or(ParseError::Missing("QualificationValidity"))?;
        // More than one candidate must never be matched to a patient automatically.
        let v = if results.len() > 1 { QualificationResult::Multiple } else { v };
        vec![make(0, false, v, results.first().copied())]
    };
    Ok(Parsed { kind, encoding, content_hash, time_source, events })
}
