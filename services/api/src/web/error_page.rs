//! Errors as browsers see them. `ApiError` answers every error with its JSON body (API clients and
//! agents rely on it); for the pages, this handler swaps that body for an HTML page in the visitor's
//! language, with the same status and headers. The message shown is the error's own (kept in the
//! response's extensions), never an internal cause.

use actix_web::body::BoxBody;
use actix_web::dev::ServiceResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::ErrorHandlerResponse;
use askama::Template;

use super::guard::{Page, cookie};
use super::i18n::Lang;
use super::session::LANG_COOKIE;

/// The message of an error response, for the HTML page.
#[derive(Debug, Clone)]
pub struct ErrorText(pub String);

#[derive(Template)]
#[template(path = "message.html")]
struct ErrorPage {
    page: Page,
    title: &'static str,
    message: String,
    link: Option<(&'static str, &'static str)>,
}

/// Paths whose answers stay JSON: the API, agents and machine endpoints.
fn is_machine(path: &str) -> bool {
    path.starts_with("/api/") || matches!(path, "/healthz" | "/readyz" | "/metrics") || path.starts_with("/static/")
}

fn title(status: StatusCode, lang: Lang) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => lang.t("入力内容を確認してください", "Please check what you entered"),
        StatusCode::FORBIDDEN => lang.t("この操作の権限がありません", "You may not do this"),
        StatusCode::NOT_FOUND => lang.t("ページが見つかりません", "Page not found"),
        StatusCode::METHOD_NOT_ALLOWED => lang.t("この操作はできません", "This cannot be done here"),
        StatusCode::CONFLICT => lang.t("すでに変更されています", "This was changed already"),
        StatusCode::PAYLOAD_TOO_LARGE => lang.t("データが大きすぎます", "Too large"),
        StatusCode::TOO_MANY_REQUESTS => lang.t("しばらくお待ちください", "Please wait"),
        StatusCode::SERVICE_UNAVAILABLE => {
            lang.t("一時的に利用できません。少し待ってからお試しください", "Temporarily unavailable; try again shortly")
        }
        _ => lang.t("エラーが発生しました", "Something went wrong"),
    }
}

/// `ErrorHandlers::default_handler`: HTML for browsers, JSON left as it is for machines.
pub fn html_for_browsers(res: ServiceResponse<BoxBody>) -> actix_web::Result<ErrorHandlerResponse<BoxBody>> {
    // JSON error bodies, and the empty ones actix gives itself (405 for a path served under another
    // method), become pages; a handler's own HTML (a form shown again with 422) is left alone.
    let replaceable = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.starts_with("application/json"));
    let status = res.status();
    if is_machine(res.request().path()) || !replaceable || status.is_redirection() || status.is_success() {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let request = res.request();
    let lang = request
        .query_string()
        .split('&')
        .find_map(|kv| kv.strip_prefix("lang="))
        .and_then(Lang::parse)
        .or_else(|| cookie(request.headers(), LANG_COOKIE).and_then(Lang::parse))
        .unwrap_or_default();
    let title = title(status, lang);
    // Input errors carry a message written for people (which field, what to fix); the others get a
    // sentence in the page's language. 5xx causes are never shown.
    let message = match (status, res.response().extensions().get::<ErrorText>()) {
        (StatusCode::NOT_FOUND, _) => lang
            .t(
                "お探しのページは見つかりませんでした。アドレスを確かめるか、トップから辿ってください。",
                "We could not find that page. Check the address, or start from the top.",
            )
            .to_owned(),
        (StatusCode::FORBIDDEN, _) => lang
            .t(
                "この操作を行う権限がありません。必要な場合はグループの管理者に依頼してください。",
                "Your role does not allow this. Ask your group's administrator if you need it.",
            )
            .to_owned(),
        (StatusCode::METHOD_NOT_ALLOWED, _) => lang
            .t(
                "このアドレスではこの操作はできません。画面のボタンやリンクから操作してください。",
                "This address does not take that request. Use the buttons and links on the pages.",
            )
            .to_owned(),
        (s, Some(ErrorText(m))) if s.is_client_error() && !m.is_empty() => m.clone(),
        _ => title.to_owned(),
    };
    let other_lang_href = super::guard::lang_href(request.query_string(), lang.other());
    let page = Page { lang, csrf: String::new(), signed_in: false, nav: Vec::new(), ip: None, other_lang_href };
    let body = ErrorPage { page, title, message, link: Some(("/", lang.t("トップへ戻る", "Back to the start"))) };
    let Ok(html) = body.render() else { return Ok(ErrorHandlerResponse::Response(res.map_into_left_body())) };
    let (req, mut response) = res.into_parts();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    let response = response.set_body(html).map_into_boxed_body();
    Ok(ErrorHandlerResponse::Response(ServiceResponse::new(req, response).map_into_left_body()))
}
