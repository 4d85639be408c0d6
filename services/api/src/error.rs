//! The one mapping from failures to HTTP. Clients get a status and a machine-readable body
//! `{"error": {"code", "message", "field"?}}`; internal causes are logged with their source chain and
//! never sent. No message here may contain patient data.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use onshi_domain::FieldError;
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

/// The body of every error response of the JSON API.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable, machine-readable code (`invalid_request`, `unauthorized`, `not_found`, `rate_limited`, ...).
    #[schema(example = "invalid_request")]
    pub code: String,
    /// What went wrong, for a person; never contains patient data.
    pub message: String,
    /// The JSON path or parameter name at fault, when one is (`events[3].occurred_at`, `date`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("authentication required: {0}")]
    Unauthorized(&'static str),
    #[error("not found")]
    NotFound,
    #[error("this address does not take that method")]
    MethodNotAllowed { allow: String },
    #[error("sign-in required")]
    SignInRequired,
    #[error("see other")]
    Redirect(String),
    #[error("you do not have permission for this")]
    Forbidden,
    #[error("the form has expired or did not come from this site; reload the page and try again")]
    CsrfRejected,
    #[error("{0} already exists")]
    Conflict(&'static str),
    #[error("the request is not valid")]
    InvalidRequest(#[source] FieldError),
    #[error("the enrollment code is unknown, used or expired")]
    InvalidEnrollmentCode,
    #[error("this Idempotency-Key was used with another request; use a new key for a new request")]
    IdempotencyKeyReused,
    #[error("the request body is not a valid batch")]
    InvalidBatch(#[source] FieldError),
    #[error("the batch breaks a rule")]
    RejectedBatch(#[source] FieldError),
    #[error("an event id was sent before with different content")]
    EventConflict { field: String },
    #[error("the request body exceeds {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("too many requests")]
    RateLimited { retry_after_secs: u64 },
    #[error("a dependency is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    pub fn internal(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Internal(Box::new(e))
    }

    pub fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Unavailable(Box::new(e))
    }

    fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized(_) => "unauthorized",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::SignInRequired => "sign_in_required",
            Self::Redirect(_) => "redirect",
            Self::Forbidden => "forbidden",
            Self::CsrfRejected => "csrf_rejected",
            Self::Conflict(_) => "conflict",
            Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidEnrollmentCode => "invalid_enrollment_code",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::InvalidBatch(_) => "invalid_batch",
            Self::RejectedBatch(_) => "rejected_batch",
            Self::EventConflict { .. } => "event_id_conflict",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::RateLimited { .. } => "rate_limited",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::SignInRequired | Self::Redirect(_) => StatusCode::SEE_OTHER,
            Self::Forbidden | Self::CsrfRejected => StatusCode::FORBIDDEN,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::InvalidBatch(_) | Self::InvalidRequest(_) | Self::InvalidEnrollmentCode => StatusCode::BAD_REQUEST,
            Self::RejectedBatch(_) | Self::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::EventConflict { .. } => StatusCode::CONFLICT,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        // Browsers are sent where they can continue; the body says the same for scripts.
        match self {
            Self::SignInRequired => {
                return HttpResponse::SeeOther()
                    .insert_header(("Location", "/signin"))
                    .insert_header(("Cache-Control", "no-store"))
                    .json(json!({ "error": { "code": self.code(), "message": self.to_string() } }));
            }
            Self::Redirect(to) => {
                return HttpResponse::SeeOther()
                    .insert_header(("Location", to.as_str()))
                    .insert_header(("Cache-Control", "no-store"))
                    .finish();
            }
            _ => {}
        }
        let (message, field) = match self {
            Self::InvalidBatch(f) | Self::RejectedBatch(f) | Self::InvalidRequest(f) => {
                (f.message.clone(), Some(f.field.clone()))
            }
            Self::EventConflict { field } => (self.to_string(), Some(field.clone())),
            Self::Unavailable(e) => {
                tracing::error!(error = %onshi_telemetry::Chain(e.as_ref()), "dependency unavailable");
                ("the service is temporarily unavailable; retry later".to_owned(), None)
            }
            Self::Internal(e) => {
                tracing::error!(error = %onshi_telemetry::Chain(e.as_ref()), "internal error");
                ("internal error".to_owned(), None)
            }
            other => (other.to_string(), None),
        };
        let body = ErrorBody { error: ErrorDetail { code: self.code().to_owned(), message: message.clone(), field } };
        let mut response = HttpResponse::build(self.status_code());
        if let Self::RateLimited { retry_after_secs } = self {
            response.insert_header(("Retry-After", retry_after_secs.to_string()));
        }
        if let Self::MethodNotAllowed { allow } = self {
            response.insert_header(("Allow", allow.as_str()));
        }
        if let Self::Unauthorized(_) = self {
            response.insert_header(("WWW-Authenticate", "Bearer"));
        }
        let mut response = response.insert_header(("Cache-Control", "no-store")).json(body);
        // For the HTML error page (web::error_page); 5xx messages are never shown there.
        response.extensions_mut().insert(crate::web::error_page::ErrorText(message));
        response
    }
}

impl From<onshi_store::StoreError> for ApiError {
    fn from(e: onshi_store::StoreError) -> Self {
        match e {
            // A row of another tenant is indistinguishable from a missing one.
            onshi_store::StoreError::NotFound { .. } => Self::NotFound,
            onshi_store::StoreError::Conflict { what } => Self::Conflict(what),
            e if e.is_transient() => Self::unavailable(e),
            e => Self::internal(e),
        }
    }
}
