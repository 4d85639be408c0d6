//! The group manager's overview: マイナ保険証利用率 per clinic and month with the level each month's
//! claims can use, the national figure beside it, and the at-risk clinics first.

use std::collections::{BTreeMap, HashMap};

use actix_web::{HttpResponse, web};
use askama::Template;
use onshi_domain::{AuditAction, ClinicId, FacilityKind};
use onshi_rules::figures::{Calibration, MonthFigures, best, calibrate_official};
use onshi_rules::{Level, MonthCount, RuleSet, YearMonth};
use onshi_store::{AuditResult, ClinicScope};
use serde::Deserialize;
use time::{Date, OffsetDateTime};

use super::chart::sparkline;
use super::pct;
use crate::web::csv::CsvTable;
use crate::web::guard::{Caller, Page};
use crate::web::i18n::Lang;
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

/// What the claims of the current month reach, from the months that decide them: (text, CSS class).
/// "データ不足" when none of those months has a figure: nothing is shown as reached without data.
fn standing_text(standing: &onshi_rules::Standing, lang: Lang) -> (String, &'static str) {
    match &standing.level {
        Level::NoRequirement => (lang.t("利用率の要件なし", "No usage requirement").to_owned(), ""),
        Level::DataMissing { .. } => {
            let (first, last) = (standing.deciding.first(), standing.deciding.last());
            let months = match (first, last) {
                (Some(f), Some(l)) => format!("{f}{}{l}", lang.t("〜", " to ")),
                _ => String::new(),
            };
            (format!("{}{}{months}{}", lang.t("データ不足", "No data"), lang.t("（", " ("), lang.t("）", ")")), "warn")
        }
        Level::Reached { tier, .. } => {
            let name = tier.addons.first().cloned().unwrap_or_default();
            let more = if tier.addons.len() > 1 { lang.t(" ほか", " and others") } else { "" };
            let (open, close) = (lang.t("（", " ("), lang.t("）", ")"));
            (format!("{name}{more}{open}{:.0}%{}{close}", tier.min * 100.0, lang.t("以上", "+")), "ok")
        }
        Level::Below { lowest } => (below_text(*lowest, lang), "alert"),
    }
}

/// "基準30%未満" / "Below 30%".
fn below_text(min: f64, lang: Lang) -> String {
    lang.t("基準{p}%未満", "Below {p}%").replace("{p}", &format!("{:.0}", min * 100.0))
}

/// What the rest of a month under way needs for its estimate to reach `target`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Needed {
    /// This percentage (rounded up) of the patients still to come, about `remaining`, using a マイナ保険証.
    Share { percent: u64, remaining: u64 },
    /// Not even if every patient still to come used one.
    Unreachable,
}

/// The patients a month under way will likely have by its end: last month's count where there is one (a
/// clinic's patients vary little from month to month, and the days to come add fewer new patients than
/// the first ones did, since many later visits are patients already counted), else the count so far at
/// the pace of the `elapsed` share of the month, which overstates them for the same reason.
fn projected_patients(so_far: u64, last_month: Option<u64>, elapsed: f64) -> u64 {
    let by_pace = (so_far as f64 / elapsed.clamp(0.05, 1.0)).round() as u64;
    last_month.filter(|n| *n > 0).unwrap_or(by_pace).max(so_far)
}

/// The share of a month's remaining patients (of `projected` in all) that must use a マイナ保険証 for its
/// estimate to reach `target`. `None` when the month has no patients yet or already reaches `target`.
fn needed(count: MonthCount, target: f64, projected: u64) -> Option<Needed> {
    if count.patients == 0 || onshi_rules::usage::reaches(count.myna as f64 / count.patients as f64, target) {
        return None;
    }
    let remaining = projected.saturating_sub(count.patients);
    // Whole patients, less a hair of floating point, so a need of exactly 15 is not 16.
    let more = (target * projected as f64 - count.myna as f64 - 1e-9).ceil().max(1.0) as u64;
    if target >= 1.0 || more > remaining {
        return Some(Needed::Unreachable);
    }
    // Rounded up to a whole percent in integers: 15 of 100 is 15%.
    Some(Needed::Share { percent: (more * 100).div_ceil(remaining), remaining })
}

/// How close to the line a clinic is, for ordering: the shown month's claims below the level first (money
/// lost now, whatever this month's own rate promises for later), then projected below, then within the
/// warning band, then missing data, then safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Risk {
    Now,
    Below,
    Near,
    NoData,
    Safe,
}

/// Within this many points above the level a clinic is "near" it.
const WARNING_BAND: f64 = 0.05;

pub(crate) struct MonthCell {
    pub patients: u64,
    pub myna: u64,
    pub rate: String,
    /// The month's notified (or claims-based) figure, which the rules use, where there is one.
    pub official: Option<String>,
    /// The usage level this month's claims could use: the best estimate of months N-5..N-3 against the
    /// rules in force in month N (the 医療DX推進体制整備加算 tier before 2026-06).
    pub tier: String,
}

/// Months of history before the first shown month that the level of a shown month looks back on.
pub(super) const WINDOW_BACK: i32 = 5;

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
    pub risk: Risk,
    /// This month's estimate falls short of what it decides (counted whatever the row's `risk` group).
    pub projected_below: bool,
    /// The shown month's likely figure (official, else the calibrated estimate), for ordering.
    pub current: Option<f64>,
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
    /// Some shown month has a published national figure (the reference row is left out otherwise).
    national_shown: bool,
    window_note: String,
    /// Clinics whose shown month's claims are below the level; those projected below; those within the
    /// warning band above it.
    now: usize,
    below: usize,
    near: usize,
    /// Clinics whose current claims cannot be judged for lack of data.
    no_data: usize,
    /// The CSV of what is shown (the same filters).
    csv_href: String,
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
fn tier(rules: &RuleSet, kind: FacilityKind, month: YearMonth, rates: &BTreeMap<YearMonth, f64>, lang: Lang) -> String {
    match rules.standing(kind, month, rates).level {
        // The level, short enough for a month's cell; the addon it earns is in the status column.
        Level::Reached { tier, .. } => match lang {
            Lang::Ja => format!("{:.0}%以上", tier.min * 100.0),
            Lang::En => format!("≥ {:.0}%", tier.min * 100.0),
        },
        Level::Below { lowest } => below_text(lowest, lang),
        Level::DataMissing { .. } | Level::NoRequirement => String::new(),
    }
}

/// What a clinic's official (or claims-based) figures tell its row: the months they decide instead of the
/// estimate, and how they correct this month's estimate.
#[derive(Clone, Copy)]
pub(super) struct Known<'a> {
    pub rates: &'a BTreeMap<YearMonth, f64>,
    pub calibration: Option<&'a Calibration>,
}

pub(super) fn row(
    rules: &RuleSet,
    lang: Lang,
    (id, name, kind): (String, String, FacilityKind),
    history: &BTreeMap<YearMonth, MonthCount>,
    months: &[YearMonth],
    today: Date,
    Known { rates: known, calibration }: Known<'_>,
) -> ClinicRow {
    // The official (or claims-based) figure of a month, where there is one, decides instead of the estimate.
    let mut all_rates: BTreeMap<YearMonth, f64> = history.iter().filter_map(|(m, c)| Some((*m, c.rate()?))).collect();
    all_rates.extend(known.iter().map(|(m, r)| (*m, *r)));
    let counts: Vec<MonthCount> = months.iter().map(|m| history.get(m).copied().unwrap_or_default()).collect();
    let rates: Vec<Option<f64>> = counts.iter().map(|c| c.rate()).collect();
    let current = rates.last().copied().flatten();
    let level = rules.level_on(kind, today, current);
    // The shown month's own claims are decided by earlier months (the best of N-5..N-3 decides N).
    let this = months.last().copied().unwrap_or(YearMonth::of(today));
    let standing = rules.standing(kind, this, &all_rates);
    let (status, status_class) = standing_text(&standing, lang);
    // And this month counts towards the claims of the months it decides, with what it will likely be
    // officially: the same-day estimate runs high, so it is corrected by how the clinic's official figures
    // compared with it, as on the clinic page.
    let this_count = counts.last().copied().unwrap_or_default();
    let factor = calibration.map(|c| c.factor);
    // The month's best figure, as the clinic page takes it: its official one where notified, else the
    // estimate as calibrated.
    let official = known.get(&this).copied();
    let figures = MonthFigures { estimate: this_count, claims: None, official };
    let likely = best(&figures, calibration).map(|b| b.rate);
    let outlook = rules.forecast(kind, this, likely);
    let rate_text = match (official, current, factor) {
        (Some(o), _, _) => lang.t("公式値 {o}", "official {o}").replace("{o}", &pct(Some(o))),
        (None, Some(r), Some(f)) => lang
            .t("見込み {likely}（当日推計 {rate}×補正 {f}）", "outlook {likely} (estimate {rate} × {f})")
            .replace("{likely}", &pct(likely))
            .replace("{rate}", &pct(Some(r)))
            .replace("{f}", &format!("{f:.2}")),
        // Uncalibrated, or no estimate at all (the forecast then says "—" and uses no rate text).
        (None, current, _) => lang.t("当日推計 {rate}", "estimate {rate}").replace("{rate}", &pct(current)),
    };
    let forecast = match (likely, outlook.required, outlook.decides.first(), outlook.decides.last()) {
        (Some(_), Some(min), Some(first), Some(last)) if outlook.below() => {
            // What the rest of a month under way needs, so that its corrected figure reaches the level.
            let under_way = this == YearMonth::of(today) && official.is_none();
            let days = time::util::days_in_month(today.month(), today.year());
            let elapsed = (f64::from(today.day()) - 0.5) / f64::from(days);
            let last_month = history.get(&this.plus(-1)).map(|c| c.patients);
            let projected = projected_patients(this_count.patients, last_month, elapsed);
            let target = factor.map_or(min, |f| min / f);
            let needed = match needed(this_count, target, projected).filter(|_| under_way) {
                Some(Needed::Share { percent, remaining }) => lang
                    .t(
                        "今月の残りの患者（約{n}人）の{s}%がマイナ保険証なら到達",
                        "Reached if {s}% of the month's remaining patients (about {n}) use マイナ保険証",
                    )
                    .replace("{n}", &remaining.to_string())
                    .replace("{s}", &percent.to_string()),
                Some(Needed::Unreachable) => lang
                    .t(
                        "残りの患者が全員マイナ保険証でも今月は届きません",
                        "Out of reach this month, even if every remaining patient used マイナ保険証",
                    )
                    .to_owned(),
                None => String::new(),
            };
            lang.t(
                "{this}: {rate} → {first}〜{last}の算定で{below}。{needed}",
                "{this}: {rate} → {first} to {last}: {below}. {needed}",
            )
            .replace("{this}", &this.to_string())
            .replace("{rate}", &rate_text)
            .replace("{first}", &first.to_string())
            .replace("{last}", &last.to_string())
            .replace("{below}", &below_text(min, lang))
            .replace("{needed}", &needed)
        }
        (Some(_), Some(_), Some(first), Some(last)) => lang
            .t("{this}: {rate} → {first}〜{last}の算定で基準以上", "{this}: {rate} → {first} to {last}: level reached")
            .replace("{this}", &this.to_string())
            .replace("{rate}", &rate_text)
            .replace("{first}", &first.to_string())
            .replace("{last}", &last.to_string()),
        _ => "—".to_owned(),
    };
    let below_now = matches!(standing.level, Level::Below { .. });
    let risk = match (likely, outlook.required) {
        _ if below_now => Risk::Now,
        _ if outlook.below() => Risk::Below,
        (Some(r), Some(min)) if r < min + WARNING_BAND => Risk::Near,
        (None, Some(_)) => Risk::NoData,
        _ if status_class == "warn" => Risk::NoData,
        _ => Risk::Safe,
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
                official: known.get(m).map(|r| pct(Some(*r))),
                tier: tier(rules, kind, *m, &all_rates, lang),
            })
            .collect(),
        id,
        name,
        status,
        status_class,
        forecast,
        forecast_class: if outlook.below() { "alert" } else { "" },
        risk,
        projected_below: outlook.below(),
        current: likely,
    }
}

pub(crate) async fn overview(
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
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
    // The shown months and the five before them, which decide the shown months' levels, and at least the
    // twelve months a clinic's calibration is learned from.
    let loaded: Vec<YearMonth> = last.plus((1 - n - WINDOW_BACK).min(-11)).through(last).collect();
    let mut usage: HashMap<ClinicId, BTreeMap<YearMonth, MonthCount>> = HashMap::new();
    for (month, u) in store.usage_by_month(&loaded).await? {
        usage.entry(u.clinic).or_default().insert(month, MonthCount { patients: u.patients, myna: u.myna_patients });
    }
    // Notified official figures decide a month's standing where they exist, as on the clinic page and in
    // billing (the clinic page also uses the claims-based figure, which this overview does not load).
    let official = store.official_rates(&loaded).await?;
    let empty = BTreeMap::new();
    let empty_rates = BTreeMap::new();
    let lang = page.lang;
    let mut rows: Vec<ClinicRow> = clinics
        .iter()
        .map(|c| {
            let history = usage.get(&c.id).unwrap_or(&empty);
            let official = official.get(&c.id).unwrap_or(&empty_rates);
            let calibration = calibrate_official(history, official, last);
            row(
                &state.rules,
                lang,
                (c.id.to_string(), c.name.clone(), c.kind),
                history,
                &months,
                today,
                Known { rates: official, calibration: calibration.as_ref() },
            )
        })
        .collect();
    // The clinic at risk comes first: below, near, without data, safe; within each, the lowest rate of the
    // shown month first, then by name.
    rows.sort_by(|a, b| {
        a.risk
            .cmp(&b.risk)
            .then_with(|| a.current.unwrap_or(-1.0).total_cmp(&b.current.unwrap_or(-1.0)))
            .then_with(|| a.name.cmp(&b.name))
    });
    let now = rows.iter().filter(|r| r.risk == Risk::Now).count();
    let below = rows.iter().filter(|r| r.projected_below).count();
    let near = rows.iter().filter(|r| r.risk == Risk::Near).count();
    let no_data = rows.iter().filter(|r| r.risk == Risk::NoData).count();
    let mut totals: BTreeMap<YearMonth, MonthCount> = BTreeMap::new();
    for c in &clinics {
        for (m, n) in usage.get(&c.id).unwrap_or(&empty) {
            let t = totals.entry(*m).or_default();
            *t = *t + *n;
        }
    }
    let group = lang.t("グループ合計", "Group total").to_owned();
    let total = row(
        &state.rules,
        lang,
        (String::new(), group, FacilityKind::Medical),
        &totals,
        &months,
        today,
        Known { rates: &BTreeMap::new(), calibration: None },
    );
    store.audit(&caller.entry(AuditAction::DashboardView, "dashboard:usage", AuditResult::Success)).await?;
    let month_labels: Vec<String> = months.iter().map(ToString::to_string).collect();
    if q.format.as_deref() == Some("csv") {
        let mut table = CsvTable::new(&["医療機関", "月", "受付患者数", "マイナ保険証患者数", "利用率（推計）"]);
        for r in rows.iter().chain(std::iter::once(&total)) {
            for (m, c) in month_labels.iter().zip(&r.cells) {
                table.push([r.name.clone(), m.clone(), c.patients.to_string(), c.myna.to_string(), c.rate.clone()]);
            }
        }
        return Ok(table.download(&format!("usage-{}-{}", months.first().unwrap_or(&last), last)));
    }
    let nat = national();
    ok(OverviewPage {
        national_shown: month_labels.iter().any(|m| nat.contains_key(m)),
        national: month_labels.iter().map(|m| pct(nat.get(m).copied())).collect(),
        last_month: last.to_string(),
        months: month_labels,
        rows,
        total,
        window_note: lang
            .t(
                "{claim}の算定には {from}〜{to} のうち最も高い月の利用率が使われます（公式のレセプト件数ベース）。",
                "The claims of {claim} use the best month of {from} to {to} (official, per claim).",
            )
            .replace("{claim}", &last.plus(3).to_string())
            .replace("{from}", &last.plus(-2).to_string())
            .replace("{to}", &last.to_string()),
        now,
        below,
        near,
        no_data,
        csv_href: crate::web::guard::query_with(req.query_string(), &[("format", "csv"), ("lang", lang.code())]),
        page,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rest_of_the_month_is_told_what_share_it_needs() {
        // Last month's patients where known, else the pace so far; never fewer than so far.
        assert_eq!(projected_patients(100, Some(300), 0.5), 300);
        assert_eq!(projected_patients(100, None, 1.0 / 3.0), 300);
        assert_eq!(projected_patients(100, Some(50), 0.5), 100);
        let count = MonthCount { patients: 100, myna: 20 };
        // About 300 patients by the end, 200 still to come; 30% of 300 is 90: 70 more of 200.
        assert_eq!(needed(count, 0.30, 300), Some(Needed::Share { percent: 35, remaining: 200 }));
        // About 103 patients, 3 to come; 31 needed, 11 more of 3.
        assert_eq!(needed(count, 0.30, 103), Some(Needed::Unreachable));
        // An exact need is not rounded up by floating point: 15 of 100 is 15%.
        let none = MonthCount { patients: 100, myna: 0 };
        assert_eq!(needed(none, 0.075, 200), Some(Needed::Share { percent: 15, remaining: 100 }));
        // Reached already, or nobody yet: nothing to say.
        assert_eq!(needed(count, 0.20, 300), None);
        assert_eq!(needed(MonthCount::default(), 0.30, 300), None);
    }
}
