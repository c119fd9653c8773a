//! Liveness and readiness, as a load balancer or Kubernetes reads them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;

/// Flipped once when shutdown begins, before the listener stops accepting, so that readiness
/// fails while in-flight requests still drain and the load balancer stops sending new ones.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn mark_shutting_down(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Once shutdown has begun, every answer says `Connection: close`: clients then open new
/// connections for their next request, which the load balancer (told by `/readyz`) sends to
/// another replica, instead of reusing a kept-alive connection that the drain is about to close
/// under a request in flight.
pub async fn close_connections_when_draining(
    State(readiness): State<Readiness>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let mut response = next.run(request).await;
    if readiness.is_shutting_down() {
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    response
}

/// The process serves HTTP. Depends on nothing else, by design: restarting a pod because b.well
/// or the database is down would only add to the outage.
pub async fn healthz() -> Response {
    (StatusCode::OK, Json(json!({ "status": "ok" }))).into_response()
}

/// Ready for traffic: not shutting down, and the issuer's own dependencies answer. Never b.well.
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.readiness.is_shutting_down() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "shutting_down" })),
        )
            .into_response();
    }
    let quotas_ready = match &state.shared_quotas {
        Some(shared) => shared.ping().await,
        None => true,
    };
    if !quotas_ready || !state.audit.is_ready().await || !state.issuer.is_ready().await {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "dependencies_unavailable" })),
        )
            .into_response();
    }
    (StatusCode::OK, Json(json!({ "status": "ready" }))).into_response()
}
