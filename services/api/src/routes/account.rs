//! Sign-in (password, then TOTP), signup with e-mail verification, password reset, invitations and
//! the account page.
//!
//! Rules kept here:
//! - One message for every failed sign-in ("メールアドレスまたはパスワードが違います"), the same status,
//!   and an Argon2 verification even for unknown addresses: no account enumeration.
//! - Failures (password or code) count per account and per client address; over the limit every
//!   attempt gets 429 until the window passes, whether or not the password is right.
//! - No path yields a full session without the second factor: the password step gives a partial session
//!   that can only reach the TOTP pages, and password reset ends in the sign-in page, not a session.

use actix_web::{HttpResponse, web};
use askama::Template;
use onshi_cache::CacheBackend;
use onshi_domain::{Role, TenantId};
use onshi_identity::{OneTimeToken, TotpSecret, password, verify_against_nothing, verify_password};
use onshi_store::{
    AuditEntry, AuditResult, EmailLink, EmailPurpose, NewUser, SignIn, StoreError, TenantScope, TenantStore, User,
    UserStatus,
};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::web::guard::{Caller, Page, Pending};
use crate::web::session::{SESSION_COOKIE, Session, Stage, clear_cookie, host_cookie};
use crate::{ApiError, AppState};

const VERIFY_TTL: time::Duration = time::Duration::hours(24);
const RESET_TTL: time::Duration = time::Duration::minutes(30);
pub(crate) const INVITE_TTL: time::Duration = time::Duration::days(7);

fn html(status: actix_web::http::StatusCode, body: impl Template) -> Result<HttpResponse, ApiError> {
    let rendered = body.render().map_err(ApiError::internal)?;
    Ok(HttpResponse::build(status).content_type("text/html; charset=utf-8").body(rendered))
}

pub(crate) fn ok(body: impl Template) -> Result<HttpResponse, ApiError> {
    html(actix_web::http::StatusCode::OK, body)
}

pub(crate) fn unprocessable(body: impl Template) -> Result<HttpResponse, ApiError> {
    html(actix_web::http::StatusCode::UNPROCESSABLE_ENTITY, body)
}

pub(crate) fn see_other(to: &str) -> HttpResponse {
    HttpResponse::SeeOther().insert_header(("Location", to)).finish()
}

fn short_hash(value: &str) -> String {
    hex::encode(&Sha256::digest(value.as_bytes())[..8])
}

fn now_unix() -> u64 {
    u64::try_from(OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0)
}

// ---- throttling --------------------------------------------------------------------------------

fn account_key(email: &str) -> String {
    format!("login:acct:{}", short_hash(&onshi_store_email(email)))
}

fn address_key(ip: Option<&str>) -> String {
    format!("login:addr:{}", short_hash(ip.unwrap_or("-")))
}

fn onshi_store_email(email: &str) -> String {
    email.trim().to_lowercase()
}

async fn failures(state: &AppState, key: &str) -> u64 {
    match state.cache.get(key).await {
        Ok(Some(raw)) => String::from_utf8_lossy(&raw).trim().parse().unwrap_or(0),
        _ => 0,
    }
}

/// Whether sign-in attempts for this account or from this address are blocked right now.
async fn throttled(state: &AppState, email: &str, ip: Option<&str>) -> bool {
    failures(state, &account_key(email)).await >= state.login_limits.per_account
        || failures(state, &address_key(ip)).await >= state.login_limits.per_address
}

async fn note_failure(state: &AppState, email: &str, ip: Option<&str>) {
    for key in [account_key(email), address_key(ip)] {
        if let Err(e) = state.cache.incr_window(&key, state.login_limits.window).await {
            tracing::warn!(error = %e, "could not count a failed sign-in");
        }
    }
}

fn throttled_response(page: &Page) -> Result<HttpResponse, ApiError> {
    let body = MessagePage {
        page: page.clone(),
        title: page.lang.t("しばらくお待ちください", "Please wait"),
        message: page.lang.t(
            "サインインの失敗が続いたため、一時的に受け付けを停止しています。しばらくしてからお試しください。",
            "Too many failed attempts. Sign-in is paused for a while; try again later.",
        ),
        link: Some(("/signin", page.lang.t("サインインへ", "Back to sign-in"))),
    };
    html(actix_web::http::StatusCode::TOO_MANY_REQUESTS, body)
}

// ---- sessions ----------------------------------------------------------------------------------

async fn start_session(state: &AppState, user: &User, stage: Stage, login_at: i64) -> Result<String, ApiError> {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    state
        .sessions
        .create(&Session {
            tenant: user.tenant,
            user: user.id,
            epoch: user.session_epoch,
            stage,
            created_at: now,
            login_at,
        })
        .await
}

fn with_session_cookie(mut response: HttpResponse, token: &str) -> HttpResponse {
    if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&host_cookie(SESSION_COOKIE, token, None)) {
        response.headers_mut().append(actix_web::http::header::SET_COOKIE, v);
    }
    response
}

fn without_session_cookie(mut response: HttpResponse) -> HttpResponse {
    if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&clear_cookie(SESSION_COOKIE)) {
        response.headers_mut().append(actix_web::http::header::SET_COOKIE, v);
    }
    response
}

// ---- templates ---------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "message.html")]
pub(crate) struct MessagePage {
    pub page: Page,
    pub title: &'static str,
    pub message: &'static str,
    pub link: Option<(&'static str, &'static str)>,
}

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
    error: Option<&'static str>,
}

#[derive(Template)]
#[template(path = "signup.html")]
struct SignupPage {
    page: Page,
    group: String,
    name: String,
    email: String,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "confirm.html")]
struct ConfirmPage {
    page: Page,
    title: &'static str,
    button: &'static str,
    action: String,
}

#[derive(Template)]
#[template(path = "forgot.html")]
struct ForgotPage {
    page: Page,
}

#[derive(Template)]
#[template(path = "password_set.html")]
struct PasswordSetPage {
    page: Page,
    title: &'static str,
    action: String,
    needs_code: bool,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    page: Page,
    email: String,
    name: String,
    role: &'static str,
    error: Option<String>,
    notice: Option<&'static str>,
}

/// A new password from a form with its confirmation: the PHC string, or the message to show.
fn new_password(page: &Page, password: &str, again: &str, email: &str) -> Result<String, String> {
    if password != again {
        return Err(page.lang.t("確認用パスワードが一致しません。", "The passwords do not match.").to_owned());
    }
    password::hash_password(password, email).map_err(|e| e.to_string())
}

// ---- sign-in -----------------------------------------------------------------------------------

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
    if throttled(&state, &email, ip.as_deref()).await {
        let entry = AuditEntry::new(
            None,
            &format!("account#{}", short_hash(&onshi_store_email(&email))),
            "signin.password",
            "-",
            AuditResult::Denied,
        )
        .ip(ip.clone())
        .details(serde_json::json!({ "reason": "throttled" }));
        state.store.system().audit(&entry).await?;
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
            verify_against_nothing(&form.password);
            note_failure(&state, &email, ip.as_deref()).await;
            let entry = AuditEntry::new(
                None,
                &format!("account#{}", short_hash(&onshi_store_email(&email))),
                "signin.password",
                "-",
                AuditResult::Failure,
            )
            .ip(ip.clone())
            .details(serde_json::json!({ "reason": "unknown account" }));
            state.store.system().audit(&entry).await?;
            return refuse(page, email);
        }
        SignIn::Refused(user) => {
            note_failure(&state, &email, ip.as_deref()).await;
            let reason = if user.status == UserStatus::Active { "wrong password" } else { "account not active" };
            let entry = AuditEntry::new(
                Some(user.id),
                &user.email,
                "signin.password",
                &format!("user:{}", user.id),
                AuditResult::Failure,
            )
            .ip(ip.clone())
            .details(serde_json::json!({ "reason": reason }));
            state.store.system().audit_refused(&user, &entry).await?;
            return refuse(page, email);
        }
    };
    let store = state.store.tenant(scope);
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
    let entry = AuditEntry::new(
        Some(user.id),
        &user.email,
        "signin.password",
        &format!("user:{}", user.id),
        AuditResult::Success,
    )
    .ip(ip);
    store.audit(&entry).await?;
    let stage = if user.totp_enabled { Stage::Password } else { Stage::TotpSetup };
    let token = start_session(&state, &user, stage, OffsetDateTime::now_utc().unix_timestamp()).await?;
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
    code: String,
}

/// Checks a TOTP code for `user` and uses its step. Counts failures like passwords.
async fn check_code(
    state: &AppState,
    store: &TenantStore<'_>,
    user: &User,
    secret: Option<&str>,
    code: &str,
    ip: Option<&str>,
) -> Result<Option<u64>, ApiError> {
    let Some(secret) = secret.and_then(|s| TotpSecret::from_base32(s).ok()) else { return Ok(None) };
    let step = secret.verify(code, now_unix(), user.totp_last_step).map_err(ApiError::internal)?;
    match step {
        Some(step) if store.consume_totp_step(user.id, step).await? => Ok(Some(step)),
        _ => {
            note_failure(state, &user.email, ip).await;
            Ok(None)
        }
    }
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
    let Some(_) =
        check_code(&state, &store, user, user.totp_secret.as_deref(), &form.code, pending.ip.as_deref()).await?
    else {
        let entry = AuditEntry::new(
            Some(user.id),
            &user.email,
            "signin.totp",
            &format!("user:{}", user.id),
            AuditResult::Failure,
        )
        .ip(pending.ip.clone());
        store.audit(&entry).await?;
        return unprocessable(TotpPage {
            error: Some(page.lang.t("確認コードが違うか、期限切れです。", "The code is wrong or has expired.")),
            page,
        });
    };
    let entry =
        AuditEntry::new(Some(user.id), &user.email, "signin", &format!("user:{}", user.id), AuditResult::Success)
            .ip(pending.ip.clone())
            .details(serde_json::json!({ "second_factor": "totp" }));
    store.audit(&entry).await?;
    // A new id for the full session: the partial one is never promoted in place.
    state.sessions.destroy(&pending.session_token).await?;
    let token = start_session(&state, user, Stage::Full, pending.session.login_at).await?;
    Ok(with_session_cookie(see_other("/"), &token))
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
    let uri = secret.uri(&pending.user.email).map_err(ApiError::internal)?;
    ok(TotpSetupPage { page, secret: secret.base32().to_owned(), uri, error: None })
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
        note_failure(&state, &user.email, pending.ip.as_deref()).await;
        let uri = secret.uri(&user.email).map_err(ApiError::internal)?;
        return unprocessable(TotpSetupPage {
            error: Some(page.lang.t(
                "確認コードが違います。アプリの時刻も確認してください。",
                "The code is wrong. Check the app's clock too.",
            )),
            page,
            secret: secret.base32().to_owned(),
            uri,
        });
    };
    let entry =
        AuditEntry::new(Some(user.id), &user.email, "totp.enable", &format!("user:{}", user.id), AuditResult::Success)
            .ip(pending.ip.clone());
    store.enable_totp(user.id, step, &entry).await?;
    let user = store.user(user.id).await?.ok_or(ApiError::SignInRequired)?;
    let entry =
        AuditEntry::new(Some(user.id), &user.email, "signin", &format!("user:{}", user.id), AuditResult::Success)
            .ip(pending.ip.clone())
            .details(serde_json::json!({ "second_factor": "totp-enrolment" }));
    store.audit(&entry).await?;
    state.sessions.destroy(&pending.session_token).await?;
    let token = start_session(&state, &user, Stage::Full, pending.session.login_at).await?;
    Ok(with_session_cookie(see_other("/"), &token))
}

pub(crate) async fn signout(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    if let Some(token) = &caller.session_token {
        state.sessions.destroy(token).await?;
    }
    state
        .store
        .tenant(caller.scope)
        .audit(&caller.entry("signout", &format!("user:{}", caller.user.id), AuditResult::Success))
        .await?;
    Ok(without_session_cookie(see_other("/signin?done=signout")))
}

// ---- signup and e-mail verification ----------------------------------------------------------------

pub(crate) async fn signup_form(page: Page) -> Result<HttpResponse, ApiError> {
    ok(SignupPage { page, group: String::new(), name: String::new(), email: String::new(), error: None })
}

#[derive(Deserialize)]
pub(crate) struct SignupForm {
    group: String,
    name: String,
    email: String,
    password: String,
    password2: String,
}

fn plausible_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else { return false };
    !local.is_empty() && domain.contains('.') && !email.contains(char::is_whitespace) && email.len() <= 254
}

async fn send_verification(state: &AppState, scope: TenantScope, user: &User) -> Result<(), ApiError> {
    let token = OneTimeToken::generate("", &user.tenant.as_uuid().simple().to_string());
    state.store.tenant(scope).create_email_token(user.id, EmailPurpose::Verify, &token.hash, VERIFY_TTL).await?;
    let link = format!("{}/verify-email/{}", state.public_url.trim_end_matches('/'), token.secret);
    let body = format!(
        "{name} 様\n\nOnshi Cloud への登録ありがとうございます。次のリンクからメールアドレスを確認してください（24時間有効）。\n{link}\n\n\
         Thank you for signing up for Onshi Cloud. Confirm your e-mail address with the link above (valid for 24 hours).\n\n\
         心当たりがない場合は、このメールを破棄してください。 If this was not you, ignore this e-mail.\n",
        name = user.display_name
    );
    state
        .mailer
        .send(&user.email, "【Onshi Cloud】メールアドレスの確認 / Confirm your e-mail address", body)
        .await
        .map_err(ApiError::unavailable)
}

pub(crate) async fn signup(
    state: web::Data<AppState>,
    page: Page,
    form: web::Form<SignupForm>,
) -> Result<HttpResponse, ApiError> {
    let form = form.into_inner();
    let group = form.group.trim().to_owned();
    let name = form.name.trim().to_owned();
    let email = form.email.trim().to_lowercase();
    let fail = |page: Page, error: String| {
        unprocessable(SignupPage {
            page,
            group: group.clone(),
            name: name.clone(),
            email: email.clone(),
            error: Some(error),
        })
    };
    if group.is_empty() || group.chars().count() > 100 {
        return fail(
            page.clone(),
            page.lang
                .t(
                    "法人・グループ名を100文字以内で入力してください。",
                    "Enter the group's name (up to 100 characters).",
                )
                .to_owned(),
        );
    }
    if name.is_empty() || name.chars().count() > 100 {
        return fail(page.clone(), page.lang.t("お名前を入力してください。", "Enter your name.").to_owned());
    }
    if !plausible_email(&email) {
        return fail(
            page.clone(),
            page.lang.t("メールアドレスの形式が正しくありません。", "The e-mail address is not valid.").to_owned(),
        );
    }
    let phc = match new_password(&page, &form.password, &form.password2, &email) {
        Ok(phc) => phc,
        Err(message) => return fail(page, message),
    };
    let owner =
        NewUser { email: &email, display_name: &name, role: Role::Owner, clinics: &[], password_hash: Some(&phc) };
    let entry = AuditEntry::new(None, &email, "tenant.signup", "-", AuditResult::Success).ip(page.ip.clone());
    let (scope, user_id) =
        match state.store.system().sign_up(&group, &owner, &entry).await {
            Ok(ids) => ids,
            Err(StoreError::Conflict { .. }) => {
                return fail(page.clone(), page.lang.t(
                "このメールアドレスは登録できません。既にアカウントをお持ちの場合はサインインしてください。",
                "This e-mail address cannot be registered. If you already have an account, sign in.",
            ).to_owned());
            }
            Err(e) => return Err(e.into()),
        };
    let user = state.store.tenant(scope).user(user_id).await?.ok_or(ApiError::NotFound)?;
    send_verification(&state, scope, &user).await?;
    tracing::info!(tenant = %scope.tenant_id(), "clinic group signed up");
    ok(MessagePage {
        title: page.lang.t("確認メールを送りました", "Check your e-mail"),
        message: page.lang.t(
            "登録したメールアドレスに確認用のリンクを送りました。リンクを開いて確認を済ませてから、サインインしてください。",
            "We sent a link to your e-mail address. Open it to confirm the address, then sign in.",
        ),
        link: Some(("/signin", page.lang.t("サインインへ", "Go to sign-in"))),
        page,
    })
}

/// An e-mailed link, if it is usable for `purpose`, with the hash that uses it up.
async fn usable_link(
    state: &AppState,
    token: &str,
    purpose: EmailPurpose,
) -> Result<Option<(EmailLink, String)>, ApiError> {
    let Ok((tenant_hex, hash)) = OneTimeToken::parse("", token) else { return Ok(None) };
    let Ok(tenant) = uuid::Uuid::parse_str(tenant_hex) else { return Ok(None) };
    let link = state.store.system().email_link(TenantId::from_uuid(tenant), &hash, purpose).await?;
    Ok(link.map(|l| (l, hash)))
}

fn link_expired(page: Page) -> Result<HttpResponse, ApiError> {
    let body = MessagePage {
        title: page.lang.t("リンクが無効です", "This link is not valid"),
        message: page.lang.t(
            "リンクの有効期限が切れているか、既に使われています。もう一度手続きしてください。",
            "The link has expired or was already used. Please start again.",
        ),
        link: Some(("/signin", page.lang.t("サインインへ", "Go to sign-in"))),
        page,
    };
    html(actix_web::http::StatusCode::NOT_FOUND, body)
}

pub(crate) async fn verify_email_form(page: Page, token: web::Path<String>) -> Result<HttpResponse, ApiError> {
    // Opening the link only shows a button: mail scanners that fetch links do not use the token.
    ok(ConfirmPage {
        title: page.lang.t("メールアドレスの確認", "Confirm your e-mail address"),
        button: page.lang.t("確認する", "Confirm"),
        action: format!("/verify-email/{}", token.as_str()),
        page,
    })
}

pub(crate) async fn verify_email(
    state: web::Data<AppState>,
    page: Page,
    token: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let Some((link, hash)) = usable_link(&state, &token, EmailPurpose::Verify).await? else {
        return link_expired(page);
    };
    let store = state.store.tenant(link.scope);
    let Some(user_id) = store.consume_email_token(&hash, EmailPurpose::Verify).await? else {
        return link_expired(page);
    };
    let user = store.user(user_id).await?.ok_or(ApiError::NotFound)?;
    let entry =
        AuditEntry::new(Some(user.id), &user.email, "email.verify", &format!("user:{}", user.id), AuditResult::Success)
            .ip(page.ip.clone());
    store.mark_email_verified(user.id, &entry).await?;
    Ok(see_other("/signin?done=verified"))
}

// ---- password reset -----------------------------------------------------------------------------

pub(crate) async fn forgot_form(page: Page) -> Result<HttpResponse, ApiError> {
    ok(ForgotPage { page })
}

#[derive(Deserialize)]
pub(crate) struct ForgotForm {
    email: String,
}

pub(crate) async fn forgot(
    state: web::Data<AppState>,
    page: Page,
    form: web::Form<ForgotForm>,
) -> Result<HttpResponse, ApiError> {
    let email = form.email.trim().to_lowercase();
    // Same counters as sign-in: reset requests cannot be used to flood a mailbox.
    if throttled(&state, &email, page.ip.as_deref()).await {
        return throttled_response(&page);
    }
    note_failure(&state, &email, page.ip.as_deref()).await;
    let issued = state
        .store
        .system()
        .issue_reset_link(&email, RESET_TTL, |tenant| {
            let token = OneTimeToken::generate("", &tenant.as_uuid().simple().to_string());
            (token.secret, token.hash)
        })
        .await?;
    if let Some((user, secret)) = issued {
        {
            let link = format!("{}/password/reset/{}", state.public_url.trim_end_matches('/'), secret);
            let body = format!(
                "パスワード再設定のリクエストを受け付けました。次のリンクから30分以内に再設定してください。\n{link}\n\n\
                 We received a request to reset your password. Use the link above within 30 minutes.\n\n\
                 再設定には二要素認証のコードも必要です。 You will also need your two-factor code.\n"
            );
            state
                .mailer
                .send(&user.email, "【Onshi Cloud】パスワードの再設定 / Reset your password", body)
                .await
                .map_err(ApiError::unavailable)?;
            let entry = AuditEntry::new(
                Some(user.id),
                &user.email,
                "password.reset_requested",
                &format!("user:{}", user.id),
                AuditResult::Success,
            )
            .ip(page.ip.clone());
            state.store.system().audit_refused(&user, &entry).await?;
        }
    }
    ok(MessagePage {
        title: page.lang.t("メールを確認してください", "Check your e-mail"),
        message: page.lang.t(
            "登録されているアドレスであれば、再設定用のリンクを送りました。",
            "If the address belongs to an account, we sent it a reset link.",
        ),
        link: Some(("/signin", page.lang.t("サインインへ", "Back to sign-in"))),
        page,
    })
}

pub(crate) async fn reset_form(
    state: web::Data<AppState>,
    page: Page,
    token: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let Some((link, _)) = usable_link(&state, &token, EmailPurpose::Reset).await? else { return link_expired(page) };
    let user = state.store.tenant(link.scope).user(link.user).await?.ok_or(ApiError::NotFound)?;
    ok(PasswordSetPage {
        title: page.lang.t("パスワードの再設定", "Reset your password"),
        action: format!("/password/reset/{}", token.as_str()),
        needs_code: user.totp_enabled,
        error: None,
        page,
    })
}

#[derive(Deserialize)]
pub(crate) struct PasswordSetForm {
    password: String,
    password2: String,
    #[serde(default)]
    code: String,
}

pub(crate) async fn reset(
    state: web::Data<AppState>,
    page: Page,
    token: web::Path<String>,
    form: web::Form<PasswordSetForm>,
) -> Result<HttpResponse, ApiError> {
    let Some((link, hash)) = usable_link(&state, &token, EmailPurpose::Reset).await? else { return link_expired(page) };
    let store = state.store.tenant(link.scope);
    let user_id = link.user;
    let user = store.user(user_id).await?.ok_or(ApiError::NotFound)?;
    let again = |page: Page, error: String| {
        unprocessable(PasswordSetPage {
            title: page.lang.t("パスワードの再設定", "Reset your password"),
            action: format!("/password/reset/{}", token.as_str()),
            needs_code: user.totp_enabled,
            error: Some(error),
            page,
        })
    };
    if throttled(&state, &user.email, page.ip.as_deref()).await {
        return throttled_response(&page);
    }
    // The reset link proves the mailbox; the second factor is still required (a reset never bypasses it).
    if user.totp_enabled
        && check_code(&state, &store, &user, user.totp_secret.as_deref(), &form.code, page.ip.as_deref())
            .await?
            .is_none()
    {
        let entry = AuditEntry::new(
            Some(user.id),
            &user.email,
            "password.reset",
            &format!("user:{}", user.id),
            AuditResult::Failure,
        )
        .ip(page.ip.clone())
        .details(serde_json::json!({ "reason": "second factor" }));
        store.audit(&entry).await?;
        return again(page.clone(), page.lang.t("確認コードが違います。", "The code is not correct.").to_owned());
    }
    let phc = match new_password(&page, &form.password, &form.password2, &user.email) {
        Ok(phc) => phc,
        Err(message) => return again(page, message),
    };
    if store.consume_email_token(&hash, EmailPurpose::Reset).await?.is_none() {
        return link_expired(page);
    }
    let entry = AuditEntry::new(
        Some(user.id),
        &user.email,
        "password.reset",
        &format!("user:{}", user.id),
        AuditResult::Success,
    )
    .ip(page.ip.clone());
    store.set_password(user.id, &phc, &entry).await?;
    Ok(see_other("/signin?done=reset"))
}

// ---- invitations ---------------------------------------------------------------------------------

pub(crate) async fn invite_form(
    state: web::Data<AppState>,
    page: Page,
    token: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    if usable_link(&state, &token, EmailPurpose::Invite).await?.is_none() {
        return link_expired(page);
    }
    ok(PasswordSetPage {
        title: page.lang.t("招待を受けてパスワードを設定", "Accept the invitation: set your password"),
        action: format!("/invite/{}", token.as_str()),
        needs_code: false,
        error: None,
        page,
    })
}

pub(crate) async fn accept_invite(
    state: web::Data<AppState>,
    page: Page,
    token: web::Path<String>,
    form: web::Form<PasswordSetForm>,
) -> Result<HttpResponse, ApiError> {
    let Some((link, hash)) = usable_link(&state, &token, EmailPurpose::Invite).await? else {
        return link_expired(page);
    };
    let store = state.store.tenant(link.scope);
    let user_id = link.user;
    let user = store.user(user_id).await?.ok_or(ApiError::NotFound)?;
    let again = |page: Page, error: String| {
        unprocessable(PasswordSetPage {
            title: page.lang.t("招待を受けてパスワードを設定", "Accept the invitation: set your password"),
            action: format!("/invite/{}", token.as_str()),
            needs_code: false,
            error: Some(error),
            page,
        })
    };
    let phc = match new_password(&page, &form.password, &form.password2, &user.email) {
        Ok(phc) => phc,
        Err(message) => return again(page, message),
    };
    if store.consume_email_token(&hash, EmailPurpose::Invite).await?.is_none() {
        return link_expired(page);
    }
    let entry = AuditEntry::new(
        Some(user.id),
        &user.email,
        "invite.accept",
        &format!("user:{}", user.id),
        AuditResult::Success,
    )
    .ip(page.ip.clone());
    store.set_password(user.id, &phc, &entry).await?;
    Ok(see_other("/signin?done=invite"))
}

// ---- account page --------------------------------------------------------------------------------

pub(crate) async fn account_page(page: Page, caller: Caller) -> Result<HttpResponse, ApiError> {
    let role =
        if page.lang == crate::web::i18n::Lang::En { caller.user.role.label_en() } else { caller.user.role.label_ja() };
    ok(AccountPage {
        page,
        email: caller.user.email.clone(),
        name: caller.user.display_name.clone(),
        role,
        error: None,
        notice: None,
    })
}

#[derive(Deserialize)]
pub(crate) struct ChangePasswordForm {
    current: String,
    password: String,
    password2: String,
}

pub(crate) async fn change_password(
    state: web::Data<AppState>,
    page: Page,
    caller: Caller,
    form: web::Form<ChangePasswordForm>,
) -> Result<HttpResponse, ApiError> {
    let user = &caller.user;
    let role = if page.lang == crate::web::i18n::Lang::En { user.role.label_en() } else { user.role.label_ja() };
    let again = |page: Page, error: String| {
        unprocessable(AccountPage {
            page,
            email: user.email.clone(),
            name: user.display_name.clone(),
            role,
            error: Some(error),
            notice: None,
        })
    };
    if throttled(&state, &user.email, caller.ip.as_deref()).await {
        return throttled_response(&page);
    }
    if !user.password_hash.as_deref().is_some_and(|phc| verify_password(&form.current, phc)) {
        note_failure(&state, &user.email, caller.ip.as_deref()).await;
        return again(
            page.clone(),
            page.lang.t("現在のパスワードが違います。", "The current password is not correct.").to_owned(),
        );
    }
    let phc = match new_password(&page, &form.password, &form.password2, &user.email) {
        Ok(phc) => phc,
        Err(message) => return again(page, message),
    };
    let store = state.store.tenant(caller.scope);
    store
        .set_password(
            user.id,
            &phc,
            &caller.entry("password.change", &format!("user:{}", user.id), AuditResult::Success),
        )
        .await?;
    // Every other session ended with the epoch; this browser continues under a new session id.
    let user = store.user(user.id).await?.ok_or(ApiError::SignInRequired)?;
    if let Some(old) = &caller.session_token {
        state.sessions.destroy(old).await?;
    }
    let login_at = caller.session.as_ref().map(|s| s.login_at).unwrap_or_default();
    let token = start_session(&state, &user, Stage::Full, login_at).await?;
    let body = AccountPage {
        email: user.email.clone(),
        name: user.display_name.clone(),
        role,
        error: None,
        notice: Some(page.lang.t(
            "パスワードを変更しました。ほかの端末のセッションは終了しました。",
            "Password changed. Sessions on other devices were ended.",
        )),
        page,
    };
    Ok(with_session_cookie(ok(body)?, &token))
}

pub(crate) async fn revoke_own_sessions(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    state
        .store
        .tenant(caller.scope)
        .revoke_sessions(
            caller.user.id,
            &caller.entry("sessions.revoke", &format!("user:{}", caller.user.id), AuditResult::Success),
        )
        .await?;
    Ok(without_session_cookie(see_other("/signin?done=signout")))
}
