//! The input contract of `onshi rules eval`, parsed into checked types. Errors name the visit or clinic
//! and the field.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use onshi_domain::FacilityKind;
use serde::Deserialize;
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
    fn new(subject: impl Into<String>, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { subject: subject.into(), field: field.into(), message: message.into() }
    }
}

/// A calendar month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct YearMonth {
    pub year: i32,
    pub month: u8,
}

impl YearMonth {
    pub fn of(date: Date) -> Self {
        Self { year: date.year(), month: date.month() as u8 }
    }

    pub fn parse(s: &str) -> Option<Self> {
        let (y, m) = s.split_once('-')?;
        if y.len() != 4 || m.len() != 2 {
            return None;
        }
        let (year, month) = (y.parse().ok()?, m.parse().ok()?);
        (1..=12).contains(&month).then_some(Self { year, month })
    }

    /// The month's first day.
    pub fn first_day(self) -> Date {
        let month = time::Month::try_from(self.month).unwrap_or(time::Month::January);
        Date::from_calendar_date(self.year, month, 1).unwrap_or(Date::MIN)
    }

    /// The month's last day.
    pub fn last_day(self) -> Date {
        self.plus(1).first_day().previous_day().unwrap_or(Date::MIN)
    }

    pub fn plus(self, months: i32) -> Self {
        let index = self.year * 12 + i32::from(self.month) - 1 + months;
        Self { year: index.div_euclid(12), month: (index.rem_euclid(12) + 1) as u8 }
    }

    /// Months from `earlier` to `self`.
    pub fn since(self, earlier: YearMonth) -> i32 {
        (self.year * 12 + i32::from(self.month)) - (earlier.year * 12 + i32::from(earlier.month))
    }
}

impl fmt::Display for YearMonth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// A 施設基準 (or status) a clinic meets from some date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Standard {
    /// オンライン請求
    OnlineClaims,
    /// オンライン資格確認の体制（ポータル登録）
    Oqs,
    /// 院内掲示・ウェブ掲載
    Notices,
    /// 電子処方箋
    EPrescription,
    /// 電子カルテ情報共有サービス
    EhrSharing,
    /// 電子カルテ情報の標準化対応（令和8年度 (10)）
    EhrStandard,
    /// 小児科特例（医療DX推進体制整備加算の利用率基準）
    PediatricSpecial,
}

impl Standard {
    pub fn label(self) -> &'static str {
        match self {
            Self::OnlineClaims => "オンライン請求",
            Self::Oqs => "オンライン資格確認の体制",
            Self::Notices => "院内掲示・ウェブ掲載",
            Self::EPrescription => "電子処方箋",
            Self::EhrSharing => "電子カルテ情報共有サービス",
            Self::EhrStandard => "電子カルテ情報の標準化",
            Self::PediatricSpecial => "小児科特例",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum VisitKind {
    First,
    Revisit,
}

impl VisitKind {
    pub fn label(self) -> &'static str {
        match self {
            Self::First => "初診",
            Self::Revisit => "再診",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Clinic {
    pub id: String,
    pub kind: FacilityKind,
    /// (from, standards met from that date), sorted by date.
    pub standards: Vec<(Date, BTreeSet<Standard>)>,
    pub usage_rates: BTreeMap<YearMonth, f64>,
}

impl Clinic {
    /// The standards in force on `date`: the latest entry that started on or before it.
    pub fn standards_on(&self, date: Date) -> BTreeSet<Standard> {
        self.standards.iter().rev().find(|(from, _)| *from <= date).map(|(_, s)| s.clone()).unwrap_or_default()
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

fn parse_date(s: &str) -> Option<Date> {
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
            let mut standards = Vec::new();
            for (j, entry) in c.standards.iter().enumerate() {
                let from = entry.get("from").and_then(|v| v.as_str()).and_then(parse_date).ok_or_else(|| {
                    InputError::new(&subject, format!("standards[{j}].from"), "a date YYYY-MM-DD is required")
                })?;
                let mut met = BTreeSet::new();
                for (key, value) in entry.iter().filter(|(k, _)| k.as_str() != "from") {
                    let standard = Standard::parse(key).ok_or_else(|| {
                        InputError::new(&subject, format!("standards[{j}].{key}"), "unknown 施設基準")
                    })?;
                    match value.as_bool() {
                        Some(true) => {
                            met.insert(standard);
                        }
                        Some(false) => {}
                        None => {
                            return Err(InputError::new(
                                &subject,
                                format!("standards[{j}].{key}"),
                                "must be true or false",
                            ));
                        }
                    }
                }
                standards.push((from, met));
            }
            standards.sort_by_key(|(from, _)| *from);
            let mut usage_rates = BTreeMap::new();
            for (month, rate) in &c.usage_rates {
                let ym = YearMonth::parse(month).ok_or_else(|| {
                    InputError::new(&subject, format!("usage_rates.{month}"), "months are written YYYY-MM")
                })?;
                if !(0.0..=1.0).contains(rate) {
                    return Err(InputError::new(
                        &subject,
                        format!("usage_rates.{month}"),
                        "a rate between 0.0 and 1.0",
                    ));
                }
                usage_rates.insert(ym, *rate);
            }
            clinics.push(Clinic { id: c.id, kind: c.facility_kind, standards, usage_rates });
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
    fn months_add_across_years() {
        let m = YearMonth::parse("2025-02").unwrap();
        assert_eq!(m.plus(-3).to_string(), "2024-11");
        assert_eq!(m.plus(11).to_string(), "2026-01");
        assert_eq!(m.since(YearMonth::parse("2024-12").unwrap()), 2);
    }

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
