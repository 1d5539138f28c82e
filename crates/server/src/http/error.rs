//! `ServerError` → HTTP status and OpenAI's error JSON, in one place:
//! `{"error": {"message", "type", "param", "code"}}`.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use pointsman_classifier::ClassifierError;
use pointsman_upstream::{ErrorClass, UpstreamError};
use serde_json::json;

use crate::error::ServerError;

/// A `ServerError` on its way out of the HTTP front end.
#[derive(Debug)]
pub struct ApiError(pub ServerError);

impl<E: Into<ServerError>> From<E> for ApiError {
    fn from(e: E) -> Self {
        ApiError(e.into())
    }
}

/// The HTTP status, OpenAI error `type` and `code` of an error.
pub fn http_status(e: &ServerError) -> (StatusCode, &'static str, Option<&'static str>) {
    use StatusCode as S;
    const INVALID: &str = "invalid_request_error";
    match e {
        ServerError::InvalidArgument { .. } => (S::BAD_REQUEST, INVALID, Some("invalid_value")),
        ServerError::PromptTooLarge { .. } => {
            (S::PAYLOAD_TOO_LARGE, INVALID, Some("prompt_too_large"))
        }
        ServerError::BodyTooLarge { .. } => (S::PAYLOAD_TOO_LARGE, INVALID, Some("body_too_large")),
        ServerError::NotFound { field, .. } if field == "model" => {
            (S::NOT_FOUND, INVALID, Some("model_not_found"))
        }
        ServerError::NotFound { .. } => (S::NOT_FOUND, INVALID, Some("not_found")),
        ServerError::Unauthenticated(_) => (
            S::UNAUTHORIZED,
            "authentication_error",
            Some("invalid_api_key"),
        ),
        ServerError::Overloaded { .. } | ServerError::StoreBusy { .. } => {
            (S::TOO_MANY_REQUESTS, "rate_limit_error", Some("overloaded"))
        }
        ServerError::BudgetExhausted { .. } => (
            S::TOO_MANY_REQUESTS,
            "insufficient_quota",
            Some("budget_exhausted"),
        ),
        ServerError::DeadlineExceeded => (
            S::GATEWAY_TIMEOUT,
            "timeout_error",
            Some("deadline_exceeded"),
        ),
        ServerError::NotReady(_) => (S::SERVICE_UNAVAILABLE, "server_error", Some("not_ready")),
        ServerError::ShuttingDown => (
            S::SERVICE_UNAVAILABLE,
            "server_error",
            Some("shutting_down"),
        ),
        ServerError::NoUpstream(_) => (S::SERVICE_UNAVAILABLE, "server_error", Some("no_upstream")),
        ServerError::Upstream(u) => match u {
            UpstreamError::InvalidRequest(_) => (S::BAD_REQUEST, INVALID, Some("invalid_value")),
            UpstreamError::NoUpstream { .. } => {
                (S::SERVICE_UNAVAILABLE, "server_error", Some("no_upstream"))
            }
            UpstreamError::AllFailed { .. } => match u.last_class() {
                Some(ErrorClass::Timeout | ErrorClass::Deadline) => (
                    S::GATEWAY_TIMEOUT,
                    "upstream_error",
                    Some("upstream_timeout"),
                ),
                _ => (S::BAD_GATEWAY, "upstream_error", Some("upstream_failed")),
            },
            _ => (S::INTERNAL_SERVER_ERROR, "server_error", None),
        },
        ServerError::Classifier(ClassifierError::InvalidInput(_)) => {
            (S::BAD_REQUEST, INVALID, Some("invalid_value"))
        }
        ServerError::Classifier(_) | ServerError::Store(_) | ServerError::Internal(_) => {
            (S::INTERNAL_SERVER_ERROR, "server_error", None)
        }
    }
}

/// The request field an error is about, if any (OpenAI's `param`).
fn param(e: &ServerError) -> Option<&str> {
    match e {
        ServerError::InvalidArgument { field, .. }
        | ServerError::NotFound { field, .. }
        | ServerError::PromptTooLarge { field, .. } => Some(field),
        _ => None,
    }
}

/// An OpenAI-shaped error response.
pub fn error_response(e: &ServerError) -> Response {
    let (status, kind, code) = http_status(e);
    let body = json!({"error": {
        "message": e.to_string(),
        "type": kind,
        "param": param(e),
        "code": code,
    }});
    let mut resp = (status, axum::Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut()
            .insert("www-authenticate", HeaderValue::from_static("Bearer"));
    }
    resp
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self.0 {
            ServerError::Classifier(_) | ServerError::Store(_) | ServerError::Internal(_) => {
                tracing::error!(error = %self.0, "HTTP request failed")
            }
            _ => tracing::debug!(error = %self.0, "HTTP request refused"),
        }
        error_response(&self.0)
    }
}
