//! The integration API for API tokens (`Authorization: Bearer onshi_pat_…`). Read-only; the token's
//! scope and its creator's role are checked by the guard, the clinic scope here.

use actix_web::{HttpResponse, web};
use onshi_store::AuditResult;
use serde::Deserialize;
use serde_json::json;

use super::audit::AuditQuery;
use crate::web::guard::Caller;
use crate::web::time::utc_iso as utc;
use crate::{ApiError, AppState};

pub(crate) async fn clinics(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    let clinics: Vec<_> = caller
        .visible_clinics(&state.store.tenant(caller.scope))
        .await?
        .iter()
        .map(|c| json!({ "id": c.id, "institution_code": c.code, "name": c.name, "facility_kind": c.kind }))
        .collect();
    Ok(HttpResponse::Ok().insert_header(("Cache-Control", "no-store")).json(json!({ "clinics": clinics })))
}

#[derive(Deserialize)]
pub(crate) struct DateQuery {
    date: String,
}

pub(crate) async fn receptions(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    q: web::Query<DateQuery>,
) -> Result<HttpResponse, ApiError> {
    let store = state.store.tenant(caller.scope);
    let scope = caller.clinic(&store, &path).await?;
    let clinic = scope.id;
    let date = crate::web::input::required_date("date", &q.date)?;
    let visits = store.visits_on(&scope, date).await?;
    store
        .audit(
            &caller
                .entry("receptions.read", &format!("receptions:{clinic}:{date}"), AuditResult::Success)
                .details(json!({ "rows": visits.len() })),
        )
        .await?;
    let rows: Vec<_> = visits
        .iter()
        .map(|v| {
            json!({
                "first_at": utc(&v.first_at),
                "method": v.method.as_str(),
                "myna": v.myna,
                "result": v.result.as_str(),
                "confirmations": v.confirmations,
            })
        })
        .collect();
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(json!({ "clinic": clinic, "date": date.to_string(), "receptions": rows })))
}

pub(crate) async fn audit(
    state: web::Data<AppState>,
    caller: Caller,
    q: web::Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    let store = state.store.tenant(caller.scope);
    let rows = store.audit_entries(&q.filter(1000)?).await?;
    store
        .audit(
            &caller
                .entry("audit.export", "audit_log", AuditResult::Success)
                .details(json!({ "rows": rows.len(), "via": "api" })),
        )
        .await?;
    let rows: Vec<_> = rows
        .iter()
        .map(|r| json!({ "seq": r.seq, "at": utc(&r.at), "actor": r.actor, "action": r.action, "target": r.target, "result": r.result }))
        .collect();
    Ok(HttpResponse::Ok().insert_header(("Cache-Control", "no-store")).json(json!({ "entries": rows })))
}
