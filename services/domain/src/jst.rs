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

/// "YYYY-MM" of a date: the billing month key.
pub fn month_key(date: time::Date) -> String {
    format!("{:04}-{:02}", date.year(), date.month() as u8)
}
