//! Liveness and readiness, as a load balancer or Kubernetes reads them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use crate::readiness::Component;

/// Shutdown, flipped once when it begins, before the listener stops accepting, so that readiness
/// fails while in-flight requests still drain and the load balancer stops sending new ones; and
/// the last known state of each dependency, whose changes are logged and exported once each.
#[derive(Debug, Clone, Default)]
pub(crate) struct Readiness(Arc<ReadinessState>);

#[derive(Debug)]
struct ReadinessState {
    shutting_down: AtomicBool,
    audit: Component,
    store: Component,
    quotas: Component,
    /// Redis is asked at most once at a time, and its answer reused, like the other probes:
    /// `/readyz` is exempt from quotas, and a flood of it must not become a flood of PINGs.
    quotas_probe: crate::readiness::BoundedProbe,
}

impl Default for ReadinessState {
    fn default() -> Self {
        Self {
            shutting_down: AtomicBool::new(false),
            audit: Component::new("audit"),
            store: Component::new("store"),
            quotas: Component::new("quotas"),
            quotas_probe: crate::readiness::BoundedProbe::default(),
        }
    }
}

impl Readiness {
    pub(crate) fn mark_shutting_down(&self) {
        self.0.shutting_down.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.0.shutting_down.load(Ordering::SeqCst)
    }
}

/// Once shutdown has begun, every answer says `Connection: close`: clients then open new
/// connections for their next request, which the load balancer (told by `/readyz`) sends to
/// another replica, instead of reusing a kept-alive connection that the drain is about to close
/// under a request in flight.
pub(crate) async fn close_connections_when_draining(
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
pub(crate) async fn healthz() -> Response {
    (StatusCode::OK, Json(json!({ "status": "ok" }))).into_response()
}

/// Ready for traffic: not shutting down, and the issuer's own dependencies answer. Never b.well.
///
/// The dependencies are probed at once, each bounded ([`crate::readiness::PROBE_TIMEOUT`]), so a
/// hung one makes this a 503 in about a second, never a hang. Each probe tests what requests
/// need: the audit sink that it can write (see `AuditSink::is_ready`), the store that its tables
/// answer, Redis that it answers a command.
pub(crate) async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.readiness.is_shutting_down() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "shutting_down" })),
        )
            .into_response();
    }
    let components = &state.readiness.0;
    let embedded = state.issuer.mode() == crate::issuer::IssuerMode::Embedded;
    let (audit, store, quotas) = tokio::join!(
        bounded(state.audit.is_ready()),
        // Upstream mode has no store (and never probes b.well).
        async {
            if embedded {
                Some(bounded(state.issuer.is_ready()).await)
            } else {
                None
            }
        },
        async {
            match &state.shared_quotas {
                Some(shared) => {
                    let shared = Arc::clone(shared);
                    let ping = async move { shared.ping().await };
                    Some(components.quotas_probe.check(ping).await)
                }
                None => None,
            }
        },
    );
    components.audit.observe(audit);
    let mut ready = audit;
    for (component, result) in [(&components.store, store), (&components.quotas, quotas)] {
        if let Some(result) = result {
            component.observe(result);
            ready &= result;
        }
    }
    if !ready {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "dependencies_unavailable" })),
        )
            .into_response();
    }
    (StatusCode::OK, Json(json!({ "status": "ready" }))).into_response()
}

/// A probe that ignores its own bound still answers within a little more than the probes' one.
async fn bounded(probe: impl std::future::Future<Output = bool>) -> bool {
    let limit = crate::readiness::PROBE_TIMEOUT + std::time::Duration::from_millis(250);
    tokio::time::timeout(limit, probe).await.unwrap_or(false)
}
