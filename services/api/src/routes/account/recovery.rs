//! Recovery codes: issued when the authenticator is first set up and on request from the account page,
//! shown once, each usable once at the second sign-in step instead of a TOTP code.

use actix_web::{HttpResponse, web};
use askama::Template;
use onshi_domain::AuditAction;
use onshi_identity::recovery;
use onshi_store::{AuditResult, TenantStore, User};

use super::own_entry;
use crate::web::guard::{Caller, Page};
use crate::web::page::ok;
use crate::{ApiError, AppState};

#[derive(Template)]
#[template(path = "recovery_codes.html")]
pub(super) struct RecoveryCodesPage {
    pub page: Page,
    pub codes: Vec<String>,
    /// Where "続ける" goes: the person's landing page after first setup, the account page otherwise.
    pub next: &'static str,
}

/// Makes a new set for `user`, replacing the old one, audited as `action`; returns the codes to show once.
pub(super) async fn issue(
    store: &TenantStore<'_>,
    user: &User,
    ip: Option<String>,
    action: AuditAction,
) -> Result<Vec<String>, ApiError> {
    let codes = recovery::generate();
    let hashes: Vec<String> = codes.iter().filter_map(|c| recovery::hash(c)).collect();
    let entry = own_entry(user, action, AuditResult::Success, ip).details(serde_json::json!({ "codes": hashes.len() }));
    store.replace_recovery_codes(user.id, &hashes, &entry).await?;
    Ok(codes)
}

/// A new set from the account page (the old codes stop working).
pub(crate) async fn regenerate(
    state: web::Data<AppState>,
    page: Page,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let store = state.store.tenant(caller.scope);
    let codes = issue(&store, &caller.user, caller.ip.clone(), AuditAction::RecoveryCodesRegenerate).await?;
    ok(RecoveryCodesPage { page, codes, next: "/account" })
}
