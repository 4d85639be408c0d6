//! The clinic's 届出 (施設基準 met from a date) and notified マイナ保険証利用率 per month: the rules
//! engine's clinic input, edited by billing staff and audited.

use actix_web::{HttpResponse, web};
use onshi_domain::AuditAction;
use onshi_rules::{RateBasis, Standard, YearMonth};
use onshi_store::AuditResult;
use serde::Deserialize;
use time::OffsetDateTime;

use crate::web::guard::Caller;
use crate::web::page::see_other;
use crate::{ApiError, AppState};

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
        .entry(AuditAction::BillingStandards, &format!("clinic:{}", clinic.id), AuditResult::Success)
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
    /// `receipts` (レセプト件数ベース, the default) or `oqs` (オン資件数ベース).
    #[serde(default)]
    basis: String,
    /// The official notice's counts and date (optional; the official figure only).
    #[serde(default)]
    uses: String,
    #[serde(default)]
    users: String,
    #[serde(default)]
    receipts: String,
    #[serde(default)]
    notified: String,
}

fn count(field: &'static str, value: &str) -> Result<Option<i32>, ApiError> {
    let v = value.trim().replace(',', "");
    if v.is_empty() {
        return Ok(None);
    }
    v.parse::<i32>()
        .ok()
        .filter(|n| *n >= 0)
        .map(Some)
        .ok_or_else(|| ApiError::InvalidRequest(onshi_domain::FieldError::new(field, "0 以上の整数で入力してください")))
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
    let (uses, users, receipts) =
        (count("uses", &form.uses)?, count("users", &form.users)?, count("receipts", &form.receipts)?);
    let percent: f64 = match (form.percent.trim(), users, receipts) {
        // Without a rate, the notice's 利用者数 ÷ 外来レセプト数.
        ("", Some(u), Some(r)) if r > 0 && u <= r => 100.0 * f64::from(u) / f64::from(r),
        (p, _, _) => {
            p.trim_end_matches('%').parse().ok().filter(|p: &f64| (0.0..=100.0).contains(p)).ok_or_else(|| {
                ApiError::InvalidRequest(onshi_domain::FieldError::new(
                    "percent",
                    "利用率は 0〜100 の数で入力してください（または利用者数と外来レセプト数）",
                ))
            })?
        }
    };
    let notified = match form.notified.trim() {
        "" => None,
        d => Some(onshi_domain::jst::parse_date(d).ok_or_else(|| {
            ApiError::InvalidRequest(onshi_domain::FieldError::new(
                "notified",
                "通知日は YYYY-MM-DD で入力してください",
            ))
        })?),
    };
    let basis = match form.basis.as_str() {
        "" | "receipts" => RateBasis::Receipts,
        "oqs" => RateBasis::Oqs,
        _ => {
            return Err(ApiError::InvalidRequest(onshi_domain::FieldError::new(
                "basis",
                "receipts か oqs を指定してください",
            )));
        }
    };
    if basis == RateBasis::Receipts {
        // The official figure, with what the notice says besides the rate; the engine reads it from there.
        let figure =
            onshi_store::OfficialFigure { uses, users, receipts, rate: percent / 100.0, notified_on: notified };
        let audit =
            caller.entry(AuditAction::BillingOfficialUsage, &format!("clinic:{}", clinic.id), AuditResult::Success);
        store.set_official_usage(&[(&clinic, month, figure)], Some(caller.user.id), &audit).await?;
    } else {
        let mut settings = store.billing_settings(&clinic).await?;
        settings.set_usage_rate(basis, month, percent / 100.0);
        let audit = caller
            .entry(AuditAction::BillingUsageRate, &format!("clinic:{}", clinic.id), AuditResult::Success)
            .details(serde_json::json!({ "month": month.to_string(), "percent": percent, "basis": basis.label() }));
        store.set_billing_settings(&clinic, &settings, &audit).await?;
    }
    Ok(see_other(&format!(
        "/billing/{}/{}",
        clinic.id,
        YearMonth::of(onshi_domain::jst::date_of(OffsetDateTime::now_utc()))
    )))
}
