//! Lines and fields of a レセ電 file, and its date formats. Field numbers follow the 記録条件仕様 (医科)
//! and count from 1, the record identifier being field 1, so they read like the spec's tables.

use time::{Date, Month};

use onshi_domain::YearMonth;

/// One record: its line number (from 1) and its comma-separated fields.
pub(super) struct Record<'a> {
    pub line: usize,
    fields: Vec<&'a str>,
}

impl<'a> Record<'a> {
    pub fn new(line: usize, text: &'a str) -> Self {
        Self { line, fields: text.split(',').collect() }
    }

    /// The record identifier (field 1): `IR`, `RE`, `HO`, …
    pub fn id(&self) -> &'a str {
        self.fields.first().copied().unwrap_or_default()
    }

    /// Field `n` (1-based), trimmed; empty when the record is shorter (trailing empty fields may be
    /// left out).
    pub fn field(&self, n: usize) -> &'a str {
        n.checked_sub(1).and_then(|i| self.fields.get(i)).map(|f| f.trim()).unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }
}

/// Eras of the 年号区分コード (別表4), by their first year.
const ERAS: [(char, i32); 5] = [('1', 1867), ('2', 1911), ('3', 1925), ('4', 1988), ('5', 2018)];

fn era_year(era: char, yy: &str) -> Option<i32> {
    let base = ERAS.iter().find(|(c, _)| *c == era)?.1;
    let n: i32 = yy.parse().ok()?;
    (n >= 1).then_some(base + n)
}

fn digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// A year and month written `GYYMM` (和暦 with the era code) or `YYYYMM` (西暦).
pub(super) fn year_month(s: &str) -> Option<YearMonth> {
    if !digits(s) {
        return None;
    }
    let (year, month) = match s.len() {
        5 => (era_year(s.chars().next()?, &s[1..3])?, &s[3..5]),
        6 => (s[..4].parse().ok()?, &s[4..6]),
        _ => return None,
    };
    YearMonth::new(year, month.parse().ok()?)
}

/// A date written `GYYMMDD` or `YYYYMMDD`.
#[cfg(test)]
pub(super) fn date(s: &str) -> Option<Date> {
    if !digits(s) || !(s.len() == 7 || s.len() == 8) {
        return None;
    }
    let (ym, day) = s.split_at(s.len() - 2);
    day_of(year_month(ym)?, day.parse().ok()?)
}

/// Day `day` of `month`, if it exists.
pub(super) fn day_of(month: YearMonth, day: u8) -> Option<Date> {
    Date::from_calendar_date(month.year(), Month::try_from(month.month()).ok()?, day).ok()
}

/// A non-negative whole number field; empty counts as zero.
pub(super) fn number(s: &str) -> Option<u64> {
    if s.is_empty() {
        Some(0)
    } else if digits(s) {
        s.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_and_dates_read_in_both_calendars() {
        assert_eq!(year_month("50811"), YearMonth::new(2026, 11));
        assert_eq!(year_month("202611"), YearMonth::new(2026, 11));
        assert_eq!(year_month("43104"), YearMonth::new(2019, 4));
        assert_eq!(year_month("51301"), YearMonth::new(2031, 1));
        assert_eq!(year_month("5081"), None);
        assert_eq!(year_month("90811"), None);
        assert_eq!(year_month("202613"), None);
        assert_eq!(date("5081130"), Some(time::macros::date!(2026 - 11 - 30)));
        assert_eq!(date("20261130"), Some(time::macros::date!(2026 - 11 - 30)));
        assert_eq!(date("20261131"), None);
    }

    #[test]
    fn fields_count_from_one_and_missing_ones_are_empty() {
        let r = Record::new(3, "SI,11,1,111000110,, 291 ,1");
        assert_eq!(r.id(), "SI");
        assert_eq!(r.field(4), "111000110");
        assert_eq!(r.field(6), "291");
        assert_eq!(r.field(44), "");
        assert_eq!(r.field(0), "");
        assert_eq!(number(""), Some(0));
        assert_eq!(number("1x"), None);
    }
}
