//! Small helpers every page handler uses to answer: a rendered template with its status, a redirect
//! after a form, and the one-paragraph message page.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use askama::Template;

use super::guard::Page;
use crate::ApiError;

/// A rendered template as an HTML response with `status`.
pub(crate) fn html(status: StatusCode, body: impl Template) -> Result<HttpResponse, ApiError> {
    let rendered = body.render().map_err(ApiError::internal)?;
    Ok(HttpResponse::build(status).content_type("text/html; charset=utf-8").body(rendered))
}

pub(crate) fn ok(body: impl Template) -> Result<HttpResponse, ApiError> {
    html(StatusCode::OK, body)
}

/// A form shown again with what was wrong (422, so tests and tools can tell it from a success).
pub(crate) fn unprocessable(body: impl Template) -> Result<HttpResponse, ApiError> {
    html(StatusCode::UNPROCESSABLE_ENTITY, body)
}

/// The redirect after a successful form post (303: the browser follows it with a GET).
pub(crate) fn see_other(to: &str) -> HttpResponse {
    HttpResponse::SeeOther().insert_header(("Location", to)).finish()
}

/// A title, one paragraph and an optional link onwards.
#[derive(Template)]
#[template(path = "message.html")]
pub(crate) struct MessagePage {
    pub page: Page,
    pub title: &'static str,
    pub message: &'static str,
    pub link: Option<(&'static str, &'static str)>,
}
