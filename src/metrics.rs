//! Prometheus metrics: one process-wide recorder, and the names of everything the gateway counts.
//!
//! Labels come from fixed sets only (route templates, schema field names, error codes, outcome
//! words), never from client input such as operation names, so a client cannot blow up the
//! number of series, and nothing secret can reach a label.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub(crate) const HTTP_REQUESTS: &str = "shl_gateway_http_requests_total";
pub(crate) const HTTP_DURATION: &str = "shl_gateway_http_request_duration_seconds";
pub(crate) const GRAPHQL_FIELDS: &str = "shl_gateway_graphql_root_fields_total";
pub(crate) const GRAPHQL_REQUESTS: &str = "shl_gateway_graphql_requests_total";
pub(crate) const DOCUMENT_CACHE: &str = "shl_gateway_graphql_document_cache_total";
pub(crate) const UPSTREAM_REQUESTS: &str = "shl_gateway_upstream_requests_total";
pub(crate) const UPSTREAM_DURATION: &str = "shl_gateway_upstream_request_duration_seconds";
pub(crate) const UPSTREAM_BREAKER_STATE: &str = "shl_gateway_upstream_breaker_state";
pub(crate) const QR_RENDER_DURATION: &str = "shl_gateway_qr_render_duration_seconds";
pub(crate) const PDF_RENDER_DURATION: &str = "shl_gateway_pdf_render_duration_seconds";
pub(crate) const LINKS_CREATED: &str = "shl_gateway_links_created_total";
pub(crate) const SHL_ACCESSES: &str = "shl_gateway_shl_accesses_total";
pub(crate) const SHED_REQUESTS: &str = "shl_gateway_shed_requests_total";
pub(crate) const OPEN_CONNECTIONS: &str = "shl_gateway_open_connections";
pub(crate) const REFUSED_CONNECTIONS: &str = "shl_gateway_refused_connections_total";
pub(crate) const SLOW_REQUEST_BODIES: &str = "shl_gateway_slow_request_bodies_total";
/// Gauge: keys held in memory, by `quota`.
pub(crate) const RATELIMIT_KEYS: &str = "shl_gateway_ratelimit_keys";
/// Counter: answers by `quota` and `decision` (`allowed`, `refused`), whichever store gave them.
pub(crate) const RATELIMIT_DECISIONS: &str = "shl_gateway_ratelimit_decisions_total";
/// Counter: Redis calls that gave no answer, by `quota` and `cause` (`timeout`, `connection`,
/// `reply`).
pub(crate) const RATELIMIT_STORE_ERRORS: &str = "shl_gateway_ratelimit_store_errors_total";
/// Counter: times a quota reached its key cap in memory and forgot half its keys, by `quota`.
pub(crate) const RATELIMIT_EVICTIONS: &str = "shl_gateway_ratelimit_evictions_total";
/// Gauge per dependency (`component`: `audit`, `store`, `quotas`): 1 ready, 0 not.
pub(crate) const READY: &str = "shl_gateway_ready";

/// Latency buckets in seconds, from sub-millisecond (QR SVG, rate-limit checks) to the
/// upstream timeout range.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the recorder once per process and returns the handle that renders `/metrics`.
/// Several applications in one process (the tests) share it.
pub(crate) fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets(&BUCKETS)
                .expect("constant, non-empty buckets");
            match builder.install_recorder() {
                Ok(handle) => {
                    describe();
                    handle
                }
                // Another recorder is installed (an embedding program's): render ours anyway,
                // it will simply stay empty.
                Err(_) => PrometheusBuilder::new().build_recorder().handle(),
            }
        })
        .clone()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests by route template, method and status."
    );
    describe_histogram!(
        HTTP_DURATION,
        metrics::Unit::Seconds,
        "HTTP request latency by route template and method."
    );
    describe_counter!(
        GRAPHQL_REQUESTS,
        "GraphQL requests by operation type and outcome (ok or the first error code)."
    );
    describe_counter!(
        GRAPHQL_FIELDS,
        "Executions of root fields (aliases counted) by field and outcome."
    );
    describe_counter!(
        DOCUMENT_CACHE,
        "Parsed GraphQL documents looked up in the cache, by result (hit or miss)."
    );
    describe_counter!(UPSTREAM_REQUESTS, "Calls to the upstream by outcome.");
    describe_histogram!(
        UPSTREAM_DURATION,
        metrics::Unit::Seconds,
        "Upstream call latency by outcome."
    );
    describe_histogram!(
        QR_RENDER_DURATION,
        metrics::Unit::Seconds,
        "QR encoding and SVG rendering time."
    );
    describe_histogram!(
        PDF_RENDER_DURATION,
        metrics::Unit::Seconds,
        "PDF rendering time of a DIRECT link's summary or story, by document."
    );
    describe_counter!(
        LINKS_CREATED,
        "Health links created, by issuer mode and link mode."
    );
    describe_gauge!(
        READY,
        "Whether a dependency answered its last readiness probe (1) or not (0), by component."
    );
    describe_counter!(
        SHL_ACCESSES,
        "Embedded SHL data-plane requests by action and outcome."
    );
    describe_gauge!(
        UPSTREAM_BREAKER_STATE,
        "The upstream circuit breaker: 0 closed, 1 half open (one probe through), 2 open."
    );
    describe_counter!(
        SHED_REQUESTS,
        "Requests refused at once with 503 OVERLOADED because every work slot was taken."
    );
    describe_gauge!(OPEN_CONNECTIONS, "Client connections open now.");
    describe_gauge!(RATELIMIT_KEYS, "Keys an in-process quota holds, by quota.");
    describe_counter!(
        RATELIMIT_DECISIONS,
        "Quota checks by quota and decision (allowed or refused)."
    );
    describe_counter!(
        RATELIMIT_STORE_ERRORS,
        "Quota checks the store could not answer, by quota and cause."
    );
    describe_counter!(
        RATELIMIT_EVICTIONS,
        "Keys an in-process quota forgot at its cap, by quota."
    );
    describe_counter!(
        REFUSED_CONNECTIONS,
        "Connections closed on arrival, by the limit they met (total or per_ip)."
    );
    describe_counter!(
        SLOW_REQUEST_BODIES,
        "Requests whose body did not arrive within --request-body-timeout (answered 408)."
    );
}
