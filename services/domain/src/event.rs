//! The event schema that agents send and the cloud ingests (`POST /api/v1/events`), version 1.
//!
//! An agent turns each 資格確認 result (and each heartbeat) into one `AgentEvent` with a UUID it generates
//! once and keeps across retries. The cloud treats (tenant, device, event id) as the idempotency key.
//! The schema carries no names, birth dates or insurance numbers: a patient is a keyed pseudonym
//! (`PatientRef`), computed at the clinic.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::codes::MedicalInstitutionCode;
use crate::ids::EventId;
use crate::mynumber::contains_individual_number;

/// Most events one request may carry. Agents send at most this many; larger batches are refused whole.
pub const MAX_BATCH_EVENTS: usize = 1000;

/// A problem with one field of a request, named by its JSON path (`events[3].occurred_at`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, utoipa::ToSchema)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventBatch {
    pub events: Vec<AgentEvent>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AgentEvent {
    pub id: EventId,
    /// When the thing happened at the clinic, with its offset (the terminal writes JST).
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    pub payload: EventPayload,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventPayload {
    /// One 資格確認 result: a patient at reception, or one patient of a bulk check.
    Qualification(QualificationCheck),
    /// The agent's periodic health report.
    Heartbeat(Heartbeat),
    /// A month's claims from the clinic's レセ電 file (`onshi-agent uke import`), one event per file.
    Claims(crate::claims::ClaimsFile),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QualificationCheck {
    /// The 医療機関コード in the result file's header; must be the enrolled clinic's.
    pub institution_code: MedicalInstitutionCode,
    pub method: ConfirmationMethod,
    /// How the card holder was identified at the reader, when the reader side reports it. The result
    /// file itself has no element for this, so agents leave it out rather than guess.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_check: Option<IdentityCheck>,
    /// Part of a bulk check (一括照会): not a reception, not a マイナ保険証 use.
    #[serde(default)]
    pub batch: bool,
    pub result: QualificationResult,
    /// The terminal's error or notice code, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// Keyed pseudonym of the insured person; absent when the check found nobody.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<PatientRef>,
    /// The 保険者番号 of a result that is not valid (from the result, or from the query when nobody was
    /// found), for following it up by insurer; agents leave it out of valid results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insurer: Option<crate::codes::InsurerNumber>,
    #[serde(default)]
    pub consents: Consents,
    /// Whether 限度額適用認定証 information came with the result.
    #[serde(default)]
    pub limit_certificate: bool,
    /// Where `occurred_at` came from; left out when from the header, as the interface intends.
    #[serde(default, skip_serializing_if = "TimeSource::is_header")]
    pub time_source: TimeSource,
}

/// Where a result's `occurred_at` came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TimeSource {
    /// The result header's `ProcessExecutionTime`.
    #[default]
    Header,
    /// The header had none; the time in the result's file name (to the second, the terminal's clock).
    FileName,
}

impl TimeSource {
    pub fn is_header(&self) -> bool {
        *self == TimeSource::Header
    }
}

/// How the patient's insurance was confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConfirmationMethod {
    /// マイナ保険証 (the card) on the face-recognition reader.
    MynaCard,
    /// マイナ保険証 on a smartphone (since 2025-09-19).
    MynaSmartphone,
    /// The old 健康保険証, checked by its numbers.
    InsuranceCard,
    /// 資格確認書, checked by its numbers.
    EligibilityCertificate,
    /// Numbers typed or queried without saying which document they came from.
    NumberQuery,
}

impl ConfirmationMethod {
    /// Whether this counts as a マイナ保険証 use towards 利用率.
    pub fn is_myna(self) -> bool {
        matches!(self, Self::MynaCard | Self::MynaSmartphone)
    }

    pub fn label_ja(self) -> &'static str {
        match self {
            Self::MynaCard => "マイナ保険証",
            Self::MynaSmartphone => "マイナ保険証(スマホ)",
            Self::InsuranceCard => "健康保険証",
            Self::EligibilityCertificate => "資格確認書",
            Self::NumberQuery => "番号照会",
        }
    }

    pub fn label_en(self) -> &'static str {
        match self {
            Self::MynaCard => "マイナ保険証 (card)",
            Self::MynaSmartphone => "マイナ保険証 (phone)",
            Self::InsuranceCard => "Health insurance card",
            Self::EligibilityCertificate => "Eligibility certificate",
            Self::NumberQuery => "Number query",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::MynaCard => "myna_card",
            Self::MynaSmartphone => "myna_smartphone",
            Self::InsuranceCard => "insurance_card",
            Self::EligibilityCertificate => "eligibility_certificate",
            Self::NumberQuery => "number_query",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::MynaCard, Self::MynaSmartphone, Self::InsuranceCard, Self::EligibilityCertificate, Self::NumberQuery]
            .into_iter()
            .find(|m| m.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IdentityCheck {
    Face,
    Pin,
    /// 目視確認: staff compared the face on the card.
    Visual,
}

impl IdentityCheck {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Face => "face",
            Self::Pin => "pin",
            Self::Visual => "visual",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Face, Self::Pin, Self::Visual].into_iter().find(|i| i.as_str() == s)
    }

    pub fn label_ja(self) -> &'static str {
        match self {
            Self::Face => "顔認証",
            Self::Pin => "暗証番号",
            Self::Visual => "目視確認",
        }
    }

    pub fn label_en(self) -> &'static str {
        match self {
            Self::Face => "Face recognition",
            Self::Pin => "PIN",
            Self::Visual => "Visual check by staff",
        }
    }

    /// An order for merging confirmations of one visit (the result must not depend on arrival order).
    fn rank(self) -> u8 {
        match self {
            Self::Face => 3,
            Self::Pin => 2,
            Self::Visual => 1,
        }
    }

    /// The stronger of two checks, for merging.
    pub fn stronger(a: Option<Self>, b: Option<Self>) -> Option<Self> {
        match (a, b) {
            (Some(x), Some(y)) => Some(if x.rank() >= y.rank() { x } else { y }),
            (x, None) => x,
            (None, y) => y,
        }
    }
}

/// `QualificationValidity` and processing status of the result file, folded into one outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum QualificationResult {
    /// 有効
    Valid,
    /// 無効
    Invalid,
    /// 無効 (新しい資格あり)
    InvalidNewQualification,
    /// 該当資格なし
    NotFound,
    /// 複数該当: must not be matched to a patient automatically.
    Multiple,
    /// The terminal reported an error (see `error_code`).
    Error,
}

impl QualificationResult {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Valid => "valid",
            Self::Invalid => "invalid",
            Self::InvalidNewQualification => "invalid_new_qualification",
            Self::NotFound => "not_found",
            Self::Multiple => "multiple",
            Self::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Valid, Self::Invalid, Self::InvalidNewQualification, Self::NotFound, Self::Multiple, Self::Error]
            .into_iter()
            .find(|r| r.as_str() == s)
    }

    pub fn label_ja(self) -> &'static str {
        match self {
            Self::Valid => "有効",
            Self::Invalid => "無効",
            Self::InvalidNewQualification => "無効(新資格あり)",
            Self::NotFound => "該当資格なし",
            Self::Multiple => "複数該当",
            Self::Error => "エラー",
        }
    }

    pub fn label_en(self) -> &'static str {
        match self {
            Self::Valid => "Valid",
            Self::Invalid => "Invalid",
            Self::InvalidNewQualification => "Invalid (new coverage exists)",
            Self::NotFound => "No coverage found",
            Self::Multiple => "Several matches",
            Self::Error => "Error",
        }
    }
}

/// The patient's consent to let the clinic view each kind of information; `None` when the result did not
/// say (a numbers query carries no consent).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Consents {
    /// 薬剤情報
    #[serde(default)]
    pub medication: Option<bool>,
    /// 診療情報
    #[serde(default)]
    pub diagnosis: Option<bool>,
    /// 特定健診
    #[serde(default)]
    pub checkup: Option<bool>,
    /// 手術情報
    #[serde(default)]
    pub surgery: Option<bool>,
}

impl Consents {
    /// Field-wise "consented at least once": consents given at any confirmation of a reception count.
    pub fn union(self, other: Consents) -> Consents {
        fn or(a: Option<bool>, b: Option<bool>) -> Option<bool> {
            match (a, b) {
                (None, x) | (x, None) => x,
                (Some(x), Some(y)) => Some(x || y),
            }
        }
        Consents {
            medication: or(self.medication, other.medication),
            diagnosis: or(self.diagnosis, other.diagnosis),
            checkup: or(self.checkup, other.checkup),
            surgery: or(self.surgery, other.surgery),
        }
    }
}

/// A keyed pseudonym of an insured person: HMAC-SHA256 (per-tenant key) over the normalised 保険者番号,
/// 記号, 番号 and 枝番, as 64 lowercase hex characters. Anything else is refused, so no raw identifier can
/// travel in this field.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PatientRef(String);

impl PatientRef {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(Self(s.to_owned()))
        } else {
            Err("a patient reference must be 64 lowercase hex characters (a keyed pseudonym)".to_owned())
        }
    }

    /// Pseudonymises the four insurance identifiers with the tenant's key. Fields are NFKC-normalised
    /// (full-width and half-width forms compare equal, as 記号 are typed both ways) and trimmed, then
    /// joined with a separator that cannot occur in them, so ("12", "3") and ("1", "23") differ. Leading
    /// zeros are kept: 番号 "0012" and "12" are different people.
    pub fn pseudonymize(key: &[u8], insurer: &str, symbol: &str, number: &str, branch: &str) -> Self {
        use hmac::{Hmac, Mac};
        type HmacSha256 = Hmac<sha2::Sha256>;
        let mut mac = match <HmacSha256 as Mac>::new_from_slice(key) {
            Ok(mac) => mac,
            // HMAC accepts keys of any length; this arm is unreachable in practice.
            Err(_) => return Self(String::new()),
        };
        for (i, part) in [insurer, symbol, number, branch].iter().enumerate() {
            if i > 0 {
                mac.update(&[0x1f]);
            }
            use unicode_normalization::UnicodeNormalization;
            let normalised: String = part.nfkc().collect();
            mac.update(normalised.trim().as_bytes());
        }
        Self(hex::encode(mac.finalize().into_bytes()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for PatientRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Even a pseudonym links visits of one person; keep it out of debug output.
        write!(f, "PatientRef({}…)", &self.0.get(..8).unwrap_or_default())
    }
}

impl TryFrom<String> for PatientRef {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        Self::parse(&value)
    }
}

impl From<PatientRef> for String {
    fn from(p: PatientRef) -> String {
        p.0
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Heartbeat {
    pub agent_version: String,
    /// Events buffered at the clinic and not yet accepted by the cloud.
    #[serde(default)]
    pub outbox_depth: u64,
    /// Age in seconds of the oldest undelivered event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_undelivered_secs: Option<u64>,
    /// Whether the card reader answered its configured check; `None` when no check is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reader_ok: Option<bool>,
    /// Whether the VPN / オン資 gateway probe succeeded; `None` when no probe is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_ok: Option<bool>,
    /// When the agent last read a result file.
    #[serde(default, with = "time::serde::rfc3339::option", skip_serializing_if = "Option::is_none")]
    pub last_result_at: Option<OffsetDateTime>,
    /// Largest amount, in seconds, by which a result file's name was ahead of the agent's clock since it
    /// started: the terminal's clock runs ahead. A name behind the clock is a file read late and is not
    /// counted (older agents sent the largest difference either way).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_skew_secs: Option<i64>,
    /// The outbox is full: the agent has stopped reading new files until it can deliver.
    #[serde(default)]
    pub backpressure: bool,
    /// Files set aside in quarantine since the agent started.
    #[serde(default)]
    pub quarantined: u64,
    /// Outbox rows that could not be read back, set aside (never delivered); kept across restarts.
    #[serde(default)]
    pub corrupt_outbox_rows: u64,
    /// Results since the agent started whose header had no `ProcessExecutionTime`, timed by file name.
    #[serde(default)]
    pub timed_by_file_name: u64,
    /// The most recent quarantine since the agent started: why (a category, never the file's content or
    /// name) and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_quarantine: Option<QuarantineNote>,
}

/// Why a result file was set aside, as a category a clinic can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum QuarantineKind {
    /// The file's 医療機関コード is not the enrolled clinic's (an agent enrolled for another clinic, or a
    /// simulator writing the wrong code).
    WrongClinic,
    /// Not readable as a result: encoding, malformed or truncated XML, too large.
    Unreadable,
    /// Readable, but not a 資格確認 result, or a required element is missing or invalid.
    NotAResult,
}

impl QuarantineKind {
    /// The reason the fleet and clinic pages give, with what to do.
    pub fn label_ja(self) -> &'static str {
        match self {
            Self::WrongClinic => {
                "結果ファイルの医療機関コードが登録と違います（別の医療機関の端末に登録されていませんか）"
            }
            Self::Unreadable => "結果ファイルを読めません（文字コード・XML の破損）",
            Self::NotAResult => "資格確認の結果ではないファイル、または必須項目の欠けたファイルがあります",
        }
    }

    pub fn label_en(self) -> &'static str {
        match self {
            Self::WrongClinic => "result files carry another clinic's code (is the agent enrolled for this clinic?)",
            Self::Unreadable => "result files cannot be read (encoding or broken XML)",
            Self::NotAResult => "files that are not results, or lack a required element",
        }
    }
}

/// The last quarantine an agent reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QuarantineNote {
    pub kind: QuarantineKind,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

impl EventBatch {
    /// Parses a request body. The error names the JSON path of the first bad field.
    pub fn from_json(body: &[u8]) -> Result<Self, FieldError> {
        let de = &mut serde_json::Deserializer::from_slice(body);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." { String::new() } else { path };
            FieldError::new(field, e.inner().to_string())
        })
    }

    /// Checks what the types alone cannot: the batch size, that every event belongs to the device's
    /// clinic, that timestamps are plausible, and that no free text carries a 個人番号. The whole batch is
    /// refused on the first problem, so nothing of a bad batch is stored.
    pub fn validate(&self, clinic: &MedicalInstitutionCode, now: OffsetDateTime) -> Result<(), FieldError> {
        if self.events.is_empty() {
            return Err(FieldError::new("events", "a batch must contain at least one event"));
        }
        if self.events.len() > MAX_BATCH_EVENTS {
            return Err(FieldError::new("events", format!("at most {MAX_BATCH_EVENTS} events per batch")));
        }
        let mut seen = std::collections::HashSet::with_capacity(self.events.len());
        for (i, event) in self.events.iter().enumerate() {
            let at = |field: &str| format!("events[{i}].{field}");
            if !seen.insert(event.id) {
                return Err(FieldError::new(at("id"), "the same event id appears twice in this batch"));
            }
            // Agents may have been offline for days; a clock far in the future is a broken clock.
            if event.occurred_at > now + time::Duration::hours(24) {
                return Err(FieldError::new(at("occurred_at"), "more than 24 hours in the future"));
            }
            if event.occurred_at.year() < 2021 {
                return Err(FieldError::new(at("occurred_at"), "before オンライン資格確認 existed (2021)"));
            }
            match &event.payload {
                EventPayload::Qualification(q) => {
                    if &q.institution_code != clinic {
                        return Err(FieldError::new(
                            at("payload.qualification.institution_code"),
                            "does not match the clinic this device is enrolled for",
                        ));
                    }
                    if let Some(code) = &q.error_code {
                        if code.len() > 32 || !code.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                            return Err(FieldError::new(
                                at("payload.qualification.error_code"),
                                "at most 32 ASCII letters, digits or hyphens",
                            ));
                        }
                        if contains_individual_number(code) {
                            return Err(FieldError::new(
                                at("payload.qualification.error_code"),
                                "must not contain a 個人番号",
                            ));
                        }
                    }
                }
                EventPayload::Claims(c) => c.validate(clinic, &at("payload.claims"))?,
                EventPayload::Heartbeat(h) => {
                    if h.agent_version.is_empty()
                        || h.agent_version.len() > 32
                        || contains_individual_number(&h.agent_version)
                    {
                        return Err(FieldError::new(at("payload.heartbeat.agent_version"), "1 to 32 characters"));
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CODE: &str = "1311234567";

    fn qualification_json(id: &str) -> String {
        format!(
            r#"{{"id":"{id}","occurred_at":"2026-11-25T09:30:00+09:00","payload":{{"qualification":{{
            "institution_code":"{CODE}","method":"myna_card","result":"valid",
            "patient":"{p}","consents":{{"medication":true,"diagnosis":false}}}}}}}}"#,
            p = "ab".repeat(32)
        )
    }

    fn now() -> OffsetDateTime {
        time::macros::datetime!(2026-11-25 10:00 +09:00)
    }

    #[test]
    fn a_well_formed_batch_parses_and_validates() {
        let body = format!(r#"{{"events":[{}]}}"#, qualification_json("0196a7a0-0000-7000-8000-000000000001"));
        let batch = EventBatch::from_json(body.as_bytes()).unwrap();
        let code = MedicalInstitutionCode::parse(CODE).unwrap();
        batch.validate(&code, now()).unwrap();
        let EventPayload::Qualification(q) = &batch.events[0].payload else { panic!("wrong kind") };
        assert!(q.method.is_myna());
        assert_eq!(q.consents.medication, Some(true));
        assert_eq!(q.consents.checkup, None);
    }

    #[test]
    fn a_bad_field_is_named_by_its_path() {
        let good = qualification_json("0196a7a0-0000-7000-8000-000000000001");
        let bad = qualification_json("0196a7a0-0000-7000-8000-000000000002").replace("myna_card", "fax");
        let body = format!(r#"{{"events":[{good},{bad}]}}"#);
        let err = EventBatch::from_json(body.as_bytes()).unwrap_err();
        assert!(err.field.starts_with("events[1]"), "{err:?}");
    }

    #[test]
    fn a_raw_identifier_cannot_pass_as_a_patient_reference() {
        let body = qualification_json("0196a7a0-0000-7000-8000-000000000001").replace(&"ab".repeat(32), "06139999");
        let err = EventBatch::from_json(format!(r#"{{"events":[{body}]}}"#).as_bytes()).unwrap_err();
        assert_eq!(err.field, "events[0].payload.qualification.patient", "{err:?}");
    }

    #[test]
    fn an_event_of_another_clinic_refuses_the_batch() {
        let body = format!(r#"{{"events":[{}]}}"#, qualification_json("0196a7a0-0000-7000-8000-000000000001"));
        let batch = EventBatch::from_json(body.as_bytes()).unwrap();
        let other = MedicalInstitutionCode::parse("1311234568").unwrap();
        let err = batch.validate(&other, now()).unwrap_err();
        assert_eq!(err.field, "events[0].payload.qualification.institution_code");
    }

    #[test]
    fn duplicate_ids_within_a_batch_are_refused() {
        let e = qualification_json("0196a7a0-0000-7000-8000-000000000001");
        let batch = EventBatch::from_json(format!(r#"{{"events":[{e},{e}]}}"#).as_bytes()).unwrap();
        let code = MedicalInstitutionCode::parse(CODE).unwrap();
        assert_eq!(batch.validate(&code, now()).unwrap_err().field, "events[1].id");
    }

    #[test]
    fn pseudonyms_are_stable_keyed_and_unambiguous() {
        let a = PatientRef::pseudonymize(b"k1", "06139999", "12", "3", "00");
        assert_eq!(a, PatientRef::pseudonymize(b"k1", "06139999 ", "12", "3", "00"));
        assert_ne!(a, PatientRef::pseudonymize(b"k2", "06139999", "12", "3", "00"));
        assert_ne!(a, PatientRef::pseudonymize(b"k1", "06139999", "1", "23", "00"));
        assert_eq!(a, PatientRef::pseudonymize(b"k1", "０６１３９９９９", "１２", "3", "00"));
        assert_ne!(a, PatientRef::pseudonymize(b"k1", "06139999", "12", "03", "00"));
        assert!(PatientRef::parse(a.as_str()).is_ok());
        assert!(!format!("{a:?}").contains(a.as_str()));
    }
}
