//! The optional OpenTelemetry exporter (`--features otel`, `--otlp-endpoint`): the gateway's
//! spans (HTTP request, GraphQL execution, upstream call, store queries) to an OTLP/HTTP
//! collector. Span fields carry what logs carry, so the same "never logged" rules hold.
//!
//! The exporter sends with the gateway's own reqwest version through [`ReqwestClient`], rather
//! than opentelemetry-otlp's built-in client, which would compile a second reqwest and TLS stack.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use tracing_subscriber::Layer;

/// OTLP payloads are small; an answer larger than this is not a collector's.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// The SDK's batch processor calls this from its own thread, outside the Tokio runtime that
/// reqwest needs, so each export is handed to the runtime the gateway runs on.
#[derive(Debug)]
struct ReqwestClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for ReqwestClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let request = reqwest::Request::try_from(request)?;
        let client = self.client.clone();
        let exchange = async move {
            let response = client.execute(request).await?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, headers, body))
        };
        let (status, headers, body) = self.runtime.spawn(exchange).await??;
        if body.len() > MAX_RESPONSE_BYTES {
            return Err("collector answer too large".into());
        }
        let mut answer = Response::builder().status(status);
        for (name, value) in &headers {
            answer = answer.header(name, value);
        }
        Ok(answer.body(body)?)
    }
}

/// A tracing layer exporting spans in batches to `endpoint` (e.g. `http://collector:4318/v1/traces`).
pub(crate) fn layer<S>(endpoint: &str) -> anyhow::Result<impl Layer<S>>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(ReqwestClient {
            client,
            runtime: tokio::runtime::Handle::try_current()
                .map_err(|_| anyhow::anyhow!("the OTLP exporter must start inside the runtime"))?,
        })
        .with_endpoint(endpoint)
        .build()?;
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name("shl-gateway")
                .build(),
        )
        .build();
    let tracer = provider.tracer("shl-gateway");
    opentelemetry::global::set_tracer_provider(provider);
    Ok(tracing_opentelemetry::layer().with_tracer(tracer))
}
