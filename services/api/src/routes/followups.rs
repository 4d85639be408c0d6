//! 資格無効 follow-up for the desk (`onshi_domain::followup`): a clinic's week of receptions whose result
//! was not valid, counted by insurer and result, with repeat patients (by pseudonym), what to do for each
//! and a status the staff set for many at once; as a page and as CSV.

use std::collections::BTreeMap;

use actix_web::{HttpResponse, web};
use askama::Template;
use onshi_domain::followup::{self, FollowUpStatus};
use onshi_domain::{AuditAction, QualificationResult, jst};
use onshi_store::{AuditResult, Clinic, FollowUpCase};
use serde::Deserialize;
use time::{Date, Duration, OffsetDateTime};

use crate::web::csv::CsvTable;
use crate::web::guard::{Caller, Page};
use crate::web::i18n::Lang;
use crate::web::page::{ok, see_other};
use crate::{ApiError, AppState};

/// The results that need following up, in the order the page counts them.
const RESULTS: [QualificationResult; 5] = [
    QualificationResult::Invalid,
    QualificationResult::InvalidNewQualification,
    QualificationResult::NotFound,
    QualificationResult::Multiple,
    QualificationResult::Error,
];

#[derive(Deserialize)]
pub(crate) struct WeekQuery {
    #[serde(default)]
    week: Option<String>,
    #[serde(default)]
    format: Option<String>,
}

/// The Monday (JST) of the week `raw` falls in, or of this week.
fn monday(raw: Option<&str>) -> Result<Date, ApiError> {
    let day = match raw {
        Some(d) if !d.trim().is_empty() => crate::web::input::required_date("week", d)?,
        _ => jst::date_of(OffsetDateTime::now_utc()),
    };
    Ok(day - Duration::days(i64::from(day.weekday().number_days_from_monday())))
}

pub(crate) struct CaseLine {
    pub id: String,
    pub at: String,
    pub result: &'static str,
    pub insurer: String,
    /// The 検証番号 does not match (shown, never refused).
    pub insurer_suspect: bool,
    pub method: &'static str,
    /// For a patient with more than one case this week: the week's alias (`#1`) and which case this is.
    pub repeat: Option<(String, usize)>,
    pub script: &'static str,
    pub status: &'static str,
}

pub(crate) struct InsurerLine {
    pub insurer: String,
    pub counts: Vec<usize>,
    pub total: usize,
}

#[derive(Template)]
#[template(path = "followups.html")]
struct FollowUpsPage {
    page: Page,
    clinic: Clinic,
    week: String,
    week_end: String,
    prev: String,
    next: String,
    cases: Vec<CaseLine>,
    open: usize,
    result_labels: Vec<&'static str>,
    insurers: Vec<InsurerLine>,
    /// Patients with more than one case this week, by the week's alias (`#1`), and how many. Pages never
    /// show a pseudonym (docs/security.md): the alias means something on this page only.
    repeats: Vec<(String, usize)>,
    statuses: Vec<(&'static str, &'static str)>,
}

/// The patients with more than one case in `cases`, in order of their first case: (pseudonym, alias `#n`,
/// how many cases).
fn repeat_aliases(cases: &[FollowUpCase]) -> Vec<(&str, String, usize)> {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for p in cases.iter().filter_map(|c| c.patient.as_deref()) {
        match counts.iter_mut().find(|(q, _)| *q == p) {
            Some((_, n)) => *n += 1,
            None => counts.push((p, 1)),
        }
    }
    counts.into_iter().filter(|(_, n)| *n > 1).enumerate().map(|(i, (p, n))| (p, format!("#{}", i + 1), n)).collect()
}

fn insurer_text(case: &FollowUpCase, lang: Lang) -> String {
    case.insurer.as_ref().map(|i| i.to_string()).unwrap_or_else(|| lang.t("不明", "unknown").to_owned())
}

pub(crate) async fn page(
    state: web::Data<AppState>,
    page: Page,
    caller: Caller,
    path: web::Path<String>,
    q: web::Query<WeekQuery>,
) -> Result<HttpResponse, ApiError> {
    let store = state.store.tenant(caller.scope);
    let clinic = caller.clinic(&store, &path).await?;
    let from = monday(q.week.as_deref())?;
    let to = from + Duration::days(6);
    let cases = store.followups(&clinic, from, to).await?;
    let lang = page.lang;
    // Reading the week (page or CSV) shows patient-level data: audited with the target and the count.
    let read_entry = |action: AuditAction| {
        caller
            .entry(action, &format!("followups:{}:{from}", clinic.id), AuditResult::Success)
            .details(serde_json::json!({ "rows": cases.len() }))
    };
    if q.format.as_deref() == Some("csv") {
        let mut table =
            CsvTable::new(&["日時(JST)", "結果", "保険者番号", "確認方法", "同じ方", "確認回数", "状態", "すること"]);
        let aliases = repeat_aliases(&cases);
        for c in &cases {
            table.push([
                crate::web::time::jst_minute(&c.first_at),
                c.result.label_ja().to_owned(),
                c.insurer.as_ref().map(|i| i.to_string()).unwrap_or_default(),
                c.method.label_ja().to_owned(),
                c.patient
                    .as_deref()
                    .and_then(|p| aliases.iter().find(|(q, _, _)| *q == p))
                    .map(|(_, alias, _)| alias.clone())
                    .unwrap_or_default(),
                c.confirmations.to_string(),
                c.status.label_ja().to_owned(),
                followup::script_ja(c.result).to_owned(),
            ]);
        }
        store.audit(&read_entry(AuditAction::FollowupsExport)).await?;
        return Ok(table.download(&format!("followups-{}-{from}", clinic.code)));
    }
    // Counts by insurer and result; cases without an insurer (nobody found, terminal errors) count as 不明.
    let mut by_insurer: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for c in &cases {
        let counts = by_insurer.entry(insurer_text(c, lang)).or_insert_with(|| vec![0; RESULTS.len()]);
        if let Some(i) = RESULTS.iter().position(|r| *r == c.result) {
            counts[i] += 1;
        }
    }
    let aliases = repeat_aliases(&cases);
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let lines = cases
        .iter()
        .map(|c| {
            let repeat = c.patient.as_deref().and_then(|p| {
                let nth = *seen.entry(p).and_modify(|n| *n += 1).or_insert(1);
                aliases.iter().find(|(q, _, _)| *q == p).map(|(_, alias, _)| (alias.clone(), nth))
            });
            CaseLine {
                id: c.visit.to_string(),
                at: crate::web::time::jst_minute(&c.first_at),
                result: lang.t(c.result.label_ja(), c.result.label_en()),
                insurer: insurer_text(c, lang),
                insurer_suspect: c.insurer.as_ref().is_some_and(|i| !i.check_digit_ok()),
                method: lang.t(c.method.label_ja(), c.method.label_en()),
                repeat,
                script: lang.t(followup::script_ja(c.result), followup::script_en(c.result)),
                status: c.status.code(),
            }
        })
        .collect();
    let repeats = aliases.into_iter().map(|(_, alias, n)| (alias, n)).collect();
    store.audit(&read_entry(AuditAction::FollowupsView)).await?;
    ok(FollowUpsPage {
        open: cases.iter().filter(|c| c.status == FollowUpStatus::Open).count(),
        cases: lines,
        result_labels: RESULTS.iter().map(|r| lang.t(r.label_ja(), r.label_en())).collect(),
        insurers: by_insurer
            .into_iter()
            .map(|(insurer, counts)| InsurerLine { total: counts.iter().sum(), insurer, counts })
            .collect(),
        repeats,
        statuses: FollowUpStatus::ALL.iter().map(|s| (s.code(), lang.t(s.label_ja(), s.label_en()))).collect(),
        week: from.to_string(),
        week_end: to.to_string(),
        prev: (from - Duration::days(7)).to_string(),
        next: (from + Duration::days(7)).to_string(),
        clinic: clinic.clinic().clone(),
        page,
    })
}

/// Saves the statuses changed on the page (`status:<visit>` against the `was:<visit>` it showed), in one
/// transaction with one audit entry listing them.
pub(crate) async fn save(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    form: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    let store = state.store.tenant(caller.scope);
    let clinic = caller.clinic(&store, &path).await?;
    let fields = form.into_inner();
    let value = |key: &str| fields.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    let week = monday(value("week"))?;
    let mut changes = Vec::new();
    for (key, code) in &fields {
        let Some(id) = key.strip_prefix("status:") else { continue };
        let status = FollowUpStatus::parse(code).ok_or_else(|| {
            ApiError::InvalidRequest(onshi_domain::FieldError::new(key.clone(), "状態が選択肢にありません"))
        })?;
        let visit: uuid::Uuid = id.parse().map_err(|_| {
            ApiError::InvalidRequest(onshi_domain::FieldError::new(key.clone(), "受付の指定が正しくありません"))
        })?;
        if value(&format!("was:{id}")) != Some(code.as_str()) {
            changes.push((visit, status));
        }
    }
    if !changes.is_empty() {
        let entry = caller
            .entry(AuditAction::FollowupStatus, &format!("followups:{}:{week}", clinic.id), AuditResult::Success)
            .details(serde_json::json!({
                "changes": changes.iter().map(|(v, s)| serde_json::json!({ "visit": v, "status": s.code() })).collect::<Vec<_>>(),
            }));
        store.set_followup_statuses(&clinic, &changes, Some(caller.user.id), &entry).await?;
    }
    Ok(see_other(&format!("/clinics/{}/followups?week={week}", clinic.id)))
}
