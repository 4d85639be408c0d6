//! The group manager's overview: マイナ保険証利用率 per clinic and month with the level each month's
//! claims can use, the national figure beside it, and the at-risk clinics first.

use std::collections::{BTreeMap, HashMap};

use actix_web::{HttpResponse, web};
use askama::Template;
use onshi_domain::{ClinicId, FacilityKind};
use onshi_rules::{Level, MonthCount, RuleSet, YearMonth};
use onshi_store::{AuditResult, ClinicScope};
use serde::Deserialize;
use time::{Date, OffsetDateTime};

use super::chart::sparkline;
use super::pct;
use crate::web::csv::CsvTable;
use crate::web::guard::{Caller, Page};
use crate::web::page::ok;
use crate::{ApiError, AppState};

const NATIONAL: &str = include_str!("../../../data/national-usage.csv");

fn national() -> HashMap<String, f64> {
    NATIONAL
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("month"))
        .filter_map(|l| l.split_once(','))
        .filter_map(|(m, p)| Some((m.trim().to_owned(), p.trim().parse::<f64>().ok()? / 100.0)))
        .collect()
}

/// Where a rate stands against the levels required on a date: (text, CSS class, the lowest level).
fn level_text(level: &Level) -> (String, &'static str) {
    match level {
        Level::NoRequirement => ("利用率の要件なし".into(), ""),
        Level::DataMissing { .. } => ("—".into(), ""),
        Level::Reached { tier, .. } => (format!("{}（{:.0}%以上）", tier.addons.join("・"), tier.min * 100.0), "ok"),
        Level::Below { lowest } => (format!("基準{:.0}%未満", lowest * 100.0), "alert"),
    }
}

pub(crate) struct MonthCell {
    pub patients: u64,
    pub myna: u64,
    pub rate: String,
    /// The usage level this month's claims could use: the best estimate of months N-5..N-3 against the
    /// rules in force in month N (the 医療DX推進体制整備加算 tier before 2026-06).
    pub tier: String,
}

/// Months of history before the first shown month that the level of a shown month looks back on.
const WINDOW_BACK: i32 = 5;

pub(crate) struct ClinicRow {
    pub id: String,
    pub name: String,
    pub cells: Vec<MonthCell>,
    pub spark: String,
    pub change: String,
    pub status: String,
    pub status_class: &'static str,
    pub forecast: String,
    pub forecast_class: &'static str,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct OverviewPage {
    page: Page,
    months: Vec<String>,
    last_month: String,
    rows: Vec<ClinicRow>,
    total: ClinicRow,
    national: Vec<String>,
    window_note: String,
}

#[derive(Deserialize)]
pub(crate) struct OverviewQuery {
    /// Only these clinics (comma-separated ids); all the caller may see when absent.
    #[serde(default)]
    clinics: Option<String>,
    #[serde(default)]
    months: Option<u8>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    format: Option<String>,
}

fn change(rates: &[Option<f64>]) -> String {
    match rates {
        [.., Some(a), Some(b)] => format!("{:+.1}pt", (b - a) * 100.0),
        _ => "—".to_owned(),
    }
}

/// The level the claims of `month` reach from the estimates of its deciding months.
fn tier(rules: &RuleSet, kind: FacilityKind, month: YearMonth, rates: &BTreeMap<YearMonth, f64>) -> String {
    match rules.standing(kind, month, rates).level {
        Level::Reached { tier, .. } => tier.addons.first().cloned().unwrap_or_default(),
        Level::Below { lowest } => format!("基準{:.0}%未満", lowest * 100.0),
        Level::DataMissing { .. } | Level::NoRequirement => String::new(),
    }
}

fn row(
    rules: &RuleSet,
    (id, name, kind): (String, String, FacilityKind),
    history: &BTreeMap<YearMonth, MonthCount>,
    months: &[YearMonth],
    today: Date,
) -> ClinicRow {
    let all_rates: BTreeMap<YearMonth, f64> = history.iter().filter_map(|(m, c)| Some((*m, c.rate()?))).collect();
    let counts: Vec<MonthCount> = months.iter().map(|m| history.get(m).copied().unwrap_or_default()).collect();
    let rates: Vec<Option<f64>> = counts.iter().map(|c| c.rate()).collect();
    let current = rates.last().copied().flatten();
    let level = rules.level_on(kind, today, current);
    let (status, status_class) = level_text(&level);
    // This month counts towards the claims of the months it decides (the best of N-5..N-3 decides N).
    let this = months.last().copied().unwrap_or(YearMonth::of(today));
    let outlook = rules.forecast(kind, this, current);
    let forecast = match (current, outlook.required, outlook.decides.first(), outlook.decides.last()) {
        (Some(r), Some(min), Some(first), Some(last)) if outlook.below() => {
            format!("{this}: 見込み{} → {first}〜{last}の算定で基準{:.0}%未満", pct(Some(r)), min * 100.0)
        }
        (Some(r), Some(_), _, _) => format!("{this}: 見込み{}（基準以上）", pct(Some(r))),
        _ => "—".to_owned(),
    };
    ClinicRow {
        spark: sparkline(&rates, level.lowest(), &name),
        change: change(&rates),
        cells: months
            .iter()
            .zip(&counts)
            .map(|(m, c)| MonthCell {
                patients: c.patients,
                myna: c.myna,
                rate: pct(c.rate()),
                tier: tier(rules, kind, *m, &all_rates),
            })
            .collect(),
        id,
        name,
        status,
        status_class,
        forecast,
        forecast_class: if outlook.below() { "alert" } else { "" },
    }
}

pub(crate) async fn overview(
    state: web::Data<AppState>,
    page: Page,
    caller: Caller,
    q: web::Query<OverviewQuery>,
) -> Result<HttpResponse, ApiError> {
    let today = onshi_domain::jst::date_of(OffsetDateTime::now_utc());
    let last = crate::web::input::month("to", q.to.as_deref())?.unwrap_or(YearMonth::of(today));
    let n = i32::from(q.months.unwrap_or(6).clamp(2, 24));
    let months: Vec<YearMonth> = (0..n).map(|k| last.plus(k - n + 1)).collect();
    let store = state.store.tenant(caller.scope);
    let only: Option<Vec<ClinicId>> =
        q.clinics.as_deref().map(|list| list.split(',').filter_map(|id| id.trim().parse().ok()).collect());
    let clinics: Vec<ClinicScope> = caller
        .visible_clinics(&store)
        .await?
        .into_iter()
        .filter(|c| only.as_ref().is_none_or(|o| o.contains(&c.id)))
        .collect();
    // The shown months and the five before them, which decide the shown months' levels.
    let loaded: Vec<YearMonth> = last.plus(1 - n - WINDOW_BACK).through(last).collect();
    let mut usage: HashMap<ClinicId, BTreeMap<YearMonth, MonthCount>> = HashMap::new();
    for (month, u) in store.usage_by_month(&loaded).await? {
        usage.entry(u.clinic).or_default().insert(month, MonthCount { patients: u.patients, myna: u.myna_patients });
    }
    let empty = BTreeMap::new();
    let rows: Vec<ClinicRow> = clinics
        .iter()
        .map(|c| {
            let history = usage.get(&c.id).unwrap_or(&empty);
            row(&state.rules, (c.id.to_string(), c.name.clone(), c.kind), history, &months, today)
        })
        .collect();
    let mut totals: BTreeMap<YearMonth, MonthCount> = BTreeMap::new();
    for c in &clinics {
        for (m, n) in usage.get(&c.id).unwrap_or(&empty) {
            let t = totals.entry(*m).or_default();
            *t = *t + *n;
        }
    }
    let total =
        row(&state.rules, (String::new(), "グループ合計".to_owned(), FacilityKind::Medical), &totals, &months, today);
    store.audit(&caller.entry("dashboard.view", "dashboard:usage", AuditResult::Success)).await?;
    let month_labels: Vec<String> = months.iter().map(ToString::to_string).collect();
    if q.format.as_deref() == Some("csv") {
        let mut table = CsvTable::new(&["医療機関", "月", "受付患者数", "マイナ保険証患者数", "利用率（推計）"]);
        for r in rows.iter().chain(std::iter::once(&total)) {
            for (m, c) in month_labels.iter().zip(&r.cells) {
                table.push([r.name.clone(), m.clone(), c.patients.to_string(), c.myna.to_string(), c.rate.clone()]);
            }
        }
        return Ok(table.download("usage"));
    }
    let nat = national();
    ok(OverviewPage {
        national: month_labels.iter().map(|m| pct(nat.get(m).copied())).collect(),
        last_month: last.to_string(),
        months: month_labels,
        rows,
        total,
        window_note: format!(
            "{}の算定には {}〜{} のうち最も高い月の利用率が使われます（公式のレセプト件数ベース）。",
            last.plus(3),
            last.plus(-2),
            last
        ),
        page,
    })
}
