//! Counting failed sign-ins, and limiting reset e-mails, in the cache with a fixed window. Keys are hashes,
//! so the cache holds no e-mail or client addresses.
//!
//! What is counted, and why:
//! - A wrong password or code for an existing account counts against that account *from that client
//!   address* (`pair`). A stranger elsewhere cannot lock the owner out, and one person mistyping at a
//!   clinic does not block colleagues behind the same NAT address.
//! - A sign-in naming an address with no account counts against the client address (`addr`): that is
//!   what guessing addresses or stuffing a leaked list looks like. Staff of a clinic mistyping their own
//!   passwords never reach it.
//! - Password-reset requests are not sign-in failures: they have their own small limits per account and
//!   per client address, past which the page reads the same but no e-mail is sent (a mailbox cannot be
//!   flooded, and nobody learns whether the address exists).
//!
//! The second factor is required after any password, so a guessed password alone opens nothing.

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
    format!("account#{}", short_hash(&normalised(email)))
}

fn normalised(email: &str) -> String {
    email.trim().to_lowercase()
}

fn pair_key(email: &str, ip: Option<&str>) -> String {
    format!("login:pair:{}", short_hash(&format!("{}\n{}", normalised(email), ip.unwrap_or("-"))))
}

fn address_key(ip: Option<&str>) -> String {
    format!("login:addr:{}", short_hash(ip.unwrap_or("-")))
}

/// Reset e-mails per account, and reset requests per client address, within the sign-in window.
const RESETS_PER_ACCOUNT: u64 = 3;
const RESETS_PER_ADDRESS: u64 = 20;

async fn failures(state: &AppState, key: &str) -> u64 {
    match state.cache.get(key).await {
        Ok(Some(raw)) => String::from_utf8_lossy(&raw).trim().parse().unwrap_or(0),
        _ => 0,
    }
}

/// Whether sign-in attempts for this account from this address, or any from this address, are blocked.
pub(super) async fn throttled(state: &AppState, email: &str, ip: Option<&str>) -> bool {
    failures(state, &pair_key(email, ip)).await >= state.login_limits.per_account
        || failures(state, &address_key(ip)).await >= state.login_limits.per_address
}

/// Whether a failure was for an account that exists (a wrong password or code) or for an address
/// with no account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Failed {
    KnownAccount,
    UnknownAccount,
}

/// Counts one failure (see the module header for which key).
pub(super) async fn note_failure(state: &AppState, email: &str, ip: Option<&str>, failed: Failed) {
    let key = match failed {
        Failed::KnownAccount => pair_key(email, ip),
        Failed::UnknownAccount => address_key(ip),
    };
    if let Err(e) = state.cache.incr_window(&key, state.login_limits.window).await {
        tracing::warn!(error = %onshi_telemetry::Chain(&e), "could not count a failed sign-in");
    }
}

/// Counts a reset request and says whether its e-mail may go out.
pub(super) async fn reset_allowed(state: &AppState, email: &str, ip: Option<&str>) -> bool {
    let window = state.login_limits.window;
    let account_key = format!("reset:acct:{}", short_hash(&normalised(email)));
    let address_key = format!("reset:addr:{}", short_hash(ip.unwrap_or("-")));
    let account = state.cache.incr_window(&account_key, window).await;
    let address = state.cache.incr_window(&address_key, window).await;
    match (account, address) {
        (Ok(a), Ok(b)) => a <= RESETS_PER_ACCOUNT && b <= RESETS_PER_ADDRESS,
        // The cache is down: send (a reset is how people get back in), the mail server limits the rest.
        _ => true,
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
