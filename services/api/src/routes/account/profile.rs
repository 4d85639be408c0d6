//! The signed-in user's own account page: who they are, changing the password, signing out everywhere.

use actix_web::{HttpResponse, web};
use askama::Template;
use onshi_domain::AuditAction;
use onshi_identity::verify_password;
use onshi_store::{AuditResult, User};
use serde::Deserialize;

use super::new_password;
use super::throttle::{Failed, note_failure, throttled, throttled_response};
use crate::web::guard::{Caller, Page};
use crate::web::i18n::Lang;
use crate::web::page::{ok, see_other, unprocessable};
use crate::web::session::{Stage, with_session_cookie, without_session_cookie};
use crate::{ApiError, AppState};

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    page: Page,
    email: String,
    name: String,
    role: &'static str,
    error: Option<String>,
    notice: Option<&'static str>,
    /// Unused recovery codes, where counted.
    recovery_left: Option<u64>,
}

impl AccountPage {
    fn new(page: Page, user: &User) -> Self {
        let role = if page.lang == Lang::En { user.role.label_en() } else { user.role.label_ja() };
        AccountPage {
            page,
            email: user.email.clone(),
            name: user.display_name.clone(),
            role,
            error: None,
            notice: None,
            recovery_left: None,
        }
    }
}

#[derive(serde::Deserialize)]
pub(crate) struct AccountQuery {
    /// Set after a sign-in with a recovery code.
    #[serde(default)]
    recovered: Option<String>,
}

pub(crate) async fn account_page(
    state: web::Data<AppState>,
    page: Page,
    caller: Caller,
    q: web::Query<AccountQuery>,
) -> Result<HttpResponse, ApiError> {
    let left = state.store.tenant(caller.scope).recovery_codes_left(caller.user.id).await?;
    let notice = q.recovered.is_some().then(|| {
        page.lang.t(
            "回復コードでサインインしました。使ったコードはもう使えません。認証アプリを設定し直すか、新しい回復コードを作ってください。",
            "Signed in with a recovery code; that code no longer works. Set up the authenticator again or make new recovery codes.",
        )
    });
    ok(AccountPage { recovery_left: Some(left), notice, ..AccountPage::new(page, &caller.user) })
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
    let again =
        |page: Page, error: String| unprocessable(AccountPage { error: Some(error), ..AccountPage::new(page, user) });
    if throttled(&state, &user.email, caller.ip.as_deref()).await {
        return throttled_response(&page);
    }
    if !user.password_hash.as_deref().is_some_and(|phc| verify_password(&form.current, phc)) {
        note_failure(&state, &user.email, caller.ip.as_deref(), Failed::KnownAccount).await;
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
    let entry = caller.entry(AuditAction::PasswordChange, &format!("user:{}", user.id), AuditResult::Success);
    store.set_password(user.id, &phc, &entry).await?;
    // Every other session ended with the epoch; this browser continues under a new session id.
    let user = store.user(user.id).await?.ok_or(ApiError::SignInRequired)?;
    if let Some(old) = &caller.session_token {
        state.sessions.destroy(old).await?;
    }
    let login_at = caller.session.as_ref().map(|s| s.login_at).unwrap_or_default();
    let token = state.sessions.start(&user, Stage::Full, login_at).await?;
    let notice = page.lang.t(
        "パスワードを変更しました。ほかの端末のセッションは終了しました。",
        "Password changed. Sessions on other devices were ended.",
    );
    let body = AccountPage { notice: Some(notice), ..AccountPage::new(page, &user) };
    Ok(with_session_cookie(ok(body)?, &token))
}

pub(crate) async fn revoke_own_sessions(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    let entry = caller.entry(AuditAction::SessionsRevoke, &format!("user:{}", caller.user.id), AuditResult::Success);
    state.store.tenant(caller.scope).revoke_sessions(caller.user.id, &entry).await?;
    Ok(without_session_cookie(see_other("/signin?done=signout")))
}
