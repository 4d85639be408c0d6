//! Sign-in: the password step (a partial session), the TOTP step or first TOTP enrolment (a full
//! session under a new id), and sign-out.

use actix_web::{HttpResponse, web};
use askama::Template;
use onshi_domain::{AuditAction, Role};
use onshi_identity::{TotpSecret, verify_against_nothing, verify_password};
use onshi_store::{AuditEntry, AuditResult, SignIn, TenantStore, User, UserStatus};
use serde::Deserialize;
use time::OffsetDateTime;

use super::own_entry;
use super::signup::send_verification;
use super::throttle::{Failed, account_label, note_failure, throttled, throttled_response};
use crate::web::guard::{Caller, Page, Pending};
use crate::web::page::{ok, see_other, unprocessable};
use crate::web::session::{Stage, with_session_cookie, without_session_cookie};
use crate::{ApiError, AppState};

#[derive(Template)]
#[template(path = "signin.html")]
struct SigninPage {
    page: Page,
    email: String,
    error: Option<&'static str>,
    notice: Option<&'static str>,
}

#[derive(Template)]
#[template(path = "totp.html")]
struct TotpPage {
    page: Page,
    error: Option<&'static str>,
}

#[derive(Template)]
#[template(path = "totp_setup.html")]
struct TotpSetupPage {
    page: Page,
    secret: String,
    uri: String,
    /// The URI as an inline SVG QR code, for the authenticator app's camera.
    qr: String,
    error: Option<&'static str>,
}

impl TotpSetupPage {
    /// The enrolment page for `secret`: the key, its otpauth:// URI and the URI's QR code.
    fn new(page: Page, secret: &TotpSecret, email: &str, error: Option<&'static str>) -> Result<Self, ApiError> {
        let uri = secret.uri(email).map_err(ApiError::internal)?;
        let qr = qr_svg(&uri)?;
        Ok(TotpSetupPage { page, secret: secret.base32().to_owned(), uri, qr, error })
    }
}

/// The otpauth:// URI as an SVG QR code, drawn here (the secret never leaves the page for an image
/// service). Medium error correction, a quiet zone, black on white whatever the page's colours.
fn qr_svg(uri: &str) -> Result<String, ApiError> {
    let code =
        qrcode::QrCode::with_error_correction_level(uri.as_bytes(), qrcode::EcLevel::M).map_err(ApiError::internal)?;
    let svg = code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .dark_color(qrcode::render::svg::Color("#000"))
        .light_color(qrcode::render::svg::Color("#fff"))
        .build();
    // Inline in the page: without the XML declaration.
    Ok(svg.split_once("?>").map_or(svg.clone(), |(_, rest)| rest.to_owned()))
}

fn now_unix() -> u64 {
    u64::try_from(OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0)
}

#[derive(Deserialize)]
pub(crate) struct SigninQuery {
    #[serde(default)]
    done: Option<String>,
}

pub(crate) async fn signin_form(page: Page, query: web::Query<SigninQuery>) -> Result<HttpResponse, ApiError> {
    let notice = match query.done.as_deref() {
        Some("reset") => Some(page.lang.t(
            "パスワードを変更しました。新しいパスワードでサインインしてください。",
            "Your password was changed. Sign in with the new one.",
        )),
        Some("verified") => Some(page.lang.t("メールアドレスを確認しました。", "Your e-mail address is verified.")),
        Some("invite") => Some(page.lang.t(
            "パスワードを設定しました。サインインして二要素認証を設定してください。",
            "Password set. Sign in and set up two-factor authentication.",
        )),
        Some("signout") => Some(page.lang.t("サインアウトしました。", "You are signed out.")),
        _ => None,
    };
    ok(SigninPage { page, email: String::new(), error: None, notice })
}

#[derive(Deserialize)]
pub(crate) struct SigninForm {
    email: String,
    password: String,
}

pub(crate) async fn signin(
    state: web::Data<AppState>,
    page: Page,
    form: web::Form<SigninForm>,
) -> Result<HttpResponse, ApiError> {
    let email = form.email.trim().to_owned();
    let ip = page.ip.clone();
    // An attempt on an address that may not exist is logged under a hash of it, not the address.
    let anonymous = |result: AuditResult, reason: &str| {
        AuditEntry::new(None, &account_label(&email), AuditAction::SigninPassword, "-", result)
            .ip(ip.clone())
            .details(serde_json::json!({ "reason": reason }))
    };
    if throttled(&state, &email, ip.as_deref()).await {
        state.store.system().audit(&anonymous(AuditResult::Denied, "throttled")).await?;
        return throttled_response(&page);
    }
    let refuse = |page: Page, email: String| {
        unprocessable(SigninPage {
            error: Some(
                page.lang
                    .t("メールアドレスまたはパスワードが違います。", "The e-mail address or password is not correct."),
            ),
            page,
            email,
            notice: None,
        })
    };
    let system = state.store.system();
    let signed = system.sign_in(&email, |user| {
        let password_ok = match &user.password_hash {
            Some(phc) => verify_password(&form.password, phc),
            None => {
                verify_against_nothing(&form.password);
                false
            }
        };
        password_ok && user.status == UserStatus::Active
    });
    let (scope, user) = match signed.await? {
        SignIn::Accepted(scope, user) => (scope, user),
        SignIn::Unknown => {
            // The same Argon2 work as for a known address: timing does not tell them apart.
            verify_against_nothing(&form.password);
            note_failure(&state, &email, ip.as_deref(), Failed::UnknownAccount).await;
            state.store.system().audit(&anonymous(AuditResult::Failure, "unknown account")).await?;
            return refuse(page, email);
        }
        SignIn::Refused(user) => {
            note_failure(&state, &email, ip.as_deref(), Failed::KnownAccount).await;
            let reason = if user.status == UserStatus::Active { "wrong password" } else { "account not active" };
            let entry = own_entry(&user, AuditAction::SigninPassword, AuditResult::Failure, ip.clone())
                .details(serde_json::json!({ "reason": reason }));
            state.store.system().audit_refused(&user, &entry).await?;
            return refuse(page, email);
        }
    };
    if !user.email_verified {
        send_verification(&state, scope, &user).await?;
        return ok(SigninPage {
            notice: Some(page.lang.t(
                "メールアドレスの確認が済んでいません。確認メールを再送しました。",
                "Your e-mail address is not verified yet. We sent the verification e-mail again.",
            )),
            page,
            email,
            error: None,
        });
    }
    state.store.tenant(scope).audit(&own_entry(&user, AuditAction::SigninPassword, AuditResult::Success, ip)).await?;
    let stage = if user.totp_enabled { Stage::Password } else { Stage::TotpSetup };
    let token = state.sessions.start(&user, stage, OffsetDateTime::now_utc().unix_timestamp()).await?;
    let next = if user.totp_enabled { "/signin/totp" } else { "/account/totp/setup" };
    Ok(with_session_cookie(see_other(next), &token))
}

pub(crate) async fn totp_form(page: Page, pending: Pending) -> Result<HttpResponse, ApiError> {
    if pending.session.stage == Stage::TotpSetup {
        return Ok(see_other("/account/totp/setup"));
    }
    ok(TotpPage { page, error: None })
}

#[derive(Deserialize)]
pub(crate) struct CodeForm {
    #[serde(default)]
    code: String,
    /// A recovery code, typed instead of a TOTP code.
    #[serde(default)]
    recovery: String,
}

/// Checks a TOTP code for `user` and uses its step (a code works once). Counts failures like passwords.
pub(super) async fn check_code(
    state: &AppState,
    store: &TenantStore<'_>,
    user: &User,
    code: &str,
    ip: Option<&str>,
) -> Result<Option<u64>, ApiError> {
    let Some(secret) = user.totp_secret.as_deref().and_then(|s| TotpSecret::from_base32(s).ok()) else {
        return Ok(None);
    };
    let step = secret.verify(code, now_unix(), user.totp_last_step).map_err(ApiError::internal)?;
    match step {
        Some(step) if store.consume_totp_step(user.id, step).await? => Ok(Some(step)),
        _ => {
            note_failure(state, &user.email, ip, Failed::KnownAccount).await;
            Ok(None)
        }
    }
}

/// Where each role starts its day: managers on the 利用率 page, billing staff on the month's review,
/// auditors on the log, clinic staff on today's receptions.
fn landing(role: Role) -> &'static str {
    match role {
        Role::Owner | Role::Manager => "/dashboard",
        Role::Billing => "/billing",
        Role::Auditor => "/audit",
        Role::ClinicStaff => "/",
    }
}

/// Ends a partial session and starts the full one under a new id (never promoted in place), answering
/// with `response` (the landing page's redirect, or the recovery codes to note first).
async fn promote_to(
    state: &AppState,
    pending: &Pending,
    user: &User,
    response: HttpResponse,
) -> Result<HttpResponse, ApiError> {
    state.sessions.destroy(&pending.session_token).await?;
    let token = state.sessions.start(user, Stage::Full, pending.session.login_at).await?;
    Ok(with_session_cookie(response, &token))
}

async fn promote(state: &AppState, pending: &Pending, user: &User) -> Result<HttpResponse, ApiError> {
    promote_to(state, pending, user, see_other(landing(user.role))).await
}

pub(crate) async fn totp(
    state: web::Data<AppState>,
    page: Page,
    pending: Pending,
    form: web::Form<CodeForm>,
) -> Result<HttpResponse, ApiError> {
    let user = &pending.user;
    if pending.session.stage != Stage::Password {
        return Ok(see_other("/account/totp/setup"));
    }
    if throttled(&state, &user.email, pending.ip.as_deref()).await {
        return throttled_response(&page);
    }
    let store = state.store.tenant(pending.scope);
    if !form.recovery.trim().is_empty() {
        return recovery_signin(&state, page, &pending, &store, &form.recovery).await;
    }
    if check_code(&state, &store, user, &form.code, pending.ip.as_deref()).await?.is_none() {
        store.audit(&own_entry(user, AuditAction::SigninTotp, AuditResult::Failure, pending.ip.clone())).await?;
        return unprocessable(TotpPage {
            error: Some(page.lang.t("確認コードが違うか、期限切れです。", "The code is wrong or has expired.")),
            page,
        });
    }
    let entry = own_entry(user, AuditAction::Signin, AuditResult::Success, pending.ip.clone())
        .details(serde_json::json!({ "second_factor": "totp" }));
    store.audit(&entry).await?;
    promote(&state, &pending, user).await
}

/// The second step with a recovery code: used once, audited with how many are left, counted as a failure
/// like a wrong TOTP code when it does not match.
async fn recovery_signin(
    state: &AppState,
    page: Page,
    pending: &Pending,
    store: &TenantStore<'_>,
    typed: &str,
) -> Result<HttpResponse, ApiError> {
    let user = &pending.user;
    let left = match onshi_identity::recovery::hash(typed) {
        Some(hash) => store.use_recovery_code(user.id, &hash).await?,
        None => None,
    };
    let Some(left) = left else {
        note_failure(state, &user.email, pending.ip.as_deref(), Failed::KnownAccount).await;
        store
            .audit(&own_entry(user, AuditAction::SigninRecoveryCode, AuditResult::Failure, pending.ip.clone()))
            .await?;
        return unprocessable(TotpPage {
            error: Some(
                page.lang
                    .t("回復コードが違うか、すでに使われています。", "The recovery code is wrong or has been used."),
            ),
            page,
        });
    };
    let entry = own_entry(user, AuditAction::Signin, AuditResult::Success, pending.ip.clone())
        .details(serde_json::json!({ "second_factor": "recovery_code", "recovery_codes_left": left }));
    store.audit(&entry).await?;
    // The account page says how many are left and offers a new set.
    promote_to(state, pending, user, see_other("/account?recovered=1")).await
}

pub(crate) async fn totp_setup_form(
    state: web::Data<AppState>,
    page: Page,
    pending: Pending,
) -> Result<HttpResponse, ApiError> {
    if pending.session.stage != Stage::TotpSetup {
        return Ok(see_other("/signin/totp"));
    }
    let secret = match pending.user.totp_secret.as_deref().and_then(|s| TotpSecret::from_base32(s).ok()) {
        Some(s) => s,
        None => {
            let s = TotpSecret::generate();
            state.store.tenant(pending.scope).set_pending_totp(pending.user.id, s.base32()).await?;
            s
        }
    };
    ok(TotpSetupPage::new(page, &secret, &pending.user.email, None)?)
}

pub(crate) async fn totp_setup(
    state: web::Data<AppState>,
    page: Page,
    pending: Pending,
    form: web::Form<CodeForm>,
) -> Result<HttpResponse, ApiError> {
    if pending.session.stage != Stage::TotpSetup {
        return Ok(see_other("/signin/totp"));
    }
    let user = &pending.user;
    if throttled(&state, &user.email, pending.ip.as_deref()).await {
        return throttled_response(&page);
    }
    let store = state.store.tenant(pending.scope);
    let Some(secret) = user.totp_secret.as_deref().and_then(|s| TotpSecret::from_base32(s).ok()) else {
        return Ok(see_other("/account/totp/setup"));
    };
    let step = secret.verify(&form.code, now_unix(), user.totp_last_step).map_err(ApiError::internal)?;
    let Some(step) = step else {
        note_failure(&state, &user.email, pending.ip.as_deref(), Failed::KnownAccount).await;
        let error = page.lang.t(
            "確認コードが違います。アプリの時刻も確認してください。",
            "The code is wrong. Check the app's clock too.",
        );
        return unprocessable(TotpSetupPage::new(page, &secret, &user.email, Some(error))?);
    };
    store
        .enable_totp(user.id, step, &own_entry(user, AuditAction::TotpEnable, AuditResult::Success, pending.ip.clone()))
        .await?;
    let user = store.user(user.id).await?.ok_or(ApiError::SignInRequired)?;
    let entry = own_entry(&user, AuditAction::Signin, AuditResult::Success, pending.ip.clone())
        .details(serde_json::json!({ "second_factor": "totp-enrolment" }));
    store.audit(&entry).await?;
    // The recovery codes come with the authenticator: shown once, before the first page.
    let codes = super::recovery::issue(&store, &user, pending.ip.clone(), AuditAction::RecoveryCodesIssue).await?;
    let shown = ok(super::recovery::RecoveryCodesPage { page, codes, next: landing(user.role) })?;
    promote_to(&state, &pending, &user, shown).await
}

pub(crate) async fn signout(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    if let Some(token) = &caller.session_token {
        state.sessions.destroy(token).await?;
    }
    state
        .store
        .tenant(caller.scope)
        .audit(&caller.entry(AuditAction::Signout, &format!("user:{}", caller.user.id), AuditResult::Success))
        .await?;
    Ok(without_session_cookie(see_other("/signin?done=signout")))
}
