//! The HTTP surface: routes, and the middleware every request passes through.
//!
//! Outer to inner: panic guard, request id (sanitized, then set), client address, trace span
//! (request id, method, route template, never the raw path) and the access log (`access_log`:
//! probes at DEBUG), id echoed on the response, request metrics, `Connection: close` while
//! draining, security headers, and error answers made JSON.
//! Then, on the work routes only: the per-address quota, the whole body read within its deadline
//! and memory budget, and a work slot (`work_slots`) or `503` at once; `/graphql` adds its body
//! limit and CORS allowlist. `server` owns the connections underneath all of it.

mod access_log;
mod client_ip;
mod graphiql;
mod graphql;
mod health;
mod json_errors;
mod jwks;
mod metrics;
mod request_body;
mod request_id;
pub(crate) mod server;
mod shl;
mod viewer;
mod work_slots;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::classify::SharedClassifier;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

pub(crate) use client_ip::ClientIp;
pub use client_ip::client_ip;
pub(crate) use health::Readiness;
pub(crate) use metrics::router as metrics_router;
pub(crate) use work_slots::{WorkSlot, WorkSlots, to_completion};

/// Embedded mode's SHL data plane (manifest, file and direct endpoints) and viewer, built from
/// the accesses to its links, and with app attestation on, the JWK Set of its keys (`jwks`,
/// serialized); merged into [`router`].
pub(crate) fn embedded_routes(
    accesses: crate::links::LinkAccesses,
    rate_policy: RatePolicy,
    jwks: Option<String>,
) -> Router {
    let routes = shl::router(accesses, rate_policy).merge(viewer::router());
    match jwks {
        Some(jwks) => routes.merge(jwks::router(jwks)),
        None => routes,
    }
}

use crate::error::AppError;
use crate::graphql::Executor;
use crate::issuer::Issuer;
use crate::ratelimit::RatePolicy;
use request_id::{MakeUuid, REQUEST_ID_HEADER};

/// What handlers share. Cheap to clone: everything inside is reference-counted.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) graphql: Executor,
    pub(crate) issuer: Arc<dyn Issuer>,
    pub(crate) readiness: Readiness,
    pub(crate) max_body_bytes: usize,
    pub(crate) rate_policy: RatePolicy,
    /// Set when quotas live in Redis: readiness checks it.
    pub(crate) shared_quotas: Option<Arc<crate::ratelimit::SharedQuotas>>,
    /// Readiness requires a writable audit trail: without it, nothing may be disclosed.
    pub(crate) audit: crate::audit::AuditTrail,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("issuer", &self.issuer)
            .field("readiness", &self.readiness)
            .finish_non_exhaustive()
    }
}

/// Settings of the HTTP layer itself.
#[derive(Debug, Clone)]
pub(crate) struct HttpSettings {
    pub(crate) max_body_bytes: usize,
    /// Origins allowed to call `/graphql` from a browser. Empty: same-origin only.
    pub(crate) cors_allowed_origins: Vec<HeaderValue>,
    /// `None` disables the playground.
    pub(crate) graphiql_assets_dir: Option<PathBuf>,
    /// Demo mode's `Bearer` token, for the playground to fill in its Headers tab; set only where
    /// `demo::playground_may_show_token` allows (a loopback listener, no configured tokens).
    pub(crate) graphiql_demo_token: Option<secrecy::SecretString>,
    /// Serve `/metrics` on this router (off when a separate metrics listener is configured).
    pub(crate) metrics_route: bool,
    /// Work served at once (requests in handlers and the work they detached); more requests are
    /// shed with 503 `OVERLOADED` instead of queueing.
    pub(crate) work_slots: WorkSlots,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub(crate) trusted_proxies: Vec<ipnet::IpNet>,
    /// The whole request body must arrive within this.
    pub(crate) request_body_timeout: Duration,
}

/// The largest body the SHL endpoints take (a manifest request is a few fields).
pub(crate) const MAX_SHL_BODY_BYTES: usize = 4 * 1024;

impl HttpSettings {
    fn work_slots_count(&self) -> usize {
        self.work_slots.total()
    }
}

/// The whole application. `data_plane` (embedded mode's SHL endpoints and viewer) is merged
/// before the middleware, so it gets the same request ids, spans and panic guard.
pub(crate) fn router(
    state: AppState,
    settings: &HttpSettings,
    data_plane: Option<Router>,
) -> Router {
    // Handlers get the state by clone, once per request: one reference count, not one per field.
    let state = Arc::new(state);
    // Every `Router::layer` call boxes each route once more, and axum clones a route's whole
    // boxed stack for each request it serves: layers go in one `ServiceBuilder` per call, so
    // that clone stays shallow (it was about 7 % of the CPU of a request under load).
    let graphql_routes = Router::new()
        .route("/graphql", get(graphql::get).post(graphql::post))
        .layer(
            ServiceBuilder::new()
                .layer(graphql_cors(&settings.cors_allowed_origins))
                .layer(DefaultBodyLimit::max(settings.max_body_bytes)),
        );

    let health_routes = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .layer(axum::middleware::map_response(access_log::mark_probe))
        .with_state(state.clone());
    let rate_policy = state.rate_policy.clone();
    let readiness = state.readiness.clone();
    let mut router = Router::new().merge(graphql_routes).with_state(state);
    if let Some(assets_dir) = &settings.graphiql_assets_dir {
        router = router
            .route("/", get(|| async { Redirect::temporary("/graphiql") }))
            .merge(graphiql::router(
                assets_dir.clone(),
                settings.graphiql_demo_token.clone(),
            ));
    }
    if let Some(data_plane) = data_plane {
        router = router.merge(data_plane);
    }
    // On the work routes only (probes and scrapes must answer under overload, or an
    // orchestrator would restart a pod for being busy), outer to inner: the coarse per-address
    // quota, charged before anything is read; the whole body, read within its deadline and a
    // memory budget, before a work slot is taken (a client dripping bytes holds none); then a
    // work slot, or `503 OVERLOADED` at once.
    router = router.layer(
        ServiceBuilder::new()
            .layer(axum::middleware::from_fn_with_state(
                rate_policy,
                limit_requests,
            ))
            .layer(axum::middleware::from_fn_with_state(
                request_body::BodyRead::new(
                    settings.request_body_timeout,
                    settings.max_body_bytes.max(MAX_SHL_BODY_BYTES),
                    settings.work_slots_count(),
                ),
                request_body::read_whole_body,
            ))
            .layer(axum::middleware::from_fn_with_state(
                settings.work_slots.clone(),
                work_slots::admit,
            )),
    );
    router = router.merge(health_routes);
    if settings.metrics_route {
        router = router
            .merge(metrics::router().layer(axum::middleware::map_response(access_log::mark_probe)));
    }

    router.fallback(not_found).layer(
        ServiceBuilder::new()
            .layer(CatchPanicLayer::custom(|_| {
                AppError::internal().into_response()
            }))
            .layer(axum::middleware::from_fn(
                request_id::drop_unusable_client_id,
            ))
            .layer(SetRequestIdLayer::new(REQUEST_ID_HEADER, MakeUuid))
            .layer(axum::middleware::from_fn_with_state(
                client_ip::TrustedProxies(Arc::new(settings.trusted_proxies.clone())),
                client_ip::resolve,
            ))
            .layer(
                TraceLayer::new(SharedClassifier::new(access_log::ProbesNeverFail))
                    .make_span_with(request_span)
                    .on_response(access_log::LogAnswer),
            )
            .layer(PropagateRequestIdLayer::new(REQUEST_ID_HEADER))
            .layer(axum::middleware::from_fn(metrics::record_request))
            .layer(axum::middleware::from_fn_with_state(
                readiness,
                health::close_connections_when_draining,
            ))
            .layer(SetResponseHeaderLayer::if_not_present(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ))
            // Innermost: the framework's own answers (rejections, 405) get the JSON error
            // shape before anything else sees the response.
            .layer(axum::middleware::from_fn(json_errors::json_errors)),
    )
}

/// The span every log line of a request is written in. It names the route template, never the
/// path itself: a manifest path holds a capability.
fn request_span(request: &Request) -> tracing::Span {
    let request_id = request
        .headers()
        .get(&REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    tracing::info_span!(
        "http_request",
        request_id = %request_id,
        method = %request.method(),
        route = %route,
    )
}

fn graphql_cors(origins: &[HeaderValue]) -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins.iter().cloned()))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            HeaderName::from_static("apollo-require-preflight"),
            HeaderName::from_static("x-apollo-operation-name"),
            HeaderName::from_static("traceparent"),
            HeaderName::from_static("tracestate"),
            REQUEST_ID_HEADER,
        ])
        .expose_headers([REQUEST_ID_HEADER])
        .max_age(Duration::from_secs(600))
}

/// The coarse per-address limit on every work request: 429 with `Retry-After` when spent.
async fn limit_requests(
    axum::extract::State(policy): axum::extract::State<RatePolicy>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let ClientIp(ip) = ClientIp::of(request.extensions());
    match policy.charge_request(ip).await {
        Ok(()) => next.run(request).await,
        Err(error) => error.into_response(),
    }
}

async fn not_found() -> Response {
    AppError::new(crate::error::ErrorCode::NotFound, "not found").into_response()
}
