//! How long visit records are kept. Visit logs are billing evidence: records of 療養の給付 must be kept 3
//! years (療担規則 9条), and 5 years where the clinic keeps them as part of the 診療録 (医師法 24条). Each
//! tenant says which applies; until it does, the longer floor holds. The retention job removes only whole
//! months that lie entirely beyond the floor, so a record is always kept at least as long as the law asks,
//! and up to a month longer.

use time::Date;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetentionBasis {
    /// Kept as part of the 診療録: 5 years.
    MedicalRecord,
    /// Kept as records of 療養の給付 only: 3 years.
    Billing,
}

impl RetentionBasis {
    pub const ALL: [RetentionBasis; 2] = [RetentionBasis::MedicalRecord, RetentionBasis::Billing];

    pub fn years(self) -> i32 {
        match self {
            RetentionBasis::MedicalRecord => 5,
            RetentionBasis::Billing => 3,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RetentionBasis::MedicalRecord => "medical_record",
            RetentionBasis::Billing => "billing",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "medical_record" | "medical-record" => Some(RetentionBasis::MedicalRecord),
            "billing" => Some(RetentionBasis::Billing),
            _ => None,
        }
    }

    pub fn label_ja(self) -> &'static str {
        match self {
            RetentionBasis::MedicalRecord => "診療録の一部として保存（5年）",
            RetentionBasis::Billing => "療養の給付の記録として保存（3年）",
        }
    }

    pub fn label_en(self) -> &'static str {
        match self {
            RetentionBasis::MedicalRecord => "Part of the medical record (5 years)",
            RetentionBasis::Billing => "Records of 療養の給付 only (3 years)",
        }
    }

    /// The first day that must still be kept on `today`: the first day of the month `years` before
    /// today's month. Everything dated before it is past the floor by at least the floor itself.
    pub fn keep_from(self, today: Date) -> Date {
        let year = today.year() - self.years();
        // The first of a month always exists; the fallback is unreachable.
        Date::from_calendar_date(year, today.month(), 1).unwrap_or(today)
    }
}

/// Days an e-mail that could not be sent (`failed` in the outbox) is kept for looking up why, counted from
/// when it was queued. These hold staff addresses and clinic names, not patient data, and nothing needs
/// them once the cause is found.
pub const FAILED_MAIL_KEEP_DAYS: i64 = 90;

/// The shortest floor of any basis: partitions older than this may be dropped once empty.
pub fn shortest_keep_from(today: Date) -> Date {
    RetentionBasis::ALL.iter().map(|b| b.keep_from(today)).max().unwrap_or(today)
}

/// True when a record dated `record` may be removed on `today` under `basis`.
pub fn may_remove(basis: RetentionBasis, record: Date, today: Date) -> bool {
    record < basis.keep_from(today)
}

#[cfg(test)]
mod tests {
    use time::macros::date;

    use super::*;

    #[test]
    fn floors_by_basis() {
        let today = date!(2026 - 11 - 26);
        assert_eq!(RetentionBasis::Billing.keep_from(today), date!(2023 - 11 - 01));
        assert_eq!(RetentionBasis::MedicalRecord.keep_from(today), date!(2021 - 11 - 01));
        assert_eq!(shortest_keep_from(today), date!(2023 - 11 - 01));
        assert_eq!(RetentionBasis::parse("medical-record"), Some(RetentionBasis::MedicalRecord));
        assert_eq!(RetentionBasis::parse("forever"), None);
    }

    #[test]
    fn a_record_is_never_removed_before_its_floor() {
        // Every 7th day over two years (crossing every month boundary), against every record date since
        // 2019 and every basis: a removable record is at least the floor old, counted from its own date.
        let days = |from: Date, to: Date, step: usize| {
            std::iter::successors(Some(from), |d| d.next_day()).take_while(move |d| *d <= to).step_by(step)
        };
        for today in days(date!(2026 - 01 - 01), date!(2027 - 12 - 31), 7) {
            for basis in RetentionBasis::ALL {
                for record in days(date!(2019 - 01 - 01), today, 1) {
                    if may_remove(basis, record, today) {
                        // 29 Feb has no anniversary in a common year; 1 Mar is the later, stricter one.
                        let anniversary = record.replace_year(record.year() + basis.years()).unwrap_or_else(|_| {
                            date!(2000 - 03 - 01).replace_year(record.year() + basis.years()).unwrap_or(today)
                        });
                        assert!(anniversary <= today, "{record} removed on {today} under {basis:?}");
                    }
                }
            }
        }
    }
}
