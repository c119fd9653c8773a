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

/// The process serves HTTP. Depends on nothing else, by design: restarting a pod because b.well
/// or the database is down would only add to the outage.
pub async fn healthz() -> Response {
    (StatusCode::OK, Json(json!({ "status": "ok" }))).into_response()
}

/// Ready for traffic: not shutting down, and the issuer's own dependencies answer. Never b.well.
pub async fn readyz(State(state): State<AppState>) -> Response {
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
