//! Dashboards for group managers: マイナ保険証利用率 per clinic and month with the threshold watch, a clinic's
//! reception patterns, the agent fleet, and a live feed (server-sent events). Everything reads the rollups
//! the worker maintains, never a scan of raw events. Charts are server-rendered SVG with text
//! alternatives, so the pages work with JavaScript off; every table has a CSV form.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use actix_web::{HttpResponse, web};
use askama::Template;
use futures_util::StreamExt;
use onshi_cache::CacheBackend;
use onshi_domain::{ClinicId, ConfirmationMethod, DeviceHealth, FacilityKind};
use onshi_rules::{Level, MonthCount, RuleSet, YearMonth};
use onshi_store::{AuditResult, Clinic, ClinicScope, DeviceStatus};
use serde::Deserialize;
use time::{Date, OffsetDateTime, Weekday};

use super::account::ok;
use crate::web::csv::CsvTable;
use crate::web::guard::{Caller, Page};
use crate::{ApiError, AppState};

const NATIONAL: &str = include_str!("../../data/national-usage.csv");

fn national() -> HashMap<String, f64> {
    NATIONAL
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("month"))
        .filter_map(|l| l.split_once(','))
        .filter_map(|(m, p)| Some((m.trim().to_owned(), p.trim().parse::<f64>().ok()? / 100.0)))
        .collect()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

fn pct(rate: Option<f64>) -> String {
    rate.map(|r| format!("{:.1}%", r * 100.0)).unwrap_or_else(|| "—".to_owned())
}

/// A sparkline of monthly rates (0–100%) with the threshold as a dashed line. Numbers only inside.
fn sparkline(rates: &[Option<f64>], threshold: Option<f64>, label: &str) -> String {
    let (w, h) = (120.0, 32.0);
    let step = if rates.len() > 1 { w / (rates.len() - 1) as f64 } else { w };
    let y = |r: f64| h - (r.clamp(0.0, 1.0) * h);
    let points: Vec<String> = rates
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.map(|r| format!("{:.1},{:.1}", i as f64 * step, y(r))))
        .collect();
    let text: Vec<String> = rates.iter().map(|r| pct(*r)).collect();
    let mut svg = format!(
        "<svg class=\"spark\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"{}\"><title>{}</title>",
        escape(label),
        escape(&format!("{label}: {}", text.join(" → ")))
    );
    if let Some(t) = threshold {
        svg.push_str(&format!("<line x1=\"0\" x2=\"{w}\" y1=\"{0:.1}\" y2=\"{0:.1}\" class=\"threshold\"/>", y(t)));
    }
    svg.push_str(&format!("<polyline points=\"{}\" class=\"line\"/>", points.join(" ")));
    for p in &points {
        if let Some((x, y)) = p.split_once(',') {
            svg.push_str(&format!("<circle cx=\"{x}\" cy=\"{y}\" r=\"2.5\" class=\"dot\"/>"));
        }
    }
    svg.push_str("</svg>");
    svg
}

/// Horizontal bars with their numbers as text.
fn bars(items: &[(String, i64)]) -> String {
    let max = items.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1) as f64;
    let row_h = 22.0;
    let h = row_h * items.len() as f64;
    let mut svg = format!(
        "<svg class=\"bars\" viewBox=\"0 0 420 {h}\" width=\"420\" height=\"{h}\" role=\"img\" aria-label=\"内訳\">"
    );
    for (i, (label, n)) in items.iter().enumerate() {
        let y = i as f64 * row_h;
        let width = 220.0 * (*n as f64) / max;
        svg.push_str(&format!(
            "<text x=\"0\" y=\"{:.1}\" class=\"label\">{}</text><rect x=\"150\" y=\"{:.1}\" width=\"{width:.1}\" height=\"14\"/><text x=\"{:.1}\" y=\"{:.1}\">{n}</text>",
            y + 14.0,
            escape(label),
            y + 3.0,
            155.0 + width,
            y + 14.0
        ));
    }
    svg.push_str("</svg>");
    svg
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
    let last = q.to.as_deref().and_then(YearMonth::parse).unwrap_or(YearMonth::of(today));
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

// ---- clinic detail ---------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "dashboard_clinic.html")]
struct ClinicPage {
    page: Page,
    clinic: Clinic,
    from: String,
    to: String,
    receptions: i64,
    myna: i64,
    heatmap: String,
    heatmap_rows: Vec<(String, Vec<i64>)>,
    methods: String,
    method_rows: Vec<(String, i64)>,
    identity_rows: Vec<(&'static str, i64)>,
    consents: Vec<(&'static str, String)>,
    invalid: i64,
    invalid_list: Vec<(String, &'static str, &'static str, String)>,
    devices: Vec<(String, &'static str, &'static str, String)>,
    days: Vec<(String, i64)>,
    timeline: String,
    outages: Vec<(String, String, String, String)>,
}

fn jst_text(t: OffsetDateTime) -> String {
    let t = t.to_offset(onshi_domain::jst::JST);
    format!("{} {:02}:{:02}", t.date(), t.hour(), t.minute())
}

/// Availability per agent over [from, to): green while heartbeats said all was well, amber while the
/// reader or VPN failed, grey where nothing was heard. Returns the SVG and the outages (gaps and
/// degraded stretches) newest first: (agent, from, to, kind).
fn availability(
    agents: &[(onshi_domain::DeviceId, String)],
    uptime: &[onshi_store::Uptime],
    from: OffsetDateTime,
    to: OffsetDateTime,
) -> (String, Vec<(String, String, String, String)>) {
    let span = (to - from).whole_seconds().max(1) as f64;
    let (w, row_h) = (600.0, 22.0);
    let x = |t: OffsetDateTime| 120.0 + w * ((t - from).whole_seconds() as f64 / span).clamp(0.0, 1.0);
    let mut svg = format!(
        "<svg class=\"uptime\" viewBox=\"0 0 {} {}\" role=\"img\" aria-label=\"端末の稼働状況（停止は下の表）\">",
        120.0 + w,
        row_h * agents.len().max(1) as f64
    );
    let mut outages = Vec::new();
    for (i, (id, name)) in agents.iter().enumerate() {
        let y = i as f64 * row_h;
        svg.push_str(&format!(
            "<text x=\"0\" y=\"{:.0}\">{}</text><rect x=\"120\" y=\"{y:.0}\" width=\"{w}\" height=\"14\" class=\"none\"/>",
            y + 12.0,
            escape(name)
        ));
        let mine: Vec<_> = uptime.iter().filter(|u| u.device == *id).collect();
        for (k, u) in mine.iter().enumerate() {
            let class = if u.healthy { "up" } else { "degraded" };
            svg.push_str(&format!(
                "<rect x=\"{:.1}\" y=\"{y:.0}\" width=\"{:.1}\" height=\"14\" class=\"{class}\"><title>{} – {}</title></rect>",
                x(u.from),
                (x(u.to) - x(u.from)).max(1.0),
                jst_text(u.from),
                jst_text(u.to)
            ));
            if !u.healthy {
                outages.push((name.clone(), jst_text(u.from), jst_text(u.to), "リーダー/VPN異常".to_owned()));
            }
            if let Some(next) = mine.get(k + 1)
                && (next.from - u.to).whole_seconds() > onshi_domain::OFFLINE_AFTER_SECS
            {
                outages.push((name.clone(), jst_text(u.to), jst_text(next.from), "応答なし".to_owned()));
            }
        }
    }
    svg.push_str("</svg>");
    outages.reverse();
    outages.truncate(50);
    (svg, outages)
}

#[derive(Deserialize)]
pub(crate) struct RangeQuery {
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
    /// `csv` with `table` = hours | methods | days | invalid | outages: that table as CSV.
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    table: Option<String>,
}

/// One table of the clinic page as CSV.
fn csv_response(name: &str, header: &[&str], rows: Vec<Vec<String>>) -> HttpResponse {
    let mut table = CsvTable::new(header);
    for row in rows {
        table.push(row);
    }
    table.download(name)
}

fn parse_day(s: Option<&str>) -> Option<Date> {
    Date::parse(s?, time::macros::format_description!("[year]-[month]-[day]")).ok()
}

const WEEKDAYS: [(Weekday, &str); 7] = [
    (Weekday::Monday, "月"),
    (Weekday::Tuesday, "火"),
    (Weekday::Wednesday, "水"),
    (Weekday::Thursday, "木"),
    (Weekday::Friday, "金"),
    (Weekday::Saturday, "土"),
    (Weekday::Sunday, "日"),
];

fn heatmap(matrix: &[[i64; 24]; 7]) -> String {
    let max = matrix.iter().flatten().copied().max().unwrap_or(0).max(1) as f64;
    let (cw, ch) = (18.0, 18.0);
    let mut svg = format!(
        "<svg class=\"heat\" viewBox=\"0 0 {} {}\" role=\"img\" aria-label=\"曜日×時間帯の受付数（表は下）\">",
        30.0 + 24.0 * cw,
        20.0 + 7.0 * ch
    );
    for h in (0..24).step_by(3) {
        svg.push_str(&format!("<text x=\"{:.0}\" y=\"12\" class=\"small\">{h}</text>", 30.0 + h as f64 * cw));
    }
    for (d, (_, label)) in WEEKDAYS.iter().enumerate() {
        let y = 20.0 + d as f64 * ch;
        svg.push_str(&format!("<text x=\"0\" y=\"{:.0}\" class=\"small\">{label}</text>", y + 13.0));
        for (h, &n) in matrix[d].iter().enumerate() {
            let opacity = if n == 0 { 0.04 } else { 0.15 + 0.85 * n as f64 / max };
            svg.push_str(&format!(
                "<rect x=\"{:.0}\" y=\"{y:.0}\" width=\"{}\" height=\"{}\" fill-opacity=\"{opacity:.2}\"><title>{label} {h}時: {n}</title></rect>",
                30.0 + h as f64 * cw,
                cw - 2.0,
                ch - 2.0
            ));
        }
    }
    svg.push_str("</svg>");
    svg
}

pub(crate) async fn clinic(
    state: web::Data<AppState>,
    page: Page,
    caller: Caller,
    path: web::Path<String>,
    q: web::Query<RangeQuery>,
) -> Result<HttpResponse, ApiError> {
    let store = state.store.tenant(caller.scope);
    let clinic = caller.clinic(&store, &path).await?;
    let id = clinic.id;
    let now = OffsetDateTime::now_utc();
    let today = onshi_domain::jst::date_of(now);
    let to = parse_day(q.to.as_deref()).unwrap_or(today);
    let from = parse_day(q.from.as_deref()).unwrap_or(to - time::Duration::days(27)).min(to);
    let rows = store.hourly(&clinic, from, to).await?;
    let mut matrix = [[0i64; 24]; 7];
    let mut methods: HashMap<ConfirmationMethod, i64> = HashMap::new();
    let mut days: std::collections::BTreeMap<Date, i64> = Default::default();
    let (mut receptions, mut myna, mut med, mut diag, mut check, mut invalid) = (0, 0, 0, 0, 0, 0);
    let (mut face, mut pin, mut visual) = (0, 0, 0);
    for r in &rows {
        let d = r.day.weekday().number_days_from_monday() as usize;
        matrix[d][usize::from(r.hour.min(23))] += r.receptions;
        *methods.entry(r.method).or_default() += r.receptions;
        *days.entry(r.day).or_default() += r.receptions;
        receptions += r.receptions;
        myna += r.myna;
        med += r.consent_medication;
        diag += r.consent_diagnosis;
        check += r.consent_checkup;
        invalid += r.invalid;
        face += r.face;
        pin += r.pin;
        visual += r.visual;
    }
    let mut method_rows: Vec<(String, i64)> = methods.into_iter().map(|(m, n)| (m.label_ja().to_owned(), n)).collect();
    method_rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let share = |n: i64| if myna > 0 { format!("{:.1}%", 100.0 * n as f64 / myna as f64) } else { "—".to_owned() };
    let invalid_list: Vec<(String, &'static str, &'static str, String)> = store
        .invalid_visits(&clinic, from, to, 50)
        .await?
        .into_iter()
        .map(|v| {
            let t = v.last_at.to_offset(onshi_domain::jst::JST);
            (
                format!("{} {:02}:{:02}", t.date(), t.hour(), t.minute()),
                v.method.label_ja(),
                v.result.label_ja(),
                t.date().to_string(),
            )
        })
        .collect();
    let agents: Vec<onshi_store::Device> =
        store.devices().await?.into_iter().filter(|d| d.clinic == id && d.status == DeviceStatus::Active).collect();
    let range_from = from.midnight().assume_offset(onshi_domain::jst::JST);
    let range_to = (to.next_day().unwrap_or(to)).midnight().assume_offset(onshi_domain::jst::JST).min(now);
    let ids: Vec<_> = agents.iter().map(|d| d.id).collect();
    let uptime = store.uptime(&ids, range_from, range_to).await?;
    let names: Vec<_> = agents.iter().map(|d| (d.id, d.name.clone())).collect();
    let (timeline, outages) = availability(&names, &uptime, range_from, range_to);
    let devices = agents
        .into_iter()
        .map(|d| {
            let health = d.health(now);
            let seen = d.last_seen_at.map(|t| super::audit::utc(&t)).unwrap_or_else(|| "—".to_owned());
            (d.name, health.label_ja(), health.css_class(), seen)
        })
        .collect();
    store.audit(&caller.entry("dashboard.view", &format!("dashboard:clinic:{id}"), AuditResult::Success)).await?;
    if q.format.as_deref() == Some("csv") {
        let response = match q.table.as_deref().unwrap_or("days") {
            "hours" => csv_response(
                "hours",
                &["曜日", "時", "受付"],
                WEEKDAYS
                    .iter()
                    .enumerate()
                    .flat_map(|(d, (_, l))| (0..24).map(move |h| (d, h, *l)))
                    .map(|(d, h, l)| vec![l.to_owned(), h.to_string(), matrix[d][h].to_string()])
                    .collect(),
            ),
            "methods" => csv_response(
                "methods",
                &["確認方法", "受付"],
                method_rows.iter().map(|(m, n)| vec![m.clone(), n.to_string()]).collect(),
            ),
            "invalid" => csv_response(
                "invalid",
                &["日時", "確認方法", "結果"],
                invalid_list.iter().map(|(t, m, r, _)| vec![t.clone(), (*m).to_owned(), (*r).to_owned()]).collect(),
            ),
            "outages" => csv_response(
                "outages",
                &["端末", "開始", "終了", "内容"],
                outages.iter().map(|(a, b, c, d)| vec![a.clone(), b.clone(), c.clone(), d.clone()]).collect(),
            ),
            _ => csv_response(
                "days",
                &["日付", "受付"],
                days.iter().map(|(d, n)| vec![d.to_string(), n.to_string()]).collect(),
            ),
        };
        return Ok(response);
    }
    ok(ClinicPage {
        page,
        from: from.to_string(),
        to: to.to_string(),
        receptions,
        myna,
        heatmap: heatmap(&matrix),
        heatmap_rows: WEEKDAYS.iter().enumerate().map(|(i, (_, l))| ((*l).to_owned(), matrix[i].to_vec())).collect(),
        methods: bars(&method_rows),
        method_rows,
        identity_rows: vec![
            (onshi_domain::IdentityCheck::Face.label_ja(), face),
            (onshi_domain::IdentityCheck::Pin.label_ja(), pin),
            (onshi_domain::IdentityCheck::Visual.label_ja(), visual),
            ("記録なし", (myna - face - pin - visual).max(0)),
        ],
        consents: vec![("薬剤情報", share(med)), ("診療情報", share(diag)), ("特定健診", share(check))],
        invalid,
        invalid_list,
        devices,
        days: days.into_iter().map(|(d, n)| (d.to_string(), n)).collect(),
        timeline,
        outages,
        clinic: clinic.clinic().clone(),
    })
}

// ---- fleet -------------------------------------------------------------------------------------------

pub(crate) struct FleetRow {
    pub clinic: String,
    pub clinic_id: String,
    pub device: String,
    pub health: &'static str,
    pub class: &'static str,
    pub reasons: String,
    pub last_seen: String,
    pub version: String,
    pub outbox: String,
    pub reader: String,
    pub vpn: String,
}

#[derive(Template)]
#[template(path = "fleet.html")]
struct FleetPage {
    page: Page,
    rows: Vec<FleetRow>,
}

#[derive(Deserialize)]
pub(crate) struct FormatQuery {
    #[serde(default)]
    format: Option<String>,
}

pub(crate) async fn fleet(
    state: web::Data<AppState>,
    page: Page,
    caller: Caller,
    q: web::Query<FormatQuery>,
) -> Result<HttpResponse, ApiError> {
    let store = state.store.tenant(caller.scope);
    let clinics: HashMap<ClinicId, String> = store.clinics().await?.into_iter().map(|c| (c.id, c.name)).collect();
    let now = OffsetDateTime::now_utc();
    let mut rows: Vec<(u8, FleetRow)> = store
        .devices()
        .await?
        .into_iter()
        .filter(|d| d.status == DeviceStatus::Active)
        .map(|d| {
            let health = d.health(now);
            let rank = match health {
                DeviceHealth::Offline => 0,
                DeviceHealth::Degraded(_) => 1,
                DeviceHealth::NeverSeen => 2,
                DeviceHealth::Online => 3,
            };
            let hb = d.last_heartbeat.as_ref();
            let yes_no = |b: Option<bool>| match b {
                Some(true) => "OK".to_owned(),
                Some(false) => "NG".to_owned(),
                None => "—".to_owned(),
            };
            let row = FleetRow {
                clinic: clinics.get(&d.clinic).cloned().unwrap_or_default(),
                clinic_id: d.clinic.to_string(),
                device: d.name.clone(),
                health: health.label_ja(),
                class: health.css_class(),
                reasons: match &health {
                    DeviceHealth::Degraded(r) => r.join("、"),
                    _ => String::new(),
                },
                last_seen: d.last_seen_at.map(|t| super::audit::utc(&t)).unwrap_or_else(|| "—".to_owned()),
                version: d.agent_version.clone().unwrap_or_else(|| "—".to_owned()),
                outbox: hb.map(|h| h.outbox_depth.to_string()).unwrap_or_else(|| "—".to_owned()),
                reader: yes_no(hb.and_then(|h| h.reader_ok)),
                vpn: yes_no(hb.and_then(|h| h.network_ok)),
            };
            (rank, row)
        })
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.clinic.cmp(&b.1.clinic)));
    let rows: Vec<FleetRow> = rows.into_iter().map(|(_, r)| r).collect();
    if q.format.as_deref() == Some("csv") {
        let mut table = CsvTable::new(&[
            "医療機関",
            "端末",
            "状態",
            "要確認",
            "最終受信(UTC)",
            "バージョン",
            "未送信件数",
            "カードリーダー",
            "VPN",
        ]);
        for r in &rows {
            table.push(
                [&r.clinic, &r.device, r.health, &r.reasons, &r.last_seen, &r.version, &r.outbox, &r.reader, &r.vpn]
                    .map(|f| f.to_owned()),
            );
        }
        return Ok(table.download("fleet"));
    }
    ok(FleetPage { page, rows })
}

// ---- live feed -----------------------------------------------------------------------------------------

/// Server-sent events of the caller's tenant: one `reception` event per applied batch that touched
/// visits of a clinic the caller may see (clinic id and count only, no patient data). Comments every
/// 15 s keep proxies from closing the stream.
pub(crate) async fn feed(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    let channel = format!("feed:{}", caller.scope.tenant_id());
    let updates = state.cache.subscribe(&channel).await.map_err(ApiError::unavailable)?;
    let access = caller.clinics.clone();
    let events = updates.filter_map(move |payload| {
        let access = access.clone();
        async move {
            let note: serde_json::Value = serde_json::from_slice(&payload).ok()?;
            let clinic: ClinicId = note["clinic"].as_str()?.parse().ok()?;
            access
                .includes(clinic)
                .then(|| Ok::<_, actix_web::Error>(web::Bytes::from(format!("event: reception\ndata: {note}\n\n"))))
        }
    });
    let keepalive = tokio_stream_interval(Duration::from_secs(15))
        .map(|_| Ok::<_, actix_web::Error>(web::Bytes::from_static(b": keep-alive\n\n")));
    let hello =
        futures_util::stream::once(async { Ok::<_, actix_web::Error>(web::Bytes::from_static(b": connected\n\n")) });
    let stream = hello.chain(futures_util::stream::select(events, keepalive));
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(stream))
}

fn tokio_stream_interval(period: Duration) -> impl futures_util::Stream<Item = ()> {
    futures_util::stream::unfold(
        tokio::time::interval_at(tokio::time::Instant::now() + period, period),
        |mut i| async move {
            i.tick().await;
            Some(((), i))
        },
    )
}
