//! `GET /.well-known/jwks.json`: the public keys of the app attestation, for Kill the Clipboard
//! receivers (embedded mode, with `--attestation-key-file`; otherwise the route does not exist
//! and the answer is the common JSON 404).
//!
//! The set is serialized once at start and never changes while the process runs. Anyone may
//! read it from any origin (`Access-Control-Allow-Origin: *`, no credentials), and it may be
//! cached for an hour: a rotation keeps the old key published (retired) at least that long.
//! It passes through the same per-address quota and work slots as the SHL endpoints: it is
//! public traffic like them, not a probe the orchestrator needs under overload.

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderValue, Method, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tower_http::cors::{Any, CorsLayer};

pub(crate) const PATH: &str = "/.well-known/jwks.json";

/// How long receivers and caches may keep the set: the wait before a retired key may go.
pub(crate) const CACHE_CONTROL: &str = "public, max-age=3600";

pub(crate) fn router(jwks: String) -> Router {
    let body = Bytes::from(jwks);
    Router::new()
        .route(
            PATH,
            get(move || {
                let body = body.clone();
                async move {
                    (
                        [
                            (
                                header::CONTENT_TYPE,
                                HeaderValue::from_static("application/json"),
                            ),
                            (
                                header::CACHE_CONTROL,
                                HeaderValue::from_static(CACHE_CONTROL),
                            ),
                        ],
                        body,
                    )
                        .into_response()
                }
            }),
        )
        .layer(
            CorsLayer::new()
                .allow_origin(Any)
                .allow_methods([Method::GET]),
        )
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    use super::*;

    #[tokio::test]
    async fn the_set_is_served_as_given_public_and_cacheable() {
        let response = router(r#"{"keys":[]}"#.to_owned())
            .oneshot(
                Request::get(PATH)
                    .header(header::ORIGIN, "https://ehr.example")
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("answer");
        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers();
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        assert_eq!(headers[header::CACHE_CONTROL], "public, max-age=3600");
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        assert_eq!(&body[..], br#"{"keys":[]}"#);
    }
}
