//! Server-rendered reception pages (askama): the group's clinics today, and one clinic's receptions on
//! a day. Clinic staff see only their assigned clinics. Every view of reception lists is audited.

use actix_web::{HttpResponse, web};
use askama::Template;
use askama_web::WebTemplate;
use onshi_domain::jst;
use onshi_domain::{AuditAction, Permission};
use onshi_store::AuditResult;
use time::OffsetDateTime;

use crate::web::guard::{Caller, Page};
use crate::web::page::{ok, see_other};
use crate::web::time::jst_clock;
use crate::{ApiError, AppState};

pub(crate) struct VisitLine {
    pub time: String,
    /// On a day's page, the last check's time when the visit was checked again later (else empty).
    pub until: String,
    pub method: &'static str,
    pub myna: bool,
    pub result: &'static str,
    pub result_ok: bool,
    pub confirmations: u32,
}

impl VisitLine {
    /// The result up to its parenthesis and from it (empty when it has none). The page breaks a long
    /// result only there: a narrow card showed 無効(新資格あ / り), the last character alone on a line.
    pub fn result_parts(&self) -> (&'static str, &'static str) {
        result_parts(self.result)
    }
}

/// A result label up to its parenthesis and from it, for a `<wbr>` between: see `VisitLine::result_parts`.
pub(crate) fn result_parts(result: &'static str) -> (&'static str, &'static str) {
    result.find('(').map_or((result, ""), |at| result.split_at(at))
}

pub(crate) struct ClinicPanel {
    pub id: String,
    pub name: String,
    /// The clinic's agent: label, CSS class and what needs attention.
    pub agent_label: &'static str,
    pub agent_class: &'static str,
    pub agent_reasons: String,
    pub code: String,
    pub today_visits: usize,
    pub today_myna: usize,
    /// 利用率 (estimate) today, as a percentage with one decimal, or "—" without visits.
    pub today_rate: String,
    pub recent: Vec<VisitLine>,
}

#[derive(Template, WebTemplate)]
#[template(path = "visits.html")]
pub(crate) struct VisitsPage {
    pub page: Page,
    pub today: String,
    pub clinics: Vec<ClinicPanel>,
}

/// The start page: receptions for those who may see them, the audit log for auditors.
pub(crate) async fn home(state: web::Data<AppState>, page: Page, caller: Caller) -> Result<HttpResponse, ApiError> {
    if !caller.can(Permission::ViewReceptions) {
        return Ok(see_other(if caller.can(Permission::ViewAudit) { "/audit" } else { "/account" }));
    }
    let store = state.store.tenant(caller.scope);
    let now = OffsetDateTime::now_utc();
    let today = jst::date_of(now);
    let devices = store.devices().await?;
    let mut panels = Vec::new();
    for clinic in caller.visible_clinics(&store).await? {
        // The healthiest agent of the clinic speaks for it (a spare agent that is off is not an outage).
        let health = devices
            .iter()
            .filter(|d| d.clinic == clinic.id && d.status == onshi_store::DeviceStatus::Active)
            .map(|d| d.health(now))
            .min_by_key(|h| match h {
                onshi_domain::DeviceHealth::Online => 0,
                onshi_domain::DeviceHealth::Degraded(_) => 1,
                onshi_domain::DeviceHealth::Offline => 2,
                onshi_domain::DeviceHealth::NeverSeen => 3,
            })
            .unwrap_or(onshi_domain::DeviceHealth::NeverSeen);
        let reasons = match &health {
            onshi_domain::DeviceHealth::Degraded(r) => page.attention(r),
            _ => String::new(),
        };
        let todays = store.visits_on(&clinic, today).await?;
        let myna = todays.iter().filter(|v| v.myna).count();
        let rate = if todays.is_empty() {
            "—".to_owned()
        } else {
            format!("{:.1}%", 100.0 * myna as f64 / todays.len() as f64)
        };
        let recent = store.recent_visits(&clinic, 15).await?.into_iter().map(|v| line(v, page.lang)).collect();
        panels.push(ClinicPanel {
            id: clinic.id.to_string(),
            agent_label: page.lang.t(health.label_ja(), health.label_en()),
            agent_class: health.css_class(),
            agent_reasons: reasons,
            name: clinic.name.clone(),
            code: clinic.code.to_string(),
            today_visits: todays.len(),
            today_myna: myna,
            today_rate: rate,
            recent,
        });
    }
    let shown: Vec<String> = panels.iter().map(|p| p.id.clone()).collect();
    // One entry per view a person opens; the page's own updates of that view are not new views.
    if !caller.passive {
        store
            .audit(
                &caller
                    .entry(AuditAction::ReceptionsView, &format!("receptions:today:{today}"), AuditResult::Success)
                    .details(serde_json::json!({ "clinics": shown })),
            )
            .await?;
    }
    ok(VisitsPage { page, today: today.to_string(), clinics: panels })
}

#[derive(Template)]
#[template(path = "clinic_receptions.html")]
pub(crate) struct ClinicReceptionsPage {
    pub page: Page,
    pub clinic: onshi_store::Clinic,
    pub date: String,
    pub rows: Vec<VisitLine>,
}

#[derive(serde::Deserialize)]
pub(crate) struct DayQuery {
    #[serde(default)]
    date: Option<String>,
}

/// One clinic's receptions on one day (JST).
pub(crate) async fn clinic_receptions(
    state: web::Data<AppState>,
    page: Page,
    caller: Caller,
    path: web::Path<String>,
    q: web::Query<DayQuery>,
) -> Result<HttpResponse, ApiError> {
    let store = state.store.tenant(caller.scope);
    let clinic = caller.clinic(&store, &path).await?;
    let id = clinic.id;
    let date = match q.date.as_deref() {
        Some(d) => crate::web::input::required_date("date", d)?,
        None => jst::date_of(OffsetDateTime::now_utc()),
    };
    let rows: Vec<VisitLine> =
        store.visits_on(&clinic, date).await?.into_iter().map(|v| day_line(v, page.lang)).collect();
    store
        .audit(
            &caller
                .entry(AuditAction::ReceptionsView, &format!("receptions:{id}:{date}"), AuditResult::Success)
                .details(serde_json::json!({ "rows": rows.len() })),
        )
        .await?;
    ok(ClinicReceptionsPage { page, clinic: clinic.clinic().clone(), date: date.to_string(), rows })
}

/// A line of the start page's latest receptions: newest first, so the time of the last check, with
/// its date (the list spans days).
fn line(v: onshi_store::VisitRow, lang: crate::web::i18n::Lang) -> VisitLine {
    let t = v.last_at.to_offset(jst::JST);
    VisitLine {
        time: format!("{:02}/{:02} {:02}:{:02}", t.month() as u8, t.day(), t.hour(), t.minute()),
        until: String::new(),
        method: lang.t(v.method.label_ja(), v.method.label_en()),
        myna: v.myna,
        result: lang.t(v.result.label_ja(), v.result.label_en()),
        result_ok: v.result == onshi_domain::QualificationResult::Valid,
        confirmations: v.confirmations,
    }
}

/// A line of a day's receptions: in order of arrival, so the time of the first check (the 受付 time a
/// clerk matches against the reception desk), and the last one after it when the patient was checked
/// again in a later minute. Showing only the last time, as the page once did, put rows out of order.
fn day_line(v: onshi_store::VisitRow, lang: crate::web::i18n::Lang) -> VisitLine {
    let (time, last) = (jst_clock(&v.first_at), jst_clock(&v.last_at));
    let until = if last == time { String::new() } else { last };
    VisitLine { time, until, ..line(v, lang) }
}

pub(crate) async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header(("Cache-Control", "public, max-age=300"))
        .body(include_str!("../../../../web/static/app.css"))
}

pub(crate) async fn feed_script() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header(("Cache-Control", "public, max-age=300"))
        .body(include_str!("../../../../web/static/feed.js"))
}

#[cfg(test)]
mod tests {
    use super::VisitLine;
    use crate::web::i18n::Lang;

    fn line(result: &'static str) -> VisitLine {
        VisitLine {
            time: String::new(),
            until: String::new(),
            method: "",
            myna: false,
            result,
            result_ok: false,
            confirmations: 1,
        }
    }

    fn visit(first: time::OffsetDateTime, last: time::OffsetDateTime, confirmations: u32) -> onshi_store::VisitRow {
        onshi_store::VisitRow {
            clinic: onshi_domain::ClinicId::new(),
            date: onshi_domain::jst::date_of(first),
            first_at: first,
            last_at: last,
            method: onshi_domain::ConfirmationMethod::MynaCard,
            myna: true,
            result: onshi_domain::QualificationResult::Valid,
            consents: Default::default(),
            confirmations,
        }
    }

    #[test]
    fn a_days_line_shows_the_arrival_in_jst_and_a_later_check_after_it() {
        use time::macros::datetime;
        // 11:33 UTC is 20:33 JST; checked again at 12:47 UTC (21:47 JST).
        let again =
            super::day_line(visit(datetime!(2026-12-03 11:33:10 UTC), datetime!(2026-12-03 12:47:00 UTC), 2), Lang::Ja);
        assert_eq!((again.time.as_str(), again.until.as_str()), ("20:33", "21:47"));
        // A second check in the same minute adds nothing to read.
        let same =
            super::day_line(visit(datetime!(2026-12-03 11:33:10 UTC), datetime!(2026-12-03 11:33:50 UTC), 2), Lang::Ja);
        assert_eq!((same.time.as_str(), same.until.as_str()), ("20:33", ""));
        // The start page's list keeps the last check, with its date.
        let home =
            super::line(visit(datetime!(2026-12-03 11:33:10 UTC), datetime!(2026-12-03 12:47:00 UTC), 2), Lang::Ja);
        assert_eq!((home.time.as_str(), home.until.as_str()), ("12/03 21:47", ""));
    }

    #[test]
    fn a_result_breaks_only_before_its_parenthesis() {
        assert_eq!(line("無効(新資格あり)").result_parts(), ("無効", "(新資格あり)"));
        assert_eq!(line("Invalid (new coverage exists)").result_parts(), ("Invalid ", "(new coverage exists)"));
        assert_eq!(line("有効").result_parts(), ("有効", ""));
    }
}
