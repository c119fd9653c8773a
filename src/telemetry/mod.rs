//! Logging: one `tracing` subscriber, human-readable or JSON lines.
//!
//! Every line written while a request is served carries the request's span fields (request id,
//! method, route template) because the HTTP layer opens a span per request; JSON lines put them
//! under `span`. Log lines carry fields, not secrets: see the README's "never logged" list.

use std::io::IsTerminal as _;

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, fmt};

#[cfg(feature = "otel")]
mod otel;
mod report;

pub use report::report;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines, for a terminal.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Installs the global subscriber, writing to stderr, and exporting spans to `otlp_endpoint`
/// when the `otel` feature is built. Fails if a subscriber is already installed, the filter does
/// not parse, or an endpoint is given to a build without the feature.
pub fn init(format: LogFormat, filter: &str, otlp_endpoint: Option<&str>) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(filter)
        .map_err(|error| anyhow::anyhow!("--log-filter (SHL_GATEWAY_LOG_FILTER): {error}"))?;
    #[cfg(feature = "otel")]
    let otel = otlp_endpoint.map(otel::layer).transpose()?;
    #[cfg(not(feature = "otel"))]
    let otel: Option<tracing_subscriber::layer::Identity> = match otlp_endpoint {
        Some(_) => anyhow::bail!(
            "--otlp-endpoint (SHL_GATEWAY_OTLP_ENDPOINT) needs a build with the `otel` feature"
        ),
        None => None,
    };
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    match format {
        // Colour for a person at a terminal only: written to a file or a pipe (a container's
        // log driver, `2>gateway.log`), escape codes are noise in every line.
        LogFormat::Text => registry
            .with(
                fmt::layer()
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_writer(std::io::stderr),
            )
            .try_init()?,
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .with_ansi(false)
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(std::io::stderr),
            )
            .try_init()?,
    }
    Ok(())
}
