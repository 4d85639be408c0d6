//! The integration API for API tokens (`Authorization: Bearer onshi_pat_…`). Read-only; the token's
//! scope and its creator's role are checked by the guard (which also counts the token's requests against
//! its rate limit), the clinic scope here. Every answer carries an `ETag`; a client that sends it back in
//! `If-None-Match` gets 304 without the body.
//!
//! Each handler's `#[utoipa::path]` is its entry in the OpenAPI document (`routes::openapi`).

use std::collections::BTreeMap;

use actix_web::{HttpRequest, HttpResponse, web};
use onshi_domain::AuditAction;
use onshi_domain::{
    ClinicId, ConfirmationMethod, Consents, Day, FacilityKind, FieldError, IdentityCheck, MedicalInstitutionCode,
    QualificationResult, YearMonth,
};
use onshi_rules::usage::MonthCount;
use onshi_store::{AuditResult, VisitCursor, VisitFilter};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use super::audit::AuditQuery;
use crate::error::ErrorBody;
use crate::web::etag::{conditional_json, etag_of};
use crate::web::guard::Caller;
use crate::web::time::utc_iso as utc;
use crate::{ApiError, AppState};

/// Most days one visit listing may span, and most months one usage request.
const MAX_VISIT_DAYS: i64 = 366;
const MAX_USAGE_MONTHS: i32 = 36;
/// Visits per page unless `limit` says otherwise, and the most it may say.
const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;

/// A 400 naming the parameter at fault.
fn invalid(field: &str, message: &str) -> ApiError {
    ApiError::InvalidRequest(FieldError::new(field, message))
}

/// A JSON answer with a strong `ETag` over its bytes, or 304 when the client already has them. The body
/// is computed either way (the reads are cheap next to a client re-downloading a month of visits), so the
/// ETag is exact.
fn cached_json(req: &HttpRequest, body: &impl Serialize) -> Result<HttpResponse, ApiError> {
    let bytes = serde_json::to_vec(body).map_err(ApiError::internal)?;
    let etag = etag_of(&bytes);
    Ok(conditional_json(req, bytes, &etag, "private, no-cache"))
}

/// What every read operation may answer besides its own results.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // Only its OpenAPI description is used; handlers answer through ApiError.
pub(crate) enum ReadAnswers {
    #[response(status = 304, description = "Unchanged since the ETag sent in If-None-Match")]
    NotModified,
    #[response(status = 401, description = "Missing or invalid API token")]
    Unauthorized(ErrorBody),
    #[response(status = 403, description = "The token lacks the scope, or its creator the permission")]
    Forbidden(ErrorBody),
    #[response(status = 429, description = "Rate limit reached; see Retry-After and the RateLimit-* headers")]
    RateLimited(ErrorBody),
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ClinicList {
    clinics: Vec<ClinicItem>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ClinicItem {
    id: ClinicId,
    institution_code: MedicalInstitutionCode,
    name: String,
    facility_kind: FacilityKind,
}

/// The clinics the token's creator may see.
#[utoipa::path(
    get,
    path = "/api/v1/clinics",
    tag = "read",
    operation_id = "list_clinics",
    responses(
        (status = 200, description = "The clinics", body = ClinicList),
        ReadAnswers,
    ),
    security(("api_token" = ["clinics:read"]))
)]
pub(crate) async fn clinics(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let clinics = caller
        .visible_clinics(&state.store.tenant(caller.scope))
        .await?
        .iter()
        .map(|c| ClinicItem { id: c.id, institution_code: c.code.clone(), name: c.name.clone(), facility_kind: c.kind })
        .collect();
    cached_json(&req, &ClinicList { clinics })
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DateQuery {
    /// The day (JST), YYYY-MM-DD.
    date: Day,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ReceptionDay {
    clinic: ClinicId,
    date: Day,
    receptions: Vec<Reception>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Reception {
    /// The first confirmation of the visit (UTC).
    #[schema(format = DateTime)]
    first_at: String,
    method: ConfirmationMethod,
    /// Whether a マイナ保険証 was used (counts towards 利用率).
    myna: bool,
    result: QualificationResult,
    confirmations: u32,
}

/// One day's receptions of a clinic, oldest first.
#[utoipa::path(
    get,
    path = "/api/v1/clinics/{clinic}/receptions",
    tag = "read",
    operation_id = "list_receptions",
    params(("clinic" = ClinicId, Path, description = "The clinic's id"), DateQuery),
    responses(
        (status = 200, description = "The day's receptions", body = ReceptionDay),
        (status = 400, description = "A parameter is not valid", body = ErrorBody),
        (status = 404, description = "No such clinic for this token", body = ErrorBody),
        ReadAnswers,
    ),
    security(("api_token" = ["receptions:read"]))
)]
pub(crate) async fn receptions(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    q: web::Query<DateQuery>,
) -> Result<HttpResponse, ApiError> {
    let store = state.store.tenant(caller.scope);
    let scope = caller.clinic(&store, &path).await?;
    let clinic = scope.id;
    let date = q.date.0;
    let visits = store.visits_on(&scope, date).await?;
    store
        .audit(
            &caller
                .entry(AuditAction::ReceptionsRead, &format!("receptions:{clinic}:{date}"), AuditResult::Success)
                .details(json!({ "rows": visits.len() })),
        )
        .await?;
    let receptions = visits
        .iter()
        .map(|v| Reception {
            first_at: utc(&v.first_at),
            method: v.method,
            myna: v.myna,
            result: v.result,
            confirmations: v.confirmations,
        })
        .collect();
    cached_json(&req, &ReceptionDay { clinic, date: q.date, receptions })
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct VisitQuery {
    /// First day (JST), YYYY-MM-DD; default 30 days before `to`.
    from: Option<Day>,
    /// Last day (JST), YYYY-MM-DD, inclusive; default today. At most 366 days after `from`.
    to: Option<Day>,
    /// Only visits confirmed this way.
    method: Option<ConfirmationMethod>,
    /// Only visits with this result.
    result: Option<QualificationResult>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^(20|21)[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])\\.[0-9a-f]{32}$")]
    cursor: Option<String>,
    /// Visits per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct VisitPage {
    clinic: ClinicId,
    visits: Vec<VisitItem>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

/// A visit (受付): one patient at one clinic on one day, however many confirmations it took.
#[derive(Serialize, ToSchema)]
pub(crate) struct VisitItem {
    date: Day,
    #[schema(format = DateTime)]
    first_at: String,
    #[schema(format = DateTime)]
    last_at: String,
    method: ConfirmationMethod,
    #[serde(skip_serializing_if = "Option::is_none")]
    identity_check: Option<IdentityCheck>,
    myna: bool,
    result: QualificationResult,
    consents: Consents,
    confirmations: u32,
    /// The patient's keyed pseudonym (the clinic's systems can compute it with the group's key to join
    /// their own records); absent when the check found nobody.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<onshi_domain::PatientRef>)]
    patient: Option<String>,
}

/// A clinic's visits, by day, a page at a time.
#[utoipa::path(
    get,
    path = "/api/v1/clinics/{clinic}/visits",
    tag = "read",
    operation_id = "list_visits",
    params(("clinic" = ClinicId, Path, description = "The clinic's id"), VisitQuery),
    responses(
        (status = 200, description = "A page of visits", body = VisitPage),
        (status = 400, description = "A parameter is not valid", body = ErrorBody),
        (status = 404, description = "No such clinic for this token", body = ErrorBody),
        ReadAnswers,
    ),
    security(("api_token" = ["receptions:read"]))
)]
pub(crate) async fn visits(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    q: web::Query<VisitQuery>,
) -> Result<HttpResponse, ApiError> {
    let to = q.to.map_or_else(|| onshi_domain::jst::date_of(time::OffsetDateTime::now_utc()), |d| d.0);
    let from = match q.from {
        Some(d) => d.0,
        None => to.checked_sub(time::Duration::days(30)).unwrap_or(to),
    };
    if from > to {
        return Err(invalid("from", "must not be after `to`"));
    }
    if (to - from).whole_days() >= MAX_VISIT_DAYS {
        return Err(invalid("to", "at most 366 days after `from`"));
    }
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(invalid("limit", "1 to 1000"));
    }
    let after = match q.cursor.as_deref() {
        Some(c) => Some(c.parse::<VisitCursor>().map_err(|()| invalid("cursor", "not a cursor this API gave"))?),
        None => None,
    };
    let store = state.store.tenant(caller.scope);
    let scope = caller.clinic(&store, &path).await?;
    let filter = VisitFilter { from, to, method: q.method, result: q.result };
    // One more than the page, to know whether another page follows.
    let mut rows = store.visits_page(&scope, &filter, after, u64::from(limit) + 1).await?;
    let next_cursor = (rows.len() > limit as usize).then(|| {
        rows.truncate(limit as usize);
        rows.last().map(|(cursor, _)| cursor.to_string())
    });
    store
        .audit(
            &caller
                .entry(AuditAction::VisitsRead, &format!("visits:{}:{from}..{to}", scope.id), AuditResult::Success)
                .details(json!({ "rows": rows.len() })),
        )
        .await?;
    let visits = rows
        .into_iter()
        .map(|(_, v)| VisitItem {
            date: Day(v.date),
            first_at: utc(&v.first_at),
            last_at: utc(&v.last_at),
            method: v.method,
            identity_check: v.identity,
            myna: v.myna,
            result: v.result,
            consents: v.consents,
            confirmations: v.confirmations,
            patient: v.patient,
        })
        .collect();
    cached_json(&req, &VisitPage { clinic: scope.id, visits, next_cursor: next_cursor.flatten() })
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct MonthRange {
    /// First month, YYYY-MM; default 11 months before `to`.
    from: Option<YearMonth>,
    /// Last month, YYYY-MM, inclusive; default this month. At most 36 months in all.
    to: Option<YearMonth>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct UsageMonths {
    clinic: ClinicId,
    months: Vec<UsageMonth>,
}

/// One month's マイナ保険証利用率 as each source has it. The figures differ by design (docs/usage.md): the
/// estimate counts patients seen by the agents, the claims-based figure the month's 入院外 receipts, the
/// official one is what 支払基金 notified.
#[derive(Serialize, ToSchema)]
pub(crate) struct UsageMonth {
    month: YearMonth,
    estimate: Estimate,
    /// From the month's own claims (レセ電 import); absent until they are imported.
    #[serde(skip_serializing_if = "Option::is_none")]
    claims: Option<ClaimsBased>,
    /// As notified; absent until entered or imported.
    #[serde(skip_serializing_if = "Option::is_none")]
    official: Option<Official>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Estimate {
    /// Distinct patients with a reception.
    patients: u64,
    /// Of them, patients who used a マイナ保険証.
    myna_patients: u64,
    /// `myna_patients / patients`, 0 to 1; absent without patients.
    #[serde(skip_serializing_if = "Option::is_none")]
    rate: Option<f64>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ClaimsBased {
    outpatient_receipts: u64,
    myna_receipts: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    rate: Option<f64>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Official {
    /// 0 to 1.
    rate: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    uses: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    users: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    receipts: Option<i32>,
    /// Absent for a rate typed on the billing page without its notice.
    #[serde(skip_serializing_if = "Option::is_none")]
    notified_on: Option<Day>,
}

/// A clinic's マイナ保険証利用率 by month: estimate, claims-based and official.
#[utoipa::path(
    get,
    path = "/api/v1/clinics/{clinic}/usage",
    tag = "read",
    operation_id = "clinic_usage",
    params(("clinic" = ClinicId, Path, description = "The clinic's id"), MonthRange),
    responses(
        (status = 200, description = "The months, oldest first", body = UsageMonths),
        (status = 400, description = "A parameter is not valid", body = ErrorBody),
        (status = 404, description = "No such clinic for this token", body = ErrorBody),
        ReadAnswers,
    ),
    security(("api_token" = ["usage:read"]))
)]
pub(crate) async fn usage(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    q: web::Query<MonthRange>,
) -> Result<HttpResponse, ApiError> {
    let to = q.to.unwrap_or_else(|| YearMonth::of(onshi_domain::jst::date_of(time::OffsetDateTime::now_utc())));
    let from = q.from.unwrap_or_else(|| to.plus(-11));
    if from > to {
        return Err(invalid("from", "must not be after `to`"));
    }
    if to.since(from) >= MAX_USAGE_MONTHS {
        return Err(invalid("to", "at most 36 months from `from`"));
    }
    let months: Vec<YearMonth> = from.through(to).collect();
    let store = state.store.tenant(caller.scope);
    let scope = caller.clinic(&store, &path).await?;
    let estimates: BTreeMap<YearMonth, MonthCount> = store
        .usage_by_month(&months)
        .await?
        .into_iter()
        .filter(|(_, u)| u.clinic == scope.id)
        .map(|(m, u)| (m, MonthCount { patients: u.patients, myna: u.myna_patients }))
        .collect();
    let claims = store.claims_usage(&scope, &months).await?;
    let official = store.official_usage(&scope).await?;
    let months = months
        .into_iter()
        .map(|month| {
            let count = estimates.get(&month).copied().unwrap_or_default();
            UsageMonth {
                month,
                estimate: Estimate { patients: count.patients, myna_patients: count.myna, rate: count.rate() },
                claims: claims.get(&month).map(|c| ClaimsBased {
                    outpatient_receipts: c.outpatient_receipts,
                    myna_receipts: c.myna_receipts,
                    rate: MonthCount { patients: c.outpatient_receipts, myna: c.myna_receipts }.rate(),
                }),
                official: official.get(&month).map(|o| Official {
                    rate: o.rate,
                    uses: o.uses,
                    users: o.users,
                    receipts: o.receipts,
                    notified_on: o.notified_on.map(Day),
                }),
            }
        })
        .collect();
    cached_json(&req, &UsageMonths { clinic: scope.id, months })
}

#[derive(Serialize, ToSchema)]
pub(crate) struct AuditEntries {
    entries: Vec<AuditItem>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct AuditItem {
    seq: i64,
    #[schema(format = DateTime)]
    at: String,
    actor: String,
    action: String,
    target: String,
    /// `success`, `failure` or `denied`.
    result: String,
}

/// The group's audit log, newest first (at most 1,000 entries).
#[utoipa::path(
    get,
    path = "/api/v1/audit",
    tag = "read",
    operation_id = "list_audit",
    params(AuditQuery),
    responses(
        (status = 200, description = "Audit entries", body = AuditEntries),
        (status = 400, description = "A parameter is not valid", body = ErrorBody),
        ReadAnswers,
    ),
    security(("api_token" = ["audit:read"]))
)]
pub(crate) async fn audit(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    q: web::Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    let store = state.store.tenant(caller.scope);
    let rows = store.audit_entries(&q.filter(1000)?).await?;
    store
        .audit(
            &caller
                .entry(AuditAction::AuditExport, "audit_log", AuditResult::Success)
                .details(json!({ "rows": rows.len(), "via": "api" })),
        )
        .await?;
    let entries = rows
        .iter()
        .map(|r| AuditItem {
            seq: r.seq,
            at: utc(&r.at),
            actor: r.actor.clone(),
            action: r.action.clone(),
            target: r.target.clone(),
            result: r.result.clone(),
        })
        .collect();
    cached_json(&req, &AuditEntries { entries })
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ClosedBillingMonth {
    clinic: ClinicId,
    month: YearMonth,
    #[schema(format = DateTime)]
    closed_at: String,
    closed_by: onshi_domain::UserId,
    /// SHA-256 of the snapshot as stored: the same month always exports the same bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    snapshot_sha256: Option<String>,
    /// SHA-256 of the rule data the month was decided with.
    rules_version: String,
    /// Per addon: visits and points counted as certain.
    totals: Vec<AddonTotal>,
    /// One line per visit of the month, in reception order.
    lines: Vec<BillingLine>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct AddonTotal {
    addon: String,
    visits: u32,
    points: u32,
}

/// A visit's decision as the month was closed with it.
#[derive(Serialize, ToSchema)]
pub(crate) struct BillingLine {
    /// The visit (as the billing page and its CSV name it).
    visit_id: String,
    date: Day,
    /// `初診` or `再診`.
    kind: String,
    /// False while 初診/再診 was a guess: its addon is provisional and outside the totals.
    kind_settled: bool,
    myna: bool,
    info_obtained: bool,
    addons: Vec<BillingAddon>,
    points: u32,
    /// Why, in words a clerk can read, citing the rules.
    reason: String,
    /// `settled`, `approved` or `adjusted` by a clerk; absent when nobody reviewed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    review: Option<String>,
    excluded: bool,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct BillingAddon {
    name: String,
    /// The 9-digit 診療行為コード, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<String>,
    points: u32,
    /// False when the rule or its code could not be confirmed against official sources.
    verified: bool,
}

/// A closed billing month of a clinic: every visit's addon decision and the totals, as closed.
///
/// Only closed months are served (an open month is still being reviewed): 404 otherwise.
#[utoipa::path(
    get,
    path = "/api/v1/clinics/{clinic}/billing/{month}",
    tag = "read",
    operation_id = "closed_billing_month",
    params(
        ("clinic" = ClinicId, Path, description = "The clinic's id"),
        ("month" = YearMonth, Path, description = "The month of care, YYYY-MM"),
    ),
    responses(
        (status = 200, description = "The month as it was closed", body = ClosedBillingMonth),
        (status = 404, description = "No such clinic for this token, or the month is not closed", body = ErrorBody),
        ReadAnswers,
    ),
    security(("api_token" = ["billing:read"]))
)]
pub(crate) async fn billing_month(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (clinic, month) = path.into_inner();
    let month: YearMonth = month.parse().map_err(|_| ApiError::NotFound)?;
    let store = state.store.tenant(caller.scope);
    let scope = caller.clinic(&store, &clinic).await?;
    let closed = store.billing_month_closed(&scope, month).await?.ok_or(ApiError::NotFound)?;
    let snapshot: super::billing::Snapshot =
        serde_json::from_str(closed.snapshot.as_deref().ok_or(ApiError::NotFound)?).map_err(ApiError::internal)?;
    store
        .audit(&caller.entry(AuditAction::BillingRead, &format!("billing:{}:{month}", scope.id), AuditResult::Success))
        .await?;
    let lines = snapshot
        .lines
        .into_iter()
        .map(|l| BillingLine {
            visit_id: l.id,
            date: Day(l.date),
            kind: l.kind.label().to_owned(),
            kind_settled: l.kind_settled,
            myna: l.myna,
            info_obtained: l.info_obtained,
            addons: l
                .addons
                .into_iter()
                .map(|a| BillingAddon { name: a.name, code: a.code, points: a.points, verified: a.verified })
                .collect(),
            points: l.points,
            reason: l.reason,
            review: l.status.map(|s| format!("{s:?}").to_lowercase()),
            excluded: l.excluded,
        })
        .collect();
    let totals =
        snapshot.totals.into_iter().map(|(addon, (visits, points))| AddonTotal { addon, visits, points }).collect();
    cached_json(
        &req,
        &ClosedBillingMonth {
            clinic: scope.id,
            month,
            closed_at: utc(&closed.at),
            closed_by: closed.by,
            snapshot_sha256: closed.snapshot_sha256,
            rules_version: snapshot.rules_version,
            totals,
            lines,
        },
    )
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Fleet {
    agents: Vec<AgentStatus>,
}

/// One enrolled agent and how it stands now.
#[derive(Serialize, ToSchema)]
pub(crate) struct AgentStatus {
    device_id: onshi_domain::DeviceId,
    clinic_id: ClinicId,
    name: String,
    /// `online`, `degraded` (heard from, something at the clinic needs attention), `offline` (silent for
    /// more than 60 s) or `never_seen`; `revoked` for a revoked device.
    state: String,
    /// What needs attention, in English (the fleet page shows it in Japanese too).
    attention: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    agent_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    last_seen_at: Option<String>,
    /// Events buffered at the clinic, not yet delivered.
    #[serde(skip_serializing_if = "Option::is_none")]
    outbox_depth: Option<u64>,
}

/// The group's agents and their state (the fleet page's data).
#[utoipa::path(
    get,
    path = "/api/v1/fleet",
    tag = "read",
    operation_id = "fleet_status",
    responses(
        (status = 200, description = "Every agent the token's creator may see", body = Fleet),
        ReadAnswers,
    ),
    security(("api_token" = ["fleet:read"]))
)]
pub(crate) async fn fleet(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    use onshi_domain::DeviceHealth;
    let store = state.store.tenant(caller.scope);
    let now = time::OffsetDateTime::now_utc();
    let agents = store
        .devices()
        .await?
        .into_iter()
        .filter(|d| caller.clinics.includes(d.clinic))
        .map(|d| {
            let (state, attention) = if d.status == onshi_store::DeviceStatus::Revoked {
                ("revoked", Vec::new())
            } else {
                let health = d.health(now);
                let attention = match &health {
                    DeviceHealth::Degraded(reasons) => reasons.iter().map(|a| a.label_en().to_owned()).collect(),
                    _ => Vec::new(),
                };
                (health.code(), attention)
            };
            AgentStatus {
                device_id: d.id,
                clinic_id: d.clinic,
                name: d.name,
                state: state.to_owned(),
                attention,
                agent_version: d.agent_version,
                last_seen_at: d.last_seen_at.as_ref().map(utc),
                outbox_depth: d.last_heartbeat.as_ref().map(|h| h.outbox_depth),
            }
        })
        .collect();
    cached_json(&req, &Fleet { agents })
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Alerts {
    alerts: Vec<Alert>,
}

/// Something the group was told about (by e-mail, and by webhook where one is set up).
#[derive(Serialize, ToSchema)]
pub(crate) struct Alert {
    /// `usage.below_threshold`, `device.offline` or `alert.raised` (the webhook event types).
    kind: String,
    clinic_id: ClinicId,
    #[schema(format = DateTime)]
    at: String,
    /// Whether it still holds: an agent still offline. A usage warning is a statement about its month.
    open: bool,
    /// The month a usage warning is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    month: Option<YearMonth>,
    #[serde(skip_serializing_if = "Option::is_none")]
    device_id: Option<onshi_domain::DeviceId>,
    /// What an `alert.raised` is about: `offline`, `reader`, `network` or `quarantine`.
    #[serde(skip_serializing_if = "Option::is_none")]
    fault: Option<String>,
}

/// The group's alerts, newest first: agents offline now, the alerts in opening hours of the last 30 days
/// (open or over), and the usage warnings of the last months.
#[utoipa::path(
    get,
    path = "/api/v1/alerts",
    tag = "read",
    operation_id = "list_alerts",
    responses(
        (status = 200, description = "Alerts for the clinics the token's creator may see", body = Alerts),
        ReadAnswers,
    ),
    security(("api_token" = ["alerts:read"]))
)]
pub(crate) async fn alerts(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let store = state.store.tenant(caller.scope);
    let mut alerts: Vec<(time::OffsetDateTime, Alert)> = store
        .devices()
        .await?
        .into_iter()
        .filter(|d| caller.clinics.includes(d.clinic) && d.status == onshi_store::DeviceStatus::Active)
        .filter_map(|d| {
            let at = d.offline_announced_at?;
            Some((
                at,
                Alert {
                    kind: onshi_domain::WebhookEvent::DeviceOffline.as_str().to_owned(),
                    clinic_id: d.clinic,
                    at: utc(&at),
                    open: true,
                    month: None,
                    device_id: Some(d.id),
                    fault: None,
                },
            ))
        })
        .collect();
    let month_ago = time::OffsetDateTime::now_utc() - time::Duration::days(30);
    alerts.extend(store.device_alerts(month_ago).await?.into_iter().filter(|a| caller.clinics.includes(a.clinic)).map(
        |a| {
            let at = a.raised_at.unwrap_or(a.since);
            (
                at,
                Alert {
                    kind: onshi_domain::WebhookEvent::AlertRaised.as_str().to_owned(),
                    clinic_id: a.clinic,
                    at: utc(&at),
                    open: a.resolved_at.is_none(),
                    month: None,
                    device_id: Some(a.device),
                    fault: Some(a.kind.code().to_owned()),
                },
            )
        },
    ));
    alerts.extend(store.usage_alerts(200).await?.into_iter().filter(|(c, _, _)| caller.clinics.includes(*c)).map(
        |(clinic, month, at)| {
            (
                at,
                Alert {
                    kind: onshi_domain::WebhookEvent::UsageBelowThreshold.as_str().to_owned(),
                    clinic_id: clinic,
                    at: utc(&at),
                    open: false,
                    month: Some(month),
                    device_id: None,
                    fault: None,
                },
            )
        },
    ));
    alerts.sort_by_key(|a| std::cmp::Reverse(a.0));
    cached_json(&req, &Alerts { alerts: alerts.into_iter().map(|(_, a)| a).collect() })
}
