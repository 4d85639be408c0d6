//! The clinic page's 利用率 in three figures per month (same-day estimate, claims-based, official), why they
//! differ, and the current month's outlook on the best figure there is, calibrated per clinic (see
//! `onshi_rules::figures`).

use std::collections::BTreeMap;

use onshi_rules::figures::{MonthFigures, best, calibrate, explain};
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
    /// "公式値÷推計 0.78（0.74〜0.82、3か月から）", or why there is none.
    pub calibration: String,
    /// The current month's outlook and its CSS class ("alert" when below what it decides).
    pub outlook: String,
    pub outlook_class: &'static str,
    /// Months with an official or claims-based figure: what decides the standing instead of the estimate.
    pub known: BTreeMap<YearMonth, f64>,
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
    for (m, u) in store.usage_by_month(&months).await? {
        if let Some(f) = figures.get_mut(&m).filter(|_| u.clinic == clinic.id) {
            f.estimate = MonthCount { patients: u.patients, myna: u.myna_patients };
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
    // Learnt from the months shown: only they have an estimate to compare with.
    let calibration = calibrate(&figures);

    let rows = figures
        .iter()
        .rev()
        .filter(|(_, f)| f.estimate.patients > 0 || f.claims.is_some() || f.official.is_some())
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
        Some(c) => lang
            .t(
                "公式値（ない月はレセプト実績）÷当日推計 {f}（{lo}〜{hi}、{n}か月から）",
                "official (claims-based where there is none) ÷ same-day estimate {f} ({lo} to {hi}, from {n} months)",
            )
            .replace("{f}", &format!("{:.2}", c.factor))
            .replace("{lo}", &format!("{:.2}", c.low))
            .replace("{hi}", &format!("{:.2}", c.high))
            .replace("{n}", &c.months.to_string()),
        None => lang
            .t(
                "公式値かレセプト実績のある月がまだないため補正できません。公式値を入力すると見込みが補正されます。",
                "No month has an official or claims-based figure yet, so the estimate is not calibrated. Enter official figures to calibrate it.",
            )
            .to_owned(),
    };

    let current = figures.get(&this_month).copied().unwrap_or_default();
    let (outlook, outlook_class) = match best(&current, calibration.as_ref()) {
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
    Ok(UsageFigures { rows, calibration: calibration_text, outlook, outlook_class, known })
}
