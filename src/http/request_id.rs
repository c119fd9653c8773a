//! Request ids: one per request, on every log line (through the trace span) and every response.
//!
//! tower-http's `SetRequestId` keeps an id the client sent. A client-chosen id is useful for
//! correlating across services, but it is attacker-controlled text that ends up in logs and in
//! the upstream call, so one that is not short and plain is dropped here and replaced.

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderName, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use tower_http::request_id::{MakeRequestId, RequestId as TowerRequestId};

pub(crate) const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

const MAX_CLIENT_ID_LEN: usize = 64;

/// Generates a UUID v4 for requests without a usable id.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct MakeUuid;

impl MakeRequestId for MakeUuid {
    fn make_request_id<B>(&mut self, _request: &axum::http::Request<B>) -> Option<TowerRequestId> {
        let id = uuid::Uuid::new_v4().to_string();
        axum::http::HeaderValue::from_str(&id)
            .ok()
            .map(TowerRequestId::new)
    }
}

/// Drops a client-sent id that is too long or has characters other than `[A-Za-z0-9._-]`.
pub(crate) async fn drop_unusable_client_id(mut request: Request, next: Next) -> Response {
    let usable = request
        .headers()
        .get(&REQUEST_ID_HEADER)
        .is_none_or(|value| {
            let bytes = value.as_bytes();
            !bytes.is_empty()
                && bytes.len() <= MAX_CLIENT_ID_LEN
                && bytes
                    .iter()
                    .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'))
        });
    if !usable {
        request.headers_mut().remove(&REQUEST_ID_HEADER);
    }
    next.run(request).await
}

/// The request's id, for handlers.
#[derive(Debug, Clone)]
pub(crate) struct RequestId(pub(crate) String);

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = StatusCode;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<TowerRequestId>()
            .and_then(|id| id.header_value().to_str().ok())
            .map(|id| RequestId(id.to_owned()))
            .ok_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}
