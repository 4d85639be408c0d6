//! The one place where a request is authenticated and authorised. Every route is registered with an
//! [`Access`] in `routes::ROUTES`, and this middleware enforces it before the handler runs:
//!
//! - browser routes get the CSRF cookie, and every POST must carry a matching `csrf` form field and
//!   must not come from another origin (`Origin`, `Sec-Fetch-Site`);
//! - session routes load the server-side session, require both factors (`Stage::Full`), re-read the
//!   user (active, same session epoch) and check the permission against the role matrix;
//! - API-token routes check the token, its scope, and that its creator may still do what it asks.
//!
//! Handlers then take a [`Caller`] (who, which tenant, which clinics) and a [`Page`] (language, CSRF
//! token) as extractors; they never look at cookies or headers themselves.

use std::future::{Ready, ready};

use actix_web::body::BoxBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use onshi_domain::{ApiScope, AuditAction, ClinicAccess, Permission};
use onshi_identity::OneTimeToken;
use onshi_store::{AuditEntry, AuditResult, ClinicScope, TenantScope, TenantStore, User};

use super::i18n::Lang;
use super::session::{CSRF_COOKIE, LANG_COOKIE, SESSION_COOKIE, Session, Stage, host_cookie};
use crate::{ApiError, AppState};

pub const API_TOKEN_PREFIX: &str = "onshi_pat_";

/// What a route requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Machine endpoints (health, static files): nothing checked, no cookies.
    Open,
    /// Agents: the device JWT is checked by the `AuthenticatedDevice` extractor.
    Device,
    /// Browser pages anyone may open (sign-in, signup): CSRF on POST.
    Public,
    /// Between the password and the second factor.
    PartialSession,
    /// Signed in with both factors; any role.
    Session,
    /// Signed in with both factors, with this permission.
    Perm(Permission),
    /// `Authorization: Bearer onshi_pat_…` with this scope.
    Token(ApiScope),
}

impl Access {
    fn is_browser(self) -> bool {
        matches!(self, Access::Public | Access::PartialSession | Access::Session | Access::Perm(_))
    }
}

/// Who is calling, established by the guard.
#[derive(Debug, Clone)]
pub struct Caller {
    pub scope: TenantScope,
    pub user: User,
    pub clinics: ClinicAccess,
    /// The actor as the audit log names it.
    pub actor: String,
    pub ip: Option<String>,
    /// The session cookie value (browser callers).
    pub session_token: Option<String>,
    pub session: Option<Session>,
    /// A request the page made by itself (the live feed, an automatic update), not a person's: it does
    /// not restart the idle timeout, and views it makes are not audited again.
    pub passive: bool,
}

impl Caller {
    pub fn entry(&self, action: AuditAction, target: &str, result: AuditResult) -> AuditEntry {
        AuditEntry::new(Some(self.user.id), &self.actor, action, target, result).ip(self.ip.clone())
    }

    pub fn can(&self, permission: Permission) -> bool {
        self.user.role.allows(permission)
    }

    /// The clinic a path names, if the caller may act on it. A malformed id, another tenant's clinic and
    /// a clinic outside the caller's assignments are all the same 404.
    pub async fn clinic(&self, store: &TenantStore<'_>, raw: &str) -> Result<ClinicScope, ApiError> {
        let id: onshi_domain::ClinicId = raw.parse().map_err(|_| ApiError::NotFound)?;
        store.clinic_scope(id, &self.clinics).await?.ok_or(ApiError::NotFound)
    }

    /// Every clinic the caller may see.
    pub async fn visible_clinics(&self, store: &TenantStore<'_>) -> Result<Vec<ClinicScope>, ApiError> {
        Ok(store.clinic_scopes(&self.clinics).await?)
    }
}

/// A partially signed-in browser (password done, second factor pending).
#[derive(Debug, Clone)]
pub struct Pending {
    pub scope: TenantScope,
    pub user: User,
    pub session: Session,
    pub session_token: String,
    pub ip: Option<String>,
}

/// What every page template needs.
#[derive(Debug, Clone)]
pub struct Page {
    pub lang: Lang,
    pub csrf: String,
    pub signed_in: bool,
    /// Navigation entries the caller may use: (href, label in the page's language).
    pub nav: Vec<(&'static str, &'static str)>,
    pub ip: Option<String>,
    /// This page in the other language: the same query string with `lang` switched.
    pub other_lang_href: String,
}

impl Page {
    /// Why an agent needs attention, in this page's language.
    pub fn attention(&self, reasons: &[onshi_domain::Attention]) -> String {
        reasons
            .iter()
            .map(|a| self.lang.t(a.label_ja(), a.label_en()))
            .collect::<Vec<_>>()
            .join(self.lang.t("、", ", "))
    }

    /// The live feed's words in this page's language (JSON for feed.js's `data-labels`).
    pub fn feed_labels(&self) -> String {
        use onshi_domain::{ConfirmationMethod as M, QualificationResult as R};
        let methods: serde_json::Map<String, serde_json::Value> =
            [M::MynaCard, M::MynaSmartphone, M::InsuranceCard, M::EligibilityCertificate, M::NumberQuery]
                .into_iter()
                .map(|m| (m.as_str().to_owned(), self.lang.t(m.label_ja(), m.label_en()).into()))
                .collect();
        let results: serde_json::Map<String, serde_json::Value> =
            [R::Valid, R::Invalid, R::InvalidNewQualification, R::NotFound, R::Multiple, R::Error]
                .into_iter()
                .map(|r| (r.as_str().to_owned(), self.lang.t(r.label_ja(), r.label_en()).into()))
                .collect();
        serde_json::json!({
            "methods": methods,
            "results": results,
            "words": { "visits": self.lang.t("受付", "visits") },
        })
        .to_string()
    }
}

/// `?…` of the current query with `lang` set to `to` (filters and months survive the switch).
pub(crate) fn lang_href(query: &str, to: Lang) -> String {
    query_with(query, &[("lang", to.code())])
}

/// `?…` of the current query with each of `set` replacing any value the query had for its key.
pub(crate) fn query_with(query: &str, set: &[(&str, &str)]) -> String {
    let mut pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
    pairs.retain(|(k, _)| !set.iter().any(|(key, _)| key == k));
    pairs.extend(set.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    format!("?{}", serde_urlencoded::to_string(&pairs).unwrap_or_default())
}

macro_rules! from_extensions {
    ($t:ty) => {
        impl FromRequest for $t {
            type Error = ApiError;
            type Future = Ready<Result<Self, ApiError>>;

            fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
                ready(req.extensions().get::<$t>().cloned().ok_or(ApiError::SignInRequired))
            }
        }
    };
}
from_extensions!(Caller);
from_extensions!(Pending);
from_extensions!(Page);

pub fn cookie<'a>(headers: &'a actix_web::http::header::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// The client's address: the direct peer, unless the peer is a configured proxy, in which case the
/// nearest address in X-Forwarded-For that is not one of our proxies (entries further left were written
/// by whoever sent the request and prove nothing).
fn client_ip(req: &ServiceRequest, trusted_proxies: &[std::net::IpAddr]) -> Option<String> {
    let peer = req.peer_addr()?.ip();
    if !trusted_proxies.contains(&peer) {
        return Some(peer.to_string());
    }
    let forwarded: Vec<std::net::IpAddr> = req
        .headers()
        .get_all("X-Forwarded-For")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse().ok())
        .collect();
    let client = forwarded.into_iter().rev().find(|a| !trusted_proxies.contains(a)).unwrap_or(peer);
    Some(client.to_string())
}

/// The page origins form posts may come from: the public URL's and the configured ones, plus any
/// loopback origin when the public URL itself is loopback (the demo and tests, served to this machine).
#[derive(Debug, Clone, Default)]
pub struct Origins {
    allowed: Vec<String>,
    loopback: bool,
}

impl Origins {
    pub fn new(public_url: &str, extra: &[String]) -> Self {
        let public = onshi_config::origin_of(public_url);
        let loopback = public.as_deref().is_some_and(is_loopback);
        let allowed = public.into_iter().chain(extra.iter().filter_map(|o| onshi_config::origin_of(o))).collect();
        Self { allowed, loopback }
    }

    fn allows(&self, origin: &str) -> bool {
        let Some(origin) = onshi_config::origin_of(origin) else { return false };
        self.allowed.contains(&origin) || (self.loopback && is_loopback(&origin))
    }
}

fn is_loopback(origin: &str) -> bool {
    let host = origin.split_once("://").map_or(origin, |(_, h)| h);
    let host = if host.starts_with('[') {
        host.split(']').next().map(|h| &h[1..]).unwrap_or(host)
    } else {
        host.split(':').next().unwrap_or(host)
    };
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn nav_for(user: &User, lang: Lang) -> Vec<(&'static str, &'static str)> {
    let mut nav = Vec::new();
    if user.role.allows(Permission::ViewReceptions) {
        nav.push(("/", "受付ログ", "Receptions"));
        nav.push(("/dashboard", "利用率", "Usage"));
    }
    if user.role.allows(Permission::ManageAgents) {
        nav.push(("/fleet", "端末", "Fleet"));
    }
    if user.role.allows(Permission::ReviewBilling) {
        nav.push(("/billing", "請求確認", "Billing"));
    }
    if user.role.allows(Permission::ManageClinics) {
        nav.push(("/onboarding", "導入チェックリスト", "Onboarding"));
    }
    if user.role.allows(Permission::ManageStaff) {
        nav.push(("/staff", "スタッフ", "Staff"));
    }
    if user.role.allows(Permission::ViewAudit) {
        nav.push(("/audit", "監査ログ", "Audit log"));
    }
    if user.role.allows(Permission::ManageApiTokens) {
        nav.push(("/settings/api-tokens", "APIトークン", "API tokens"));
        nav.push(("/settings/webhooks", "Webhook", "Webhooks"));
    }
    nav.push(("/account", "アカウント", "Account"));
    nav.into_iter().map(|(href, ja, en)| (href, lang.t(ja, en))).collect()
}

/// Whether a state-changing request comes from our own pages. The origin is compared with configuration
/// only: `Host` and `X-Forwarded-Host` are the client's to choose.
fn same_origin(req: &ServiceRequest, origins: &Origins) -> bool {
    if let Some(site) = req.headers().get("Sec-Fetch-Site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return false;
    }
    match req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        None => true,
        Some(origin) => origins.allows(origin),
    }
}

pub(crate) async fn check(
    access: Access,
    req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    // A refusal here becomes a response like a handler's error, so that the error pages see it too.
    let request = req.request().clone();
    match guarded(access, req, next).await {
        Ok(res) => Ok(res),
        Err(e) => Ok(ServiceResponse::new(request, e.error_response())),
    }
}

async fn guarded(
    access: Access,
    mut req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Err(ApiError::Unauthorized("server misconfigured").into());
    };
    match access {
        Access::Open | Access::Device => return next.call(req).await,
        Access::Token(scope) => {
            let (caller, token) = token_caller(&state, &req, scope).await?;
            let quota = token_quota(&state, token).await;
            if quota.as_ref().is_some_and(|q| q.used > q.limit) {
                let mut response = actix_web::ResponseError::error_response(&ApiError::RateLimited {
                    retry_after_secs: quota.as_ref().map_or(60, |q| q.reset_secs),
                });
                if let Some(q) = &quota {
                    q.annotate(response.headers_mut());
                }
                return Ok(req.into_response(response));
            }
            req.extensions_mut().insert(caller);
            let mut response = next.call(req).await?;
            if let Some(q) = &quota {
                q.annotate(response.headers_mut());
            }
            return Ok(response);
        }
        _ => {}
    }
    debug_assert!(access.is_browser());
    let ip = client_ip(&req, &state.trusted_proxies);
    let headers = req.headers().clone();
    let mut new_csrf_cookie = None;
    let csrf_cookie = match cookie(&headers, CSRF_COOKIE) {
        Some(c) => c.to_owned(),
        None => {
            let fresh = OneTimeToken::anonymous().secret;
            new_csrf_cookie = Some(fresh.clone());
            fresh
        }
    };
    let session_token = cookie(&headers, SESSION_COOKIE).map(str::to_owned);
    let lang = req
        .query_string()
        .split('&')
        .find_map(|kv| kv.strip_prefix("lang="))
        .and_then(Lang::parse)
        .or_else(|| cookie(&headers, LANG_COOKIE).and_then(Lang::parse))
        .unwrap_or_default();
    let lang_from_query = req.query_string().split('&').any(|kv| kv.starts_with("lang="));
    // The page's own requests: the live feed (EventSource cannot send headers) and updates feed.js makes.
    let passive = req.method() == Method::GET
        && (req.path() == PASSIVE_PATH || headers.get(PASSIVE_HEADER).is_some_and(|v| v.as_bytes() == b"1"));

    if req.method() == Method::POST {
        if !same_origin(&req, &state.origins) {
            return Err(ApiError::CsrfRejected.into());
        }
        let body = req.extract::<web::Bytes>().await?;
        let presented = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body)
            .ok()
            .and_then(|pairs| pairs.into_iter().find(|(k, _)| k == "csrf").map(|(_, v)| v));
        let valid = new_csrf_cookie.is_none()
            && presented.is_some_and(|p| state.sessions.csrf_valid(&p, &csrf_cookie, session_token.as_deref()));
        if !valid {
            return Err(ApiError::CsrfRejected.into());
        }
        req.set_payload(Payload::from(body));
    }

    let mut page = Page {
        lang,
        csrf: state.sessions.csrf_token(&csrf_cookie, session_token.as_deref()),
        signed_in: false,
        nav: Vec::new(),
        ip: ip.clone(),
        other_lang_href: lang_href(req.query_string(), lang.other()),
    };
    match access {
        Access::Public => {}
        Access::PartialSession => {
            let (scope, session, user) = load_session(&state, session_token.as_deref(), false).await?;
            if session.stage == Stage::Full {
                return Err(ApiError::Redirect("/".to_owned()).into());
            }
            req.extensions_mut().insert(Pending {
                scope,
                user,
                session,
                session_token: session_token.clone().unwrap_or_default(),
                ip: ip.clone(),
            });
        }
        Access::Session | Access::Perm(_) => {
            let (scope, session, user) = load_session(&state, session_token.as_deref(), passive).await?;
            match session.stage {
                Stage::Full => {}
                Stage::Password => return Err(ApiError::Redirect("/signin/totp".to_owned()).into()),
                Stage::TotpSetup => return Err(ApiError::Redirect("/account/totp/setup".to_owned()).into()),
            }
            let caller = Caller {
                scope,
                clinics: ClinicAccess::of(user.role, &user.clinics),
                actor: user.email.clone(),
                ip: ip.clone(),
                session_token: session_token.clone(),
                session: Some(session),
                passive,
                user,
            };
            if let Access::Perm(permission) = access
                && !caller.can(permission)
            {
                let entry = caller.entry(
                    AuditAction::AccessDenied,
                    req.match_pattern().as_deref().unwrap_or("-"),
                    AuditResult::Denied,
                );
                state.store.tenant(caller.scope).audit(&entry).await.map_err(ApiError::from)?;
                return Err(ApiError::Forbidden.into());
            }
            page.signed_in = true;
            page.nav = nav_for(&caller.user, lang);
            req.extensions_mut().insert(caller);
        }
        _ => {}
    }
    req.extensions_mut().insert(page);

    let mut res = next.call(req).await?;
    let res_headers = res.headers_mut();
    if let Some(fresh) = new_csrf_cookie
        && let Ok(v) = HeaderValue::from_str(&host_cookie(CSRF_COOKIE, &fresh, None))
    {
        res_headers.append(header::SET_COOKIE, v);
    }
    if lang_from_query
        && let Ok(v) = HeaderValue::from_str(&format!(
            "{LANG_COOKIE}={}; Path=/; Secure; SameSite=Lax; Max-Age=31536000",
            lang.code()
        ))
    {
        res_headers.append(header::SET_COOKIE, v);
    }
    // Pages may show patient-level data: never cached by the browser or a proxy.
    res_headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

/// Header feed.js sets on the updates it fetches by itself.
pub const PASSIVE_HEADER: &str = "x-onshi-passive";
/// The live feed, which a page keeps open by itself.
const PASSIVE_PATH: &str = "/feed";

/// The session, its scope and its user, if the session is valid right now.
async fn load_session(
    state: &AppState,
    token: Option<&str>,
    passive: bool,
) -> Result<(TenantScope, Session, User), ApiError> {
    let token = token.ok_or(ApiError::SignInRequired)?;
    let session = state.sessions.load(token, !passive).await?.ok_or(ApiError::SignInRequired)?;
    match state.store.system().session_user(session.tenant, session.user, session.epoch).await? {
        Some((scope, user)) => Ok((scope, session, user)),
        None => {
            state.sessions.destroy(token).await?;
            Err(ApiError::SignInRequired)
        }
    }
}

/// An API token's use of its per-minute quota, as the `RateLimit-*` headers report it.
struct Quota {
    limit: u64,
    used: u64,
    /// Seconds until the clock minute ends and the count starts again.
    reset_secs: u64,
}

impl Quota {
    fn annotate(&self, headers: &mut actix_web::http::header::HeaderMap) {
        for (name, value) in [
            ("ratelimit-limit", self.limit),
            ("ratelimit-remaining", self.limit.saturating_sub(self.used)),
            ("ratelimit-reset", self.reset_secs),
        ] {
            headers.insert(header::HeaderName::from_static(name), HeaderValue::from(value));
        }
    }
}

/// Counts one request of `token` against its clock minute. Counted in the shared cache, so every API
/// process sees the same count; when the cache cannot answer the request goes through uncounted (a
/// cache outage must not stop a group's integrations) and the answer carries no `RateLimit-*` headers.
async fn token_quota(state: &AppState, token: onshi_domain::ApiTokenId) -> Option<Quota> {
    use onshi_cache::CacheBackend;
    let now = time::OffsetDateTime::now_utc().unix_timestamp().max(0) as u64;
    let (minute, reset_secs) = (now / 60, 60 - now % 60);
    let key = format!("rl:api:{token}:{minute}");
    match state.cache.incr_window(&key, std::time::Duration::from_secs(61)).await {
        Ok(used) => Some(Quota { limit: u64::from(state.api_requests_per_token_per_minute), used, reset_secs }),
        Err(e) => {
            tracing::warn!(error = %onshi_telemetry::Chain(&e), "API rate limit not counted: the cache did not answer");
            None
        }
    }
}

async fn token_caller(
    state: &AppState,
    req: &ServiceRequest,
    scope: ApiScope,
) -> Result<(Caller, onshi_domain::ApiTokenId), ApiError> {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or(ApiError::Unauthorized("missing Bearer token"))?;
    let (tenant_hex, hash) =
        OneTimeToken::parse(API_TOKEN_PREFIX, presented).map_err(|_| ApiError::Unauthorized("invalid API token"))?;
    let tenant: onshi_domain::TenantId = uuid::Uuid::parse_str(tenant_hex)
        .map(onshi_domain::TenantId::from_uuid)
        .map_err(|_| ApiError::Unauthorized("invalid API token"))?;
    let auth =
        state.store.system().api_token(tenant, &hash).await?.ok_or(ApiError::Unauthorized("invalid API token"))?;
    let (token, user) = (auth.token, auth.user);
    if !token.scopes.contains(&scope) || !user.role.allows(scope.permission()) {
        return Err(ApiError::Forbidden);
    }
    let caller = Caller {
        scope: auth.scope,
        clinics: ClinicAccess::of(user.role, &user.clinics),
        actor: format!("api-token:{} ({})", token.id, user.email),
        ip: client_ip(req, &state.trusted_proxies),
        session_token: None,
        session: None,
        passive: false,
        user,
    };
    Ok((caller, token.id))
}
