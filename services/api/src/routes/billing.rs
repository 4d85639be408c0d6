//! Billing review pages: a month of a clinic with the reception addon the rules engine computes for each
//! visit, filters, approve/adjust with a mandatory reason, month closing, CSV export to the object store,
//! and the monthly totals. The clinic's 届出 and notified 利用率 (the engine's clinic input) are edited here.

use std::collections::HashMap;

use actix_web::{HttpResponse, web};
use askama::Template;
use onshi_objects::ObjectBackend;
use onshi_rules::billing::{Correction, Fact, Line, ReviewStatus, Totals, review};
use onshi_rules::{ClinicSettings, RuleSet, Standard, VisitKind, YearMonth};
use onshi_store::{AuditResult, Clinic, ClinicScope, ExportRecord, StoredReview, TenantStore};
use serde::Deserialize;
use time::OffsetDateTime;

use crate::web::csv::{CsvTable, attachment};
use crate::web::guard::{Caller, Page};
use crate::web::page::{ok, see_other};
use crate::{ApiError, AppState};

/// Months before the reviewed one that frequency limits (3月に1回) look back on.
const LOOKBACK_MONTHS: i32 = 3;

fn parse_month(s: &str) -> Result<YearMonth, ApiError> {
    YearMonth::parse(s).filter(|m| m.first_day() >= time::macros::date!(2022 - 10 - 01)).ok_or(ApiError::NotFound)
}

/// When each visit read was first confirmed, by visit id (for reception order and the times shown).
type FirstAt = HashMap<String, OffsetDateTime>;

/// The review of one clinic-month: the engine over the month and its look-back, with the clerks'
/// corrections applied; with the visits' first confirmation times.
async fn month_review(
    rules: &RuleSet,
    store: &TenantStore<'_>,
    clinic: &ClinicScope,
    month: YearMonth,
) -> Result<(Vec<Line>, Totals, FirstAt), ApiError> {
    let settings = store.billing_settings(clinic).await?;
    let engine_clinic = onshi_rules::Clinic::new(clinic.id.to_string(), clinic.kind, settings);
    let start = month.plus(-LOOKBACK_MONTHS);
    let visits = store.billing_visits(clinic, start.first_day(), month.last_day()).await?;
    let facts: Vec<Fact> = visits
        .iter()
        .map(|v| Fact {
            id: v.id.to_string(),
            patient: v.patient.clone().unwrap_or_else(|| format!("visit:{}", v.id)),
            date: v.date,
            first_seen: v.first_seen,
            myna: v.myna,
            info_obtained: v.info_obtained,
        })
        .collect();
    let months: Vec<YearMonth> = start.through(month).collect();
    let corrections: HashMap<String, Correction> = store
        .billing_reviews(clinic, &months)
        .await?
        .into_iter()
        .map(|r| {
            let correction = Correction {
                status: if r.status == "adjusted" { ReviewStatus::Adjusted } else { ReviewStatus::Approved },
                kind: r.kind.as_deref().and_then(|k| match k {
                    "初診" => Some(VisitKind::First),
                    "再診" => Some(VisitKind::Revisit),
                    _ => None,
                }),
                info_obtained: r.info_obtained,
                exclude: r.exclude,
                reason: r.reason,
            };
            (r.visit.to_string(), correction)
        })
        .collect();
    let first_at = visits.iter().map(|v| (v.id.to_string(), v.first_at)).collect();
    let (lines, totals) = review(rules, &engine_clinic, &facts, &corrections, month).map_err(|e| {
        ApiError::InvalidRequest(onshi_domain::FieldError::new(
            e.field.clone(),
            format!("{}: {}", e.subject, e.message),
        ))
    })?;
    Ok((lines, totals, first_at))
}

/// A closed month as it was closed.
#[derive(serde::Serialize, Deserialize)]
struct Snapshot {
    lines: Vec<Line>,
    totals: Totals,
}

/// A clinic-month as the pages and exports show it: recomputed while open; once closed, exactly what it
/// was closed with, plus the visits that arrived after closing (listed apart, never folded in).
struct MonthState {
    /// In reception order: date, then the time of the visit's first confirmation.
    lines: Vec<Line>,
    totals: Totals,
    closed: Option<onshi_store::ClosedMonth>,
    /// Visit ids of the month not in the closed snapshot.
    late: Vec<String>,
    first_at: FirstAt,
}

async fn month_state(
    rules: &RuleSet,
    store: &TenantStore<'_>,
    clinic: &ClinicScope,
    month: YearMonth,
) -> Result<MonthState, ApiError> {
    let closed = store.billing_month_closed(clinic, month).await?;
    let (mut lines, totals, first_at, late) = match closed.as_ref().and_then(|c| c.snapshot.as_deref()) {
        Some(snapshot) => {
            let Snapshot { lines, totals } = serde_json::from_str(snapshot).map_err(ApiError::internal)?;
            let first_at: FirstAt = store
                .billing_visits(clinic, month.first_day(), month.last_day())
                .await?
                .into_iter()
                .map(|v| (v.id.to_string(), v.first_at))
                .collect();
            let kept: std::collections::HashSet<&str> = lines.iter().map(|l| l.id.as_str()).collect();
            let late = first_at.keys().filter(|id| !kept.contains(id.as_str())).cloned().collect();
            (lines, totals, first_at, late)
        }
        None => {
            let (lines, totals, first_at) = month_review(rules, store, clinic, month).await?;
            (lines, totals, first_at, Vec::new())
        }
    };
    lines.sort_by(|a, b| (a.date, first_at.get(&a.id)).cmp(&(b.date, first_at.get(&b.id))));
    Ok(MonthState { lines, totals, closed, late, first_at })
}

// ---- group view -------------------------------------------------------------------------------------

pub(crate) struct ClinicMonth {
    pub clinic: Clinic,
    pub visits: usize,
    pub claimable: usize,
    pub points: u32,
    pub needs_review: usize,
    pub missed: usize,
    pub closed: bool,
}

#[derive(Template)]
#[template(path = "billing_group.html")]
struct GroupPage {
    page: Page,
    month: String,
    prev: String,
    next: String,
    rows: Vec<ClinicMonth>,
}

#[derive(Deserialize)]
pub(crate) struct MonthQuery {
    #[serde(default)]
    month: Option<String>,
}

pub(crate) async fn group(
    state: web::Data<AppState>,
    page: Page,
    caller: Caller,
    q: web::Query<MonthQuery>,
) -> Result<HttpResponse, ApiError> {
    let month = match q.month.as_deref() {
        Some(m) => parse_month(m)?,
        None => YearMonth::of(onshi_domain::jst::date_of(OffsetDateTime::now_utc())),
    };
    let store = state.store.tenant(caller.scope);
    let mut rows = Vec::new();
    for clinic in caller.visible_clinics(&store).await? {
        let MonthState { lines, totals, closed, .. } = month_state(&state.rules, &store, &clinic, month).await?;
        rows.push(ClinicMonth {
            visits: lines.len(),
            claimable: lines.iter().filter(|l| !l.not_claimable).count(),
            points: totals.values().map(|t| t.1).sum(),
            needs_review: lines.iter().filter(|l| l.needs_review).count(),
            missed: lines.iter().filter(|l| l.missed).count(),
            closed: closed.is_some(),
            clinic: clinic.clinic().clone(),
        });
    }
    store.audit(&caller.entry("billing.view", &format!("billing:{month}"), AuditResult::Success)).await?;
    ok(GroupPage {
        page,
        month: month.to_string(),
        prev: month.plus(-1).to_string(),
        next: month.plus(1).to_string(),
        rows,
    })
}

// ---- clinic-month -----------------------------------------------------------------------------------

pub(crate) struct LineView {
    pub line: Line,
    pub time: String,
    pub addon_text: String,
}

#[derive(Template)]
#[template(path = "billing_month.html")]
struct MonthPage {
    page: Page,
    clinic: Clinic,
    month: String,
    filter: String,
    filters: Vec<(&'static str, &'static str, usize)>,
    lines: Vec<LineView>,
    totals: Vec<(String, u32, u32)>,
    total_points: u32,
    closed: Option<String>,
    /// Visits that arrived after the month was closed (time), not part of its totals.
    late: Vec<String>,
    /// Unreviewed visits, which closing asks to confirm.
    unreviewed: usize,
    /// Unreviewed visits nothing flags, which one button approves.
    plain: usize,
    /// Whether this user may reopen a closed month.
    may_reopen: bool,
    exports: Vec<ExportRecord>,
    standards: Vec<(String, String)>,
    usage_rates: Vec<(String, String)>,
    standard_names: Vec<(&'static str, &'static str)>,
}

#[derive(Deserialize)]
pub(crate) struct FilterQuery {
    #[serde(default)]
    filter: String,
}

/// (label, value) rows for the page.
type Pairs = Vec<(String, String)>;

fn settings_summary(settings: &ClinicSettings) -> (Pairs, Pairs) {
    let standards = settings
        .standards
        .iter()
        .map(|(from, met)| {
            let met = met.iter().map(|s| s.label()).collect::<Vec<_>>().join("、");
            (from.to_string(), if met.is_empty() { "（なし）".to_owned() } else { met })
        })
        .collect();
    let rates = settings.usage_rates.iter().map(|(m, r)| (m.to_string(), format!("{:.1}%", r * 100.0))).collect();
    (standards, rates)
}

pub(crate) async fn month_page(
    state: web::Data<AppState>,
    page: Page,
    caller: Caller,
    path: web::Path<(String, String)>,
    q: web::Query<FilterQuery>,
) -> Result<HttpResponse, ApiError> {
    let (raw_clinic, raw_month) = path.into_inner();
    let store = state.store.tenant(caller.scope);
    let clinic = caller.clinic(&store, &raw_clinic).await?;
    let month = parse_month(&raw_month)?;
    let MonthState { lines, totals, closed, late, first_at: times } =
        month_state(&state.rules, &store, &clinic, month).await?;
    let count = |f: fn(&Line) -> bool| lines.iter().filter(|l| f(l)).count();
    let unreviewed = count(|l| l.needs_review);
    let plain = count(approvable);
    let filters = vec![
        ("", "すべて", lines.len()),
        ("needs_review", "未確認", unreviewed),
        ("overridden", "修正済み", count(|l| l.overridden)),
        ("not_claimable", "算定なし", count(|l| l.not_claimable)),
        ("missed", "算定漏れ候補", count(|l| l.missed)),
        ("over", "過剰算定候補", count(|l| l.over)),
    ];
    let keep = |l: &Line| match q.filter.as_str() {
        "needs_review" => l.needs_review,
        "overridden" => l.overridden,
        "not_claimable" => l.not_claimable,
        "missed" => l.missed,
        "over" => l.over,
        _ => true,
    };
    let view: Vec<LineView> = lines
        .into_iter()
        .filter(|l| keep(l))
        .map(|line| {
            let t = times.get(&line.id).map(|t| t.to_offset(onshi_domain::jst::JST));
            LineView {
                time: t
                    .map(|t| format!("{:02}/{:02} {:02}:{:02}", t.month() as u8, t.day(), t.hour(), t.minute()))
                    .unwrap_or_default(),
                addon_text: line
                    .addons
                    .iter()
                    .map(|a| format!("{}（{}点）", a.name, a.points))
                    .collect::<Vec<_>>()
                    .join("、"),
                line,
            }
        })
        .collect();
    let settings = store.billing_settings(&clinic).await?;
    let (standards, usage_rates) = settings_summary(&settings);
    let closed = closed.map(|c| crate::web::time::jst_minute(&c.at));
    let late: Vec<String> = late
        .iter()
        .map(|id| times.get(id).map(crate::web::time::jst_minute).unwrap_or_else(|| "—".to_owned()))
        .collect();
    let exports = store.billing_exports(&clinic, month).await?;
    store
        .audit(
            &caller
                .entry("billing.view", &format!("billing:{}:{month}", clinic.id), AuditResult::Success)
                .details(serde_json::json!({ "rows": view.len() })),
        )
        .await?;
    ok(MonthPage {
        page,
        month: month.to_string(),
        filter: q.filter.clone(),
        filters,
        total_points: totals.values().map(|t| t.1).sum(),
        totals: totals.into_iter().map(|(name, (n, p))| (name, n, p)).collect(),
        lines: view,
        closed,
        late,
        unreviewed,
        plain,
        may_reopen: caller.user.role.allows(onshi_domain::Permission::ReopenBilling),
        exports,
        standards,
        usage_rates,
        standard_names: Standard::ALL.iter().map(|s| (s.key(), s.label())).collect(),
        clinic: clinic.clinic().clone(),
    })
}

// Form fields default to empty so the path's objects are resolved (404 for another tenant's) before the
// form is judged.
#[derive(Deserialize)]
pub(crate) struct ReviewForm {
    #[serde(default)]
    action: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    info: String,
    #[serde(default)]
    exclude: Option<String>,
    #[serde(default)]
    reason: String,
}

pub(crate) async fn review_visit(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String, String)>,
    form: web::Form<ReviewForm>,
) -> Result<HttpResponse, ApiError> {
    let (raw_clinic, raw_month, raw_visit) = path.into_inner();
    let store = state.store.tenant(caller.scope);
    let clinic = caller.clinic(&store, &raw_clinic).await?;
    let month = parse_month(&raw_month)?;
    let visit: uuid::Uuid = raw_visit.parse().map_err(|_| ApiError::NotFound)?;
    let reason = form.reason.trim();
    if reason.is_empty() {
        return Err(ApiError::InvalidRequest(onshi_domain::FieldError::new(
            "reason",
            "確認・修正の理由を入力してください",
        )));
    }
    let status = match form.action.as_str() {
        "approve" => "approved",
        "adjust" => "adjusted",
        _ => {
            return Err(ApiError::InvalidRequest(onshi_domain::FieldError::new(
                "action",
                "approve か adjust を指定してください",
            )));
        }
    };
    let adjusting = status == "adjusted";
    let kind = match form.kind.as_str() {
        "初診" | "再診" if adjusting => Some(form.kind.clone()),
        "" => None,
        _ if !adjusting => None,
        _ => {
            return Err(ApiError::InvalidRequest(onshi_domain::FieldError::new(
                "kind",
                "初診 か 再診 を指定してください",
            )));
        }
    };
    let info_obtained = match form.info.as_str() {
        "yes" if adjusting => Some(true),
        "no" if adjusting => Some(false),
        _ => None,
    };
    let stored = StoredReview {
        visit,
        status: status.to_owned(),
        kind,
        info_obtained,
        exclude: adjusting && form.exclude.is_some(),
        reason: reason.to_owned(),
    };
    let entry = caller.entry(&format!("billing.{}", if adjusting { "adjust" } else { "approve" }), &format!("visit:{visit}"), AuditResult::Success).details(
        serde_json::json!({ "clinic": clinic.id.to_string(), "month": month.to_string(), "kind": stored.kind, "info_obtained": stored.info_obtained, "exclude": stored.exclude, "reason": stored.reason }),
    );
    store.review_visit(&clinic, visit, month, &stored, caller.user.id, &entry).await?;
    Ok(see_other(&format!("/billing/{}/{month}", clinic.id)))
}

#[derive(Deserialize)]
pub(crate) struct BulkForm {
    /// Which lines: `plain` (unreviewed, with nothing flagged: not 算定漏れ or 過剰算定 candidates).
    #[serde(default)]
    which: String,
}

/// An unreviewed visit that nothing flags (not a 算定漏れ or 過剰算定 candidate): the bulk step takes it.
fn approvable(l: &Line) -> bool {
    l.needs_review && !l.missed && !l.over
}

/// Approves, in one step, every unreviewed visit of the month that nothing flags: the engine's decision
/// stands for them, so no reason is asked (adjustments still need one). Flagged visits stay for a look.
pub(crate) async fn approve_plain(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
    form: web::Form<BulkForm>,
) -> Result<HttpResponse, ApiError> {
    let (raw_clinic, raw_month) = path.into_inner();
    let store = state.store.tenant(caller.scope);
    let clinic = caller.clinic(&store, &raw_clinic).await?;
    let month = parse_month(&raw_month)?;
    if form.which != "plain" {
        return Err(ApiError::InvalidRequest(onshi_domain::FieldError::new("which", "plain を指定してください")));
    }
    let (lines, ..) = month_review(&state.rules, &store, &clinic, month).await?;
    let ids: Vec<uuid::Uuid> = lines.iter().filter(|l| approvable(l)).filter_map(|l| l.id.parse().ok()).collect();
    if !ids.is_empty() {
        let entry = caller
            .entry("billing.approve_bulk", &format!("billing:{}:{month}", clinic.id), AuditResult::Success)
            .details(serde_json::json!({ "visits": ids.len(), "which": "plain" }));
        store.approve_visits(&clinic, month, &ids, "一括確認（算定判定どおり）", caller.user.id, &entry).await?;
    }
    Ok(see_other(&format!("/billing/{}/{month}?filter=needs_review", clinic.id)))
}

#[derive(Deserialize)]
pub(crate) struct CloseForm {
    /// Present when the clerk confirmed closing with unreviewed visits.
    #[serde(default)]
    confirm: Option<String>,
}

pub(crate) async fn close_month(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
    form: web::Form<CloseForm>,
) -> Result<HttpResponse, ApiError> {
    let (raw_clinic, raw_month) = path.into_inner();
    let store = state.store.tenant(caller.scope);
    let clinic = caller.clinic(&store, &raw_clinic).await?;
    let month = parse_month(&raw_month)?;
    let (lines, totals, _) = month_review(&state.rules, &store, &clinic, month).await?;
    let unreviewed = lines.iter().filter(|l| l.needs_review).count();
    if unreviewed > 0 && form.confirm.is_none() {
        return Err(ApiError::InvalidRequest(onshi_domain::FieldError::new(
            "confirm",
            format!("未確認の受付が {unreviewed} 件あります。このまま締める場合は確認欄にチェックを入れてください。"),
        )));
    }
    let (visits, points) = (lines.len(), totals.values().map(|t| t.1).sum::<u32>());
    let snapshot = serde_json::to_string(&Snapshot { lines, totals }).map_err(ApiError::internal)?;
    let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(snapshot.as_bytes()));
    let entry = caller.entry("billing.close", &format!("billing:{}:{month}", clinic.id), AuditResult::Success).details(
        serde_json::json!({
            "visits": visits,
            "unreviewed": unreviewed,
            "points": points,
            "snapshot_sha256": sha256,
        }),
    );
    store.close_billing_month(&clinic, month, &snapshot, &sha256, caller.user.id, &entry).await?;
    Ok(see_other(&format!("/billing/{}/{month}", clinic.id)))
}

#[derive(Deserialize)]
pub(crate) struct ReopenForm {
    #[serde(default)]
    reason: String,
}

/// Reopens a closed month: an owner's explicit act, with a reason, audited with the hash of what the
/// month was closed with.
pub(crate) async fn reopen_month(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
    form: web::Form<ReopenForm>,
) -> Result<HttpResponse, ApiError> {
    let (raw_clinic, raw_month) = path.into_inner();
    let store = state.store.tenant(caller.scope);
    let clinic = caller.clinic(&store, &raw_clinic).await?;
    let month = parse_month(&raw_month)?;
    let reason = form.reason.trim();
    if reason.is_empty() {
        return Err(ApiError::InvalidRequest(onshi_domain::FieldError::new(
            "reason",
            "締めを解除する理由を入力してください。",
        )));
    }
    let closed = store.billing_month_closed(&clinic, month).await?.ok_or(ApiError::NotFound)?;
    let entry = caller.entry("billing.reopen", &format!("billing:{}:{month}", clinic.id), AuditResult::Success).details(
        serde_json::json!({ "reason": reason.chars().take(500).collect::<String>(), "snapshot_sha256": closed.snapshot_sha256 }),
    );
    store.reopen_billing_month(&clinic, month, &entry).await?;
    Ok(see_other(&format!("/billing/{}/{month}", clinic.id)))
}

#[derive(Deserialize)]
pub(crate) struct ExportForm {
    #[serde(default)]
    encoding: String,
}

/// The month as CSV for Excel: UTF-8 with BOM by default, Shift_JIS on request (refused, not garbled,
/// when a character has no Shift_JIS form).
pub(crate) fn month_csv(lines: &[Line], times: &HashMap<String, String>) -> CsvTable {
    let mut out = CsvTable::new(&[
        "日付",
        "受付時刻",
        "区分",
        "マイナ保険証",
        "診療情報取得",
        "加算",
        "点数",
        "コード",
        "確認状態",
        "理由",
    ]);
    for l in lines {
        let status = match (l.status, l.excluded) {
            (_, true) => "算定しない",
            (Some(ReviewStatus::Adjusted), _) => "修正済み",
            (Some(ReviewStatus::Approved), _) => "確認済み",
            (None, _) => "未確認",
        };
        let fields = [
            l.date.to_string(),
            times.get(&l.id).cloned().unwrap_or_default(),
            l.kind.label().to_owned(),
            if l.myna { "○" } else { "" }.to_owned(),
            if l.info_obtained { "○" } else { "" }.to_owned(),
            l.addons.iter().map(|a| a.name.as_str()).collect::<Vec<_>>().join(" / "),
            l.points.to_string(),
            l.addons.iter().filter_map(|a| a.code.as_deref()).collect::<Vec<_>>().join(" / "),
            status.to_owned(),
            l.reason.clone(),
        ];
        out.push(fields);
    }
    out
}

pub(crate) async fn export(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
    form: web::Form<ExportForm>,
) -> Result<HttpResponse, ApiError> {
    let (raw_clinic, raw_month) = path.into_inner();
    let store = state.store.tenant(caller.scope);
    let clinic = caller.clinic(&store, &raw_clinic).await?;
    let month = parse_month(&raw_month)?;
    // A closed month exports what it was closed with, so the same month gives the same file.
    let MonthState { lines, first_at, .. } = month_state(&state.rules, &store, &clinic, month).await?;
    let times: HashMap<String, String> = first_at
        .into_iter()
        .map(|(id, at)| {
            let t = at.to_offset(onshi_domain::jst::JST);
            (id, format!("{:02}:{:02}", t.hour(), t.minute()))
        })
        .collect();
    let table = month_csv(&lines, &times);
    let (encoding, bytes) = match form.encoding.as_str() {
        "sjis" => {
            let bytes = table.shift_jis().map_err(|e| {
                ApiError::InvalidRequest(onshi_domain::FieldError::new(
                    "encoding",
                    format!("{} 行目の「{}」は Shift_JIS で表せません。UTF-8 で出力してください", e.row, e.character),
                ))
            })?;
            ("sjis", bytes)
        }
        _ => ("utf8", table.utf8()),
    };
    // The charset is served from the export record on download; the stored object is plain text/csv.
    let content_type = "text/csv";
    // Short keys: the clinic and month live in the export record; the tenant prefix serves retention.
    let key = format!("exports/{}/{}.csv", caller.scope.tenant_id().as_uuid().simple(), uuid::Uuid::now_v7().simple());
    state.objects.put(&key, bytes, content_type).await.map_err(ApiError::unavailable)?;
    let entry = caller
        .entry("billing.export", &format!("billing:{}:{month}", clinic.id), AuditResult::Success)
        .details(serde_json::json!({ "encoding": encoding, "rows": lines.len(), "object": key }));
    store.record_billing_export(&clinic, month, &key, encoding, table.len(), caller.user.id, &entry).await?;
    Ok(see_other(&format!("/billing/{}/{month}#exports", clinic.id)))
}

pub(crate) async fn download(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (raw_clinic, raw_month, raw_export) = path.into_inner();
    let store = state.store.tenant(caller.scope);
    let clinic = caller.clinic(&store, &raw_clinic).await?;
    let month = parse_month(&raw_month)?;
    let id: uuid::Uuid = raw_export.parse().map_err(|_| ApiError::NotFound)?;
    let record =
        store.billing_exports(&clinic, month).await?.into_iter().find(|e| e.id == id).ok_or(ApiError::NotFound)?;
    let bytes =
        state.objects.get(&record.object_key).await.map_err(ApiError::unavailable)?.ok_or(ApiError::NotFound)?;
    store.audit(&caller.entry("billing.download", &format!("billing-export:{id}"), AuditResult::Success)).await?;
    let charset = if record.encoding == "sjis" { "Shift_JIS" } else { "utf-8" };
    Ok(attachment(bytes.to_vec(), charset, &format!("billing-{}-{month}", clinic.code)))
}

#[derive(Deserialize)]
pub(crate) struct StandardsForm {
    from: String,
}

pub(crate) async fn set_standards(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let store = state.store.tenant(caller.scope);
    let clinic = caller.clinic(&store, &path).await?;
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let form: StandardsForm = serde_urlencoded::from_bytes(&body)
        .map_err(|_| ApiError::InvalidRequest(onshi_domain::FieldError::new("from", "適用開始日が必要です")))?;
    let from = onshi_domain::jst::parse_date(&form.from).ok_or_else(|| {
        ApiError::InvalidRequest(onshi_domain::FieldError::new("from", "適用開始日は YYYY-MM-DD で入力してください"))
    })?;
    let met: std::collections::BTreeSet<Standard> =
        Standard::ALL.into_iter().filter(|st| pairs.iter().any(|(k, v)| k == "standard" && v == st.key())).collect();
    let mut settings = store.billing_settings(&clinic).await?;
    settings.set_standards(from, met.clone());
    let details: serde_json::Map<String, serde_json::Value> =
        std::iter::once(("from".to_owned(), from.to_string().into()))
            .chain(Standard::ALL.into_iter().map(|st| (st.key().to_owned(), met.contains(&st).into())))
            .collect();
    let audit = caller
        .entry("billing.standards", &format!("clinic:{}", clinic.id), AuditResult::Success)
        .details(serde_json::Value::Object(details));
    store.set_billing_settings(&clinic, &settings, &audit).await?;
    Ok(see_other(&format!("/billing/{}/{}", clinic.id, YearMonth::of(from))))
}

#[derive(Deserialize)]
pub(crate) struct RateForm {
    #[serde(default)]
    month: String,
    #[serde(default)]
    percent: String,
}

pub(crate) async fn set_usage_rate(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    form: web::Form<RateForm>,
) -> Result<HttpResponse, ApiError> {
    let store = state.store.tenant(caller.scope);
    let clinic = caller.clinic(&store, &path).await?;
    let month = YearMonth::parse(form.month.trim()).ok_or_else(|| {
        ApiError::InvalidRequest(onshi_domain::FieldError::new("month", "対象月は YYYY-MM で入力してください"))
    })?;
    let percent: f64 =
        form.percent.trim().trim_end_matches('%').parse().ok().filter(|p: &f64| (0.0..=100.0).contains(p)).ok_or_else(
            || {
                ApiError::InvalidRequest(onshi_domain::FieldError::new(
                    "percent",
                    "利用率は 0〜100 の数で入力してください",
                ))
            },
        )?;
    let mut settings = store.billing_settings(&clinic).await?;
    settings.set_usage_rate(month, percent / 100.0);
    let audit = caller
        .entry("billing.usage_rate", &format!("clinic:{}", clinic.id), AuditResult::Success)
        .details(serde_json::json!({ "month": month.to_string(), "percent": percent }));
    store.set_billing_settings(&clinic, &settings, &audit).await?;
    Ok(see_other(&format!(
        "/billing/{}/{}",
        clinic.id,
        YearMonth::of(onshi_domain::jst::date_of(OffsetDateTime::now_utc()))
    )))
}
