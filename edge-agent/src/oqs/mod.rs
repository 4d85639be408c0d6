//! Reading the 資格確認端末's result files (`XmlMsg`): file names, encodings, the XML, and the events they
//! become. Lenient in what it accepts (unknown codes, either consent element spelling, nesting), strict in
//! what it trusts (encoding, completeness, the clinic code, no 個人番号 anywhere in what leaves).
//!
//! Everything here is pure: bytes in, events or a reason out. `onshi-agent parse FILE` prints exactly this.

mod decode;
mod result;
mod xml;

use std::fmt;

pub use decode::{FileEncoding, decode};
pub use onshi_domain::TimeSource;
pub use result::{ParseContext, Parsed, parse_file};
pub use xml::{Element, parse as parse_xml};

/// Result files larger than this are refused before being read whole. A bulk result for a large clinic
/// is a few megabytes.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Why a file could not be turned into events. The text goes into the quarantine reason file and the
/// agent's log, so it never contains a value from the file other than codes (no names, no numbers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    TooLarge(u64),
    Encoding(String),
    DocType,
    TooDeep,
    TooManyElements,
    Truncated,
    Xml(String),
    NotAResult(&'static str),
    Missing(&'static str),
    /// Neither `ProcessExecutionTime` nor the file name says when the confirmation happened.
    NoTime,
    Invalid(&'static str),
    EncodingMismatch {
        declared: &'static str,
        identifier: String,
    },
    WrongClinic {
        found: String,
    },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge(n) => write!(f, "file is {n} bytes, over the {MAX_FILE_BYTES}-byte limit"),
            Self::Encoding(why) => write!(f, "encoding: {why}"),
            Self::DocType => f.write_str("DOCTYPE declarations are not allowed"),
            Self::TooDeep => write!(f, "elements nested deeper than {}", xml::MAX_DEPTH),
            Self::TooManyElements => write!(f, "more than {} elements", xml::MAX_ELEMENTS),
            Self::Truncated => f.write_str("incomplete document (the root element is not closed)"),
            Self::Xml(why) => write!(f, "malformed XML: {why}"),
            Self::NotAResult(why) => write!(f, "not a 資格確認 result: {why}"),
            Self::Missing(element) => write!(f, "required element {element} is missing"),
            Self::NoTime => {
                f.write_str("ProcessExecutionTime is missing or empty and the file name carries no time either")
            }
            Self::Invalid(element) => write!(f, "element {element} has a value that is not allowed"),
            Self::EncodingMismatch { declared, identifier } => write!(
                f,
                "declared encoding {declared} disagrees with CharacterCodeIdentifier {identifier} (0 = UTF-8, 1 = Shift_JIS)"
            ),
            Self::WrongClinic { found } => {
                write!(f, "MedicalInstitutionCode {found} is not the clinic this agent is enrolled for")
            }
        }
    }
}

impl std::error::Error for ParseError {}

impl ParseError {
    /// The category the cloud is told (never the message, which may quote the file).
    pub fn kind(&self) -> onshi_domain::QuarantineKind {
        use onshi_domain::QuarantineKind as K;
        match self {
            Self::WrongClinic { .. } => K::WrongClinic,
            Self::TooLarge(_)
            | Self::Encoding(_)
            | Self::DocType
            | Self::TooDeep
            | Self::TooManyElements
            | Self::Truncated
            | Self::Xml(_)
            | Self::EncodingMismatch { .. } => K::Unreadable,
            Self::NotAResult(_) | Self::Missing(_) | Self::NoTime | Self::Invalid(_) => K::NotAResult,
        }
    }
}

/// What a file name says about its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// `OQSsiquc01res_face_…`: a card-reader confirmation written without a request.
    Face,
    /// `OQSsiquc01res_…`: the answer to a single confirmation requested by clinic software.
    Single,
    /// `OQSmuquc01res_…` / `OQSmuquc02res_…`: a bulk confirmation (一括照会).
    Bulk,
}

impl FileKind {
    /// Classifies a file name; `None` for files the agent does not read (requests, drug information,
    /// temporary files).
    pub fn of(file_name: &str) -> Option<Self> {
        let lower = file_name.to_ascii_lowercase();
        if !lower.ends_with(".xml") {
            return None;
        }
        if lower.starts_with("oqssiquc01res_face_") {
            Some(Self::Face)
        } else if lower.starts_with("oqssiquc01res_") {
            Some(Self::Single)
        } else if lower.starts_with("oqsmuquc01res_") || lower.starts_with("oqsmuquc02res_") {
            Some(Self::Bulk)
        } else {
            None
        }
    }
}

/// The time a result file's name carries, in JST: the last `_`-separated part of the name, when it is all
/// digits and starts with `yyyyMMddHHmmss`. A face file's name ends in exactly that
/// (`OQSsiquc01res_face_000003_20261126052802.xml`); the answers in `res/` carry the request's id, which
/// clinic software makes from the time and a serial (`OQSsiquc01res_20261126052802000001.xml`). Names
/// without such a part (`OQSsiquc01res_12345.xml`) give `None`.
pub fn file_name_time(file_name: &str) -> Option<time::OffsetDateTime> {
    let stem = file_name.rsplit_once('.')?.0;
    let digits = stem.rsplit('_').next()?;
    if digits.len() < 14 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    result::parse_jst_timestamp(&digits[..14])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_classified() {
        assert_eq!(FileKind::of("OQSsiquc01res_face_0001_20261125093000.xml"), Some(FileKind::Face));
        assert_eq!(FileKind::of("OQSsiquc01res_12345.xml"), Some(FileKind::Single));
        assert_eq!(FileKind::of("OQSmuquc02res_777.XML"), Some(FileKind::Bulk));
        assert_eq!(FileKind::of("OQSsiquc01req_12345.xml"), None);
        assert_eq!(FileKind::of("YZKsiquc01res_1.xml"), None);
        assert_eq!(FileKind::of("OQSsiquc01res_1.xml.tmp"), None);
    }

    #[test]
    fn the_file_name_time_is_read_as_jst() {
        let t = file_name_time("OQSsiquc01res_face_0001_20261125093000.xml").unwrap();
        assert_eq!(t, time::macros::datetime!(2026-11-25 09:30:00 +09:00));
        assert!(file_name_time("OQSsiquc01res_12345.xml").is_none());
    }

    #[test]
    fn single_and_bulk_answers_carry_the_time_before_their_serial() {
        let expected = time::macros::datetime!(2026-11-26 05:28:02 +09:00);
        assert_eq!(file_name_time("OQSsiquc01res_20261126052802000001.xml"), Some(expected));
        assert_eq!(file_name_time("OQSsiquc01res_face_000003_20261126052802.xml"), Some(expected));
        assert_eq!(file_name_time("OQSmuquc02res_20261126052802000009.xml"), Some(expected));
        // Digits that are not a date and time, or too few of them, or not only digits.
        assert!(file_name_time("OQSsiquc01res_99999999999999000001.xml").is_none());
        assert!(file_name_time("OQSsiquc01res_2026112605280.xml").is_none());
        assert!(file_name_time("OQSsiquc01res_20261126052802abc.xml").is_none());
        assert!(file_name_time("OQSsiquc01res_20261126052802").is_none());
    }
}
