//! Web signup of a new clinic group (its owner's account) and the e-mail verification that must
//! follow before the owner can sign in.

use actix_web::{HttpResponse, web};
use askama::Template;
use onshi_domain::{AuditAction, Role};
use onshi_store::{AuditEntry, AuditResult, EmailPurpose, NewUser, StoreError, TenantScope, User};
use serde::Deserialize;

use super::letters::{Letter, link};
use super::throttle::account_label;
use super::{VERIFY_TTL, email_link, new_password, own_entry};
use crate::web::guard::Page;
use crate::web::page::{MessagePage, ok, see_other, unprocessable};
use crate::{ApiError, AppState};

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

/// Issues a verification link for `user` and mails it.
pub(super) async fn send_verification(state: &AppState, scope: TenantScope, user: &User) -> Result<(), ApiError> {
    let token = email_link::issue(user.tenant);
    state.store.tenant(scope).create_email_token(user.id, EmailPurpose::Verify, &token.hash, VERIFY_TTL).await?;
    let url = link(state, &format!("/verify-email/{}", token.secret));
    Letter::verification(&user.display_name, &url).send(state, &user.email).await
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
    // An address that already has an account: its owner gets a note, and this page reads exactly as for
    // a free address, so signup does not tell strangers which addresses have accounts.
    if state.store.system().address_in_use(&email).await? {
        let entry = AuditEntry::new(None, &account_label(&email), AuditAction::TenantSignup, "-", AuditResult::Denied)
            .ip(page.ip.clone())
            .details(serde_json::json!({ "reason": "address has an account" }));
        state.store.system().audit(&entry).await?;
        Letter::already_registered(&link(&state, "/signin"), &link(&state, "/password/forgot"))
            .send(&state, &email)
            .await?;
        return ok(check_your_mail(page));
    }
    let owner =
        NewUser { email: &email, display_name: &name, role: Role::Owner, clinics: &[], password_hash: Some(&phc) };
    let entry = AuditEntry::new(None, &email, AuditAction::TenantSignup, "-", AuditResult::Success).ip(page.ip.clone());
    let (scope, user_id) = state.store.system().sign_up(&group, &owner, &entry).await?;
    let user = state.store.tenant(scope).user(user_id).await?.ok_or(ApiError::NotFound)?;
    send_verification(&state, scope, &user).await?;
    tracing::info!(tenant = %scope.tenant_id(), "clinic group signed up");
    ok(check_your_mail(page))
}

fn check_your_mail(page: Page) -> MessagePage {
    MessagePage {
        title: page.lang.t("確認メールを送りました", "Check your e-mail"),
        message: page.lang.t(
            "登録したメールアドレスに確認用のリンクを送りました。リンクを開いて確認を済ませてから、サインインしてください。",
            "We sent a link to your e-mail address. Open it to confirm the address, then sign in.",
        ),
        link: Some(("/signin", page.lang.t("サインインへ", "Go to sign-in"))),
        page,
    }
}

/// For the person who has just proved an address that another account already signs in with.
pub(super) fn address_has_account(page: Page) -> Result<HttpResponse, ApiError> {
    let body = MessagePage {
        title: page.lang.t("このアドレスには既にアカウントがあります", "This address already has an account"),
        message: page.lang.t(
            "このメールアドレスでは既に Onshi Cloud にサインインできます。そのアカウントでサインインしてください（パスワードを忘れた場合は再設定できます）。",
            "This e-mail address already signs in to Onshi Cloud. Sign in with that account (you can reset its password if you forgot it).",
        ),
        link: Some(("/signin", page.lang.t("サインインへ", "Go to sign-in"))),
        page,
    };
    crate::web::page::html(actix_web::http::StatusCode::CONFLICT, body)
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
    let Some((link, hash)) = email_link::usable(&state, &token, EmailPurpose::Verify).await? else {
        return email_link::expired(page);
    };
    let store = state.store.tenant(link.scope);
    let Some(user_id) = store.consume_email_token(&hash, EmailPurpose::Verify).await? else {
        return email_link::expired(page);
    };
    let user = store.user(user_id).await?.ok_or(ApiError::NotFound)?;
    let entry = own_entry(&user, AuditAction::EmailVerify, AuditResult::Success, page.ip.clone());
    match store.mark_email_verified(user.id, &entry).await {
        Ok(()) => Ok(see_other("/signin?done=verified")),
        Err(StoreError::Conflict { .. }) => address_has_account(page),
        Err(e) => Err(e.into()),
    }
}
