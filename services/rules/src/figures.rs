//! One 利用率, three figures: what a manager can trust for a clinic and month.
//!
//! - **Same-day estimate**: マイナ保険証 users ÷ patients with a 資格確認 result here that month. Known the
//!   same day; runs high, because patients seen without a 資格確認 that month (a continuing patient whose
//!   card was checked last month) are in the official denominator but not in ours.
//! - **Claims-based**: receipts whose patient used a マイナ保険証 here that month ÷ 外来 receipts in the
//!   clinic's own レセ電, the official definition's shape (users over 外来レセプト件数) from the clinic's data.
//!   Known once the month is claimed (early the next month).
//! - **Official**: the figure 支払基金 notifies about six weeks after the month (お知らせ, portal), entered
//!   by the group. The one the rules use when present.
//!
//! The months that decide the 30% requirement often have no official figure yet. The forecast then uses the
//! best figure there is, and for an estimate applies a per-clinic calibration learned from the months that
//! have both (official ÷ estimate), with its spread, so a manager sees "27% (24–30%)" rather than a
//! same-day 38% that will not hold. The calibration is learned from official figures only: the group
//! overview and the usage watch, which read every clinic at once, cannot load each clinic's claims, and a
//! clinic's outlook must read the same on every page.

use std::collections::BTreeMap;

use onshi_domain::YearMonth;

use crate::text::Text;
use crate::usage::MonthCount;

/// The three figures of one month, as far as they exist.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MonthFigures {
    pub estimate: MonthCount,
    /// (receipts of マイナ保険証 users, 外来 receipts) from the claims.
    pub claims: Option<(u64, u64)>,
    pub official: Option<f64>,
}

impl MonthFigures {
    pub fn estimate_rate(&self) -> Option<f64> {
        self.estimate.rate()
    }

    pub fn claims_rate(&self) -> Option<f64> {
        self.claims.filter(|(_, n)| *n > 0).map(|(m, n)| m as f64 / n as f64)
    }
}

/// Which figure a month's value rests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    Official,
    Claims,
    /// The same-day estimate times the clinic's calibration.
    Calibrated,
    /// The same-day estimate, uncalibrated (no month has both figures yet).
    Estimate,
}

impl Basis {
    pub fn label_ja(self) -> &'static str {
        match self {
            Basis::Official => "公式値",
            Basis::Claims => "レセプト実績",
            Basis::Calibrated => "推計（補正後）",
            Basis::Estimate => "当日推計（未補正）",
        }
    }

    pub fn label_en(self) -> &'static str {
        match self {
            Basis::Official => "official",
            Basis::Claims => "claims-based",
            Basis::Calibrated => "estimate, calibrated",
            Basis::Estimate => "same-day estimate, uncalibrated",
        }
    }
}

/// official ÷ estimate, learned from the months that have both.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibration {
    pub factor: f64,
    /// The range the factor took (or mean ± one standard deviation, with three months or more).
    pub low: f64,
    pub high: f64,
    pub months: usize,
}

impl Calibration {
    /// A same-day estimate as it will likely be notified.
    pub fn apply(&self, estimate: f64) -> f64 {
        (estimate * self.factor).min(1.0)
    }
}

/// Fewer patients than this in a month and its estimate does not count towards a calibration.
pub const CALIBRATION_MIN_PATIENTS: u64 = 10;

/// The calibration from the twelve months up to `this` that have an estimate and an official figure.
pub fn calibrate_official(
    estimates: &BTreeMap<YearMonth, MonthCount>,
    official: &BTreeMap<YearMonth, f64>,
    this: YearMonth,
) -> Option<Calibration> {
    let months = this.plus(-11).through(this).map(|m| {
        let estimate = estimates.get(&m).copied().unwrap_or_default();
        (m, MonthFigures { estimate, claims: None, official: official.get(&m).copied() })
    });
    calibrate(&months.collect())
}

/// Learns the calibration from the months with an official figure and an estimate (a claims-based figure
/// does not count: see the module's notes).
pub fn calibrate(months: &BTreeMap<YearMonth, MonthFigures>) -> Option<Calibration> {
    let ratios: Vec<f64> = months
        .values()
        // A month of a few patients (the agent installed near its end) measured a few days against the
        // official figure's whole month: its ratio would skew every forecast after it.
        .filter(|f| f.estimate.patients >= CALIBRATION_MIN_PATIENTS)
        .filter_map(|f| {
            let truth = f.official?;
            let estimate = f.estimate_rate().filter(|e| *e > 0.0)?;
            Some(truth / estimate)
        })
        .collect();
    if ratios.is_empty() {
        return None;
    }
    let n = ratios.len() as f64;
    let mean = ratios.iter().sum::<f64>() / n;
    let (low, high) = if ratios.len() >= 3 {
        let sd = (ratios.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
        (mean - sd, mean + sd)
    } else {
        (ratios.iter().copied().fold(f64::INFINITY, f64::min), ratios.iter().copied().fold(0.0, f64::max))
    };
    // An official 0% says nothing about how the estimate runs; it would turn every forecast into 0%.
    (mean > 0.0).then_some(Calibration { factor: mean, low: low.max(0.0), high, months: ratios.len() })
}

/// A month's best value and what it rests on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Best {
    pub rate: f64,
    pub basis: Basis,
    /// The range, for a calibrated estimate.
    pub range: Option<(f64, f64)>,
}

pub fn best(f: &MonthFigures, calibration: Option<&Calibration>) -> Option<Best> {
    let plain = |rate, basis| Best { rate, basis, range: None };
    if let Some(r) = f.official {
        return Some(plain(r, Basis::Official));
    }
    if let Some(r) = f.claims_rate() {
        return Some(plain(r, Basis::Claims));
    }
    let e = f.estimate_rate()?;
    Some(match calibration {
        Some(c) => Best {
            rate: c.apply(e),
            basis: Basis::Calibrated,
            range: Some(((e * c.low).min(1.0), (e * c.high).min(1.0))),
        },
        None => plain(e, Basis::Estimate),
    })
}

/// Which two of a month's figures differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DifferenceKind {
    EstimateOfficial,
    ClaimsOfficial,
    /// Only while there is no official figure.
    EstimateClaims,
}

impl DifferenceKind {
    /// Every kind, in the order a page lists their causes.
    pub const ALL: [DifferenceKind; 3] =
        [DifferenceKind::EstimateOfficial, DifferenceKind::ClaimsOfficial, DifferenceKind::EstimateClaims];

    /// Why figures differ this way: the same for every month, so a page says it once.
    pub fn cause(self) -> Text {
        match self {
            DifferenceKind::EstimateOfficial => Text::new(
                "推計と公式値: 推計の分母はこの月に資格確認をした患者で、公式値の分母（外来レセプト件数）は資格確認をせずに受診した患者（前の月に確認した継続患者など）も含むため",
                "Estimate and official: the estimate divides by the patients checked here this month; the official figure by outpatient receipts, which include patients seen without a check (such as continuing patients checked the month before)",
            ),
            DifferenceKind::ClaimsOfficial => Text::new(
                "レセプト実績と公式値: 資格確認の結果がエージェントを通らなかった患者、月遅れのレセプト、利用者数と件数の数え方の違いが考えられます",
                "Claims-based and official: likely patients whose check did not pass through the agent, receipts filed a month late, users counted differently from receipts",
            ),
            DifferenceKind::EstimateClaims => Text::new(
                "推計とレセプト実績: 分母の違い（資格確認をした患者と外来レセプト件数）",
                "Estimate and claims-based: different denominators (patients checked, outpatient receipts)",
            ),
        }
    }
}

/// Two of a month's figures that differ by a point or more, and by how much (the first minus the second,
/// in percentage points).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Difference {
    pub kind: DifferenceKind,
    pub points: f64,
}

impl Difference {
    /// What differs, for the month's row.
    pub fn text(self) -> Text {
        let d = self.points;
        let (ja, en) = if d > 0.0 { ("高い", "higher") } else { ("低い", "lower") };
        match self.kind {
            DifferenceKind::EstimateOfficial => Text::new(
                format!("推計は公式値より{:.1}ポイント{ja}", d.abs()),
                format!("The estimate is {:.1} points {en} than the official figure", d.abs()),
            ),
            DifferenceKind::ClaimsOfficial => Text::new(
                format!("レセプト実績は公式値と{:.1}ポイント違う", d.abs()),
                format!("The claims-based figure differs from the official one by {:.1} points", d.abs()),
            ),
            DifferenceKind::EstimateClaims => Text::new(
                format!("推計はレセプト実績より{:.1}ポイント{ja}（公式値が通知されたら入力してください）", d.abs()),
                format!(
                    "The estimate is {:.1} points {en} than the claims-based figure (enter the official figure once it is notified)",
                    d.abs()
                ),
            ),
        }
    }
}

/// How a month's figures differ, where by a point or more.
pub fn differences(f: &MonthFigures) -> Vec<Difference> {
    let pts = |kind, a: f64, b: f64| {
        Some((a - b) * 100.0).filter(|d| d.abs() >= 1.0).map(|points| Difference { kind, points })
    };
    let mut out = Vec::new();
    if let (Some(e), Some(o)) = (f.estimate_rate(), f.official) {
        out.extend(pts(DifferenceKind::EstimateOfficial, e, o));
    }
    if let (Some(c), Some(o)) = (f.claims_rate(), f.official) {
        out.extend(pts(DifferenceKind::ClaimsOfficial, c, o));
    }
    if let (Some(e), Some(c), None) = (f.estimate_rate(), f.claims_rate(), f.official) {
        out.extend(pts(DifferenceKind::EstimateClaims, e, c));
    }
    out
}

/// How a month's figures differ, in a sentence per difference.
pub fn explain(f: &MonthFigures) -> Text {
    let parts: Vec<Text> = differences(f).into_iter().map(Difference::text).collect();
    Text::join(&parts, "。", ". ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> YearMonth {
        YearMonth::parse(s).unwrap()
    }

    fn month(patients: u64, myna: u64, claims: Option<(u64, u64)>, official: Option<f64>) -> MonthFigures {
        MonthFigures { estimate: MonthCount { patients, myna }, claims, official }
    }

    #[test]
    fn the_calibration_is_learned_from_months_with_both_figures() {
        let mut months = BTreeMap::new();
        months.insert(m("2026-06"), month(100, 40, None, Some(0.30)));
        months.insert(m("2026-07"), month(100, 50, None, Some(0.40)));
        months.insert(m("2026-05"), month(100, 50, None, Some(0.39)));
        months.insert(m("2026-08"), month(100, 45, Some((36, 100)), None));
        months.insert(m("2026-09"), month(100, 44, None, None));
        let c = calibrate(&months).unwrap();
        assert_eq!(c.months, 3, "the claims-based month does not count");
        let expected = (0.75 + 0.8 + 0.78) / 3.0;
        assert!((c.factor - expected).abs() < 1e-9);
        assert!(c.low < c.factor && c.factor < c.high);

        let b = best(&months[&m("2026-09")], Some(&c)).unwrap();
        assert_eq!(b.basis, Basis::Calibrated);
        assert!((b.rate - 0.44 * expected).abs() < 1e-9);
        let (lo, hi) = b.range.unwrap();
        assert!(lo < b.rate && b.rate < hi);
        assert_eq!(best(&months[&m("2026-08")], Some(&c)).unwrap().basis, Basis::Claims);
        assert_eq!(
            best(&months[&m("2026-06")], Some(&c)).unwrap(),
            Best { rate: 0.30, basis: Basis::Official, range: None }
        );
        assert_eq!(best(&months[&m("2026-09")], None).unwrap().basis, Basis::Estimate);
        assert!(calibrate(&BTreeMap::from([(m("2026-09"), month(10, 5, None, None))])).is_none());
        // A month of a few patients does not count, nor does an official 0%.
        assert!(calibrate(&BTreeMap::from([(m("2026-09"), month(3, 3, None, Some(0.3)))])).is_none());
        assert!(calibrate(&BTreeMap::from([(m("2026-09"), month(30, 3, None, Some(0.0)))])).is_none());

        // From official figures alone, within the twelve months up to the one asked about.
        let estimates = BTreeMap::from([
            (m("2025-09"), MonthCount { patients: 100, myna: 10 }),
            (m("2026-06"), MonthCount { patients: 100, myna: 40 }),
            (m("2026-07"), MonthCount { patients: 100, myna: 50 }),
        ]);
        let official = BTreeMap::from([(m("2025-09"), 0.9), (m("2026-06"), 0.32), (m("2026-07"), 0.40)]);
        let c = calibrate_official(&estimates, &official, m("2026-09")).unwrap();
        assert_eq!(c.months, 2, "2025-09 is more than eleven months before");
        assert!((c.factor - 0.8).abs() < 1e-9);
        assert!((c.apply(0.5) - 0.4).abs() < 1e-9 && c.apply(2.0) == 1.0);
    }

    #[test]
    fn differences_are_explained() {
        let text = explain(&month(100, 40, Some((30, 100)), Some(0.28)));
        assert!(text.ja.contains("推計は公式値より12.0ポイント高い"), "{}", text.ja);
        assert!(text.ja.contains("レセプト実績は公式値と2.0ポイント違う"), "{}", text.ja);
        assert!(text.en.contains("The estimate is 12.0 points higher than the official figure"), "{}", text.en);
        assert!(text.en.contains("differs from the official one by 2.0 points"), "{}", text.en);
        assert!(explain(&month(100, 30, None, Some(0.30))).is_empty());
        let kinds = differences(&month(100, 40, Some((30, 100)), None));
        assert_eq!(kinds.len(), 1);
        assert_eq!(kinds[0].kind, DifferenceKind::EstimateClaims);
        assert!(kinds[0].text().ja.contains("推計はレセプト実績より10.0ポイント高い"));
        assert!(kinds[0].kind.cause().en.starts_with("Estimate and claims-based"));
    }
}
