//! The access log: one line per answer ("finished processing request", INFO) and, for a 5xx,
//! tower-http's failure line (ERROR); except for probes and scrapes.
//!
//! An orchestrator asks `/healthz` and `/readyz`, and Prometheus `/metrics`, every few seconds:
//! at INFO their answers buried everything else, so they are logged at DEBUG. And a `503` from
//! `/readyz` is the expected answer while shutting down (or while a dependency is down, which
//! readiness logs itself, once per change), not a failure at ERROR. The probe routes mark their
//! answers with [`ProbeAnswer`]; the classifier and [`LogAnswer`] read the mark.

use std::time::Duration;

use axum::response::Response;
use tower_http::classify::{
    ClassifiedResponse, ClassifyResponse, NeverClassifyEos, ServerErrorsAsFailures,
    ServerErrorsFailureClass,
};
use tower_http::trace::{DefaultOnResponse, OnResponse};
use tracing::Level;

/// Set on the answers of probe and scrape routes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProbeAnswer;

/// Marks an answer as a probe's (`axum::middleware::map_response` on the probe routes).
pub(crate) async fn mark_probe(mut response: Response) -> Response {
    response.extensions_mut().insert(ProbeAnswer);
    response
}

fn is_probe<B>(response: &axum::http::Response<B>) -> bool {
    response.extensions().get::<ProbeAnswer>().is_some()
}

/// tower-http's classifier (a 5xx is a failure) except that a probe's answer never is.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ProbesNeverFail;

impl ClassifyResponse for ProbesNeverFail {
    type FailureClass = ServerErrorsFailureClass;
    type ClassifyEos = NeverClassifyEos<ServerErrorsFailureClass>;

    fn classify_response<B>(
        self,
        response: &axum::http::Response<B>,
    ) -> ClassifiedResponse<Self::FailureClass, Self::ClassifyEos> {
        if is_probe(response) {
            ClassifiedResponse::Ready(Ok(()))
        } else {
            ServerErrorsAsFailures::new().classify_response(response)
        }
    }

    fn classify_error<E>(self, error: &E) -> Self::FailureClass
    where
        E: std::fmt::Display + 'static,
    {
        ServerErrorsAsFailures::new().classify_error(error)
    }
}

/// tower-http's answer line, at DEBUG for a probe and INFO otherwise.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LogAnswer;

impl<B> OnResponse<B> for LogAnswer {
    fn on_response(
        self,
        response: &axum::http::Response<B>,
        latency: Duration,
        span: &tracing::Span,
    ) {
        let level = if is_probe(response) {
            Level::DEBUG
        } else {
            Level::INFO
        };
        DefaultOnResponse::new()
            .level(level)
            .on_response(response, latency, span);
    }
}
