//! A month's claims as the clinic's レセ電 (UKE) file states them, reduced at the clinic to what the cloud
//! needs. This is the JSON `onshi-agent uke parse FILE` prints and the payload `uke import` delivers
//! (`EventPayload::Claims`), version 1 of a stable contract: fields are only ever added, and the cloud
//! ignores fields it does not know (a newer agent's), as it does for every event.
//!
//! What it never holds: names, birth dates, sex, diagnoses, drugs, procedures other than the 初診/再診
//! and reception-addon codes, or insurance numbers (the patient is the same keyed pseudonym the
//! 資格確認 results carry; the clinic's カルテ番号 only sealed, see `sealed`).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::Date;

use crate::codes::MedicalInstitutionCode;
use crate::event::{FieldError, PatientRef};
use crate::month::YearMonth;

/// Most receipts one file may carry (a large hospital's month is tens of thousands).
pub const MAX_RECEIPTS: usize = 100_000;
/// Most codes one receipt may list (visits × codes); a month has at most 31 days.
const MAX_CODES_PER_RECEIPT: usize = 31 * 8;

/// The 審査支払機関 a file is submitted to: one file per month to each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Payer {
    /// 社会保険診療報酬支払基金 (IR code 1).
    ShiharaiKikin,
    /// 国民健康保険団体連合会 (IR code 2).
    Kokuho,
}

impl Payer {
    pub fn from_ir_code(code: &str) -> Option<Self> {
        match code.trim() {
            "1" => Some(Self::ShiharaiKikin),
            "2" => Some(Self::Kokuho),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ShiharaiKikin => "shiharai_kikin",
            Self::Kokuho => "kokuho",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "shiharai_kikin" => Some(Self::ShiharaiKikin),
            "kokuho" => Some(Self::Kokuho),
            _ => None,
        }
    }

    pub fn label_ja(self) -> &'static str {
        match self {
            Self::ShiharaiKikin => "支払基金",
            Self::Kokuho => "国保連",
        }
    }
}

/// 初診 or 再診 as a day's claimed codes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum ClaimedVisitKind {
    #[serde(rename = "初診")]
    First,
    #[serde(rename = "再診")]
    Revisit,
}

impl ClaimedVisitKind {
    /// `初診` or `再診`, as the contract writes it.
    pub fn label(self) -> &'static str {
        match self {
            Self::First => "初診",
            Self::Revisit => "再診",
        }
    }

    pub fn from_label(label: &str) -> Option<Self> {
        [Self::First, Self::Revisit].into_iter().find(|k| k.label() == label)
    }
}

/// A calendar day written `YYYY-MM-DD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(pub Date);

const DAY_FORMAT: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]");

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0.format(DAY_FORMAT).map_err(|_| fmt::Error)?;
        f.write_str(&text)
    }
}

impl Serialize for Day {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Day {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Within the service's years (2000–2199), so arithmetic on it cannot overflow.
        let text = String::deserialize(d)?;
        crate::jst::parse_date(&text).map(Day).ok_or_else(|| serde::de::Error::custom("a date YYYY-MM-DD (2000–2199)"))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClaimsFile {
    /// The 10-digit 医療機関コード (IR: 都道府県 + 点数表 + 医療機関コード).
    pub institution_code: MedicalInstitutionCode,
    /// 請求年月: the month the file is submitted in (its receipts are mostly for the month before).
    pub claim_month: YearMonth,
    pub payer: Payer,
    /// マルチボリューム: 1 for a file that is the whole month.
    #[serde(default = "one")]
    pub volume: u8,
    /// SHA-256 of the file's bytes: a re-sent file is recognised, a corrected one replaces it.
    pub file_sha256: String,
    /// GO 総合計点数, equal to the receipts' points.
    pub total_points: u64,
    pub receipts: Vec<ClaimReceipt>,
}

fn one() -> u8 {
    1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClaimReceipt {
    /// レセプト番号 within the file.
    pub receipt_no: u32,
    /// 診療年月: the month of care (月遅れ receipts carry an earlier one).
    pub service_month: YearMonth,
    /// レセプト種別 (4 digits: 医科, 医保/公費/後期, 単独/併用, 本人/家族 and 入院/入院外).
    pub receipt_type: String,
    /// 入院外 (the official 利用率 counts these receipts).
    pub outpatient: bool,
    /// The insured person's pseudonym, as the 資格確認 results give it; null when the receipt has neither
    /// insurance nor 公費 numbers.
    pub patient: Option<PatientRef>,
    /// An SN record says the clinic confirmed the qualification itself (確認区分 01; unverified, see
    /// docs/uke.md). Which document was used, マイナ保険証 or not, the file does not say.
    pub online_confirmed: bool,
    /// The clinic's カルテ番号, sealed (see `sealed`); absent when the file has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chart: Option<String>,
    /// HO 合計点数 (or the first KO's for 公費単独).
    pub points: u64,
    pub visits: Vec<ClaimVisit>,
    pub addons: Vec<ClaimedCode>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClaimVisit {
    pub date: Day,
    pub kind: ClaimedVisitKind,
    /// The 初診料/再診料 codes claimed that day.
    pub codes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClaimedCode {
    /// 9-digit 診療行為コード of a reception addon.
    pub code: String,
    pub dates: Vec<Day>,
}

fn is_code(code: &str) -> bool {
    code.len() == 9 && code.bytes().all(|b| b.is_ascii_digit())
}

impl ClaimsFile {
    /// Checks what the cloud relies on; errors name the field (`receipts[3].visits[0].date`).
    pub fn validate(&self, clinic: &MedicalInstitutionCode, field: &str) -> Result<(), FieldError> {
        let at = |f: &str| format!("{field}.{f}");
        if &self.institution_code != clinic {
            return Err(FieldError::new(
                at("institution_code"),
                "does not match the clinic this device is enrolled for",
            ));
        }
        if self.claim_month.year() < 2021 {
            return Err(FieldError::new(at("claim_month"), "before オンライン資格確認 existed (2021)"));
        }
        if self.file_sha256.len() != 64 || !self.file_sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(FieldError::new(at("file_sha256"), "64 hexadecimal digits"));
        }
        if self.volume == 0 {
            return Err(FieldError::new(at("volume"), "1 or more"));
        }
        if self.receipts.len() > MAX_RECEIPTS {
            return Err(FieldError::new(at("receipts"), format!("at most {MAX_RECEIPTS} receipts per file")));
        }
        let mut points = 0u64;
        for (i, r) in self.receipts.iter().enumerate() {
            let at = |f: &str| format!("{field}.receipts[{i}].{f}");
            if r.service_month > self.claim_month || r.service_month.year() < 2021 {
                return Err(FieldError::new(at("service_month"), "after the claim month or before 2021"));
            }
            if r.receipt_type.len() != 4 || !r.receipt_type.bytes().all(|b| b.is_ascii_digit()) {
                return Err(FieldError::new(at("receipt_type"), "4 digits"));
            }
            if r.chart.as_deref().is_some_and(|c| !crate::sealed::is_sealed_shape(c)) {
                return Err(FieldError::new(at("chart"), "a sealed chart number (never the number itself)"));
            }
            let codes: usize = r.visits.iter().map(|v| v.codes.len()).sum::<usize>()
                + r.addons.iter().map(|a| a.dates.len()).sum::<usize>();
            if codes > MAX_CODES_PER_RECEIPT {
                return Err(FieldError::new(at("visits"), "too many codes for one month"));
            }
            for (j, v) in r.visits.iter().enumerate() {
                if !r.service_month.contains(v.date.0) {
                    return Err(FieldError::new(at(&format!("visits[{j}].date")), "outside the service month"));
                }
                if v.codes.is_empty() || !v.codes.iter().all(|c| is_code(c)) {
                    return Err(FieldError::new(at(&format!("visits[{j}].codes")), "one or more 9-digit codes"));
                }
            }
            for (j, a) in r.addons.iter().enumerate() {
                if !is_code(&a.code) {
                    return Err(FieldError::new(at(&format!("addons[{j}].code")), "a 9-digit code"));
                }
                if let Some(k) = a.dates.iter().position(|d| !r.service_month.contains(d.0)) {
                    return Err(FieldError::new(at(&format!("addons[{j}].dates[{k}]")), "outside the service month"));
                }
            }
            points = points.saturating_add(r.points);
        }
        if points != self.total_points {
            return Err(FieldError::new(at("total_points"), "is not the sum of the receipts' points"));
        }
        Ok(())
    }
}
