//! Setting a password from an e-mailed link. Two links end here and share one flow: a password reset
//! (asked for on the "forgot" page; it also needs the second factor when the account has one, so a
//! mailbox alone never takes over an account) and an invitation from a colleague (first password; the
//! second factor is set up at the first sign-in). Either ends on the sign-in page, never in a session.

use actix_web::{HttpResponse, web};
use askama::Template;
use onshi_domain::AuditAction;
use onshi_store::{AuditResult, EmailPurpose, User};
use serde::Deserialize;

use super::letters::{Letter, link};
use super::signin::check_code;
use super::throttle::{reset_allowed, throttled, throttled_response};
use super::{RESET_TTL, email_link, new_password, own_entry};
use crate::web::guard::Page;
use crate::web::page::{MessagePage, ok, see_other, unprocessable};
use crate::{ApiError, AppState};

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

/// Which e-mailed link sets the password.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Reset,
    Invite,
}

impl Kind {
    fn purpose(self) -> EmailPurpose {
        match self {
            Kind::Reset => EmailPurpose::Reset,
            Kind::Invite => EmailPurpose::Invite,
        }
    }

    fn form(self, page: Page, token: &str, user: &User, error: Option<String>) -> PasswordSetPage {
        let (title, action) = match self {
            Kind::Reset => {
                (page.lang.t("パスワードの再設定", "Reset your password"), format!("/password/reset/{token}"))
            }
            Kind::Invite => (
                page.lang.t("招待を受けてパスワードを設定", "Accept the invitation: set your password"),
                format!("/invite/{token}"),
            ),
        };
        PasswordSetPage { page, title, action, needs_code: self.needs_code(user), error }
    }

    fn needs_code(self, user: &User) -> bool {
        matches!(self, Kind::Reset) && user.totp_enabled
    }

    fn audit_action(self) -> AuditAction {
        match self {
            Kind::Reset => AuditAction::PasswordReset,
            Kind::Invite => AuditAction::InviteAccept,
        }
    }

    fn done(self) -> &'static str {
        match self {
            Kind::Reset => "/signin?done=reset",
            Kind::Invite => "/signin?done=invite",
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct PasswordSetForm {
    password: String,
    password2: String,
    #[serde(default)]
    code: String,
}

async fn show(state: &AppState, page: Page, token: &str, kind: Kind) -> Result<HttpResponse, ApiError> {
    let Some((link, _)) = email_link::usable(state, token, kind.purpose()).await? else {
        return email_link::expired(page);
    };
    let user = state.store.tenant(link.scope).user(link.user).await?.ok_or(ApiError::NotFound)?;
    ok(kind.form(page, token, &user, None))
}

async fn set(
    state: &AppState,
    page: Page,
    token: &str,
    form: &PasswordSetForm,
    kind: Kind,
) -> Result<HttpResponse, ApiError> {
    let Some((link, hash)) = email_link::usable(state, token, kind.purpose()).await? else {
        return email_link::expired(page);
    };
    let store = state.store.tenant(link.scope);
    let user = store.user(link.user).await?.ok_or(ApiError::NotFound)?;
    if throttled(state, &user.email, page.ip.as_deref()).await {
        return throttled_response(&page);
    }
    // Everything else first: a code is used up when checked, so a rejected password must not cost it.
    let phc = match new_password(&page, &form.password, &form.password2, &user.email) {
        Ok(phc) => phc,
        Err(message) => return unprocessable(kind.form(page, token, &user, Some(message))),
    };
    if kind.needs_code(&user) && check_code(state, &store, &user, &form.code, page.ip.as_deref()).await?.is_none() {
        let entry = own_entry(&user, kind.audit_action(), AuditResult::Failure, page.ip.clone())
            .details(serde_json::json!({ "reason": "second factor" }));
        store.audit(&entry).await?;
        let error = page.lang.t("確認コードが違います。", "The code is not correct.").to_owned();
        return unprocessable(kind.form(page, token, &user, Some(error)));
    }
    // Used up only now, so a mistyped confirmation does not cost the user their link.
    if store.consume_email_token(&hash, kind.purpose()).await?.is_none() {
        return email_link::expired(page);
    }
    let entry = own_entry(&user, kind.audit_action(), AuditResult::Success, page.ip.clone());
    match store.set_password(user.id, &phc, &entry).await {
        Ok(()) => Ok(see_other(kind.done())),
        // The invitation's address already signs in to another account (the link is used up).
        Err(onshi_store::StoreError::Conflict { .. }) => super::signup::address_has_account(page),
        Err(e) => Err(e.into()),
    }
}

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
    // Limited on their own counters, never the sign-in's; over the limit the answer reads the same.
    if !reset_allowed(&state, &email, page.ip.as_deref()).await {
        let entry =
            onshi_store::AuditEntry::new(None, "-", AuditAction::PasswordResetRequested, "-", AuditResult::Denied)
                .ip(page.ip.clone())
                .details(serde_json::json!({ "reason": "reset limit" }));
        state.store.system().audit(&entry).await?;
        return ok(reset_requested(&page));
    }
    let issued = state
        .store
        .system()
        .issue_reset_link(&email, RESET_TTL, |tenant| {
            let token = email_link::issue(tenant);
            (token.secret, token.hash)
        })
        .await?;
    if let Some((user, secret)) = issued {
        Letter::reset(&link(&state, &format!("/password/reset/{secret}"))).send(&state, &user.email).await?;
        let entry = own_entry(&user, AuditAction::PasswordResetRequested, AuditResult::Success, page.ip.clone());
        state.store.system().audit_refused(&user, &entry).await?;
    }
    ok(reset_requested(&page))
}

/// The same page whether or not the address has an account, and whether or not a mail went out.
fn reset_requested(page: &Page) -> MessagePage {
    MessagePage {
        title: page.lang.t("メールを確認してください", "Check your e-mail"),
        message: page.lang.t(
            "登録されているアドレスであれば、再設定用のリンクを送りました。",
            "If the address belongs to an account, we sent it a reset link.",
        ),
        link: Some(("/signin", page.lang.t("サインインへ", "Back to sign-in"))),
        page: page.clone(),
    }
}

pub(crate) async fn reset_form(
    state: web::Data<AppState>,
    page: Page,
    token: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    show(&state, page, &token, Kind::Reset).await
}

pub(crate) async fn reset(
    state: web::Data<AppState>,
    page: Page,
    token: web::Path<String>,
    form: web::Form<PasswordSetForm>,
) -> Result<HttpResponse, ApiError> {
    set(&state, page, &token, &form, Kind::Reset).await
}

pub(crate) async fn invite_form(
    state: web::Data<AppState>,
    page: Page,
    token: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    show(&state, page, &token, Kind::Invite).await
}

pub(crate) async fn accept_invite(
    state: web::Data<AppState>,
    page: Page,
    token: web::Path<String>,
    form: web::Form<PasswordSetForm>,
) -> Result<HttpResponse, ApiError> {
    set(&state, page, &token, &form, Kind::Invite).await
}
