//! The Japanese calendar a clinic keeps: 国民の祝日 (with 振替休日 and 国民の休日) from
//! `data/jp-holidays.txt`, and 年末年始 (12/29–1/3), on which clinics close unless they say otherwise.
//! Holidays past the file's last year are not known; callers that count days say so, and the list is
//! extended yearly (the Cabinet Office publishes the next year's in February).

use time::{Date, Month};

const HOLIDAYS: &str = include_str!("../data/jp-holidays.txt");

fn holidays() -> impl Iterator<Item = Date> {
    HOLIDAYS.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).filter_map(|l| {
        let mut parts = l.split('-');
        let y: i32 = parts.next()?.parse().ok()?;
        let m: u8 = parts.next()?.parse().ok()?;
        let d: u8 = parts.next()?.parse().ok()?;
        Date::from_calendar_date(y, Month::try_from(m).ok()?, d).ok()
    })
}

/// The last year the holiday list covers.
pub fn holidays_known_until() -> i32 {
    holidays().map(|d| d.year()).max().unwrap_or(0)
}

/// A 国民の祝日, 振替休日 or 国民の休日 on the list.
pub fn is_national_holiday(date: Date) -> bool {
    holidays().any(|h| h == date)
}

/// 12/29 to 1/3, when clinics and insurers close.
pub fn is_year_end(date: Date) -> bool {
    (date.month() == Month::December && date.day() >= 29) || (date.month() == Month::January && date.day() <= 3)
}

/// A day a clinic is closed unless it says otherwise: a national holiday or the year-end break.
pub fn is_holiday(date: Date) -> bool {
    is_year_end(date) || is_national_holiday(date)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn holidays_and_the_year_end_break() {
        assert!(is_holiday(date!(2026 - 05 - 06)), "振替休日");
        assert!(is_holiday(date!(2026 - 12 - 29)));
        assert!(is_holiday(date!(2027 - 01 - 03)));
        assert!(!is_holiday(date!(2027 - 01 - 04)));
        assert!(!is_holiday(date!(2026 - 12 - 02)));
        assert!(holidays_known_until() >= 2027);
    }
}
