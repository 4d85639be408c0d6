//! Japan Standard Time. Reception dates, billing months and 利用率 months are calendar days in Japan,
//! whatever offset an event was stamped with.

use time::{Date, OffsetDateTime, UtcOffset};

pub const JST: UtcOffset = match UtcOffset::from_hms(9, 0, 0) {
    Ok(offset) => offset,
    Err(_) => panic!("+09:00 is a valid offset"),
};

/// The calendar date in Japan at which `at` happened.
pub fn date_of(at: OffsetDateTime) -> Date {
    at.to_offset(JST).date()
}

/// A calendar date typed as `YYYY-MM-DD`, within the years every date of the service lies in (those of
/// `YearMonth`, 2000–2199), so arithmetic on it (a day later, four weeks earlier) cannot overflow.
/// Anything else is `None`: the caller says which field was wrong.
pub fn parse_date(s: &str) -> Option<Date> {
    let date = Date::parse(s.trim(), time::macros::format_description!("[year]-[month]-[day]")).ok()?;
    (crate::month::MIN_YEAR..=crate::month::MAX_YEAR).contains(&date.year()).then_some(date)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_outside_the_service_years_or_malformed_are_refused() {
        assert_eq!(parse_date(" 2026-06-01 "), Some(time::macros::date!(2026 - 06 - 01)));
        for bad in ["9999-12-31", "-9999-01-01", "1999-12-31", "2200-01-01", "2026-02-30", "2026-6-1", "", "x"] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }
}
