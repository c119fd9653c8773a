//! Every error answer is JSON `{"error": CODE}`, including the ones no handler wrote.
//!
//! Handlers answer with [`AppError`], but some answers come from the framework before any handler
//! runs: an extractor's rejection (a path that is not UTF-8 after percent-decoding, a malformed
//! query), a method the route does not serve (`405`, with `Allow`), a body over a limit. axum
//! writes those as `text/plain` with its own wording. Clients (and the viewer) parse one error
//! shape, and axum's text can quote the request back, so such answers are rewritten here: same
//! status, same headers (`Allow`, `Retry-After`), the code that matches the status.

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{AppError, ErrorCode};

/// Rewrites an error answer that is not JSON into `{"error": CODE}`; everything else passes
/// untouched (one status comparison on the way out).
pub(crate) async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(&response) {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    let replacement = AppError::new(code_for(status), status.as_str().to_owned()).into_response();
    let (replacement_parts, body) = replacement.into_parts();
    // The framework's headers stay (`Allow` on a 405 matters); the body's own are replaced.
    parts.headers.remove(header::CONTENT_LENGTH);
    if let Some(content_type) = replacement_parts.headers.get(header::CONTENT_TYPE) {
        parts
            .headers
            .insert(header::CONTENT_TYPE, content_type.clone());
    }
    Response::from_parts(parts, body)
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            let essence = value.split(';').next().unwrap_or_default().trim();
            essence.eq_ignore_ascii_case("application/json") || essence.ends_with("+json")
        })
}

/// The README's code for a status no handler chose: a malformed request of any kind (`400`,
/// `405`, `415`, ...) is `BAD_USER_INPUT`, as the GraphQL endpoint's own answers are.
fn code_for(status: StatusCode) -> ErrorCode {
    match status {
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::UNAUTHORIZED => ErrorCode::Unauthenticated,
        StatusCode::FORBIDDEN => ErrorCode::Forbidden,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::OperationLimitExceeded,
        StatusCode::REQUEST_TIMEOUT => ErrorCode::RequestTimeout,
        StatusCode::TOO_MANY_REQUESTS => ErrorCode::RateLimited,
        StatusCode::SERVICE_UNAVAILABLE => ErrorCode::Overloaded,
        StatusCode::GATEWAY_TIMEOUT => ErrorCode::UpstreamTimeout,
        StatusCode::BAD_GATEWAY => ErrorCode::UpstreamError,
        status if status.is_client_error() => ErrorCode::BadUserInput,
        _ => ErrorCode::InternalServerError,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_the_readme_codes() {
        assert_eq!(code_for(StatusCode::BAD_REQUEST), ErrorCode::BadUserInput);
        assert_eq!(
            code_for(StatusCode::METHOD_NOT_ALLOWED),
            ErrorCode::BadUserInput
        );
        assert_eq!(
            code_for(StatusCode::UNSUPPORTED_MEDIA_TYPE),
            ErrorCode::BadUserInput
        );
        assert_eq!(code_for(StatusCode::NOT_FOUND), ErrorCode::NotFound);
        assert_eq!(
            code_for(StatusCode::PAYLOAD_TOO_LARGE),
            ErrorCode::OperationLimitExceeded
        );
        assert_eq!(
            code_for(StatusCode::INTERNAL_SERVER_ERROR),
            ErrorCode::InternalServerError
        );
        // Each mapped code answers with the status it was chosen for, so the rewrite keeps both
        // in agreement.
        for status in [
            StatusCode::BAD_REQUEST,
            StatusCode::UNAUTHORIZED,
            StatusCode::FORBIDDEN,
            StatusCode::NOT_FOUND,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::GATEWAY_TIMEOUT,
            StatusCode::BAD_GATEWAY,
            StatusCode::INTERNAL_SERVER_ERROR,
        ] {
            assert_eq!(code_for(status).http_status(), status);
        }
    }

    #[tokio::test]
    async fn a_plain_text_rejection_becomes_json_and_keeps_its_headers() {
        use axum::Router;
        use axum::routing::get;
        use tower::ServiceExt as _;

        let app = Router::new()
            .route("/only-get", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn(json_errors));
        let response = app
            .oneshot(
                Request::post("/only-get")
                    .body(axum::body::Body::empty())
                    .expect("request"),
            )
            .await
            .expect("answer");
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert!(is_json(&response));
        assert!(
            response
                .headers()
                .get(header::ALLOW)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|allow| allow.contains("GET")),
            "{:?}",
            response.headers()
        );
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .expect("body");
        assert_eq!(&body[..], br#"{"error":"BAD_USER_INPUT"}"#);
    }
}
