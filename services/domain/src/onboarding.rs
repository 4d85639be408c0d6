//! The preparation deadlines for a clinic that is introducing オン資, counted back from its planned start
//! of operation (../shared/domain/onboarding.md, after MHLW 「オンライン資格確認について」).
//!
//! The offsets are data (`STEPS`), and business days skip weekends, 国民の祝日 and 年末年始 (12/29–1/3)
//! from `calendar`. Holidays past the list's last year are not known: the result is then marked
//! approximate.

use time::{Date, Duration, Month, Weekday};

/// How a deadline is counted back from the start date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offset {
    /// About this many months before (same day of month, clamped to the month's end).
    MonthsBefore(u8),
    /// At least this many business days before.
    BusinessDaysBefore(u8),
}

#[derive(Debug, Clone, Copy)]
pub struct Step {
    pub key: &'static str,
    pub ja: &'static str,
    pub en: &'static str,
    pub offset: Offset,
    /// Whether the date is a hard limit ("at least") or guidance ("about").
    pub hard: bool,
}

pub const STEPS: &[Step] = &[
    Step {
        key: "reader_order",
        ja: "顔認証付きカードリーダーの申込・発注（納品まで数か月かかることがあります）",
        en: "Order the face-recognition card reader (delivery can take months)",
        offset: Offset::MonthsBefore(3),
        hard: false,
    },
    Step {
        key: "reception_number",
        ja: "地方厚生（支）局で受付番号を取得し、支払基金・国保中央会へ提出",
        en: "Get a 受付番号 from the regional bureau and submit it",
        offset: Offset::MonthsBefore(2),
        hard: false,
    },
    Step {
        key: "designation",
        ja: "保険医療機関の指定申請（指定日の1か月前まで）",
        en: "Apply for 保険医療機関 designation (one month before)",
        offset: Offset::MonthsBefore(1),
        hard: true,
    },
    Step {
        key: "usage_application",
        ja: "医療機関等向けポータルサイトで利用申請・電子証明書の発行申請（5営業日前まで）",
        en: "Apply for use and the electronic certificate on the portal (5 business days before)",
        offset: Offset::BusinessDaysBefore(5),
        hard: true,
    },
];

/// The last year the holiday list covers (deadlines past it are approximate).
pub use crate::calendar::holidays_known_until;

pub fn is_business_day(date: Date) -> bool {
    if matches!(date.weekday(), Weekday::Saturday | Weekday::Sunday) {
        return false;
    }
    !crate::calendar::is_holiday(date)
}

fn months_before(date: Date, months: u8) -> Date {
    let total = date.year() * 12 + (date.month() as i32 - 1) - i32::from(months);
    let (year, month0) = (total.div_euclid(12), total.rem_euclid(12));
    let month = Month::try_from(month0 as u8 + 1).unwrap_or(Month::January);
    let day = date.day().min(month.length(year));
    Date::from_calendar_date(year, month, day).unwrap_or(date)
}

fn business_days_before(date: Date, n: u8) -> Date {
    let mut d = date;
    let mut left = n;
    while left > 0 {
        d -= Duration::days(1);
        if is_business_day(d) {
            left -= 1;
        }
    }
    d
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deadline {
    pub step: &'static str,
    pub ja: &'static str,
    pub en: &'static str,
    pub due: Date,
    pub hard: bool,
    /// The business-day count ran into a year the holiday list does not cover.
    pub approximate: bool,
}

/// The deadlines for a start of operation on `start`, earliest first.
pub fn deadlines(start: Date) -> Vec<Deadline> {
    let mut out: Vec<Deadline> = STEPS
        .iter()
        .map(|s| {
            let (due, approximate) = match s.offset {
                Offset::MonthsBefore(m) => (months_before(start, m), false),
                Offset::BusinessDaysBefore(n) => {
                    let due = business_days_before(start, n);
                    (due, due.year() > holidays_known_until() || start.year() > holidays_known_until())
                }
            };
            Deadline { step: s.key, ja: s.ja, en: s.en, due, hard: s.hard, approximate }
        })
        .collect();
    out.sort_by_key(|d| d.due);
    out
}

#[cfg(test)]
mod tests {
    use time::macros::date;

    use super::*;

    #[test]
    fn deadlines_count_back_from_the_start() {
        let d = deadlines(date!(2027 - 04 - 01));
        let get = |k: &str| d.iter().find(|x| x.step == k).unwrap().due;
        assert_eq!(get("reader_order"), date!(2027 - 01 - 01));
        assert_eq!(get("reception_number"), date!(2027 - 02 - 01));
        assert_eq!(get("designation"), date!(2027 - 03 - 01));
        // 2027-04-01 is a Thursday: 5 business days back skips the weekend of 27-28 March.
        assert_eq!(get("usage_application"), date!(2027 - 03 - 25));
        assert!(d.windows(2).all(|w| w[0].due <= w[1].due));
    }

    #[test]
    fn business_days_skip_holidays_and_year_end() {
        // 2026-05-07 (Thu): back over 5/6 振替休日, 5/5, 5/4, 5/3 (Sun), 5/2 (Sat), 5/1, 4/30, 4/29 昭和の日.
        assert_eq!(business_days_before(date!(2026 - 05 - 07), 2), date!(2026 - 04 - 30));
        assert!(!is_business_day(date!(2026 - 12 - 30)));
        assert!(!is_business_day(date!(2027 - 01 - 02)));
        assert!(is_business_day(date!(2027 - 01 - 04)));
        assert_eq!(months_before(date!(2027 - 03 - 31), 1), date!(2027 - 02 - 28));
    }

    #[test]
    fn beyond_the_holiday_list_the_result_says_so() {
        let last = holidays_known_until();
        let d = deadlines(Date::from_calendar_date(last + 1, Month::June, 1).unwrap());
        assert!(d.iter().any(|x| x.approximate));
    }
}
