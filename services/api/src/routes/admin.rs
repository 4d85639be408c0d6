//! Onboarding and administration of a clinic group: clinics and their オン資 deadlines, agent enrollment,
//! staff (invite, role, disable, second-factor reset, sessions) and integration API tokens.
//!
//! Every id in a path is resolved inside the caller's tenant; another tenant's id is "not found".

use actix_web::{HttpResponse, web};
use askama::Template;
use onshi_domain::onboarding::{self, Deadline};
use onshi_domain::{ApiScope, ApiTokenId, AuditAction, ClinicId, DeviceId, MedicalInstitutionCode, Role, UserId};
use onshi_identity::OneTimeToken;
use onshi_store::{AuditResult, Clinic, ClinicScope, Device, EmailPurpose, NewUser, StoreError, User, UserStatus};
use serde::Deserialize;
use time::{Date, OffsetDateTime};

use super::account::INVITE_TTL;
use super::account::email_link;
use super::account::letters::{Letter, link};
use crate::web::guard::{API_TOKEN_PREFIX, Caller, Page};
use crate::web::page::{ok, see_other, unprocessable};
use crate::{ApiError, AppState};

const ENROLLMENT_TTL: time::Duration = time::Duration::hours(24);

fn parse_id<T: std::str::FromStr>(raw: &str) -> Result<T, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound)
}

pub(crate) struct ClinicRow {
    pub clinic: Clinic,
    pub agents: usize,
    pub next_deadline: Option<Deadline>,
}

#[derive(Template)]
#[template(path = "onboarding.html")]
struct OnboardingPage {
    page: Page,
    clinics: Vec<ClinicRow>,
    staff_count: usize,
    agent_count: usize,
    error: Option<String>,
    code: String,
    name: String,
    start: String,
    /// How long the group's visit records are kept, and whether this caller may change it.
    retention: onshi_domain::RetentionBasis,
    may_set_retention: bool,
}

async fn onboarding_page(
    state: &AppState,
    page: Page,
    caller: &Caller,
    error: Option<String>,
    form: Option<&ClinicForm>,
) -> Result<OnboardingPage, ApiError> {
    let store = state.store.tenant(caller.scope);
    let devices = store.devices().await?;
    let today = onshi_domain::jst::date_of(OffsetDateTime::now_utc());
    let clinics = store
        .clinics()
        .await?
        .into_iter()
        .map(|clinic| {
            let agents = devices
                .iter()
                .filter(|d| d.clinic == clinic.id && d.status == onshi_store::DeviceStatus::Active)
                .count();
            let next_deadline =
                clinic.oqs_start.and_then(|s| onboarding::deadlines(s).into_iter().find(|d| d.due >= today));
            ClinicRow { clinic, agents, next_deadline }
        })
        .collect::<Vec<_>>();
    let agent_count = clinics.iter().map(|c| c.agents).sum();
    Ok(OnboardingPage {
        page,
        staff_count: store.users().await?.len(),
        agent_count,
        clinics,
        error,
        code: form.map(|f| f.code.clone()).unwrap_or_default(),
        name: form.map(|f| f.name.clone()).unwrap_or_default(),
        start: form.map(|f| f.start.clone()).unwrap_or_default(),
        retention: store.retention_basis().await?,
        may_set_retention: caller.user.role.allows(onshi_domain::Permission::ManageRetention),
    })
}

#[derive(Deserialize)]
pub(crate) struct RetentionForm {
    basis: String,
}

/// The group says whether its visit logs are kept as part of the 診療録 (5 years) or as records of
/// 療養の給付 (3 years); the retention job removes nothing younger than that (docs/operations.md).
pub(crate) async fn set_retention(
    state: web::Data<AppState>,
    caller: Caller,
    form: web::Form<RetentionForm>,
) -> Result<HttpResponse, ApiError> {
    let basis = onshi_domain::RetentionBasis::parse(&form.basis).ok_or_else(|| {
        ApiError::InvalidRequest(onshi_domain::FieldError::new(
            "basis",
            "medical_record または billing を選んでください",
        ))
    })?;
    let entry = caller.entry(AuditAction::RetentionBasis, "tenant", AuditResult::Success);
    state.store.tenant(caller.scope).set_retention_basis(basis, &entry).await?;
    Ok(see_other("/onboarding"))
}

pub(crate) async fn onboarding(
    state: web::Data<AppState>,
    page: Page,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    ok(onboarding_page(&state, page, &caller, None, None).await?)
}

#[derive(Deserialize)]
pub(crate) struct ClinicForm {
    code: String,
    name: String,
    #[serde(default)]
    start: String,
}

fn parse_date(s: &str) -> Option<Date> {
    onshi_domain::jst::parse_date(s)
}

pub(crate) async fn add_clinic(
    state: web::Data<AppState>,
    page: Page,
    caller: Caller,
    form: web::Form<ClinicForm>,
) -> Result<HttpResponse, ApiError> {
    let code = match MedicalInstitutionCode::parse(&crate::web::input::ascii_digits(&form.code)) {
        Ok(code) => code,
        Err(e) => {
            let msg = format!("{}: {e}", page.lang.t("医療機関コード", "Institution code"));
            return unprocessable(onboarding_page(&state, page, &caller, Some(msg), Some(&form)).await?);
        }
    };
    let name = form.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        let msg = page
            .lang
            .t("医療機関名を100文字以内で入力してください。", "Enter the clinic's name (up to 100 characters).")
            .to_owned();
        return unprocessable(onboarding_page(&state, page, &caller, Some(msg), Some(&form)).await?);
    }
    let start = match form.start.trim() {
        "" => None,
        s => match parse_date(s) {
            Some(d) => Some(d),
            None => {
                let msg = page
                    .lang
                    .t("運用開始予定日は YYYY-MM-DD で入力してください。", "Enter the start date as YYYY-MM-DD.")
                    .to_owned();
                return unprocessable(onboarding_page(&state, page, &caller, Some(msg), Some(&form)).await?);
            }
        },
    };
    let store = state.store.tenant(caller.scope);
    let clinic = match store.create_clinic_starting(&code, name, start).await {
        Ok(c) => c,
        Err(StoreError::Conflict { .. }) => {
            let msg = page
                .lang
                .t("この医療機関コードは既に登録されています。", "A clinic with this code is already registered.")
                .to_owned();
            return unprocessable(onboarding_page(&state, page, &caller, Some(msg), Some(&form)).await?);
        }
        Err(e) => return Err(e.into()),
    };
    store
        .audit(&caller.entry(AuditAction::ClinicCreate, &format!("clinic:{}", clinic.id), AuditResult::Success).details(
            serde_json::json!({ "institution_code": clinic.code.as_str(), "oqs_start": start.map(|d| d.to_string()) }),
        ))
        .await?;
    Ok(see_other(&format!("/clinics/{}", clinic.id)))
}

#[derive(Template)]
#[template(path = "clinic.html")]
struct ClinicPage {
    page: Page,
    clinic: Clinic,
    deadlines: Vec<Deadline>,
    today: Date,
    holidays_until: i32,
    devices: Vec<Device>,
    /// A code just created, shown once.
    new_code: Option<String>,
    code_expires: String,
    /// This server's address as agents reach it, for the ready-to-run command.
    server: String,
    hours: HoursForm,
    /// Why the hours just sent were not saved.
    hours_error: Option<String>,
    /// The operating systems a terminal may run, for the select (code, label, end of support).
    os_choices: &'static [onshi_domain::radar::OsSupport],
    terminal_error: Option<String>,
}

/// The opening-hours form as shown: the saved hours, or what was typed when it could not be saved.
#[derive(Deserialize)]
pub(crate) struct HoursForm {
    #[serde(default)]
    mon: String,
    #[serde(default)]
    tue: String,
    #[serde(default)]
    wed: String,
    #[serde(default)]
    thu: String,
    #[serde(default)]
    fri: String,
    #[serde(default)]
    sat: String,
    #[serde(default)]
    sun: String,
    #[serde(default)]
    holidays: Option<String>,
    #[serde(default)]
    after: String,
}

impl HoursForm {
    fn of(clinic: &Clinic) -> Self {
        let h = clinic.opening_hours();
        Self {
            mon: h.day_text(0),
            tue: h.day_text(1),
            wed: h.day_text(2),
            thu: h.day_text(3),
            fri: h.day_text(4),
            sat: h.day_text(5),
            sun: h.day_text(6),
            holidays: h.open_on_holidays().then(|| "1".to_owned()),
            after: clinic.alert_after_minutes.to_string(),
        }
    }

    fn days(&self) -> [&str; 7] {
        [&self.mon, &self.tue, &self.wed, &self.thu, &self.fri, &self.sat, &self.sun]
    }

    /// (form field, 曜日, weekday, value) for the template, Monday first.
    fn rows(&self) -> Vec<(&'static str, &'static str, &'static str, &str)> {
        use onshi_domain::hours::{DAY_FIELDS, WEEKDAYS_EN, WEEKDAYS_JA};
        (0..7).map(|i| (DAY_FIELDS[i], WEEKDAYS_JA[i], WEEKDAYS_EN[i], self.days()[i])).collect()
    }

    /// The hours and the alert wait, or what is wrong, in the words the page shows.
    fn parse(&self) -> Result<(onshi_domain::hours::OpeningHours, u16), onshi_domain::FieldError> {
        use onshi_domain::device_alert::MAX_AFTER_MINUTES;
        let hours = onshi_domain::hours::OpeningHours::parse(self.days(), self.holidays.is_some())?;
        let after =
            self.after.trim().parse::<u16>().ok().filter(|m| (1..=MAX_AFTER_MINUTES).contains(m)).ok_or_else(|| {
                onshi_domain::FieldError::new(
                    "after",
                    format!("知らせるまでの時間は 1〜{MAX_AFTER_MINUTES} 分で入力してください"),
                )
            })?;
        Ok((hours, after))
    }
}

async fn clinic_view(
    state: &AppState,
    page: Page,
    caller: &Caller,
    clinic: ClinicScope,
    new_code: Option<String>,
) -> Result<ClinicPage, ApiError> {
    let hours = HoursForm::of(&clinic);
    let store = state.store.tenant(caller.scope);
    let devices = store.devices().await?.into_iter().filter(|d| d.clinic == clinic.id).collect();
    let deadlines = clinic.oqs_start.map(onboarding::deadlines).unwrap_or_default();
    Ok(ClinicPage {
        page,
        deadlines,
        today: onshi_domain::jst::date_of(OffsetDateTime::now_utc()),
        holidays_until: onboarding::holidays_known_until(),
        devices,
        new_code,
        code_expires: crate::web::time::jst_minute(&(OffsetDateTime::now_utc() + ENROLLMENT_TTL)),
        server: state.public_url.trim_end_matches('/').to_owned(),
        clinic: clinic.clinic().clone(),
        hours,
        hours_error: None,
        os_choices: onshi_domain::radar::OS_SUPPORT,
        terminal_error: None,
    })
}

#[derive(Deserialize)]
pub(crate) struct TerminalForm {
    #[serde(default)]
    cert_expires: String,
    #[serde(default)]
    os: String,
}

/// Saves the 資格確認端末's certificate expiry and operating system (audited), or shows the page again
/// with why not.
pub(crate) async fn set_terminal(
    state: web::Data<AppState>,
    page: Page,
    caller: Caller,
    path: web::Path<String>,
    form: web::Form<TerminalForm>,
) -> Result<HttpResponse, ApiError> {
    let store = state.store.tenant(caller.scope);
    let clinic = caller.clinic(&store, &path).await?;
    let expires = match form.cert_expires.trim() {
        "" => Ok(None),
        s => parse_date(s).map(Some).ok_or("電子証明書の有効期限は YYYY-MM-DD で入力してください"),
    };
    let os = match form.os.trim() {
        "" => Ok(None),
        code => onshi_domain::radar::os(code).map(|o| Some(o.code)).ok_or("OS を一覧から選んでください"),
    };
    let (expires, os) = match (expires, os) {
        (Ok(e), Ok(o)) => (e, o),
        (Err(why), _) | (_, Err(why)) => {
            let mut view = clinic_view(&state, page, &caller, clinic, None).await?;
            view.terminal_error = Some(why.to_owned());
            return unprocessable(view);
        }
    };
    let entry = caller
        .entry(AuditAction::ClinicTerminal, &format!("clinic:{}", clinic.id), AuditResult::Success)
        .details(serde_json::json!({ "cert_expires": expires.map(|d| d.to_string()), "os": os }));
    store.set_clinic_terminal(&clinic, expires, os, &entry).await?;
    Ok(see_other(&format!("/clinics/{}#terminal", clinic.id)))
}

/// Saves a clinic's opening hours and alert wait (audited with them), or shows the form again with what
/// was typed and why it cannot be saved.
pub(crate) async fn set_hours(
    state: web::Data<AppState>,
    page: Page,
    caller: Caller,
    path: web::Path<String>,
    form: web::Form<HoursForm>,
) -> Result<HttpResponse, ApiError> {
    let store = state.store.tenant(caller.scope);
    let clinic = caller.clinic(&store, &path).await?;
    let form = form.into_inner();
    let (hours, after) = match form.parse() {
        Ok(parsed) => parsed,
        Err(e) => {
            let mut view = clinic_view(&state, page, &caller, clinic, None).await?;
            view.hours = form;
            view.hours_error = Some(e.message);
            return unprocessable(view);
        }
    };
    let entry = caller
        .entry(AuditAction::ClinicHours, &format!("clinic:{}", clinic.id), AuditResult::Success)
        .details(serde_json::json!({ "hours": hours, "alert_after_minutes": after }));
    store.set_clinic_hours(&clinic, &hours, after, &entry).await?;
    Ok(see_other(&format!("/clinics/{}#hours", clinic.id)))
}

/// A first `agent.toml` for this clinic's agent: this server's address, the usual result folders of a
/// 資格確認端末 to adjust, every other key at its default. No secret is in it: enrollment adds those.
pub(crate) async fn agent_config(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let store = state.store.tenant(caller.scope);
    let clinic = caller.clinic(&store, &path).await?;
    let server = state.public_url.trim_end_matches('/');
    let body = format!(
        "# onshi-agent configuration for {name} ({code}).\r\n\
         # Put it where `onshi-agent` looks (next to it, or %APPDATA%\\Onshi\\onshi-agent\\config\\agent.toml), correct\r\n\
         # the folders below to the 資格確認端末's result folders, then run:\r\n\
         #   onshi-agent enroll --code <登録コード> --server {server}\r\n\
         #   onshi-agent check\r\n\
         #   onshi-agent run\r\n\
         # `onshi-agent config-defaults` prints every other key with its meaning.\r\n\
         server = \"{server}\"\r\n\
         watch = [\"D:/OQS/face\", \"D:/OQS/res\"]\r\n",
        name = clinic.name,
        code = clinic.code,
    );
    store
        .audit(&caller.entry(AuditAction::AgentConfigDownload, &format!("clinic:{}", clinic.id), AuditResult::Success))
        .await?;
    Ok(HttpResponse::Ok()
        .content_type("application/toml; charset=utf-8")
        .insert_header(("Content-Disposition", format!("attachment; filename=\"agent-{}.toml\"", clinic.code)))
        .body(body))
}

pub(crate) async fn clinic_page(
    state: web::Data<AppState>,
    page: Page,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let clinic = caller.clinic(&state.store.tenant(caller.scope), &path).await?;
    ok(clinic_view(&state, page, &caller, clinic, None).await?)
}

#[derive(Deserialize)]
pub(crate) struct StartForm {
    #[serde(default)]
    start: String,
}

pub(crate) async fn set_start_date(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    form: web::Form<StartForm>,
) -> Result<HttpResponse, ApiError> {
    let store = state.store.tenant(caller.scope);
    let clinic = caller.clinic(&store, &path).await?;
    let id = clinic.id;
    let start = match form.start.trim() {
        "" => None,
        s => Some(parse_date(s).ok_or_else(|| {
            ApiError::InvalidRequest(onshi_domain::FieldError::new(
                "start",
                "運用開始予定日は YYYY-MM-DD で入力してください",
            ))
        })?),
    };
    store.set_clinic_start(&clinic, start).await?;
    store
        .audit(
            &caller
                .entry(AuditAction::ClinicUpdate, &format!("clinic:{id}"), AuditResult::Success)
                .details(serde_json::json!({ "oqs_start": start.map(|d| d.to_string()) })),
        )
        .await?;
    Ok(see_other(&format!("/clinics/{id}")))
}

pub(crate) async fn new_enrollment_code(
    state: web::Data<AppState>,
    page: Page,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let store = state.store.tenant(caller.scope);
    let clinic = caller.clinic(&store, &path).await?;
    let code = store.create_enrollment_code(&clinic, ENROLLMENT_TTL).await?;
    store
        .audit(&caller.entry(AuditAction::AgentEnrollmentCode, &format!("clinic:{}", clinic.id), AuditResult::Success))
        .await?;
    ok(clinic_view(&state, page, &caller, clinic, Some(code)).await?)
}

pub(crate) async fn revoke_device(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id: DeviceId = parse_id(&path)?;
    let store = state.store.tenant(caller.scope);
    let device = store.device(id).await?.ok_or(ApiError::NotFound)?;
    let clinic = store.clinic_scope(device.clinic, &caller.clinics).await?.ok_or(ApiError::NotFound)?;
    store
        .revoke_device(
            &clinic,
            id,
            &caller.entry(AuditAction::AgentRevoke, &format!("device:{id}"), AuditResult::Success),
        )
        .await?;
    crate::announce_revocation(&state.cache, id).await;
    Ok(see_other(&format!("/clinics/{}", device.clinic)))
}

// ---- staff ----------------------------------------------------------------------------------------

pub(crate) struct StaffRow {
    pub user: User,
    pub role_label: &'static str,
    pub clinic_names: String,
    pub editable: bool,
}

#[derive(Template)]
#[template(path = "staff.html")]
struct StaffPage {
    page: Page,
    staff: Vec<StaffRow>,
    clinics: Vec<Clinic>,
    roles: Vec<(&'static str, &'static str)>,
    error: Option<String>,
    notice: Option<&'static str>,
}

async fn staff_view(
    state: &AppState,
    page: Page,
    caller: &Caller,
    error: Option<String>,
    notice: Option<&'static str>,
) -> Result<StaffPage, ApiError> {
    let store = state.store.tenant(caller.scope);
    let clinics = store.clinics().await?;
    let en = page.lang == crate::web::i18n::Lang::En;
    let staff = store
        .users()
        .await?
        .into_iter()
        .map(|user| StaffRow {
            role_label: if en { user.role.label_en() } else { user.role.label_ja() },
            clinic_names: user
                .clinics
                .iter()
                .filter_map(|id| clinics.iter().find(|c| c.id == *id).map(|c| c.name.clone()))
                .collect::<Vec<_>>()
                .join("、"),
            editable: user.id != caller.user.id && caller.user.role.may_grant(user.role),
            user,
        })
        .collect();
    let roles = Role::ALL
        .into_iter()
        .filter(|r| caller.user.role.may_grant(*r))
        .map(|r| (r.as_str(), if en { r.label_en() } else { r.label_ja() }))
        .collect();
    Ok(StaffPage { page, staff, clinics, roles, error, notice })
}

pub(crate) async fn staff(state: web::Data<AppState>, page: Page, caller: Caller) -> Result<HttpResponse, ApiError> {
    ok(staff_view(&state, page, &caller, None, None).await?)
}

/// Form fields of the invite and role forms; `clinic` repeats.
fn role_and_clinics(pairs: &[(String, String)], caller: &Caller) -> Result<(Role, Vec<ClinicId>), ApiError> {
    let role: Role = pairs
        .iter()
        .find(|(k, _)| k == "role")
        .and_then(|(_, v)| v.parse().ok())
        .ok_or_else(|| ApiError::InvalidRequest(onshi_domain::FieldError::new("role", "unknown role")))?;
    if !caller.user.role.may_grant(role) {
        return Err(ApiError::Forbidden);
    }
    let clinics = pairs
        .iter()
        .filter(|(k, _)| k == "clinic")
        .map(|(_, v)| v.parse::<ClinicId>().map_err(|_| ApiError::NotFound))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((role, if role.is_clinic_scoped() { clinics } else { Vec::new() }))
}

fn form_pairs(body: &web::Bytes) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes(body).unwrap_or_default()
}

pub(crate) async fn invite(
    state: web::Data<AppState>,
    page: Page,
    caller: Caller,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let pairs = form_pairs(&body);
    let field = |k: &str| pairs.iter().find(|(key, _)| key == k).map(|(_, v)| v.trim().to_owned()).unwrap_or_default();
    let (email, name) = (field("email").to_lowercase(), field("name"));
    let (role, clinics) = role_and_clinics(&pairs, &caller)?;
    if !email.contains('@') || name.is_empty() {
        let msg =
            page.lang.t("名前とメールアドレスを入力してください。", "Enter a name and an e-mail address.").to_owned();
        return unprocessable(staff_view(&state, page, &caller, Some(msg), None).await?);
    }
    if role.is_clinic_scoped() && clinics.is_empty() {
        let msg = page
            .lang
            .t("クリニック職員には担当クリニックを選んでください。", "Choose at least one clinic for clinic staff.")
            .to_owned();
        return unprocessable(staff_view(&state, page, &caller, Some(msg), None).await?);
    }
    let store = state.store.tenant(caller.scope);
    let new = NewUser { email: &email, display_name: &name, role, clinics: &clinics, password_hash: None };
    let entry = caller
        .entry(AuditAction::StaffInvite, "-", AuditResult::Success)
        .details(serde_json::json!({ "role": role.as_str() }));
    let user_id = match store.add_user(&new, &entry).await {
        Ok(id) => id,
        Err(StoreError::Conflict { .. }) => {
            let msg = page
                .lang
                .t(
                    "このグループには同じメールアドレスのスタッフが既にいます。",
                    "Someone in this group already has this e-mail address.",
                )
                .to_owned();
            return unprocessable(staff_view(&state, page, &caller, Some(msg), None).await?);
        }
        Err(e) => return Err(e.into()),
    };
    let token = email_link::issue(caller.scope.tenant_id());
    store.create_email_token(user_id, EmailPurpose::Invite, &token.hash, INVITE_TTL).await?;
    let url = link(&state, &format!("/invite/{}", token.secret));
    let group = store.group_name().await?;
    Letter::invitation(&name, &caller.user.display_name, &group, &url).send(&state, &email).await?;
    ok(staff_view(
        &state,
        page.clone(),
        &caller,
        None,
        Some(page.lang.t("招待メールを送りました。", "Invitation sent.")),
    )
    .await?)
}

/// The user at `path`, if the caller may manage them (not themselves, not a role above their own).
async fn managed_user(state: &AppState, caller: &Caller, raw: &str) -> Result<User, ApiError> {
    let id: UserId = parse_id(raw)?;
    let user = state.store.tenant(caller.scope).user(id).await?.ok_or(ApiError::NotFound)?;
    if user.id == caller.user.id || !caller.user.role.may_grant(user.role) {
        return Err(ApiError::Forbidden);
    }
    Ok(user)
}

pub(crate) async fn set_role(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let user = managed_user(&state, &caller, &path).await?;
    let (role, clinics) = role_and_clinics(&form_pairs(&body), &caller)?;
    let entry = caller
        .entry(AuditAction::StaffRole, &format!("user:{}", user.id), AuditResult::Success)
        .details(serde_json::json!({ "from": user.role.as_str(), "to": role.as_str(), "clinics": clinics.iter().map(ToString::to_string).collect::<Vec<_>>() }));
    state.store.tenant(caller.scope).set_role(user.id, role, &clinics, &entry).await?;
    Ok(see_other("/staff"))
}

async fn set_status(
    state: &AppState,
    caller: &Caller,
    raw: &str,
    status: UserStatus,
    action: AuditAction,
) -> Result<HttpResponse, ApiError> {
    let user = managed_user(state, caller, raw).await?;
    let entry = caller.entry(action, &format!("user:{}", user.id), AuditResult::Success);
    state.store.tenant(caller.scope).set_status(user.id, status, &entry).await?;
    Ok(see_other("/staff"))
}

pub(crate) async fn disable(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_status(&state, &caller, &path, UserStatus::Disabled, AuditAction::StaffDisable).await
}

pub(crate) async fn enable(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_status(&state, &caller, &path, UserStatus::Active, AuditAction::StaffEnable).await
}

pub(crate) async fn reset_2fa(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user = managed_user(&state, &caller, &path).await?;
    let entry = caller.entry(AuditAction::StaffTotpReset, &format!("user:{}", user.id), AuditResult::Success);
    state.store.tenant(caller.scope).reset_totp(user.id, &entry).await?;
    Ok(see_other("/staff"))
}

pub(crate) async fn revoke_sessions(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user = managed_user(&state, &caller, &path).await?;
    let entry = caller.entry(AuditAction::StaffSessionsRevoke, &format!("user:{}", user.id), AuditResult::Success);
    state.store.tenant(caller.scope).revoke_sessions(user.id, &entry).await?;
    Ok(see_other("/staff"))
}

// ---- API tokens -----------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "api_tokens.html")]
struct ApiTokensPage {
    page: Page,
    tokens: Vec<onshi_store::ApiToken>,
    scopes: Vec<&'static str>,
    /// A token just created, shown once.
    new_token: Option<String>,
}

pub(crate) async fn api_tokens(
    state: web::Data<AppState>,
    page: Page,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let tokens = state.store.tenant(caller.scope).api_tokens().await?;
    ok(ApiTokensPage { page, tokens, scopes: ApiScope::ALL.iter().map(|s| s.as_str()).collect(), new_token: None })
}

pub(crate) async fn create_api_token(
    state: web::Data<AppState>,
    page: Page,
    caller: Caller,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let pairs = form_pairs(&body);
    let name = pairs.iter().find(|(k, _)| k == "name").map(|(_, v)| v.trim().to_owned()).unwrap_or_default();
    let scopes: Vec<ApiScope> =
        pairs.iter().filter(|(k, _)| k == "scope").filter_map(|(_, v)| ApiScope::parse(v)).collect();
    let days: i64 =
        pairs.iter().find(|(k, _)| k == "days").and_then(|(_, v)| v.parse().ok()).unwrap_or(90).clamp(1, 365);
    if name.is_empty() || scopes.is_empty() {
        return Err(ApiError::InvalidRequest(onshi_domain::FieldError::new(
            "scope",
            "a name and at least one scope are required",
        )));
    }
    let token = OneTimeToken::generate(API_TOKEN_PREFIX, &caller.scope.tenant_id().as_uuid().simple().to_string());
    let store = state.store.tenant(caller.scope);
    let entry = caller
        .entry(AuditAction::ApiTokenCreate, "-", AuditResult::Success)
        .details(serde_json::json!({ "scopes": scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>(), "days": days }));
    store
        .create_api_token(
            caller.user.id,
            &name,
            &scopes,
            &token.hash,
            Some(OffsetDateTime::now_utc() + time::Duration::days(days)),
            &entry,
        )
        .await?;
    let tokens = store.api_tokens().await?;
    ok(ApiTokensPage {
        page,
        tokens,
        scopes: ApiScope::ALL.iter().map(|s| s.as_str()).collect(),
        new_token: Some(token.secret),
    })
}

pub(crate) async fn revoke_api_token(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id: ApiTokenId = parse_id(&path)?;
    state
        .store
        .tenant(caller.scope)
        .revoke_api_token(
            id,
            &caller.entry(AuditAction::ApiTokenRevoke, &format!("api-token:{id}"), AuditResult::Success),
        )
        .await?;
    Ok(see_other("/settings/api-tokens"))
}
