//! Where a clinic stands on マイナ保険証利用率: the one place that decides it, for the dashboard, the usage
//! alerts and billing alike.
//!
//! Under the rules in force in a claim month N, some addons need a rate of at least a level in one of the
//! months of N's usage window (for example the best of N-5..N-3; months before `usage_earliest` do not
//! count). So:
//! - [`RuleSet::standing`] says which level the claims of month N reach from the rates known for its
//!   window, or that the window's data is missing;
//! - [`RuleSet::forecast`] looks the other way: a month's rate so far, against the levels of the claim
//!   months that month decides;
//! - [`RuleSet::level_on`] places one rate against the levels of a date;
//! - the billing engine judges one rule for one visit with the same pieces
//!   ([`UsageRequirement::deciding`], [`best_of`], [`reaches`]), so a clerk's reason, the dashboard and
//!   the alert never disagree about which month counts or whether 30% is 30%.
//!
//! Rates come from whatever figure the caller has for a month (the same-day estimate, the notified
//! official figure); the functions do not care which.

use std::collections::BTreeMap;

use onshi_domain::{FacilityKind, YearMonth};
use time::Date;

use crate::rules::UsageRequirement;
use crate::{RuleSet, UsageTier, VisitKind};

/// Small tolerance for rates read from percentages.
const EPS: f64 = 1e-9;

/// Patients seen in a month, and how many of them used a マイナ保険証.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MonthCount {
    pub patients: u64,
    pub myna: u64,
}

impl MonthCount {
    /// `myna / patients`, or `None` for a month without patients.
    pub fn rate(self) -> Option<f64> {
        (self.patients > 0).then(|| self.myna as f64 / self.patients as f64)
    }
}

impl std::ops::Add for MonthCount {
    type Output = Self;

    fn add(self, other: Self) -> Self {
        Self { patients: self.patients + other.patients, myna: self.myna + other.myna }
    }
}

/// A rate placed against the levels in force.
#[derive(Debug, Clone, PartialEq)]
pub enum Level {
    /// No addon of this facility kind requires a rate then.
    NoRequirement,
    /// A rate is required, but there is none to judge.
    DataMissing { lowest: f64 },
    /// The highest level the rate reaches.
    Reached { tier: UsageTier, lowest: f64 },
    /// Below every level.
    Below { lowest: f64 },
}

impl Level {
    /// The lowest level required then (what "below" means), if any is.
    pub fn lowest(&self) -> Option<f64> {
        match self {
            Level::NoRequirement => None,
            Level::DataMissing { lowest } | Level::Reached { lowest, .. } | Level::Below { lowest } => Some(*lowest),
        }
    }

    pub fn is_below(&self) -> bool {
        matches!(self, Level::Below { .. })
    }
}

/// What the claims of one month reach.
#[derive(Debug, Clone, PartialEq)]
pub struct Standing {
    /// The claim month.
    pub month: YearMonth,
    /// The months whose rates decide it (empty when no rate is required).
    pub deciding: Vec<YearMonth>,
    /// Deciding months without a rate.
    pub missing: Vec<YearMonth>,
    /// The best deciding month and its rate.
    pub best: Option<(YearMonth, f64)>,
    pub level: Level,
}

/// What a month's rate means for the claims it decides.
#[derive(Debug, Clone, PartialEq)]
pub struct Forecast {
    /// The month measured.
    pub month: YearMonth,
    pub rate: Option<f64>,
    /// The claim months whose window contains `month`.
    pub decides: Vec<YearMonth>,
    /// The lowest level those months require (the strictest of them), if any.
    pub required: Option<f64>,
}

impl Forecast {
    /// The rate is known and below what the months it decides require.
    pub fn below(&self) -> bool {
        matches!((self.rate, self.required), (Some(r), Some(min)) if !reaches(r, min))
    }
}

impl UsageRequirement {
    /// The months whose rates decide the claims of `month` under this requirement: its window, without
    /// the months before `earliest`.
    pub fn deciding(&self, month: YearMonth) -> Vec<YearMonth> {
        self.window.iter().map(|o| month.plus(*o)).filter(|m| self.earliest.is_none_or(|e| *m >= e)).collect()
    }

    /// The months whose オン資件数ベース rates may decide the claims of `month` instead (none for most
    /// rules).
    pub fn deciding_oqs(&self, month: YearMonth) -> Vec<YearMonth> {
        self.oqs_window.iter().map(|o| month.plus(*o)).collect()
    }

    /// The level this requirement asks for (the 小児科 special one where it has one and the clinic has it).
    pub fn min_for(&self, pediatric: bool) -> f64 {
        match (pediatric, self.min_pediatric) {
            (true, Some(p)) => p,
            _ => self.min,
        }
    }
}

/// Whether `rate` reaches `min`; the one comparison every caller uses (with a tolerance for rates that
/// were typed as percentages).
pub fn reaches(rate: f64, min: f64) -> bool {
    rate + EPS >= min
}

/// The best rate among `months` (the earliest month on a tie), and the months that have none.
pub fn best_of(months: &[YearMonth], rates: &BTreeMap<YearMonth, f64>) -> (Option<(YearMonth, f64)>, Vec<YearMonth>) {
    let missing = months.iter().copied().filter(|m| !rates.contains_key(m)).collect();
    let best =
        months.iter().filter_map(|m| rates.get(m).map(|r| (*m, *r))).fold(None, |acc: Option<(YearMonth, f64)>, x| {
            match acc {
                Some(a) if a.1 >= x.1 => Some(a),
                _ => Some(x),
            }
        });
    (best, missing)
}

impl RuleSet {
    /// The months whose rates decide the claims of `month` (初診 rules of `kind` in force on its first
    /// day); empty when none requires a rate.
    pub fn usage_window(&self, kind: FacilityKind, month: YearMonth) -> Vec<YearMonth> {
        let day = month.first_day();
        let mut months: Vec<YearMonth> = self
            .rules
            .iter()
            .filter(|r| r.applies_to(kind, day, VisitKind::First))
            .filter_map(|r| r.usage.as_ref())
            .flat_map(|u| u.deciding(month))
            .collect();
        months.sort();
        months.dedup();
        months
    }

    /// Places `rate` against the levels required on `date`.
    pub fn level_on(&self, kind: FacilityKind, date: Date, rate: Option<f64>) -> Level {
        let tiers = self.usage_tiers(kind, date);
        let Some(lowest) = tiers.last().map(|t| t.min) else { return Level::NoRequirement };
        let Some(rate) = rate else { return Level::DataMissing { lowest } };
        match tiers.into_iter().find(|t| reaches(rate, t.min)) {
            Some(tier) => Level::Reached { tier, lowest },
            None => Level::Below { lowest },
        }
    }

    /// What the claims of `month` reach with the rates in `rates` (one figure per month).
    pub fn standing(&self, kind: FacilityKind, month: YearMonth, rates: &BTreeMap<YearMonth, f64>) -> Standing {
        let deciding = self.usage_window(kind, month);
        let (best, missing) = best_of(&deciding, rates);
        let level = self.level_on(kind, month.first_day(), best.map(|b| b.1));
        Standing { month, deciding, missing, best, level }
    }

    /// What `rate`, the figure of `month` so far, means for the claim months it decides (looking a year
    /// ahead).
    pub fn forecast(&self, kind: FacilityKind, month: YearMonth, rate: Option<f64>) -> Forecast {
        let decides: Vec<YearMonth> =
            (1..=12).map(|k| month.plus(k)).filter(|n| self.usage_window(kind, *n).contains(&month)).collect();
        let required = decides
            .iter()
            .filter_map(|n| self.usage_tiers(kind, n.first_day()).last().map(|t| t.min))
            .fold(None, |acc: Option<f64>, m| Some(acc.map_or(m, |a| a.max(m))));
        Forecast { month, rate, decides, required }
    }
}

#[cfg(test)]
mod tests {
    use time::macros::date;

    use super::*;

    fn ym(s: &str) -> YearMonth {
        YearMonth::parse(s).unwrap()
    }

    #[test]
    fn the_claims_of_a_month_are_decided_by_its_window() {
        let rules = RuleSet::builtin().unwrap();
        // Under the 2026-06 rules the best of N-5..N-3 decides month N.
        let month = ym("2026-09");
        let window = rules.usage_window(FacilityKind::Medical, month);
        assert_eq!(window, vec![ym("2026-04"), ym("2026-05"), ym("2026-06")]);

        let none = rules.standing(FacilityKind::Medical, month, &BTreeMap::new());
        assert!(matches!(none.level, Level::DataMissing { .. }), "{none:?}");
        assert_eq!(none.missing, window);

        let rates: BTreeMap<_, _> = [(ym("2026-04"), 0.12), (ym("2026-05"), 0.41)].into_iter().collect();
        let s = rules.standing(FacilityKind::Medical, month, &rates);
        assert_eq!(s.best, Some((ym("2026-05"), 0.41)));
        assert_eq!(s.missing, vec![ym("2026-06")]);
        assert!(matches!(s.level, Level::Reached { .. }), "{s:?}");

        let low: BTreeMap<_, _> = [(ym("2026-04"), 0.05)].into_iter().collect();
        assert!(rules.standing(FacilityKind::Medical, month, &low).level.is_below());
    }

    #[test]
    fn before_any_rate_was_required_there_is_no_requirement() {
        let rules = RuleSet::builtin().unwrap();
        let s = rules.standing(FacilityKind::Medical, ym("2023-05"), &BTreeMap::new());
        assert_eq!(s.level, Level::NoRequirement);
        assert!(s.deciding.is_empty());
        assert_eq!(rules.level_on(FacilityKind::Medical, date!(2023 - 05 - 01), Some(0.9)), Level::NoRequirement);
    }

    #[test]
    fn a_month_forecasts_the_claims_it_decides() {
        let rules = RuleSet::builtin().unwrap();
        let f = rules.forecast(FacilityKind::Medical, ym("2026-07"), Some(0.1));
        assert_eq!(f.decides, vec![ym("2026-10"), ym("2026-11"), ym("2026-12")]);
        assert!(f.required.is_some_and(|r| r > 0.1) && f.below(), "{f:?}");
        let ok = rules.forecast(FacilityKind::Medical, ym("2026-07"), Some(0.95));
        assert!(!ok.below());
        let unknown = rules.forecast(FacilityKind::Medical, ym("2026-07"), None);
        assert!(!unknown.below());
    }

    #[test]
    fn counts_give_rates_only_with_patients() {
        assert_eq!(MonthCount::default().rate(), None);
        assert_eq!(MonthCount { patients: 4, myna: 1 }.rate(), Some(0.25));
        assert_eq!((MonthCount { patients: 1, myna: 1 } + MonthCount { patients: 3, myna: 0 }).patients, 4);
    }

    #[test]
    fn the_same_month_and_the_same_comparison_decide_everywhere() {
        let rates: BTreeMap<_, _> =
            [(ym("2026-04"), 0.3), (ym("2026-05"), 0.3), (ym("2026-06"), 0.2)].into_iter().collect();
        let months = [ym("2026-04"), ym("2026-05"), ym("2026-06"), ym("2026-07")];
        let (best, missing) = best_of(&months, &rates);
        // A tie goes to the earliest month; a rate one rounding step off the level still reaches it.
        assert_eq!(best, Some((ym("2026-04"), 0.3)));
        assert_eq!(missing, vec![ym("2026-07")]);
        assert!(reaches(0.1 + 0.2, 0.3) && reaches(0.3, 0.1 + 0.2) && !reaches(0.2999, 0.3));
    }
}
