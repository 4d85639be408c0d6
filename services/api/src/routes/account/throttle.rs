//! Counting failed sign-ins (passwords, codes, reset requests) per account and per client address, in
//! the cache with a fixed window. The account key is a hash of the normalised address, so the cache
//! holds no e-mail addresses.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use onshi_cache::CacheBackend;
use sha2::{Digest, Sha256};

use crate::web::guard::Page;
use crate::web::page::{MessagePage, html};
use crate::{ApiError, AppState};

fn short_hash(value: &str) -> String {
    hex::encode(&Sha256::digest(value.as_bytes())[..8])
}

/// How an account that may not exist is named in the audit log: a hash of its address.
pub(super) fn account_label(email: &str) -> String {
    format!("account#{}", short_hash(&email.trim().to_lowercase()))
}

fn account_key(email: &str) -> String {
    format!("login:acct:{}", short_hash(&email.trim().to_lowercase()))
}

fn address_key(ip: Option<&str>) -> String {
    format!("login:addr:{}", short_hash(ip.unwrap_or("-")))
}

async fn failures(state: &AppState, key: &str) -> u64 {
    match state.cache.get(key).await {
        Ok(Some(raw)) => String::from_utf8_lossy(&raw).trim().parse().unwrap_or(0),
        _ => 0,
    }
}

/// Whether sign-in attempts for this account or from this address are blocked right now.
pub(super) async fn throttled(state: &AppState, email: &str, ip: Option<&str>) -> bool {
    failures(state, &account_key(email)).await >= state.login_limits.per_account
        || failures(state, &address_key(ip)).await >= state.login_limits.per_address
}

/// Counts one failure for the account and for the address.
pub(super) async fn note_failure(state: &AppState, email: &str, ip: Option<&str>) {
    for key in [account_key(email), address_key(ip)] {
        if let Err(e) = state.cache.incr_window(&key, state.login_limits.window).await {
            tracing::warn!(error = %e, "could not count a failed sign-in");
        }
    }
}

/// The 429 page while attempts are blocked.
pub(super) fn throttled_response(page: &Page) -> Result<HttpResponse, ApiError> {
    let body = MessagePage {
        page: page.clone(),
        title: page.lang.t("しばらくお待ちください", "Please wait"),
        message: page.lang.t(
            "サインインの失敗が続いたため、一時的に受け付けを停止しています。しばらくしてからお試しください。",
            "Too many failed attempts. Sign-in is paused for a while; try again later.",
        ),
        link: Some(("/signin", page.lang.t("サインインへ", "Back to sign-in"))),
    };
    html(StatusCode::TOO_MANY_REQUESTS, body)
}
