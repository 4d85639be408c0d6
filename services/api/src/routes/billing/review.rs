//! Reviewing a month: one visit at a time, or many at once (selected rows, every unflagged visit, every
//! visit whose 初診/再診 is still unsettled); closing it with a snapshot, and reopening it.
//!
//! What needs a reason: an **adjustment** (a fact changed: 算定しない, 診療情報の取得, or a 初診/再診 that our
//! data had already settled). Approving the engine's decision, or settling a 初診/再診 we only guessed, does
//! not. Every write redirects back to the same filter (and, for one visit, to its row), so a clerk keeps
//! their place.

use std::collections::{BTreeSet, HashMap};

use actix_web::{HttpResponse, web};
use onshi_domain::{AuditAction, FieldError};
use onshi_rules::VisitKind;
use onshi_rules::billing::Line;
use onshi_store::{AuditResult, StoredReview};
use serde::Deserialize;

use super::month::{Snapshot, month_over, month_review, parse_month};
use super::page::{approvable, filter, view};
use crate::web::guard::Caller;
use crate::web::page::see_other;
use crate::{ApiError, AppState};

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::InvalidRequest(FieldError::new(field, message))
}

/// What a clerk does to a visit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// The engine's decision stands.
    Approve,
    /// 初診/再診 is this (settles a guess; adjusts a kind our data had settled).
    Kind(VisitKind),
    /// Do not claim.
    Exclude,
    /// 診療情報 was (not) obtained.
    Info(bool),
}

impl Action {
    fn parse(s: &str) -> Result<Self, ApiError> {
        Ok(match s {
            "approve" => Self::Approve,
            "first" => Self::Kind(VisitKind::First),
            "revisit" => Self::Kind(VisitKind::Revisit),
            "exclude" => Self::Exclude,
            "info_yes" => Self::Info(true),
            "info_no" => Self::Info(false),
            _ => return Err(invalid("action", "approve, first, revisit, exclude, info_yes, info_no のいずれかです")),
        })
    }

    fn key(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Kind(VisitKind::First) => "first",
            Self::Kind(VisitKind::Revisit) => "revisit",
            Self::Exclude => "exclude",
            Self::Info(true) => "info_yes",
            Self::Info(false) => "info_no",
        }
    }

    /// The review this action leaves on `line`, given its earlier review; `None` when nothing changes.
    /// Errors when an adjustment has no reason.
    fn apply(
        self,
        line: &Line,
        earlier: Option<&StoredReview>,
        reason: &str,
    ) -> Result<Option<StoredReview>, ApiError> {
        let visit: uuid::Uuid = line.id.parse().map_err(|_| ApiError::NotFound)?;
        let base = earlier.cloned().unwrap_or(StoredReview {
            visit,
            status: "settled".to_owned(),
            kind: None,
            info_obtained: None,
            exclude: false,
            reason: String::new(),
        });
        let adjust = |mut review: StoredReview| {
            if reason.is_empty() {
                return Err(invalid("reason", "修正の理由を入力してください（確認だけなら不要です）"));
            }
            review.status = "adjusted".to_owned();
            review.reason = reason.to_owned();
            Ok(Some(review))
        };
        match self {
            // An approval never undoes an earlier review: it records one where there was none (or where
            // only the kind was settled), keeping what the clerk said before.
            Self::Approve if earlier.is_some_and(|e| e.status != "settled") => Ok(None),
            Self::Approve => Ok(Some(StoredReview {
                status: "approved".to_owned(),
                reason: if reason.is_empty() { base.reason.clone() } else { reason.to_owned() },
                ..base
            })),
            // Settling a guessed kind is the clerk supplying a fact we lacked, not overriding one we had.
            Self::Kind(kind) if !line.kind_settled || line.kind == kind => {
                // No note of our own: the audit entry says what was settled, and a note repeated on every
                // row would drown the clerk's real ones.
                let reason = if reason.is_empty() { base.reason.clone() } else { reason.to_owned() };
                Ok(Some(StoredReview { kind: Some(kind.label().to_owned()), reason, ..base }))
            }
            Self::Kind(kind) => adjust(StoredReview { kind: Some(kind.label().to_owned()), ..base }),
            Self::Exclude => adjust(StoredReview { exclude: true, ..base }),
            Self::Info(obtained) => adjust(StoredReview { info_obtained: Some(obtained), ..base }),
        }
    }
}

/// The part of the month the page showed (filter, shared reason, day), which a form sends back.
struct Place<'a> {
    filter: &'a str,
    reason_id: &'a str,
    day: &'a str,
}

/// Where to go back to: the same filter, shared reason and day, and the row when one visit was reviewed.
fn back(
    clinic: &impl std::fmt::Display,
    month: &impl std::fmt::Display,
    place: Place<'_>,
    row: Option<&str>,
) -> HttpResponse {
    let key = filter(place.filter).key;
    let mut query: Vec<String> = Vec::new();
    if !key.is_empty() {
        query.push(format!("filter={key}"));
    }
    // A reason key is hex and a day a date; anything else is dropped rather than echoed into the redirect.
    let reason_id = place.reason_id;
    if !reason_id.is_empty() && reason_id.len() <= 64 && reason_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        query.push(format!("reason_id={reason_id}"));
    }
    if let Some(day) = onshi_domain::jst::parse_date(place.day) {
        query.push(format!("day={day}"));
    }
    let query = if query.is_empty() { String::new() } else { format!("?{}", query.join("&")) };
    let anchor = row.map(|id| format!("#v-{id}")).unwrap_or_default();
    see_other(&format!("/billing/{clinic}/{month}{query}{anchor}"))
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
    #[serde(default)]
    filter: String,
    #[serde(default)]
    reason_id: String,
    #[serde(default)]
    day: String,
}

/// One visit's review from its row: approve as it stands (optionally settling 初診/再診), or adjust its
/// facts with a reason.
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
    let kind = match form.kind.as_str() {
        "" => None,
        label => Some(VisitKind::from_label(label).ok_or_else(|| invalid("kind", "初診 か 再診 を指定してください"))?),
    };
    let info_obtained = match form.info.as_str() {
        "yes" => Some(true),
        "no" => Some(false),
        _ => None,
    };
    // What the clerk said before (a settled kind, say) stands unless this form says otherwise.
    let earlier = store.billing_reviews(&clinic, &[month]).await?.into_iter().find(|r| r.visit == visit);
    let kind = kind.map(|k| k.label().to_owned()).or_else(|| earlier.as_ref().and_then(|e| e.kind.clone()));
    let stored = match form.action.as_str() {
        "approve" => StoredReview {
            visit,
            // Approving an adjusted visit keeps it adjusted: the adjustment is what is being approved.
            status: if earlier.as_ref().is_some_and(|e| e.status == "adjusted") { "adjusted" } else { "approved" }
                .to_owned(),
            kind,
            info_obtained: earlier.as_ref().and_then(|e| e.info_obtained),
            exclude: earlier.as_ref().is_some_and(|e| e.exclude),
            reason: if reason.is_empty() { earlier.map(|e| e.reason).unwrap_or_default() } else { reason.to_owned() },
        },
        "adjust" if reason.is_empty() => {
            return Err(invalid("reason", "修正の理由を入力してください（確認だけなら不要です）"));
        }
        "adjust" => StoredReview {
            visit,
            status: "adjusted".to_owned(),
            kind,
            info_obtained: info_obtained.or_else(|| earlier.as_ref().and_then(|e| e.info_obtained)),
            exclude: form.exclude.is_some(),
            reason: reason.to_owned(),
        },
        _ => return Err(invalid("action", "approve か adjust を指定してください")),
    };
    let adjusting = stored.status == "adjusted";
    let entry = caller
        .entry(
            if adjusting { AuditAction::BillingAdjust } else { AuditAction::BillingApprove },
            &format!("visit:{visit}"),
            AuditResult::Success,
        )
        .details(serde_json::json!({
            "clinic": clinic.id.to_string(), "month": month.to_string(), "kind": stored.kind,
            "info_obtained": stored.info_obtained, "exclude": stored.exclude, "reason": stored.reason,
        }));
    store.review_visits(&clinic, month, std::slice::from_ref(&stored), caller.user.id, &entry).await?;
    let place = Place { filter: &form.filter, reason_id: &form.reason_id, day: &form.day };
    Ok(back(&clinic.id, &month, place, Some(&raw_visit)))
}

/// Which lines a bulk step takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// The rows the clerk ticked.
    Selected,
    /// Every unreviewed visit nothing flags, with its kind settled.
    Plain,
    /// Every visit whose 初診/再診 is still a guess.
    Unsettled,
    /// As `Plain`, for the shared reason named by `reason_id`, which must be one.
    Reason,
}

/// The bulk step: `scope` = `selected` (with `visit` ids), `plain`, `unsettled` or `reason` (with
/// `reason_id`), the last three within the page's `filter`, `reason_id` and `day`; `action` as in
/// [`Action::parse`]; `reason` required for adjustments; one transaction and one audit entry.
pub(crate) async fn bulk(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (raw_clinic, raw_month) = path.into_inner();
    let store = state.store.tenant(caller.scope);
    let clinic = caller.clinic(&store, &raw_clinic).await?;
    let month = parse_month(&raw_month)?;
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_bytes(&body).map_err(|_| invalid("form", "フォームを読めませんでした"))?;
    let field = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim()).unwrap_or("");
    let action = Action::parse(field("action"))?;
    let scope = match field("scope") {
        "selected" => Scope::Selected,
        "plain" => Scope::Plain,
        "unsettled" => Scope::Unsettled,
        "reason" => Scope::Reason,
        _ => return Err(invalid("scope", "selected, plain, unsettled, reason のいずれかです")),
    };
    let reason = field("reason").chars().take(500).collect::<String>();
    let selected: BTreeSet<&str> = pairs.iter().filter(|(k, _)| k == "visit").map(|(_, v)| v.as_str()).collect();
    if scope == Scope::Selected && selected.is_empty() {
        return Err(invalid("visit", "対象の受付を選んでください"));
    }

    let (lines, ..) = month_review(&state.rules, &store, &clinic, month).await?;
    let known: BTreeSet<&str> = lines.iter().map(|l| l.id.as_str()).collect();
    if let Some(stranger) = selected.iter().find(|id| !known.contains(*id)) {
        tracing::debug!(visit = %stranger, "bulk review names a visit outside the month");
        return Err(ApiError::NotFound);
    }
    let reason_id = field("reason_id");
    // The steps other than ticked rows take the visits the page showed (its filter, reason and day).
    let shown = view(&lines, field("filter"), reason_id, field("day"));
    // Only a reason the page lists (one SHARED visits or more give), which the clerk has read there. It may
    // have changed since the page was drawn (another clerk's correction): then the clerk is told, rather
    // than approving visits whose reason they have not read.
    if scope == Scope::Reason && shown.reason.is_none() {
        return Err(invalid("reason_id", "この根拠の受付はもうありません。ページを開き直してください"));
    }
    // Likewise a reason or day the page narrowed to that no longer narrows anything: the step would
    // otherwise widen to the whole month the clerk was not looking at.
    let stale = (!reason_id.is_empty() && shown.reason.is_none()) || (!field("day").is_empty() && shown.day.is_none());
    if scope != Scope::Selected && stale {
        return Err(invalid("view", "表示していた受付が変わりました。ページを開き直してください"));
    }
    let targets: Vec<&Line> = lines
        .iter()
        .filter(|l| match scope {
            Scope::Selected => selected.contains(l.id.as_str()),
            Scope::Plain | Scope::Reason => shown.keeps(l) && approvable(l),
            Scope::Unsettled => shown.keeps(l) && !l.kind_settled,
        })
        .collect();
    let earlier: HashMap<String, StoredReview> =
        store.billing_reviews(&clinic, &[month]).await?.into_iter().map(|r| (r.visit.to_string(), r)).collect();
    let mut reviews = Vec::new();
    for line in &targets {
        if let Some(review) = action.apply(line, earlier.get(&line.id), &reason)? {
            reviews.push(review);
        }
    }
    if !reviews.is_empty() {
        let entry = caller
            .entry(AuditAction::BillingBulk, &format!("billing:{}:{month}", clinic.id), AuditResult::Success)
            .details(serde_json::json!({
                "action": action.key(),
                "scope": field("scope"),
                "visits": reviews.len(),
                "reason": reason,
                "filter": shown.filter.key,
                "reason_id": shown.reason.map(|_| reason_id),
                "day": shown.day.map(|d| d.to_string()),
            }));
        store.review_visits(&clinic, month, &reviews, caller.user.id, &entry).await?;
    }
    Ok(back(&clinic.id, &month, Place { filter: field("filter"), reason_id, day: field("day") }, None))
}

#[derive(Deserialize)]
pub(crate) struct CloseForm {
    /// Present when the clerk confirmed closing with unreviewed or unsettled visits.
    #[serde(default)]
    confirm: Option<String>,
}

/// Closes the month with a snapshot of every line, the totals, the rules' legend and the rule-data
/// version, once the month is over (JST). Unreviewed visits, or visits whose 初診/再診 is unsettled, need the
/// clerk's confirmation.
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
    if !month_over(month) {
        return Err(invalid(
            "month",
            format!("{month} はまだ終わっていません。{} 以降に締めてください。", month.plus(1)),
        ));
    }
    let (lines, totals, ..) = month_review(&state.rules, &store, &clinic, month).await?;
    let unreviewed = lines.iter().filter(|l| l.needs_review).count();
    let unsettled = lines.iter().filter(|l| !l.kind_settled).count();
    if (unreviewed > 0 || unsettled > 0) && form.confirm.is_none() {
        return Err(invalid(
            "confirm",
            format!(
                "未確認の受付が {unreviewed} 件、区分（初診/再診）未確定の受付が {unsettled} 件あります。未確定の加算は合計に含まれません。このまま締める場合は確認欄にチェックを入れてください。"
            ),
        ));
    }
    let (visits, points) = (lines.len(), totals.values().map(|t| t.1).sum::<u32>());
    let snapshot = Snapshot::of(&state.rules, lines, totals);
    let rules_version = snapshot.rules_version.clone();
    let snapshot = serde_json::to_string(&snapshot).map_err(ApiError::internal)?;
    let sha256 = onshi_identity::token::sha256_hex(&snapshot);
    let entry = caller
        .entry(AuditAction::BillingClose, &format!("billing:{}:{month}", clinic.id), AuditResult::Success)
        .details(serde_json::json!({
            "visits": visits,
            "unreviewed": unreviewed,
            "unsettled": unsettled,
            "points": points,
            "snapshot_sha256": sha256,
            "rules_version": rules_version,
        }));
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
        return Err(invalid("reason", "締めを解除する理由を入力してください。"));
    }
    let closed = store.billing_month_closed(&clinic, month).await?.ok_or(ApiError::NotFound)?;
    let entry = caller.entry(AuditAction::BillingReopen, &format!("billing:{}:{month}", clinic.id), AuditResult::Success).details(
        serde_json::json!({ "reason": reason.chars().take(500).collect::<String>(), "snapshot_sha256": closed.snapshot_sha256 }),
    );
    store.reopen_billing_month(&clinic, month, &entry).await?;
    Ok(see_other(&format!("/billing/{}/{month}", clinic.id)))
}
