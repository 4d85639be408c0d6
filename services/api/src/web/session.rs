//! Browser sessions, stored server-side in the cache (Redis in full mode, memory in embedded mode).
//!
//! - The cookie `__Host-onshi_session` holds 256 random bits; the cache key is its SHA-256, so a cache
//!   dump does not contain usable session ids. `__Host-` forces Secure, Path=/ and no Domain.
//! - A session starts at the password step (`Stage::Password` or `Stage::TotpSetup`) and becomes `Full`
//!   only after the second factor; each step issues a new id (no fixation).
//! - Revocation: logout deletes the entry; everything else (password, second factor, role, disable,
//!   "sign out everywhere") bumps the user's `session_epoch` in the database, and every request compares
//!   it, so revocation is immediate on every API process.
//! - Lifetime: idle timeout refreshed on use, and an absolute maximum from creation.

use std::time::Duration;

use actix_web::HttpResponse;
use actix_web::http::header::{HeaderValue, SET_COOKIE};
use onshi_cache::{Cache, CacheBackend};
use onshi_domain::{TenantId, UserId};
use onshi_identity::{OneTimeToken, mac};
use onshi_store::User;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::ApiError;

pub const SESSION_COOKIE: &str = "__Host-onshi_session";
pub const CSRF_COOKIE: &str = "__Host-onshi_csrf";
pub const LANG_COOKIE: &str = "onshi_lang";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stage {
    /// Password accepted; the TOTP code is next.
    Password,
    /// Password accepted; the user has no second factor yet and must enrol one before anything else.
    TotpSetup,
    /// Both factors done.
    Full,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    pub tenant: TenantId,
    pub user: UserId,
    pub epoch: i32,
    pub stage: Stage,
    pub created_at: i64,
    /// When the password step happened (the audit log's "login time").
    pub login_at: i64,
}

#[derive(Clone)]
pub struct Sessions {
    cache: Cache,
    idle: Duration,
    max: Duration,
    csrf_key: Vec<u8>,
}

fn key(token: &str) -> String {
    format!("session:{}", onshi_identity::token::sha256_hex(token))
}

impl Sessions {
    pub fn new(cache: Cache, idle: Duration, max: Duration, secret: &[u8]) -> Self {
        // A key of its own for CSRF tokens, derived so that it is never the JWT key itself.
        Self { cache, idle, max, csrf_key: mac::derive_key(secret, b"onshi csrf key v1") }
    }

    pub fn idle(&self) -> Duration {
        self.idle
    }

    /// Starts a session for `user` at `stage` and returns its cookie value. `login_at` is when the
    /// password step happened; it carries over when a partial session becomes a full one.
    pub async fn start(&self, user: &User, stage: Stage, login_at: i64) -> Result<String, ApiError> {
        self.create(&Session {
            tenant: user.tenant,
            user: user.id,
            epoch: user.session_epoch,
            stage,
            created_at: OffsetDateTime::now_utc().unix_timestamp(),
            login_at,
        })
        .await
    }

    /// Stores a new session and returns its cookie value.
    async fn create(&self, session: &Session) -> Result<String, ApiError> {
        let token = OneTimeToken::anonymous().secret;
        self.store(&token, session).await?;
        Ok(token)
    }

    async fn store(&self, token: &str, session: &Session) -> Result<(), ApiError> {
        let body = serde_json::to_vec(session).map_err(ApiError::internal)?;
        self.cache.set(&key(token), &body, self.idle).await.map_err(ApiError::unavailable)
    }

    /// The session for a cookie value, or None when unknown, idle too long or too old. `refresh` restarts
    /// its idle timeout: true for what a person does, false for what a page does by itself (the live
    /// feed, an automatic update), so a screen left open still signs out when idle.
    pub async fn load(&self, token: &str, refresh: bool) -> Result<Option<Session>, ApiError> {
        let Some(raw) = self.cache.get(&key(token)).await.map_err(ApiError::unavailable)? else {
            return Ok(None);
        };
        let Ok(session) = serde_json::from_slice::<Session>(&raw) else {
            self.destroy(token).await?;
            return Ok(None);
        };
        let age = OffsetDateTime::now_utc().unix_timestamp() - session.created_at;
        if age < 0 || age as u64 > self.max.as_secs() {
            self.destroy(token).await?;
            return Ok(None);
        }
        if refresh {
            self.store(token, &session).await?;
        }
        Ok(Some(session))
    }

    pub async fn destroy(&self, token: &str) -> Result<(), ApiError> {
        self.cache.delete(&key(token)).await.map_err(ApiError::unavailable)
    }

    /// The CSRF token for a form: an HMAC over the browser's CSRF cookie and its session cookie, so a
    /// token is useless with another browser's cookies and changes when the session changes.
    pub fn csrf_token(&self, csrf_cookie: &str, session_cookie: Option<&str>) -> String {
        let parts: [&[u8]; 3] = [csrf_cookie.as_bytes(), b"\n", session_cookie.unwrap_or("").as_bytes()];
        hex::encode(mac::hmac_sha256(&self.csrf_key, &parts))
    }

    pub fn csrf_valid(&self, presented: &str, csrf_cookie: &str, session_cookie: Option<&str>) -> bool {
        let expected = self.csrf_token(csrf_cookie, session_cookie);
        expected.len() == presented.len()
            && expected.bytes().zip(presented.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

/// A `Set-Cookie` value for a `__Host-` cookie. SameSite=Lax, so following a link in an e-mail still
/// arrives signed in, while cross-site POSTs carry no cookie (and would fail the CSRF check anyway).
pub fn host_cookie(name: &str, value: &str, max_age: Option<Duration>) -> String {
    let mut c = format!("{name}={value}; Path=/; Secure; HttpOnly; SameSite=Lax");
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={}", age.as_secs()));
    }
    c
}

pub fn clear_cookie(name: &str) -> String {
    format!("{name}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0")
}

/// `response` with the session cookie set to `token`.
pub fn with_session_cookie(mut response: HttpResponse, token: &str) -> HttpResponse {
    if let Ok(v) = HeaderValue::from_str(&host_cookie(SESSION_COOKIE, token, None)) {
        response.headers_mut().append(SET_COOKIE, v);
    }
    response
}

/// `response` with the session cookie cleared.
pub fn without_session_cookie(mut response: HttpResponse) -> HttpResponse {
    if let Ok(v) = HeaderValue::from_str(&clear_cookie(SESSION_COOKIE)) {
        response.headers_mut().append(SET_COOKIE, v);
    }
    response
}
