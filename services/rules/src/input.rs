//! The input contract of `onshi rules eval`, parsed into checked types. Errors name the visit or clinic
//! and the field.

use onshi_domain::{FacilityKind, YearMonth};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use time::{Date, Month};

/// The first day any reception addon existed; earlier visits cannot be evaluated.
pub const EARLIEST: Date = match Date::from_calendar_date(2022, Month::October, 1) {
    Ok(d) => d,
    Err(_) => panic!("valid date"),
};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{subject}: {field}: {message}")]
pub struct InputError {
    pub subject: String,
    pub field: String,
    pub message: String,
}

impl InputError {
    pub(crate) fn new(subject: impl Into<String>, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { subject: subject.into(), field: field.into(), message: message.into() }
    }
}

/// A 施設基準 (or status) a clinic meets from some date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Standard {
    /// オンライン請求
    OnlineClaims,
    /// 明細書の無償交付（令和8年度 (2)）
    FreeStatements,
    /// オンライン資格確認の体制（ポータル登録）
    Oqs,
    /// オンライン資格確認で得た診療情報を診察室等で閲覧・活用できる体制（令和8年度 (4)）
    ConsultRoomView,
    /// マイナポータルの医療情報等に基づく健康管理の相談に応じる体制（令和8年度 (6)）
    PortalConsult,
    /// 院内掲示・ウェブ掲載
    Notices,
    /// 電子処方箋
    EPrescription,
    /// 電子カルテ情報共有サービス
    EhrSharing,
    /// 令和8年度 (10): its wording was not found in any source read (docs/rules.md); a clerk who has read the
    /// 施設基準通知 records it here.
    EhrStandard,
    /// 電子的診療情報連携体制整備加算（歯科・調剤はそれぞれの加算）の届出: a new 届出 from 2026-06; the
    /// 医療DX推進体制整備加算 届出 does not carry over (疑義解釈その1, as cited in docs/rules.md).
    RenkeiNotified,
    /// 小児科特例（医療DX推進体制整備加算の利用率基準）
    PediatricSpecial,
}

impl Standard {
    pub const ALL: [Standard; 11] = [
        Self::OnlineClaims,
        Self::FreeStatements,
        Self::Oqs,
        Self::ConsultRoomView,
        Self::PortalConsult,
        Self::Notices,
        Self::EPrescription,
        Self::EhrSharing,
        Self::EhrStandard,
        Self::RenkeiNotified,
        Self::PediatricSpecial,
    ];

    /// The key in rules files, settings and forms (`online_claims`, ...).
    pub fn key(self) -> &'static str {
        match self {
            Self::OnlineClaims => "online_claims",
            Self::FreeStatements => "free_statements",
            Self::Oqs => "oqs",
            Self::ConsultRoomView => "consult_room_view",
            Self::PortalConsult => "portal_consult",
            Self::Notices => "notices",
            Self::EPrescription => "e_prescription",
            Self::EhrSharing => "ehr_sharing",
            Self::EhrStandard => "ehr_standard",
            Self::RenkeiNotified => "renkei_notified",
            Self::PediatricSpecial => "pediatric_special",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::OnlineClaims => "オンライン請求",
            Self::FreeStatements => "明細書の無償交付",
            Self::Oqs => "オンライン資格確認の体制",
            Self::ConsultRoomView => "診察室での診療情報の閲覧・活用",
            Self::PortalConsult => "マイナポータルの情報に基づく健康相談",
            Self::Notices => "院内掲示・ウェブ掲載",
            Self::EPrescription => "電子処方箋",
            Self::EhrSharing => "電子カルテ情報共有サービス",
            Self::EhrStandard => "令和8年度 施設基準(10)（内容未確認）",
            Self::RenkeiNotified => "電子的診療情報連携体制整備加算の届出（令和8年6月〜）",
            Self::PediatricSpecial => "小児科特例",
        }
    }

    /// `label` or `label_en`.
    pub fn label_in(self, en: bool) -> &'static str {
        if en { self.label_en() } else { self.label() }
    }

    pub fn label_en(self) -> &'static str {
        match self {
            Self::OnlineClaims => "online claims",
            Self::FreeStatements => "itemised statements free of charge",
            Self::Oqs => "オン資 in place",
            Self::ConsultRoomView => "medical information viewed and used in the consulting room",
            Self::PortalConsult => "health advice from マイナポータル information",
            Self::Notices => "notices in the clinic and on its website",
            Self::EPrescription => "electronic prescriptions",
            Self::EhrSharing => "electronic medical record sharing service",
            Self::EhrStandard => "令和8年度 standard (10) (content unverified)",
            Self::RenkeiNotified => "電子的診療情報連携体制整備加算 notified (from 2026-06)",
            Self::PediatricSpecial => "pediatric exception",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.key() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, Deserialize)]
pub enum VisitKind {
    First,
    Revisit,
}

impl From<onshi_domain::ClaimedVisitKind> for VisitKind {
    /// The kind the clinic's claims (レセ電) state.
    fn from(kind: onshi_domain::ClaimedVisitKind) -> Self {
        match kind {
            onshi_domain::ClaimedVisitKind::First => Self::First,
            onshi_domain::ClaimedVisitKind::Revisit => Self::Revisit,
        }
    }
}

impl VisitKind {
    /// `初診` or `再診`, as stored and as forms send it.
    pub fn from_label(label: &str) -> Option<Self> {
        match label {
            "初診" => Some(Self::First),
            "再診" => Some(Self::Revisit),
            _ => None,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::First => "初診",
            Self::Revisit => "再診",
        }
    }
}

/// A clinic as the engine sees it: its kind and its settings.
#[derive(Debug, Clone)]
pub struct Clinic {
    pub id: String,
    pub kind: FacilityKind,
    /// (from, standards met from that date), sorted by date.
    pub standards: Vec<(Date, BTreeSet<Standard>)>,
    /// Notified レセプト件数ベース rates.
    pub usage_rates: BTreeMap<YearMonth, f64>,
    /// オン資件数ベース rates, which some claim months (2024-10..2025-01) may use instead.
    pub oqs_usage_rates: BTreeMap<YearMonth, f64>,
}

impl Clinic {
    pub fn new(id: impl Into<String>, kind: FacilityKind, settings: ClinicSettings) -> Self {
        Self {
            id: id.into(),
            kind,
            standards: settings.standards,
            usage_rates: settings.usage_rates,
            oqs_usage_rates: settings.oqs_usage_rates,
        }
    }

    /// The standards in force on `date`: the latest entry that started on or before it.
    pub fn standards_on(&self, date: Date) -> BTreeSet<Standard> {
        self.standards.iter().rev().find(|(from, _)| *from <= date).map(|(_, s)| s.clone()).unwrap_or_default()
    }
}

/// What a billing clerk tells the engine about a clinic: the 届出/施設基準 met from each date and the
/// notified マイナ保険証利用率 per month. Stored as JSON (`{"standards": [{"from": "YYYY-MM-DD",
/// "<standard>": true, ...}], "usage_rates": {"YYYY-MM": 0.42}, "oqs_usage_rates": {...}}`, the
/// `onshi rules eval` input's shape) and parsed back into these types before it reaches the engine.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClinicSettings {
    /// One entry per date, sorted by date.
    pub standards: Vec<(Date, BTreeSet<Standard>)>,
    /// レセプト件数ベース (the official definition).
    pub usage_rates: BTreeMap<YearMonth, f64>,
    /// オン資件数ベース, usable for the claim months whose rules say so.
    pub oqs_usage_rates: BTreeMap<YearMonth, f64>,
}

impl ClinicSettings {
    /// Parses the stored form; errors name the field.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, InputError> {
        #[derive(Deserialize)]
        struct Raw {
            #[serde(default)]
            standards: Vec<BTreeMap<String, serde_json::Value>>,
            #[serde(default)]
            usage_rates: BTreeMap<String, f64>,
            #[serde(default)]
            oqs_usage_rates: BTreeMap<String, f64>,
        }
        let raw: Raw = serde_path_to_error::deserialize(value)
            .map_err(|e| InputError::new("clinic settings", e.path().to_string(), e.inner().to_string()))?;
        Self::from_raw("clinic settings", &raw.standards, &raw.usage_rates, &raw.oqs_usage_rates)
    }

    fn from_raw(
        subject: &str,
        raw_standards: &[BTreeMap<String, serde_json::Value>],
        raw_rates: &BTreeMap<String, f64>,
        raw_oqs_rates: &BTreeMap<String, f64>,
    ) -> Result<Self, InputError> {
        let mut standards = Vec::new();
        for (j, entry) in raw_standards.iter().enumerate() {
            let from = entry.get("from").and_then(|v| v.as_str()).and_then(parse_date).ok_or_else(|| {
                InputError::new(subject, format!("standards[{j}].from"), "a date YYYY-MM-DD is required")
            })?;
            let mut met = BTreeSet::new();
            for (key, value) in entry.iter().filter(|(k, _)| k.as_str() != "from") {
                let standard = Standard::parse(key)
                    .ok_or_else(|| InputError::new(subject, format!("standards[{j}].{key}"), "unknown 施設基準"))?;
                match value.as_bool() {
                    Some(true) => {
                        met.insert(standard);
                    }
                    Some(false) => {}
                    None => {
                        return Err(InputError::new(subject, format!("standards[{j}].{key}"), "must be true or false"));
                    }
                }
            }
            standards.push((from, met));
        }
        standards.sort_by_key(|(from, _)| *from);
        let rates = |field: &str, raw: &BTreeMap<String, f64>| {
            let mut out = BTreeMap::new();
            for (month, rate) in raw {
                let ym = YearMonth::parse(month).ok_or_else(|| {
                    InputError::new(subject, format!("{field}.{month}"), "months are written YYYY-MM")
                })?;
                if !(0.0..=1.0).contains(rate) {
                    return Err(InputError::new(subject, format!("{field}.{month}"), "a rate between 0.0 and 1.0"));
                }
                out.insert(ym, *rate);
            }
            Ok(out)
        };
        Ok(Self {
            standards,
            usage_rates: rates("usage_rates", raw_rates)?,
            oqs_usage_rates: rates("oqs_usage_rates", raw_oqs_rates)?,
        })
    }

    /// The stored form (see the type's documentation).
    pub fn to_json(&self) -> serde_json::Value {
        let standards: Vec<serde_json::Value> = self
            .standards
            .iter()
            .map(|(from, met)| {
                let mut entry = serde_json::Map::new();
                entry.insert("from".into(), from.to_string().into());
                for s in Standard::ALL {
                    entry.insert(s.key().into(), met.contains(&s).into());
                }
                serde_json::Value::Object(entry)
            })
            .collect();
        let rates = |map: &BTreeMap<YearMonth, f64>| -> serde_json::Map<String, serde_json::Value> {
            map.iter().map(|(m, r)| (m.to_string(), (*r).into())).collect()
        };
        serde_json::json!({
            "standards": standards,
            "usage_rates": rates(&self.usage_rates),
            "oqs_usage_rates": rates(&self.oqs_usage_rates),
        })
    }

    /// Records the standards met from `from`, replacing an entry of the same date.
    pub fn set_standards(&mut self, from: Date, met: BTreeSet<Standard>) {
        self.standards.retain(|(d, _)| *d != from);
        self.standards.push((from, met));
        self.standards.sort_by_key(|(d, _)| *d);
    }

    /// Records a month's notified rate (0.0-1.0) on one basis, rounded to 0.1 percentage points.
    pub fn set_usage_rate(&mut self, basis: RateBasis, month: YearMonth, rate: f64) {
        let rates = match basis {
            RateBasis::Receipts => &mut self.usage_rates,
            RateBasis::Oqs => &mut self.oqs_usage_rates,
        };
        rates.insert(month, (rate.clamp(0.0, 1.0) * 1000.0).round() / 1000.0);
    }
}

/// Which definition of マイナ保険証利用率 a notified figure follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateBasis {
    /// レセプト件数ベース: マイナ保険証利用人数 ÷ レセプト件数 (the official figure).
    Receipts,
    /// オン資件数ベース: マイナ保険証利用件数 ÷ オンライン資格確認件数 (claims 2024-10..2025-01 only).
    Oqs,
}

impl RateBasis {
    pub fn label(self) -> &'static str {
        match self {
            Self::Receipts => "レセプト件数ベース",
            Self::Oqs => "オン資件数ベース",
        }
    }

    pub fn label_en(self) -> &'static str {
        match self {
            Self::Receipts => "per claims",
            Self::Oqs => "per オン資 checks",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Visit {
    pub id: String,
    pub clinic: usize,
    pub patient: String,
    pub date: Date,
    pub kind: VisitKind,
    pub myna: bool,
    pub info_obtained: bool,
}

#[derive(Debug, Clone)]
pub struct EvalInput {
    pub clinics: Vec<Clinic>,
    pub visits: Vec<Visit>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInput {
    clinics: Vec<RawClinic>,
    visits: Vec<RawVisit>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClinic {
    id: String,
    facility_kind: FacilityKind,
    #[serde(default)]
    standards: Vec<BTreeMap<String, serde_json::Value>>,
    #[serde(default)]
    usage_rates: BTreeMap<String, f64>,
    #[serde(default)]
    oqs_usage_rates: BTreeMap<String, f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVisit {
    id: String,
    clinic: String,
    patient: String,
    date: String,
    kind: String,
    myna: bool,
    info_obtained: bool,
}

pub(crate) fn parse_date(s: &str) -> Option<Date> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(s, &format).ok()
}

impl EvalInput {
    /// Parses and checks the JSON input.
    pub fn from_json(bytes: &[u8]) -> Result<Self, InputError> {
        let de = &mut serde_json::Deserializer::from_slice(bytes);
        let raw: RawInput = serde_path_to_error::deserialize(de)
            .map_err(|e| InputError::new("input", e.path().to_string(), e.inner().to_string()))?;
        let mut clinics = Vec::new();
        let mut index = HashMap::new();
        for (i, c) in raw.clinics.into_iter().enumerate() {
            let subject = format!("clinic {}", c.id);
            if index.insert(c.id.clone(), i).is_some() {
                return Err(InputError::new(subject, "id", "appears twice"));
            }
            let settings = ClinicSettings::from_raw(&subject, &c.standards, &c.usage_rates, &c.oqs_usage_rates)?;
            clinics.push(Clinic::new(c.id, c.facility_kind, settings));
        }
        let mut seen = BTreeSet::new();
        let mut visits = Vec::new();
        for v in raw.visits {
            let subject = format!("visit {}", v.id);
            if !seen.insert(v.id.clone()) {
                return Err(InputError::new(subject, "id", "appears twice"));
            }
            let clinic = *index
                .get(&v.clinic)
                .ok_or_else(|| InputError::new(&subject, "clinic", format!("unknown clinic {}", v.clinic)))?;
            let date = parse_date(&v.date).ok_or_else(|| InputError::new(&subject, "date", "not a date YYYY-MM-DD"))?;
            if date < EARLIEST {
                return Err(InputError::new(
                    &subject,
                    "date",
                    "before 2022-10-01, when the first reception addon began",
                ));
            }
            let kind = match v.kind.as_str() {
                "初診" => VisitKind::First,
                "再診" => VisitKind::Revisit,
                _ => return Err(InputError::new(&subject, "kind", "must be 初診 or 再診")),
            };
            if v.patient.trim().is_empty() {
                return Err(InputError::new(&subject, "patient", "must not be empty"));
            }
            visits.push(Visit {
                id: v.id,
                clinic,
                patient: v.patient,
                date,
                kind,
                myna: v.myna,
                info_obtained: v.info_obtained,
            });
        }
        Ok(Self { clinics, visits })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_visit_and_field() {
        let bad = r#"{"clinics":[{"id":"c1","facility_kind":"医科"}],"visits":[{"id":"v9","clinic":"c1","patient":"p","date":"2022-09-30","kind":"初診","myna":true,"info_obtained":false}]}"#.as_bytes();
        let e = EvalInput::from_json(bad).unwrap_err();
        assert_eq!((e.subject.as_str(), e.field.as_str()), ("visit v9", "date"));
        let unknown = r#"{"clinics":[],"visits":[{"id":"v1","clinic":"zz","patient":"p","date":"2024-07-01","kind":"初診","myna":true,"info_obtained":false}]}"#.as_bytes();
        assert_eq!(EvalInput::from_json(unknown).unwrap_err().field, "clinic");
        let malformed = r#"{"clinics":[],"visits":[{"id":"v1","clinic":"zz","patient":"p","date":"2024/07/01","kind":"初診","myna":true,"info_obtained":false}]}"#.as_bytes();
        assert!(EvalInput::from_json(malformed).is_err());
        let bad_standard = r#"{"clinics":[{"id":"c1","facility_kind":"医科","standards":[{"from":"2024-01-01","teleport":true}]}],"visits":[]}"#.as_bytes();
        assert_eq!(EvalInput::from_json(bad_standard).unwrap_err().field, "standards[0].teleport");
    }
}
