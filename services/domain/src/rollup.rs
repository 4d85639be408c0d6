//! What visits add to the dashboard rollups, as pure arithmetic: the store applies the result in the
//! transaction that changes the visits.
//!
//! A visit contributes to one row per JST day and method (its day, its method): the row's counters, and
//! the receptions of the JST hour of its first confirmation, so a year-long view reads one row per day and
//! method and still knows the hours. When it identifies a patient it also counts in that patient's month.
//! When a merge changes a visit (a late confirmation with another method or an earlier time), its old
//! contribution is subtracted and its new one added, so the sums stay exact whatever the order of arrival.

use std::collections::BTreeMap;

use time::Date;

use crate::{IdentityCheck, QualificationResult, Visit, YearMonth, jst};

/// The counters of a visit's contribution, in this order: receptions, マイナ保険証, consent to medication,
/// diagnosis and checkup information, not valid, identified by face, by PIN, by sight.
pub type Counts = [i32; 9];

/// (JST day, method as stored): one row of the daily rollup.
pub type DayKey = (Date, &'static str);

/// The change to one daily rollup row: its counters, and its receptions per JST hour (0-23).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DayDelta {
    pub counts: Counts,
    pub hours: [i32; 24],
}

impl DayDelta {
    /// Adds (`sign` 1) or subtracts (`sign` -1) one visit's contribution.
    fn add(&mut self, sign: i32, hour: usize, counts: Counts) {
        for (e, v) in self.counts.iter_mut().zip(counts) {
            *e += sign * v;
        }
        self.hours[hour] += sign * counts[0];
    }

    fn is_zero(&self) -> bool {
        self.counts.iter().chain(&self.hours).all(|x| *x == 0)
    }
}

/// Changes to a clinic's rollups from a set of visit changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RollupDelta {
    pub days: BTreeMap<DayKey, DayDelta>,
    /// (month, patient pseudonym) → confirmed with マイナ保険証 in that month.
    pub patients: BTreeMap<(YearMonth, String), bool>,
}

/// A visit's row, JST hour (0-23) and counters.
fn contribution(v: &Visit) -> (DayKey, usize, Counts) {
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
    ((v.date, v.method.as_str()), usize::from(local.hour()), values)
}

impl RollupDelta {
    /// Adds the change of one visit from `old` (none for a new visit) to `new`.
    pub fn add(&mut self, old: Option<&Visit>, new: &Visit) {
        if let Some(old) = old {
            let (key, hour, values) = contribution(old);
            self.days.entry(key).or_default().add(-1, hour, values);
        }
        let (key, hour, values) = contribution(new);
        self.days.entry(key).or_default().add(1, hour, values);
        if let Some(p) = &new.patient {
            let flag = self.patients.entry((YearMonth::of(new.date), p.as_str().to_owned())).or_default();
            *flag |= new.myna;
        }
    }

    /// The daily rollup rows that change. A row whose changes net to zero is left out; a visit moved between
    /// two hours of one day changes only the hours.
    pub fn changed_days(&self) -> impl Iterator<Item = (&DayKey, &DayDelta)> {
        self.days.iter().filter(|(_, d)| !d.is_zero())
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
        assert_eq!(delta.patients.get(&(YearMonth::of(after.date), "p1".into())), Some(&true));
        let days: Vec<_> = delta.changed_days().collect();
        assert_eq!(days.len(), 1, "the old method's row nets to zero: {days:?}");
        let (key, day) = days[0];
        assert_eq!(*key, (after.date, ConfirmationMethod::MynaCard.as_str()));
        assert_eq!(day.counts[0..2], [1, 1]);
        let mut hours = [0; 24];
        hours[9] = 1;
        assert_eq!(day.hours, hours, "the reception counts at 9:00, none is left at 10:00");
    }

    #[test]
    fn a_move_between_hours_of_one_day_moves_only_the_hours() {
        let mut delta = RollupDelta::default();
        let before = visit(ConfirmationMethod::MynaCard, true, 10);
        let after = visit(ConfirmationMethod::MynaCard, true, 9);
        delta.add(Some(&before), &after);
        let days: Vec<_> = delta.changed_days().collect();
        assert_eq!(days.len(), 1);
        let day = days[0].1;
        assert_eq!(day.counts, [0; 9], "the day's counters do not change");
        let mut hours = [0; 24];
        (hours[9], hours[10]) = (1, -1);
        assert_eq!(day.hours, hours, "two hours change");
    }

    #[test]
    fn an_unchanged_visit_changes_no_day() {
        let mut delta = RollupDelta::default();
        let same = visit(ConfirmationMethod::MynaCard, true, 10);
        delta.add(Some(&same), &same);
        assert_eq!(delta.changed_days().count(), 0);
    }
}
