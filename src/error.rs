//! One error type for everything a client can be told, with stable codes.
//!
//! Each layer has its own `thiserror` enum (`upstream::Error`, `passcode::PasscodeError`, ...) that
//! carries what the layer knows. [`AppError`] is where those become a public answer: a code from the
//! closed list in [`ErrorCode`], an HTTP status for REST endpoints, and a message that is safe to send.
//! Messages are written here or by validation code, never copied from an upstream answer (it may hold
//! PHI) and never built from secret input (passcodes, tokens).

use std::fmt;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The closed list of error codes clients may see, as `extensions.code` in GraphQL errors and as
/// `{"error": CODE}` on REST endpoints. Adding one is a contract change: README and tests follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    BadUserInput,
    GraphqlParseFailed,
    GraphqlValidationFailed,
    OperationLimitExceeded,
    Unauthenticated,
    Forbidden,
    NotFound,
    NotSupportedInMode,
    RateLimited,
    Overloaded,
    CsrfError,
    RequestTimeout,
    UpstreamTimeout,
    UpstreamUnavailable,
    UpstreamError,
    AuditUnavailable,
    InternalServerError,
}

impl ErrorCode {
    /// Every code, in the order the README lists them.
    pub const ALL: [ErrorCode; 17] = [
        ErrorCode::BadUserInput,
        ErrorCode::GraphqlParseFailed,
        ErrorCode::GraphqlValidationFailed,
        ErrorCode::OperationLimitExceeded,
        ErrorCode::Unauthenticated,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::NotSupportedInMode,
        ErrorCode::RateLimited,
        ErrorCode::Overloaded,
        ErrorCode::CsrfError,
        ErrorCode::RequestTimeout,
        ErrorCode::UpstreamTimeout,
        ErrorCode::UpstreamUnavailable,
        ErrorCode::UpstreamError,
        ErrorCode::AuditUnavailable,
        ErrorCode::InternalServerError,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadUserInput => "BAD_USER_INPUT",
            ErrorCode::GraphqlParseFailed => "GRAPHQL_PARSE_FAILED",
            ErrorCode::GraphqlValidationFailed => "GRAPHQL_VALIDATION_FAILED",
            ErrorCode::OperationLimitExceeded => "OPERATION_LIMIT_EXCEEDED",
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::NotSupportedInMode => "NOT_SUPPORTED_IN_MODE",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::Overloaded => "OVERLOADED",
            ErrorCode::CsrfError => "CSRF_ERROR",
            ErrorCode::RequestTimeout => "REQUEST_TIMEOUT",
            ErrorCode::UpstreamTimeout => "UPSTREAM_TIMEOUT",
            ErrorCode::UpstreamUnavailable => "UPSTREAM_UNAVAILABLE",
            ErrorCode::UpstreamError => "UPSTREAM_ERROR",
            ErrorCode::AuditUnavailable => "AUDIT_UNAVAILABLE",
            ErrorCode::InternalServerError => "INTERNAL_SERVER_ERROR",
        }
    }

    /// The status a REST endpoint (or a request refused as a whole) answers with.
    pub(crate) const fn http_status(self) -> StatusCode {
        match self {
            ErrorCode::BadUserInput
            | ErrorCode::GraphqlParseFailed
            | ErrorCode::GraphqlValidationFailed
            | ErrorCode::OperationLimitExceeded
            | ErrorCode::CsrfError => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::NotSupportedInMode => StatusCode::NOT_IMPLEMENTED,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Overloaded | ErrorCode::AuditUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorCode::UpstreamUnavailable | ErrorCode::UpstreamError => StatusCode::BAD_GATEWAY,
            ErrorCode::InternalServerError => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error as the client sees it.
///
/// Deliberately not `Display`: async-graphql converts any `Display` type into an error without
/// extensions, and a `?` that silently dropped the code would be easy to miss.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppError {
    code: ErrorCode,
    message: String,
    retry_after_seconds: Option<u64>,
}

impl AppError {
    /// An error with a message that is safe to show (no secrets, no upstream text).
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after_seconds: None,
        }
    }

    pub(crate) fn bad_user_input(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadUserInput, message)
    }

    /// `RATE_LIMITED` with the wait, rounded up and never 0 so a client cannot spin on it.
    pub(crate) fn rate_limited(retry_after_seconds: u64) -> Self {
        Self {
            code: ErrorCode::RateLimited,
            message: "rate limit exceeded; retry later".to_owned(),
            retry_after_seconds: Some(retry_after_seconds.max(1)),
        }
    }

    pub(crate) fn not_supported_in_mode(what: &str, mode: &str) -> Self {
        Self::new(
            ErrorCode::NotSupportedInMode,
            format!("{what} is not supported in {mode} mode"),
        )
    }

    /// `OVERLOADED`: shed before any work, come back in a second.
    pub(crate) fn overloaded() -> Self {
        Self {
            code: ErrorCode::Overloaded,
            message: "the gateway is at capacity; retry shortly".to_owned(),
            retry_after_seconds: Some(1),
        }
    }

    pub(crate) fn audit_unavailable() -> Self {
        Self::new(
            ErrorCode::AuditUnavailable,
            "the audit trail cannot record this operation; nothing was disclosed",
        )
    }

    pub(crate) fn internal() -> Self {
        Self::new(ErrorCode::InternalServerError, "internal server error")
    }

    /// An internal error, logged once where it happens: `what` says which step failed, in words
    /// fixed at compile time. The cause's own text is not logged: a JSON or crypto error can quote
    /// the data it was handling (an answer with its passcode, a patient's record).
    pub(crate) fn internal_at(what: &'static str) -> Self {
        tracing::error!(failed = what, "internal error");
        Self::internal()
    }

    pub(crate) fn code(&self) -> ErrorCode {
        self.code
    }

    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    #[cfg(test)]
    pub(crate) fn retry_after_seconds(&self) -> Option<u64> {
        self.retry_after_seconds
    }
}

impl From<AppError> for async_graphql::Error {
    fn from(error: AppError) -> Self {
        let mut graphql_error = async_graphql::Error::new(error.message);
        let extensions = graphql_error
            .extensions
            .get_or_insert_with(Default::default);
        extensions.set("code", error.code.as_str());
        if let Some(seconds) = error.retry_after_seconds {
            extensions.set("retryAfterSeconds", seconds);
        }
        graphql_error
    }
}

/// REST endpoints answer `{"error": CODE}` with the matching status (and `Retry-After` when known).
impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({ "error": self.code.as_str() }));
        let mut response = (self.code.http_status(), body).into_response();
        if let Some(seconds) = self.retry_after_seconds {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_screaming_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            let text = code.as_str();
            assert!(seen.insert(text), "{text} listed twice");
            assert!(text.chars().all(|c| c.is_ascii_uppercase() || c == '_'));
        }
    }

    #[test]
    fn rate_limited_never_says_zero_seconds() {
        assert_eq!(AppError::rate_limited(0).retry_after_seconds(), Some(1));
    }

    #[test]
    fn graphql_error_carries_code_and_retry_after() {
        let error: async_graphql::Error = AppError::rate_limited(7).into();
        let extensions = error.extensions.expect("extensions are set");
        assert_eq!(
            extensions.get("code"),
            Some(&async_graphql::Value::from("RATE_LIMITED"))
        );
        assert_eq!(
            extensions.get("retryAfterSeconds"),
            Some(&async_graphql::Value::from(7u64))
        );
    }
}
