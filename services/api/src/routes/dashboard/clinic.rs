//! One clinic's page: receptions by hour, weekday and method, identity checks, consents, invalid
//! visits, the agents' availability and outages, with a CSV form of each table.

use std::collections::HashMap;

use actix_web::{HttpResponse, web};
use askama::Template;
use onshi_domain::{AuditAction, ConfirmationMethod};
use onshi_rules::YearMonth;
use onshi_store::{AuditResult, Clinic, DeviceStatus};
use serde::Deserialize;
use time::{Date, OffsetDateTime};

use super::chart::{availability, bars, heatmap, weekdays};
use crate::web::csv::CsvTable;
use crate::web::guard::{Caller, Page};
use crate::web::input;
use crate::web::page::ok;
use crate::{ApiError, AppState};

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
    /// Whether any reception of the period says how the holder was identified: the terminal's files never
    /// do (docs/dashboards.md), so without a connected system the table would be all "not recorded".
    identity_known: bool,
    consents: Vec<(&'static str, String)>,
    invalid: i64,
    /// Time, method, result (split before its parenthesis) and the day's receptions page.
    invalid_list: Vec<(String, &'static str, (&'static str, &'static str), String)>,
    devices: Vec<(String, &'static str, &'static str, String, String)>,
    days: Vec<(String, i64)>,
    timeline: String,
    outages: Vec<(String, String, String, String)>,
    /// This month's 利用率 estimate, where this month's claims stand, and what this month means ahead:
    /// the same judgement as the group page (the usage alert links here).
    usage: super::overview::ClinicRow,
    /// 利用率 as three figures per month, and the outlook on the best of them.
    figures: super::figures::UsageFigures,
    /// "Is it us or everyone?": the wide outages this clinic's failing agents are part of.
    wide: Vec<String>,
    notices_url: &'static str,
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

pub(crate) async fn clinic(
    state: web::Data<AppState>,
    page: Page,
    caller: Caller,
    path: web::Path<String>,
    q: web::Query<RangeQuery>,
) -> Result<HttpResponse, ApiError> {
    let store = state.store.tenant(caller.scope);
    let lang = page.lang;
    let clinic = caller.clinic(&store, &path).await?;
    let id = clinic.id;
    let now = OffsetDateTime::now_utc();
    let today = onshi_domain::jst::date_of(now);
    let to = input::date("to", q.to.as_deref())?.unwrap_or(today);
    let from = input::date("from", q.from.as_deref())?.unwrap_or(to - time::Duration::days(27)).min(to);
    // Sums and the weekday-by-hour chart from the daily rollup, which keeps receptions per hour (a year is
    // ~1,100 rows).
    let rows = store.daily(&clinic, from, to).await?;
    let mut matrix = [[0i64; 24]; 7];
    let mut methods: HashMap<ConfirmationMethod, i64> = HashMap::new();
    let mut days: std::collections::BTreeMap<Date, i64> = Default::default();
    let (mut receptions, mut myna, mut med, mut diag, mut check, mut invalid) = (0, 0, 0, 0, 0, 0);
    let (mut face, mut pin, mut visual) = (0, 0, 0);
    for r in &rows {
        let weekday = &mut matrix[r.day.weekday().number_days_from_monday() as usize];
        for (cell, n) in weekday.iter_mut().zip(r.hours) {
            *cell += n;
        }
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
    // Typed until the end: the page shows them in its language, the CSV files in Japanese like the others.
    let mut method_counts: Vec<(ConfirmationMethod, i64)> = methods.into_iter().collect();
    method_counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.as_str().cmp(b.0.as_str())));
    let method_rows: Vec<(String, i64)> =
        method_counts.iter().map(|(m, n)| (lang.t(m.label_ja(), m.label_en()).to_owned(), *n)).collect();
    let share = |n: i64| if myna > 0 { format!("{:.1}%", 100.0 * n as f64 / myna as f64) } else { "—".to_owned() };
    let invalid_visits = store.invalid_visits(&clinic, from, to, 50).await?;
    let invalid_list: Vec<(String, &'static str, (&'static str, &'static str), String)> = invalid_visits
        .iter()
        .map(|v| {
            (
                crate::web::time::jst_minute(&v.last_at),
                lang.t(v.method.label_ja(), v.method.label_en()),
                crate::routes::pages::result_parts(lang.t(v.result.label_ja(), v.result.label_en())),
                onshi_domain::jst::date_of(v.last_at).to_string(),
            )
        })
        .collect();
    let agents: Vec<onshi_store::Device> =
        store.devices().await?.into_iter().filter(|d| d.clinic == id && d.status == DeviceStatus::Active).collect();
    let range_from = from.midnight().assume_offset(onshi_domain::jst::JST);
    let range_to = (to.next_day().unwrap_or(to)).midnight().assume_offset(onshi_domain::jst::JST).min(now);
    let located: Vec<_> = agents.iter().map(|d| (d, clinic.code.prefecture())).collect();
    let wide = super::outage::wide_outages(&state, lang, &located, now).await?;
    let ids: Vec<_> = agents.iter().map(|d| d.id).collect();
    let uptime = store.uptime(&ids, range_from, range_to).await?;
    let (timeline, outages) = availability(&agents, &uptime, (range_from, range_to), now, lang);
    let devices = agents
        .into_iter()
        .map(|d| {
            let health = d.health(now);
            let seen = d.last_seen_at.map(|t| crate::web::time::jst_minute(&t)).unwrap_or_else(|| "—".to_owned());
            // What needs attention, with the quarantined-file count the clinic can act on.
            let mut notes: Vec<String> = match &health {
                onshi_domain::DeviceHealth::Degraded(reasons) => vec![page.attention(reasons)],
                _ => Vec::new(),
            };
            if let Some(h) = d.last_heartbeat.as_ref().filter(|h| h.quarantined > 0) {
                notes.push(format!("{} {}", lang.t("隔離したファイル", "Quarantined files"), h.quarantined));
            }
            (
                d.name,
                lang.t(health.label_ja(), health.label_en()),
                health.css_class(),
                seen,
                notes.join(lang.t("、", ", ")),
            )
        })
        .collect();
    store
        .audit(&caller.entry(AuditAction::DashboardView, &format!("dashboard:clinic:{id}"), AuditResult::Success))
        .await?;
    if q.format.as_deref() == Some("csv") {
        // File names say which clinic and period: `days-1311234560-2026-11-04-2026-12-01.csv`.
        let name = |table: &str| format!("{table}-{}-{from}-{to}", clinic.code);
        let response = match q.table.as_deref().unwrap_or("days") {
            "hours" => csv_response(
                &name("hours"),
                &["曜日", "時", "受付"],
                // The file keeps Japanese headers and names whatever the page's language, like the others.
                onshi_domain::hours::WEEKDAYS_JA
                    .iter()
                    .enumerate()
                    .flat_map(|(d, l)| (0..24).map(move |h| (d, h, *l)))
                    .map(|(d, h, l)| vec![l.to_owned(), h.to_string(), matrix[d][h].to_string()])
                    .collect(),
            ),
            "methods" => csv_response(
                &name("methods"),
                &["確認方法", "受付"],
                method_counts.iter().map(|(m, n)| vec![m.label_ja().to_owned(), n.to_string()]).collect(),
            ),
            "invalid" => csv_response(
                &name("invalid"),
                &["日時", "確認方法", "結果"],
                invalid_visits
                    .iter()
                    .map(|v| {
                        vec![
                            crate::web::time::jst_minute(&v.last_at),
                            v.method.label_ja().to_owned(),
                            v.result.label_ja().to_owned(),
                        ]
                    })
                    .collect(),
            ),
            "outages" => csv_response(
                &name("outages"),
                &["端末", "開始", "終了", "内容"],
                outages.iter().map(|(a, b, c, d)| vec![a.clone(), b.clone(), c.clone(), d.clone()]).collect(),
            ),
            _ => csv_response(
                &name("days"),
                &["日付", "受付"],
                days.iter().map(|(d, n)| vec![d.to_string(), n.to_string()]).collect(),
            ),
        };
        return Ok(response);
    }
    let this_month = YearMonth::of(today);
    // The year the figures read covers the months that decide this one's standing (WINDOW_BACK): one read
    // of the rollup serves both.
    let figures = super::figures::usage_figures(&state.rules, &store, &clinic, this_month, lang).await?;
    let usage = super::overview::row(
        &state.rules,
        lang,
        (clinic.id.to_string(), clinic.name.clone(), clinic.kind),
        &figures.estimates,
        &[this_month],
        today,
        super::overview::Known { rates: &figures.known, calibration: figures.calibration.as_ref() },
    );
    let identity = |i: onshi_domain::IdentityCheck| lang.t(i.label_ja(), i.label_en());
    ok(ClinicPage {
        figures,
        usage,
        page,
        from: from.to_string(),
        to: to.to_string(),
        receptions,
        myna,
        heatmap: heatmap(&matrix, lang),
        heatmap_rows: weekdays(lang).iter().zip(matrix).map(|(l, hours)| ((*l).to_owned(), hours.to_vec())).collect(),
        methods: bars(&method_rows),
        method_rows,
        identity_known: face + pin + visual > 0,
        identity_rows: vec![
            (identity(onshi_domain::IdentityCheck::Face), face),
            (identity(onshi_domain::IdentityCheck::Pin), pin),
            (identity(onshi_domain::IdentityCheck::Visual), visual),
            (lang.t("記録なし", "Not recorded"), (myna - face - pin - visual).max(0)),
        ],
        consents: vec![
            (lang.t("薬剤情報", "Medication"), share(med)),
            (lang.t("診療情報", "Diagnoses and treatment"), share(diag)),
            (lang.t("特定健診", "Specific health checkups"), share(check)),
        ],
        invalid,
        invalid_list,
        devices,
        days: days.into_iter().map(|(d, n)| (d.to_string(), n)).collect(),
        timeline,
        outages,
        clinic: clinic.clinic().clone(),
        wide,
        notices_url: onshi_domain::outage::OFFICIAL_NOTICES_URL,
    })
}
