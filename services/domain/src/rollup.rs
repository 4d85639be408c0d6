//! What visits add to the dashboard rollups, as pure arithmetic: the store applies the result in the
//! transaction that changes the visits.
//!
//! A visit contributes to one hourly bucket (its JST day and hour of first confirmation, its method) and,
//! when it identifies a patient, to that patient's month. The store keeps the buckets per day and method,
//! with receptions per hour beside the day's counters (`DayDelta`), so a year-long view reads one row per
//! day and method instead of one per hour. When a merge changes a visit (a late
//! confirmation with another method or an earlier time), its old contribution is subtracted and its new
//! one added, so the sums stay exact whatever the order of arrival.

use std::collections::BTreeMap;

use time::Date;

use crate::{IdentityCheck, QualificationResult, Visit, YearMonth, jst};

/// The counters of one hourly bucket, in this order: receptions, マイナ保険証, consent to medication,
/// diagnosis and checkup information, not valid, identified by face, by PIN, by sight.
pub type HourlyCounts = [i32; 9];

/// (JST day, JST hour, method as stored).
pub type HourKey = (Date, i16, &'static str);

/// The change to one (JST day, method) row of the daily rollup: its counters, in `HourlyCounts`' order,
/// and its receptions per JST hour (0-23).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DayDelta {
    pub counts: HourlyCounts,
    pub hours: [i32; 24],
}

impl DayDelta {
    fn is_zero(&self) -> bool {
        self.counts.iter().chain(&self.hours).all(|x| *x == 0)
    }
}

/// Changes to a clinic's rollups from a set of visit changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RollupDelta {
    pub hourly: BTreeMap<HourKey, HourlyCounts>,
    /// (month, patient pseudonym) → confirmed with マイナ保険証 in that month.
    pub patients: BTreeMap<(YearMonth, String), bool>,
}

fn contribution(v: &Visit) -> (HourKey, HourlyCounts) {
    let local = v.first_at.to_offset(jst::JST);
    let flag = |b: bool| i32::from(b);
    let values = [
        1,
        flag(v.myna),
        flag(v.consents.medication == Some(true)),
        flag(v.consents.diagnosis == Some(true)),
        flag(v.consents.checkup == Some(true)),
        flag(v.result != QualificationResult::Valid),
        flag(v.identity == Some(IdentityCheck::Face)),
        flag(v.identity == Some(IdentityCheck::Pin)),
        flag(v.identity == Some(IdentityCheck::Visual)),
    ];
    ((v.date, i16::from(local.hour()), v.method.as_str()), values)
}

impl RollupDelta {
    /// Adds the change of one visit from `old` (none for a new visit) to `new`.
    pub fn add(&mut self, old: Option<&Visit>, new: &Visit) {
        if let Some(old) = old {
            let (key, values) = contribution(old);
            let entry = self.hourly.entry(key).or_default();
            for (e, v) in entry.iter_mut().zip(values) {
                *e -= v;
            }
        }
        let (key, values) = contribution(new);
        let entry = self.hourly.entry(key).or_default();
        for (e, v) in entry.iter_mut().zip(values) {
            *e += v;
        }
        if let Some(p) = &new.patient {
            let flag = self.patients.entry((YearMonth::of(new.date), p.as_str().to_owned())).or_default();
            *flag |= new.myna;
        }
    }

    /// Hourly buckets that actually change.
    pub fn changed_hours(&self) -> impl Iterator<Item = (&HourKey, &HourlyCounts)> {
        self.hourly.iter().filter(|(_, d)| d.iter().any(|x| *x != 0))
    }

    /// The same changes per (JST day, method), for the daily rollup: the counters summed over the day's
    /// hours and the receptions kept per hour. Rows that do not change are left out; a visit moved between
    /// two hours of one day changes only the hours.
    pub fn changed_days(&self) -> BTreeMap<(Date, &'static str), DayDelta> {
        let mut days: BTreeMap<(Date, &'static str), DayDelta> = BTreeMap::new();
        for ((day, hour, method), counts) in self.changed_hours() {
            let entry = days.entry((*day, *method)).or_default();
            for (e, v) in entry.counts.iter_mut().zip(counts) {
                *e += v;
            }
            if let Some(h) = usize::try_from(*hour).ok().and_then(|h| entry.hours.get_mut(h)) {
                *h += counts[0];
            }
        }
        days.retain(|_, d| !d.is_zero());
        days
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::{ConfirmationMethod, Consents};

    fn visit(method: ConfirmationMethod, myna: bool, hour: u8) -> Visit {
        let at = datetime!(2026-06-01 00:00 +09:00).replace_hour(hour).unwrap_or(datetime!(2026-06-01 00:00 +09:00));
        Visit {
            key: "k".into(),
            date: at.date(),
            patient: Some("p1".into()),
            first_at: at,
            last_at: at,
            method,
            identity: None,
            myna,
            result: QualificationResult::Valid,
            insurer: None,
            consents: Consents::default(),
            confirmations: 1,
        }
    }

    #[test]
    fn a_changed_visit_moves_its_contribution() {
        let mut delta = RollupDelta::default();
        let before = visit(ConfirmationMethod::InsuranceCard, false, 10);
        delta.add(None, &before);
        let after = visit(ConfirmationMethod::MynaCard, true, 9);
        delta.add(Some(&before), &after);
        let changed: Vec<_> = delta.changed_hours().collect();
        assert_eq!(changed.len(), 1, "the old bucket nets to zero: {changed:?}");
        assert_eq!(changed[0].0.1, 9);
        assert_eq!(changed[0].1[0..2], [1, 1]);
        assert_eq!(delta.patients.get(&(YearMonth::of(after.date), "p1".into())), Some(&true));
        let days = delta.changed_days();
        assert_eq!(days.len(), 1, "one day, one method: {days:?}");
        let day = days.values().next().copied().unwrap_or_default();
        assert_eq!(day.counts[0..2], [1, 1]);
        assert_eq!((day.hours[9], day.hours[10]), (1, 0), "the reception counts at 9:00, none is left at 10:00");
    }

    #[test]
    fn a_move_between_hours_of_one_day_moves_only_the_hours() {
        let mut delta = RollupDelta::default();
        let before = visit(ConfirmationMethod::MynaCard, true, 10);
        let after = visit(ConfirmationMethod::MynaCard, true, 9);
        delta.add(Some(&before), &after);
        assert_eq!(delta.changed_hours().count(), 2);
        let days = delta.changed_days();
        assert_eq!(days.len(), 1);
        let day = days.values().next().copied().unwrap_or_default();
        assert_eq!(day.counts, [0; 9], "the day's counters do not change");
        assert_eq!((day.hours[9], day.hours[10]), (1, -1));
    }

    #[test]
    fn an_unchanged_visit_changes_no_day() {
        let mut delta = RollupDelta::default();
        let same = visit(ConfirmationMethod::MynaCard, true, 10);
        delta.add(Some(&same), &same);
        assert!(delta.changed_days().is_empty());
    }
}
