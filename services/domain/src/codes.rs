//! 医療機関コード: 2 digits 都道府県 + 1 digit 点数表 + 7 digits within the prefecture, the last a check digit.
//!
//! The check digit is described publicly as Luhn over all ten digits, but many codes used in tests and
//! demos fail it, so a failed check is reported as a warning and never a rejection (see
//! `shared/domain/identifiers.md`). Shape errors (length, digits, prefecture, 点数表) are rejections.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    #[error("医療機関コード must be exactly 10 digits (got {0} characters)")]
    Length(usize),
    #[error("医療機関コード must contain only the digits 0-9")]
    NotDigits,
    #[error("医療機関コード prefecture part {0:02} is not 01-47")]
    Prefecture(u8),
    #[error("医療機関コード 点数表 digit {0} is not 1 (医科), 3 (歯科), 4 (調剤) or 6 (訪問看護)")]
    FeeSchedule(u8),
}

/// Which fee schedule (点数表) a clinic bills under; each has its own addon rule set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum FacilityKind {
    #[serde(rename = "医科")]
    Medical,
    #[serde(rename = "歯科")]
    Dental,
    #[serde(rename = "調剤")]
    Pharmacy,
    #[serde(rename = "訪問看護")]
    HomeNursing,
}

impl FacilityKind {
    pub fn label(self) -> &'static str {
        match self {
            Self::Medical => "医科",
            Self::Dental => "歯科",
            Self::Pharmacy => "調剤",
            Self::HomeNursing => "訪問看護",
        }
    }
}

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MedicalInstitutionCode(String);

impl MedicalInstitutionCode {
    /// Parses the code; surrounding white space and full-width digits (as typed on Japanese keyboards)
    /// are normalised first.
    pub fn parse(input: &str) -> Result<Self, CodeError> {
        let normalised: String = input
            .trim()
            .chars()
            .map(|c| match c {
                '０'..='９' => char::from_u32(c as u32 - '０' as u32 + '0' as u32).unwrap_or(c),
                other => other,
            })
            .collect();
        let len = normalised.chars().count();
        if len != 10 {
            return Err(CodeError::Length(len));
        }
        if !normalised.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CodeError::NotDigits);
        }
        let digits = normalised.as_bytes();
        let prefecture = (digits[0] - b'0') * 10 + (digits[1] - b'0');
        if !(1..=47).contains(&prefecture) {
            return Err(CodeError::Prefecture(prefecture));
        }
        let schedule = digits[2] - b'0';
        if !matches!(schedule, 1 | 3 | 4 | 6) {
            return Err(CodeError::FeeSchedule(schedule));
        }
        Ok(Self(normalised))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn prefecture(&self) -> u8 {
        let d = self.0.as_bytes();
        (d[0] - b'0') * 10 + (d[1] - b'0')
    }

    pub fn facility_kind(&self) -> FacilityKind {
        match self.0.as_bytes()[2] {
            b'3' => FacilityKind::Dental,
            b'4' => FacilityKind::Pharmacy,
            b'6' => FacilityKind::HomeNursing,
            _ => FacilityKind::Medical,
        }
    }

    /// Whether the last digit is the Luhn check digit of the first nine. Advisory only.
    pub fn check_digit_ok(&self) -> bool {
        let sum: u32 = self
            .0
            .bytes()
            .rev()
            .enumerate()
            .map(|(i, b)| {
                let d = u32::from(b - b'0');
                if i % 2 == 1 {
                    let x = d * 2;
                    if x > 9 { x - 9 } else { x }
                } else {
                    d
                }
            })
            .sum();
        sum.is_multiple_of(10)
    }
}

impl fmt::Display for MedicalInstitutionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for MedicalInstitutionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MedicalInstitutionCode({})", self.0)
    }
}

impl TryFrom<String> for MedicalInstitutionCode {
    type Error = CodeError;
    fn try_from(value: String) -> Result<Self, CodeError> {
        Self::parse(&value)
    }
}

impl From<MedicalInstitutionCode> for String {
    fn from(code: MedicalInstitutionCode) -> String {
        code.0
    }
}

/// A 保険者番号: the insurer's number (8 digits, 6 for 国保), an institution's, not a person's. The agent
/// sends it only with results that are not valid, so the desk can follow them up by insurer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InsurerNumber(String);

impl InsurerNumber {
    /// From the result file: full-width digits and the spaces that pad a 6-digit number are accepted.
    pub fn parse(s: &str) -> Option<Self> {
        use unicode_normalization::UnicodeNormalization;
        let text: String = s.nfkc().collect();
        let text = text.trim();
        (matches!(text.len(), 6 | 8) && text.bytes().all(|b| b.is_ascii_digit())).then(|| Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the last digit is the 検証番号 (weights 2,1,2,… from the right of the other digits, two-digit
    /// products summed by digit). Soft: a failed check is shown, never refused (identifiers.md).
    pub fn check_digit_ok(&self) -> bool {
        let digits: Vec<u32> = self.0.bytes().map(|b| u32::from(b - b'0')).collect();
        let Some((&check, rest)) = digits.split_last() else { return false };
        let sum: u32 = rest
            .iter()
            .rev()
            .enumerate()
            .map(|(i, d)| if i % 2 == 0 { d * 2 } else { *d })
            .map(|p| p / 10 + p % 10)
            .sum();
        (10 - sum % 10) % 10 == check
    }
}

impl fmt::Display for InsurerNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<InsurerNumber> for String {
    fn from(n: InsurerNumber) -> Self {
        n.0
    }
}

impl TryFrom<String> for InsurerNumber {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s).ok_or_else(|| "a 保険者番号 is 6 or 8 digits".to_owned())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn insurer_numbers_read_as_the_file_writes_them() {
        let n = super::InsurerNumber::parse("33120015").unwrap();
        assert!(n.check_digit_ok(), "the example in identifiers.md");
        assert!(!super::InsurerNumber::parse("33120014").unwrap().check_digit_ok());
        assert_eq!(super::InsurerNumber::parse("  139998").unwrap().as_str(), "139998", "国保, padded");
        assert_eq!(super::InsurerNumber::parse("０６１３９９９９").unwrap().as_str(), "06139999");
        for bad in ["", "1234567", "0613999X", "061399990"] {
            assert!(super::InsurerNumber::parse(bad).is_none(), "{bad}");
        }
    }

    use super::*;

    #[test]
    fn a_well_formed_code_parses_and_knows_its_parts() {
        let code = MedicalInstitutionCode::parse("0110113719").unwrap();
        assert_eq!(code.prefecture(), 1);
        assert_eq!(code.facility_kind(), FacilityKind::Medical);
        assert!(code.check_digit_ok());
    }

    #[test]
    fn synthetic_codes_that_fail_the_check_digit_still_parse() {
        let code = MedicalInstitutionCode::parse("1311111111").unwrap();
        assert!(!code.check_digit_ok());
        assert_eq!(code.prefecture(), 13);
    }

    #[test]
    fn full_width_digits_are_normalised() {
        let code = MedicalInstitutionCode::parse(" １３１１２３４５６７ ").unwrap();
        assert_eq!(code.as_str(), "1311234567");
    }

    #[test]
    fn malformed_codes_are_refused_with_the_reason() {
        assert_eq!(MedicalInstitutionCode::parse("123"), Err(CodeError::Length(3)));
        assert_eq!(MedicalInstitutionCode::parse("13112345a7"), Err(CodeError::NotDigits));
        assert_eq!(MedicalInstitutionCode::parse("4811234567"), Err(CodeError::Prefecture(48)));
        assert_eq!(MedicalInstitutionCode::parse("1321234567"), Err(CodeError::FeeSchedule(2)));
        assert_eq!(MedicalInstitutionCode::parse("0011234567"), Err(CodeError::Prefecture(0)));
    }

    #[test]
    fn every_ten_digit_string_either_parses_or_names_its_fault() {
        // A cheap exhaustive-ish sweep over the structured parts.
        for pref in 0..=99u32 {
            for schedule in 0..=9u32 {
                let text = format!("{pref:02}{schedule}1234567");
                let parsed = MedicalInstitutionCode::parse(&text);
                let ok = (1..=47).contains(&pref) && matches!(schedule, 1 | 3 | 4 | 6);
                assert_eq!(parsed.is_ok(), ok, "{text}");
            }
        }
    }
}
