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
