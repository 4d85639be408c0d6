//! Calendar months: the billing month, the 利用率 month, a dashboard column. One type everywhere, written
//! `YYYY-MM`, so a month is never a string in one place and a tuple in another.
//!
//! Years are bounded (2000..=2199): every month this product deals with lies inside, and a bound makes
//! arithmetic on parsed input total (no `9999-12` + 1 month overflowing a date).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::{Date, Month};

use crate::jst;

/// The first and last years a month may have.
pub const MIN_YEAR: i32 = 2000;
pub const MAX_YEAR: i32 = 2199;

/// A calendar month (JST).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct YearMonth {
    year: i32,
    month: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a month YYYY-MM between {MIN_YEAR}-01 and {MAX_YEAR}-12")]
pub struct MonthError;

impl YearMonth {
    /// A month from its parts, if the year is in range and the month is 1-12.
    pub fn new(year: i32, month: u8) -> Option<Self> {
        ((MIN_YEAR..=MAX_YEAR).contains(&year) && (1..=12).contains(&month)).then_some(Self { year, month })
    }

    /// The month a date falls in. Dates outside the supported years are clamped to the nearest end.
    pub fn of(date: Date) -> Self {
        let year = date.year().clamp(MIN_YEAR, MAX_YEAR);
        let month = if year == date.year() {
            date.month() as u8
        } else if year == MIN_YEAR {
            1
        } else {
            12
        };
        Self { year, month }
    }

    /// This month in Japan.
    pub fn current() -> Self {
        Self::of(jst::date_of(time::OffsetDateTime::now_utc()))
    }

    /// `YYYY-MM`, four and two ASCII digits; `None` for anything else or out of range.
    pub fn parse(s: &str) -> Option<Self> {
        let (y, m) = s.split_once('-')?;
        if y.len() != 4 || m.len() != 2 || !y.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
            return None;
        }
        Self::new(y.parse().ok()?, m.parse().ok()?)
    }

    pub fn year(self) -> i32 {
        self.year
    }

    pub fn month(self) -> u8 {
        self.month
    }

    /// The month's first day.
    pub fn first_day(self) -> Date {
        let month = Month::try_from(self.month).unwrap_or(Month::January);
        Date::from_calendar_date(self.year, month, 1).unwrap_or(Date::MIN)
    }

    /// The month's last day.
    pub fn last_day(self) -> Date {
        let month = Month::try_from(self.month).unwrap_or(Month::January);
        Date::from_calendar_date(self.year, month, time::util::days_in_month(month, self.year)).unwrap_or(Date::MIN)
    }

    /// `months` later (earlier when negative), clamped to the supported years.
    pub fn plus(self, months: i32) -> Self {
        let index = (self.year * 12 + i32::from(self.month) - 1).saturating_add(months);
        let index = index.clamp(MIN_YEAR * 12, MAX_YEAR * 12 + 11);
        Self { year: index.div_euclid(12), month: (index.rem_euclid(12) + 1) as u8 }
    }

    /// Months from `earlier` to `self`.
    pub fn since(self, earlier: YearMonth) -> i32 {
        (self.year * 12 + i32::from(self.month)) - (earlier.year * 12 + i32::from(earlier.month))
    }

    /// Whether `date` falls in this month.
    pub fn contains(self, date: Date) -> bool {
        date.year() == self.year && date.month() as u8 == self.month
    }

    /// The months from `self` to `last`, both included (empty when `last` is earlier).
    pub fn through(self, last: YearMonth) -> impl Iterator<Item = YearMonth> {
        (0..=last.since(self).max(-1)).map(move |k| self.plus(k))
    }
}

impl fmt::Display for YearMonth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl FromStr for YearMonth {
    type Err = MonthError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s).ok_or(MonthError)
    }
}

impl Serialize for YearMonth {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for YearMonth {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&s).ok_or_else(|| serde::de::Error::custom(MonthError))
    }
}

#[cfg(test)]
mod tests {
    use time::macros::date;

    use super::*;

    #[test]
    fn months_add_across_years() {
        let m = YearMonth::parse("2025-02").unwrap();
        assert_eq!(m.plus(-3).to_string(), "2024-11");
        assert_eq!(m.plus(11).to_string(), "2026-01");
        assert_eq!(m.since(YearMonth::parse("2024-12").unwrap()), 2);
        assert_eq!(m.last_day(), date!(2025 - 02 - 28));
        assert_eq!(YearMonth::parse("2024-02").unwrap().last_day(), date!(2024 - 02 - 29));
        assert_eq!(m.through(m.plus(2)).count(), 3);
        assert_eq!(m.through(m.plus(-1)).count(), 0);
    }

    #[test]
    fn only_well_formed_months_in_range_parse() {
        for bad in ["2025-13", "2025-00", "9999-12", "-999-01", "+202-01", "2025-1", "２０２５-01", "2025/01", ""] {
            assert_eq!(YearMonth::parse(bad), None, "{bad}");
        }
        assert_eq!("2026-06".parse::<YearMonth>().map(|m| (m.year(), m.month())), Ok((2026, 6)));
    }

    #[test]
    fn arithmetic_never_leaves_the_supported_years() {
        let last = YearMonth::parse("2199-12").unwrap();
        assert_eq!(last.plus(1), last);
        assert_eq!(last.plus(i32::MAX).to_string(), "2199-12");
        assert_eq!(YearMonth::parse("2000-01").unwrap().plus(i32::MIN).to_string(), "2000-01");
        assert_eq!(YearMonth::of(Date::MAX).to_string(), "2199-12");
        assert_eq!(YearMonth::of(Date::MIN).to_string(), "2000-01");
    }

    #[test]
    fn serialises_as_text() {
        let m = YearMonth::parse("2026-06").unwrap();
        assert_eq!(serde_json::to_string(&m).unwrap(), "\"2026-06\"");
        assert_eq!(serde_json::from_str::<YearMonth>("\"2026-06\"").unwrap(), m);
        assert!(serde_json::from_str::<YearMonth>("\"2026-6\"").is_err());
    }
}
