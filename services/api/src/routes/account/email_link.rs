//! E-mailed one-time links (verification, reset, invitation): reading one back from its URL, and the
//! page for a link that is no longer usable. The token carries its tenant in clear, so the look-up
//! needs no cross-tenant search; the store returns a scope only when the hash matches an unused,
//! unexpired link for that purpose.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use onshi_domain::TenantId;
use onshi_identity::OneTimeToken;
use onshi_store::{EmailLink, EmailPurpose};

use crate::web::guard::Page;
use crate::web::page::{MessagePage, html};
use crate::{ApiError, AppState};

/// An e-mailed link, if it is usable for `purpose`, with the hash that uses it up.
pub(super) async fn usable(
    state: &AppState,
    token: &str,
    purpose: EmailPurpose,
) -> Result<Option<(EmailLink, String)>, ApiError> {
    let Ok((tenant_hex, hash)) = OneTimeToken::parse("", token) else { return Ok(None) };
    let Ok(tenant) = uuid::Uuid::parse_str(tenant_hex) else { return Ok(None) };
    let link = state.store.system().email_link(TenantId::from_uuid(tenant), &hash, purpose).await?;
    Ok(link.map(|l| (l, hash)))
}

/// A new link's secret for the URL and the hash the store keeps, for a user of `tenant`.
pub(crate) fn issue(tenant: TenantId) -> OneTimeToken {
    OneTimeToken::generate("", &tenant.as_uuid().simple().to_string())
}

/// 404 with a page that says to start again (expired, used, or never issued: the same answer).
pub(super) fn expired(page: Page) -> Result<HttpResponse, ApiError> {
    let body = MessagePage {
        title: page.lang.t("リンクが無効です", "This link is not valid"),
        message: page.lang.t(
            "リンクの有効期限が切れているか、既に使われています。もう一度手続きしてください。",
            "The link has expired or was already used. Please start again.",
        ),
        link: Some(("/signin", page.lang.t("サインインへ", "Go to sign-in"))),
        page,
    };
    html(StatusCode::NOT_FOUND, body)
}
