//! The clinic page's 利用率 in three figures per month (same-day estimate, claims-based, official), why they
//! differ, and the current month's outlook on the best figure there is, calibrated per clinic (see
//! `onshi_rules::figures`).

use std::collections::BTreeMap;

use onshi_rules::figures::{DifferenceKind, MonthFigures, best, calibrate_official, differences, explain};
use onshi_rules::{MonthCount, RuleSet, YearMonth};
use onshi_store::{ClinicScope, TenantStore};

use super::pct;
use crate::ApiError;
use crate::web::i18n::Lang;

/// Months shown: this one and the eleven before it.
const MONTHS: i32 = 12;

pub(crate) struct FigureRow {
    pub month: String,
    pub estimate: String,
    pub estimate_parts: String,
    pub claims: String,
    pub claims_parts: String,
    pub official: String,
    pub official_note: String,
    pub explanation: String,
}

pub(crate) struct UsageFigures {
    pub rows: Vec<FigureRow>,
    /// Why the rows' figures differ, once for each kind of difference they show.
    pub causes: Vec<String>,
    /// How the outlook corrects the same-day estimate, in words, or why it does not.
    pub calibration_text: String,
    /// The calibration itself, which the outlook and the overview's forecast apply.
    pub calibration: Option<onshi_rules::figures::Calibration>,
    /// The current month's likely figure and what it rests on ("27.8%", "推計（補正後）"), for the page's
    /// headline.
    pub likely: Option<(String, &'static str)>,
    /// The current month's outlook and its CSS class ("alert" when below what it decides).
    pub outlook: String,
    pub outlook_class: &'static str,
    /// Months with an official or claims-based figure: what decides the standing instead of the estimate.
    pub known: BTreeMap<YearMonth, f64>,
    /// The clinic's same-day counts of the months shown that have any, read once for the whole page.
    pub estimates: BTreeMap<YearMonth, MonthCount>,
}

pub(crate) async fn usage_figures(
    rules: &RuleSet,
    store: &TenantStore<'_>,
    clinic: &ClinicScope,
    this_month: YearMonth,
    lang: Lang,
) -> Result<UsageFigures, ApiError> {
    let months: Vec<YearMonth> = this_month.plus(1 - MONTHS).through(this_month).collect();
    let mut figures: BTreeMap<YearMonth, MonthFigures> = months.iter().map(|m| (*m, MonthFigures::default())).collect();
    let mut estimates = BTreeMap::new();
    for (m, u) in store.usage_by_month(&months).await? {
        if let Some(f) = figures.get_mut(&m).filter(|_| u.clinic == clinic.id) {
            f.estimate = MonthCount { patients: u.patients, myna: u.myna_patients };
            estimates.insert(m, f.estimate);
        }
    }
    for (m, c) in store.claims_usage(clinic, &months).await? {
        if let Some(f) = figures.get_mut(&m) {
            f.claims = Some((c.myna_receipts, c.outpatient_receipts));
        }
    }
    let official = store.official_usage(clinic).await?;
    for (m, o) in &official {
        if let Some(f) = figures.get_mut(m) {
            f.official = Some(o.rate);
        }
    }
    // The same calibration as the group overview and the usage e-mail (official figures of the twelve
    // months up to this one), so the outlook reads the same everywhere.
    let rates = official.iter().map(|(m, o)| (*m, o.rate)).collect();
    let calibration = calibrate_official(&estimates, &rates, this_month);

    let shown: Vec<(&YearMonth, &MonthFigures)> = figures
        .iter()
        .rev()
        .filter(|(_, f)| f.estimate.patients > 0 || f.claims.is_some() || f.official.is_some())
        .collect();
    let found: Vec<DifferenceKind> = shown.iter().flat_map(|(_, f)| differences(f)).map(|d| d.kind).collect();
    let causes = DifferenceKind::ALL
        .iter()
        .filter(|k| found.contains(k))
        .map(|k| k.cause().in_lang(lang.is_en()).to_owned())
        .collect();
    let rows = shown
        .into_iter()
        .map(|(m, f)| {
            let o = official.get(m);
            FigureRow {
                month: m.to_string(),
                estimate: pct(f.estimate_rate()),
                estimate_parts: if f.estimate.patients > 0 {
                    format!("{}/{}", f.estimate.myna, f.estimate.patients)
                } else {
                    String::new()
                },
                claims: pct(f.claims_rate()),
                claims_parts: f.claims.map(|(a, b)| format!("{a}/{b}")).unwrap_or_default(),
                official: pct(f.official),
                official_note: o
                    .map(|o| {
                        let mut parts = Vec::new();
                        if let (Some(u), Some(r)) = (o.users, o.receipts) {
                            parts.push(format!("{u}/{r}"));
                        }
                        if let Some(d) = o.notified_on {
                            parts.push(format!("{} {d}", lang.t("通知", "notified")));
                        } else if o.users.is_none() {
                            // A rate typed on the billing page, without its notice.
                            parts.push(lang.t("手入力", "typed in").to_owned());
                        }
                        parts.join(" · ")
                    })
                    .unwrap_or_default(),
                explanation: explain(f).in_lang(lang.is_en()).to_owned(),
            }
        })
        .collect();

    let calibration_text = match &calibration {
        // In words a manager reads without the formula: how the notified figure compared with the same-day
        // one, and what the outlook does with that.
        Some(c) => lang
            .t(
                "公式値は、当日推計の平均{f}倍でした（{n}か月、{lo}〜{hi}倍）。今月の見込みは、今月の当日推計にこの倍率を掛けた値です（グループの一覧・メールの見通しも同じ）。",
                "The official figure was on average {f} times the same-day estimate ({n} months, {lo} to {hi} times). This month's outlook is this month's estimate times that (as on the group's overview and in its e-mails).",
            )
            .replace("{f}", &format!("{:.2}", c.factor))
            .replace("{lo}", &format!("{:.2}", c.low))
            .replace("{hi}", &format!("{:.2}", c.high))
            .replace("{n}", &c.months.to_string()),
        None => lang
            .t(
                "公式値のある月がまだないため、今月の見込みは当日推計のままです。公式値を入力すると、その月との比で見込みを補正します。",
                "No month has an official figure yet, so this month's outlook is the same-day estimate as it is. Enter official figures and the outlook is corrected by how they compared.",
            )
            .to_owned(),
    };

    let current = figures.get(&this_month).copied().unwrap_or_default();
    let now = best(&current, calibration.as_ref());
    let likely = now.map(|b| (pct(Some(b.rate)), lang.t(b.basis.label_ja(), b.basis.label_en())));
    let (outlook, outlook_class) = match now {
        Some(onshi_rules::figures::Best { rate, basis, range }) => {
            // The low end of a calibrated estimate's range missing the level makes the outlook uncertain.
            let low = range.map(|(lo, _)| lo);
            let forecast = rules.forecast(clinic.kind, this_month, Some(rate));
            let range = range
                .map(|(lo, hi)| {
                    lang.t("（{lo}〜{hi}）", " ({lo} to {hi})")
                        .replace("{lo}", &pct(Some(lo)))
                        .replace("{hi}", &pct(Some(hi)))
                })
                .unwrap_or_default();
            let decides = match (forecast.decides.first(), forecast.decides.last(), forecast.required) {
                (Some(first), Some(last), Some(min)) => lang
                    .t(" → {first}〜{last}の算定（{min}以上が必要）", " → claims of {first} to {last} (need {min})")
                    .replace("{first}", &first.to_string())
                    .replace("{last}", &last.to_string())
                    .replace("{min}", &pct(Some(min))),
                _ => String::new(),
            };
            let uncertain =
                matches!((low, forecast.required), (Some(lo), Some(min)) if !onshi_rules::usage::reaches(lo, min));
            (
                format!(
                    "{this_month}: {} {}{range}{}{}: {}{decides}",
                    lang.t("見込み", "outlook"),
                    pct(Some(rate)),
                    lang.t("、", "; "),
                    lang.t("根拠", "basis"),
                    lang.t(basis.label_ja(), basis.label_en()),
                ),
                if forecast.below() {
                    "alert"
                } else if uncertain {
                    "warn"
                } else {
                    ""
                },
            )
        }
        None => ("—".to_owned(), ""),
    };
    let known = figures.iter().filter_map(|(m, f)| Some((*m, f.official.or_else(|| f.claims_rate())?))).collect();
    Ok(UsageFigures { rows, causes, calibration_text, calibration, likely, outlook, outlook_class, known, estimates })
}
