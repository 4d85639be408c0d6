//! The audit log viewer for owners and auditors: filters, and a CSV export that Excel opens correctly
//! (UTF-8 with BOM). Looking at the log and exporting it are themselves audited.

use std::collections::HashMap;

use actix_web::{HttpResponse, web};
use askama::Template;
use onshi_domain::{AuditAction, FieldError};
use onshi_store::{AuditFilter, AuditRecord, AuditResult};
use serde::Deserialize;
use time::{Date, OffsetDateTime};

use crate::web::csv::CsvTable;
use crate::web::guard::{Caller, Page};
use crate::web::i18n::Lang;
use crate::web::input;
use crate::web::page::ok;
use crate::web::time::{jst_second, utc_iso};
use crate::{ApiError, AppState};

#[derive(Deserialize, Default, Clone, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditQuery {
    /// Actions starting with this (`billing.`, `staff.invite`).
    #[serde(default)]
    #[param(required = false)]
    action: String,
    /// Actors containing this.
    #[serde(default)]
    #[param(required = false)]
    actor: String,
    /// `success`, `failure` or `denied`; empty for all.
    #[serde(default)]
    #[param(required = false, pattern = "^(success|failure|denied)?$")]
    result: String,
    /// First day (JST), YYYY-MM-DD (2000–2199); empty for no bound.
    #[serde(default)]
    #[param(required = false, pattern = "^((20|21)[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01]))?$")]
    from: String,
    /// Last day (JST), YYYY-MM-DD (2000–2199), inclusive; empty for no bound.
    #[serde(default)]
    #[param(required = false, pattern = "^((20|21)[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01]))?$")]
    to: String,
}

/// The start of a JST day, for the time filter.
fn day_start(d: Date) -> OffsetDateTime {
    d.midnight().assume_offset(onshi_domain::jst::JST)
}

impl AuditQuery {
    /// The store's filter; a date that is not one (or out of range) is a 400 naming its field.
    pub(crate) fn filter(&self, limit: u64) -> Result<AuditFilter, ApiError> {
        let non_empty = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
        let from = input::date("from", Some(&self.from))?;
        let to = input::date("to", Some(&self.to))?;
        Ok(AuditFilter {
            action_prefix: non_empty(&self.action),
            actor_contains: non_empty(&self.actor),
            result: match non_empty(&self.result) {
                None => None,
                Some(r) if ["success", "failure", "denied"].contains(&r.as_str()) => Some(r),
                Some(_) => {
                    return Err(ApiError::InvalidRequest(FieldError::new("result", "success, failure or denied")));
                }
            },
            from: from.map(day_start),
            to: to.map(|d| day_start(d) + time::Duration::days(1)),
            limit,
        })
    }
}

/// One entry as the viewer shows it: JST time, the result in the page's language.
struct AuditLine {
    seq: i64,
    at: String,
    actor: String,
    /// The recorded action code (kept, for filters and exports) and what it means in the page's language.
    action: String,
    action_label: &'static str,
    target: String,
    /// The clinics, staff and agents the actor and target name, as people know them ("" when none is
    /// known): the recorded ids stay beside them, for they are what the log keeps.
    actor_name: String,
    target_name: String,
    result: &'static str,
    result_class: &'static str,
    ip: Option<String>,
}

impl AuditLine {
    fn new(r: &AuditRecord, lang: Lang, names: &Names) -> Self {
        let (result, result_class) = match r.result.as_str() {
            "success" => (lang.t("成功", "Success"), ""),
            "failure" => (lang.t("失敗", "Failure"), "warn"),
            "denied" => (lang.t("拒否", "Denied"), "warn"),
            _ => ("—", ""),
        };
        AuditLine {
            seq: r.seq,
            at: jst_second(&r.at),
            actor: r.actor.clone(),
            action: r.action.clone(),
            action_label: action_label(&r.action, lang),
            target: r.target.clone(),
            actor_name: names.describe(&r.actor),
            target_name: names.describe(&r.target),
            result,
            result_class,
            ip: r.ip.clone(),
        }
    }
}

/// Display names by recorded id (`cln_…`, `usr_…`, `dev_…`), for the entries the viewer shows.
#[derive(Default)]
struct Names(HashMap<String, String>);

impl Names {
    async fn load(store: &onshi_store::TenantStore<'_>, caller: &Caller, lang: Lang) -> Result<Self, ApiError> {
        let mut names = HashMap::new();
        let clinics = caller.visible_clinics(store).await?;
        for c in &clinics {
            names.insert(c.id.to_string(), c.name.clone());
        }
        for d in store.devices().await? {
            // An agent reads with its clinic's name; one of a clinic the caller cannot see stays an id.
            if let Some(clinic) = clinics.iter().find(|c| c.id == d.clinic) {
                let (open, close) = (lang.t("（", " ("), lang.t("）", ")"));
                names.insert(d.id.to_string(), format!("{}{open}{}{close}", d.name, clinic.name));
            }
        }
        for u in store.users().await? {
            let name = if u.display_name.is_empty() { u.email.clone() } else { u.display_name.clone() };
            names.insert(u.id.to_string(), name);
        }
        Ok(Self(names))
    }

    /// The known names among `recorded`'s `:`-separated parts (`billing:cln_…:2026-11` → the clinic's
    /// name), joined; empty when it names nothing known.
    fn describe(&self, recorded: &str) -> String {
        recorded.split(':').filter_map(|part| self.0.get(part).map(String::as_str)).collect::<Vec<_>>().join(" · ")
    }
}

/// What an action code means, for people (empty for a code no longer written); the code itself stays
/// beside it (filters use it).
fn action_label(action: &str, lang: Lang) -> &'static str {
    AuditAction::from_code(action).map_or("", |a| lang.t(a.label_ja(), a.label_en()))
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    page: Page,
    q: AuditQuery,
    rows: Vec<AuditLine>,
    csv_link: String,
}

pub(crate) async fn viewer(
    state: web::Data<AppState>,
    page: Page,
    caller: Caller,
    q: web::Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let store = state.store.tenant(caller.scope);
    let rows = store.audit_entries(&q.filter(500)?).await?;
    store.audit(&caller.entry(AuditAction::AuditView, "audit_log", AuditResult::Success)).await?;
    let csv_link = format!(
        "/audit.csv?{}",
        serde_urlencoded::to_string([
            ("action", &q.action),
            ("actor", &q.actor),
            ("result", &q.result),
            ("from", &q.from),
            ("to", &q.to)
        ])
        .unwrap_or_default()
    );
    let names = Names::load(&store, &caller, page.lang).await?;
    let rows = rows.iter().map(|r| AuditLine::new(r, page.lang, &names)).collect();
    ok(AuditPage { page, q, rows, csv_link })
}

pub(crate) async fn export_csv(
    state: web::Data<AppState>,
    caller: Caller,
    q: web::Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    let store = state.store.tenant(caller.scope);
    let rows = store.audit_entries(&q.filter(10_000)?).await?;
    let mut table = CsvTable::new(&["seq", "at_utc", "at_jst", "actor", "action", "target", "result", "ip", "details"]);
    for r in &rows {
        table.push([
            r.seq.to_string(),
            utc_iso(&r.at),
            jst_second(&r.at),
            r.actor.clone(),
            r.action.clone(),
            r.target.clone(),
            r.result.clone(),
            r.ip.clone().unwrap_or_default(),
            r.details.clone(),
        ]);
    }
    store
        .audit(
            &caller
                .entry(AuditAction::AuditExport, "audit_log", AuditResult::Success)
                .details(serde_json::json!({ "rows": rows.len() })),
        )
        .await?;
    let today = onshi_domain::jst::date_of(time::OffsetDateTime::now_utc());
    Ok(table.download(&format!("audit-log-{today}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_target_reads_with_the_names_it_holds() {
        let names = Names(HashMap::from([
            ("cln_1".to_owned(), "オンシ内科".to_owned()),
            ("usr_2".to_owned(), "受付 花子".to_owned()),
        ]));
        assert_eq!(names.describe("billing:cln_1:2026-11"), "オンシ内科");
        assert_eq!(names.describe("user:usr_2"), "受付 花子");
        assert_eq!(names.describe("clinic:cln_9"), "", "an id nobody here knows stays as recorded");
        assert_eq!(names.describe("system"), "");
    }
}
