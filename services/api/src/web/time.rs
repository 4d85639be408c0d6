//! Times as the people using the pages read them: Japan time, one format everywhere. Machine exports
//! keep UTC, in a column whose name says so.

use time::OffsetDateTime;

/// `2026-12-01 11:00` (JST), for pages.
pub fn jst_minute(at: &OffsetDateTime) -> String {
    let t = at.to_offset(onshi_domain::jst::JST);
    format!("{} {:02}:{:02}", t.date(), t.hour(), t.minute())
}

/// `11:00` (JST), where the day is already on the page (a day's heading).
pub fn jst_clock(at: &OffsetDateTime) -> String {
    let t = at.to_offset(onshi_domain::jst::JST);
    format!("{:02}:{:02}", t.hour(), t.minute())
}

/// `2026-12-01 11:00:13` (JST), where seconds matter (the audit log).
pub fn jst_second(at: &OffsetDateTime) -> String {
    let t = at.to_offset(onshi_domain::jst::JST);
    format!("{} {:02}:{:02}:{:02}", t.date(), t.hour(), t.minute(), t.second())
}

/// `2026-12-01T02:00:13Z`, for machine-readable exports.
pub fn utc_iso(at: &OffsetDateTime) -> String {
    let t = at.to_offset(time::UtcOffset::UTC);
    format!("{}-{:02}-{:02}T{:02}:{:02}:{:02}Z", t.year(), t.month() as u8, t.day(), t.hour(), t.minute(), t.second())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn pages_read_japan_time_and_exports_utc() {
        let at = datetime!(2026-11-30 23:14:15.889604 UTC);
        assert_eq!(jst_minute(&at), "2026-12-01 08:14");
        assert_eq!(jst_second(&at), "2026-12-01 08:14:15");
        assert_eq!(utc_iso(&at), "2026-11-30T23:14:15Z");
    }
}
