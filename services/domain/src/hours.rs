//! A clinic's opening hours (診療時間), in Japan time: spans per weekday, closed on national holidays and
//! 12/29–1/3 unless the clinic says it opens then. Alerts about its agents count only the time the clinic
//! is open (`open_time_between`), so a PC switched off at night or on a holiday tells nobody.
//!
//! A span ends on the day it starts (a night clinic past midnight sets two spans, one each day).

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime, Time};
use unicode_normalization::UnicodeNormalization;

use crate::FieldError;
use crate::jst::JST;

/// One opening span of a day, in minutes after 00:00 JST (`from` < `to` ≤ 24:00).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Span {
    from: u16,
    to: u16,
}

impl Span {
    /// `09:00-12:30`; full-width digits and `〜`, `～` or `~` as the separator are accepted.
    pub fn parse(s: &str) -> Option<Self> {
        let s: String = s.nfkc().collect::<String>().replace(['〜', '~', '−', 'ー'], "-");
        let (from, to) = s.split_once('-')?;
        let (from, to) = (minutes(from.trim())?, minutes(to.trim())?);
        (from < to).then_some(Self { from, to })
    }
}

fn minutes(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(h * 60 + m)
}

impl std::fmt::Display for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:02}:{:02}-{:02}:{:02}", self.from / 60, self.from % 60, self.to / 60, self.to % 60)
    }
}

impl From<Span> for String {
    fn from(s: Span) -> Self {
        s.to_string()
    }
}

impl TryFrom<String> for Span {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        Span::parse(&s).ok_or_else(|| format!("not an opening span: {s}"))
    }
}

/// The weekdays, Monday first, as the form and the page name them.
pub const WEEKDAYS_JA: [&str; 7] = ["月", "火", "水", "木", "金", "土", "日"];
pub const WEEKDAYS_EN: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
/// The form fields of the days, Monday first.
pub const DAY_FIELDS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpeningHours {
    /// Monday first.
    week: [Vec<Span>; 7],
    /// Open on national holidays and 12/29–1/3 as on the weekday they fall on.
    #[serde(default)]
    open_on_holidays: bool,
}

impl Default for OpeningHours {
    /// Until a clinic sets its own: weekdays 8:30–18:30 and Saturday morning, the hours most clinics keep
    /// within (a wide guess errs towards telling someone).
    fn default() -> Self {
        let day = |s: &str| Span::parse(s).into_iter().collect::<Vec<_>>();
        let weekday = day("08:30-18:30");
        Self {
            week: [
                weekday.clone(),
                weekday.clone(),
                weekday.clone(),
                weekday.clone(),
                weekday,
                day("08:30-12:30"),
                vec![],
            ],
            open_on_holidays: false,
        }
    }
}

impl OpeningHours {
    /// Every hour of every day, holidays included (for a clinic that wants to hear of every outage).
    pub fn always() -> Self {
        let all = vec![Span { from: 0, to: 24 * 60 }];
        Self { week: std::array::from_fn(|_| all.clone()), open_on_holidays: true }
    }

    /// From the form: one text per weekday, Monday first (`09:00-12:30, 15:00-18:00`; empty or `休` for
    /// closed). The error names the day's field.
    pub fn parse(days: [&str; 7], open_on_holidays: bool) -> Result<Self, FieldError> {
        let mut week: [Vec<Span>; 7] = Default::default();
        for (i, text) in days.iter().enumerate() {
            let text = text.trim();
            if text.is_empty() || matches!(text, "休" | "休診" | "-" | "closed") {
                continue;
            }
            // Clerks type "9:00 - 12:30" and "9:00〜12:30 / 15:00〜18:00": spaces around the dash go, and
            // commas, slashes or spaces separate spans.
            let text: String = text.nfkc().collect::<String>().replace(['〜', '~', '−', 'ー'], "-");
            let text = text.split('-').map(str::trim).collect::<Vec<_>>().join("-");
            let mut spans = Vec::new();
            for part in text.split([',', '、', '，', '/', '／', ' ', '　']).filter(|p| !p.trim().is_empty()) {
                let span = Span::parse(part).ok_or_else(|| {
                    FieldError::new(
                        DAY_FIELDS[i],
                        format!(
                            "{}曜日の「{}」は時間帯として読めません。09:00-12:30 のように入力してください（休診は空欄）",
                            WEEKDAYS_JA[i],
                            part.trim()
                        ),
                    )
                })?;
                spans.push(span);
            }
            spans.sort();
            if spans.windows(2).any(|w| w[1].from < w[0].to) {
                return Err(FieldError::new(DAY_FIELDS[i], format!("{}曜日の時間帯が重なっています", WEEKDAYS_JA[i])));
            }
            week[i] = spans;
        }
        Ok(Self { week, open_on_holidays })
    }

    /// A day's spans as the form shows them (`09:00-12:30, 15:00-18:00`; empty when closed).
    pub fn day_text(&self, weekday: usize) -> String {
        self.week.get(weekday).map(|d| d.iter().map(Span::to_string).collect::<Vec<_>>().join(", ")).unwrap_or_default()
    }

    pub fn open_on_holidays(&self) -> bool {
        self.open_on_holidays
    }

    fn spans_on(&self, date: time::Date) -> &[Span] {
        if !self.open_on_holidays && crate::calendar::is_holiday(date) {
            return &[];
        }
        &self.week[usize::from(date.weekday().number_days_from_monday())]
    }

    pub fn is_open(&self, at: OffsetDateTime) -> bool {
        let local = at.to_offset(JST);
        let minute = u16::from(local.hour()) * 60 + u16::from(local.minute());
        self.spans_on(local.date()).iter().any(|s| s.from <= minute && minute < s.to)
    }

    /// How long the clinic was open between `from` and `to` (at most the eight days before `to`, which is
    /// more than any alert waits).
    pub fn open_time_between(&self, from: OffsetDateTime, to: OffsetDateTime) -> Duration {
        let from = from.max(to - Duration::days(8));
        if to <= from {
            return Duration::ZERO;
        }
        let mut total = Duration::ZERO;
        let mut date = from.to_offset(JST).date();
        let last = to.to_offset(JST).date();
        while date <= last {
            let midnight = date.with_time(Time::MIDNIGHT).assume_offset(JST);
            for span in self.spans_on(date) {
                let start = (midnight + Duration::minutes(i64::from(span.from))).max(from);
                let end = (midnight + Duration::minutes(i64::from(span.to))).min(to);
                if end > start {
                    total += end - start;
                }
            }
            let Some(next) = date.next_day() else { break };
            date = next;
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn clinic() -> OpeningHours {
        let am_pm = "09:00-12:30, 15:00-18:00";
        OpeningHours::parse(
            [am_pm, "9:00 - 12:30 / 15:00〜18:00", am_pm, "09:00-12:30", am_pm, "０９：００〜１２：００", ""],
            false,
        )
        .unwrap()
    }

    #[test]
    fn spans_read_as_typed_and_back() {
        let h = clinic();
        assert_eq!(h.day_text(0), "09:00-12:30, 15:00-18:00");
        assert_eq!(h.day_text(1), "09:00-12:30, 15:00-18:00", "spaces around the dash, a slash between spans");
        assert_eq!(h.day_text(5), "09:00-12:00", "full-width digits and 〜");
        assert_eq!(h.day_text(6), "");
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(serde_json::from_str::<OpeningHours>(&json).unwrap(), h);
        assert_eq!(Span::parse("00:00-24:00").unwrap().to_string(), "00:00-24:00");
    }

    #[test]
    fn bad_hours_name_the_day() {
        for (text, field) in
            [("9-12", "mon"), ("25:00-26:00", "mon"), ("12:00-09:00", "mon"), ("09:00-12:00, 11:00-13:00", "mon")]
        {
            let err = OpeningHours::parse([text, "", "", "", "", "", ""], false).unwrap_err();
            assert_eq!(err.field, field, "{text}");
            assert!(err.message.contains("月曜日"), "{}", err.message);
        }
        assert!(OpeningHours::parse(["", "", "", "", "", "", "休"], false).is_ok());
    }

    #[test]
    fn open_in_its_spans_in_japan_time_closed_on_holidays() {
        let h = clinic();
        // 2026-12-02 is a Wednesday; 09:30 JST is 00:30 UTC.
        assert!(h.is_open(datetime!(2026-12-02 00:30 UTC)));
        assert!(!h.is_open(datetime!(2026-12-02 04:00 UTC)), "lunch break 13:00 JST");
        assert!(!h.is_open(datetime!(2026-12-02 09:00 UTC)), "18:00 JST is closing time");
        assert!(!h.is_open(datetime!(2026-12-03 06:30 +09:00)), "Thursday afternoon closed");
        assert!(!h.is_open(datetime!(2026-12-06 10:00 +09:00)), "Sunday");
        assert!(!h.is_open(datetime!(2026-11-23 10:00 +09:00)), "勤労感謝の日, a Monday");
        assert!(!h.is_open(datetime!(2026-12-29 10:00 +09:00)), "年末年始, a Tuesday");
        let mut holidays = clinic();
        holidays.open_on_holidays = true;
        assert!(holidays.is_open(datetime!(2026-11-23 10:00 +09:00)));
        assert!(OpeningHours::always().is_open(datetime!(2027-01-01 03:00 +09:00)));
    }

    #[test]
    fn only_open_time_counts() {
        let h = clinic();
        let at = |s: &str| OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap();
        // Offline from 02:00 at night: by 09:10 ten minutes of opening time have passed.
        assert_eq!(
            h.open_time_between(at("2026-12-02T02:00:00+09:00"), at("2026-12-02T09:10:00+09:00")),
            Duration::minutes(10)
        );
        // Across the lunch break: 12:25 to 15:05 is ten minutes of opening time.
        assert_eq!(
            h.open_time_between(at("2026-12-02T12:25:00+09:00"), at("2026-12-02T15:05:00+09:00")),
            Duration::minutes(10)
        );
        // From Saturday noon to Monday 09:05 (Sunday closed).
        assert_eq!(
            h.open_time_between(at("2026-12-05T11:55:00+09:00"), at("2026-12-07T09:05:00+09:00")),
            Duration::minutes(10)
        );
        assert_eq!(
            h.open_time_between(at("2026-12-02T10:00:00+09:00"), at("2026-12-02T09:00:00+09:00")),
            Duration::ZERO
        );
    }
}
