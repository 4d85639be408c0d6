//! Reading typed values out of query strings and forms: every date and month is parsed with bounds, and
//! a bad value is a 400 that names its field, never a panic further down (a date in year -9999 would
//! overflow the first day's arithmetic done on it).

use onshi_domain::{FieldError, YearMonth};
use time::Date;

use crate::ApiError;

/// Query strings that do not fit their type (a letter where a number goes) are 400 `invalid_request`
/// like any other bad field, with the JSON body (pages: the error page), not actix's plain text.
pub(crate) fn query_config() -> actix_web::web::QueryConfig {
    actix_web::web::QueryConfig::default()
        .error_handler(|e, _| ApiError::InvalidRequest(FieldError::new("query", e.to_string())).into())
}

/// The same for form bodies.
pub(crate) fn form_config() -> actix_web::web::FormConfig {
    actix_web::web::FormConfig::default()
        .error_handler(|e, _| ApiError::InvalidRequest(FieldError::new("form", e.to_string())).into())
}

/// And for path segments typed in a handler.
pub(crate) fn path_config() -> actix_web::web::PathConfig {
    actix_web::web::PathConfig::default().error_handler(|_, _| ApiError::NotFound.into())
}

/// What people type as a number on a Japanese keyboard, as ASCII: full-width digits (０-９) become
/// 0-9 and surrounding spaces (either width) go, so a code typed in IME mode is not refused.
pub(crate) fn ascii_digits(raw: &str) -> String {
    raw.trim_matches(|c: char| c.is_whitespace() || c == '\u{3000}')
        .chars()
        .map(|c| match c {
            '０'..='９' => char::from_u32(u32::from(c) - 0xFF10 + u32::from('0')).unwrap_or(c),
            c => c,
        })
        .collect()
}

/// An optional date field: empty means not given; anything else must be `YYYY-MM-DD` in 2000–2199.
pub(crate) fn date(field: &str, raw: Option<&str>) -> Result<Option<Date>, ApiError> {
    match raw.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => onshi_domain::jst::parse_date(s)
            .map(Some)
            .ok_or_else(|| ApiError::InvalidRequest(FieldError::new(field, "expected a date YYYY-MM-DD (2000–2199)"))),
    }
}

/// A required date field.
pub(crate) fn required_date(field: &str, raw: &str) -> Result<Date, ApiError> {
    date(field, Some(raw))?
        .ok_or_else(|| ApiError::InvalidRequest(FieldError::new(field, "expected a date YYYY-MM-DD (2000–2199)")))
}

/// An optional month field (`YYYY-MM`, 2000–2199).
pub(crate) fn month(field: &str, raw: Option<&str>) -> Result<Option<YearMonth>, ApiError> {
    match raw.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => YearMonth::parse(s)
            .map(Some)
            .ok_or_else(|| ApiError::InvalidRequest(FieldError::new(field, "expected a month YYYY-MM (2000–2199)"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_values_or_a_400_naming_the_field() {
        assert_eq!(date("to", Some("")).unwrap(), None);
        assert!(date("to", Some("2026-11-30")).unwrap().is_some());
        for bad in ["9999-12-31", "-9999-01-01", "2026-13-01", "tomorrow"] {
            match date("to", Some(bad)) {
                Err(ApiError::InvalidRequest(e)) => assert_eq!(e.field, "to"),
                other => panic!("{bad}: {other:?}"),
            }
        }
        assert!(month("month", Some("9999-12")).is_err());
        assert!(required_date("date", "").is_err());
        assert_eq!(ascii_digits("　１３１１２３４５６７ "), "1311234567");
    }
}
