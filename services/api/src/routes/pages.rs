//! Server-rendered pages (askama). Until sign-in exists, only `onshi demo` shows tenant data, for the
//! demo tenant it seeded; a plain `onshi serve` shows a page that says sign-in is coming.

use actix_web::{HttpResponse, web};
use askama::Template;
use askama_web::WebTemplate;
use onshi_domain::jst;
use onshi_store::TenantScope;
use time::OffsetDateTime;

use crate::{ApiError, AppState};

pub(crate) struct VisitLine {
    pub time: String,
    pub method: &'static str,
    pub myna: bool,
    pub result: &'static str,
    pub result_ok: bool,
    pub confirmations: u32,
}

pub(crate) struct ClinicPanel {
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
    pub today: String,
    pub clinics: Vec<ClinicPanel>,
}

#[derive(Template, WebTemplate)]
#[template(path = "signin_pending.html")]
pub(crate) struct SigninPending;

pub(crate) async fn visits(
    state: web::Data<AppState>,
) -> Result<actix_web::Either<VisitsPage, SigninPending>, ApiError> {
    let Some(tenant) = state.demo_tenant else {
        return Ok(actix_web::Either::Right(SigninPending));
    };
    let store = state.store.tenant(TenantScope::verified(tenant));
    let now = OffsetDateTime::now_utc();
    let today = jst::date_of(now);
    let devices = store.devices().await?;
    let mut panels = Vec::new();
    for clinic in store.clinics().await? {
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
            onshi_domain::DeviceHealth::Degraded(r) => r.join("、"),
            _ => String::new(),
        };
        let todays = store.visits_on(clinic.id, today).await?;
        let myna = todays.iter().filter(|v| v.myna).count();
        let rate = if todays.is_empty() {
            "—".to_owned()
        } else {
            format!("{:.1}%", 100.0 * myna as f64 / todays.len() as f64)
        };
        let recent = store
            .recent_visits(clinic.id, 15)
            .await?
            .into_iter()
            .map(|v| {
                let t = v.last_at.to_offset(jst::JST);
                VisitLine {
                    time: format!("{:02}/{:02} {:02}:{:02}", t.month() as u8, t.day(), t.hour(), t.minute()),
                    method: v.method.label_ja(),
                    myna: v.myna,
                    result: v.result.label_ja(),
                    result_ok: v.result == onshi_domain::QualificationResult::Valid,
                    confirmations: v.confirmations,
                }
            })
            .collect();
        panels.push(ClinicPanel {
            agent_label: health.label_ja(),
            agent_class: health.css_class(),
            agent_reasons: reasons,
            name: clinic.name,
            code: clinic.code.to_string(),
            today_visits: todays.len(),
            today_myna: myna,
            today_rate: rate,
            recent,
        });
    }
    Ok(actix_web::Either::Left(VisitsPage { today: today.to_string(), clinics: panels }))
}

pub(crate) async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header(("Cache-Control", "public, max-age=300"))
        .body(include_str!("../../../../web/static/app.css"))
}
