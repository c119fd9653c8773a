//! The HTTP side of the upstream call: one pooled reqwest client, bounded in every dimension.

use std::time::{Duration, Instant, SystemTime};

use http::{HeaderMap, HeaderValue, StatusCode, header};
use tracing::{Instrument, info_span, warn};
use url::Url;

use super::{Error, operation};
use crate::issuer::{Caller, CreateLinkRequest, DocumentReference};

/// When a 429 (or an upstream `RATE_LIMITED` code) says nothing about when to come back.
const DEFAULT_RETRY_AFTER_SECONDS: u64 = 5;
/// An upstream asking for more than this is capped: clients should come back within the hour.
const MAX_RETRY_AFTER_SECONDS: u64 = 3_600;

/// How the gateway talks to b.well.
#[derive(Debug, Clone)]
pub(crate) struct UpstreamSettings {
    pub(crate) url: Url,
    pub(crate) connect_timeout: Duration,
    /// From sending the request to the last byte of the answer.
    pub(crate) total_timeout: Duration,
    pub(crate) max_response_bytes: usize,
}

#[derive(Debug, Clone)]
pub(crate) struct UpstreamClient {
    http: reqwest::Client,
    settings: UpstreamSettings,
}

impl UpstreamClient {
    pub(crate) fn new(settings: UpstreamSettings) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.total_timeout)
            // A redirect would replay the caller's bearer token to another address.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("shl-gateway/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { http, settings })
    }

    /// Sends the fixed `CreateHealthLink` operation with the caller's credentials.
    pub(crate) async fn create_health_link(
        &self,
        caller: &Caller,
        request: &CreateLinkRequest,
    ) -> Result<DocumentReference, Error> {
        let span = info_span!(
            "upstream.create_health_link",
            upstream.status = tracing::field::Empty
        );
        let started = Instant::now();
        let outcome = async {
            // reqwest's own timeout covers the body too; this outer bound also covers anything
            // reqwest does before it starts its clock, so the promise holds whatever happens.
            match tokio::time::timeout(self.settings.total_timeout, self.exchange(caller, request))
                .await
            {
                Ok(result) => result,
                Err(_) => Err(Error::Timeout),
            }
        }
        .instrument(span)
        .await;
        let elapsed = started.elapsed();
        let latency_ms = elapsed.as_millis() as u64;
        let label = outcome.as_ref().map_or_else(Error::kind, |_| "ok");
        metrics::counter!(crate::metrics::UPSTREAM_REQUESTS, "outcome" => label).increment(1);
        metrics::histogram!(crate::metrics::UPSTREAM_DURATION, "outcome" => label)
            .record(elapsed.as_secs_f64());
        match &outcome {
            Ok(_) => tracing::info!(upstream.latency_ms = latency_ms, "upstream call succeeded"),
            Err(error) => warn!(
                upstream.latency_ms = latency_ms,
                upstream.error = error.kind(),
                "upstream call failed"
            ),
        }
        outcome
    }

    async fn exchange(
        &self,
        caller: &Caller,
        request: &CreateLinkRequest,
    ) -> Result<DocumentReference, Error> {
        let response = self
            .http
            .post(self.settings.url.clone())
            .headers(forwarded_headers(caller))
            .header(
                header::ACCEPT,
                "application/graphql-response+json, application/json",
            )
            .json(&operation::request_body(request))
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status();
        tracing::Span::current().record("upstream.status", status.as_u16());
        if let Some(error) = error_from_status(status, response.headers()) {
            return Err(error);
        }
        let body = read_capped(response, self.settings.max_response_bytes).await?;
        operation::parse_answer(&body, DEFAULT_RETRY_AFTER_SECONDS)
    }
}

/// The only caller headers that travel upstream.
fn forwarded_headers(caller: &Caller) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(token) = &caller.bearer
        && let Ok(mut value) = HeaderValue::from_str(&token.credential())
    {
        // Keeps the token out of HTTP/2 header compression tables and hyper's debug output.
        value.set_sensitive(true);
        headers.insert(header::AUTHORIZATION, value);
    }
    let relayed = [
        ("traceparent", caller.trace.traceparent.as_deref()),
        ("tracestate", caller.trace.tracestate.as_deref()),
        ("x-request-id", Some(caller.request_id.as_str())),
    ];
    for (name, value) in relayed {
        if let Some(value) = value.and_then(|value| HeaderValue::from_str(value).ok()) {
            headers.insert(name, value);
        }
    }
    headers
}

fn transport_error(error: reqwest::Error) -> Error {
    if error.is_timeout() {
        Error::Timeout
    } else {
        Error::Unavailable
    }
}

/// Statuses that decide the outcome before the body is read. A GraphQL server may answer a
/// request error with 4xx and a GraphQL body; those bodies are read for their code.
fn error_from_status(status: StatusCode, headers: &HeaderMap) -> Option<Error> {
    match status {
        StatusCode::UNAUTHORIZED => Some(Error::Unauthenticated),
        StatusCode::FORBIDDEN => Some(Error::Forbidden),
        StatusCode::TOO_MANY_REQUESTS => Some(Error::RateLimited {
            retry_after_seconds: retry_after_seconds(headers, SystemTime::now()),
        }),
        status if status.is_success() => None,
        status if status.is_redirection() => Some(Error::BadAnswer("redirect not followed")),
        status if status.is_server_error() => Some(Error::BadAnswer("server error status")),
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => None,
        _ => Some(Error::BadAnswer("unexpected status")),
    }
}

/// `Retry-After` as delay-seconds or an HTTP date, rounded up, at least 1, capped.
fn retry_after_seconds(headers: &HeaderMap, now: SystemTime) -> u64 {
    let Some(value) = headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
    else {
        return DEFAULT_RETRY_AFTER_SECONDS;
    };
    let value = value.trim();
    let seconds = if let Ok(seconds) = value.parse::<u64>() {
        seconds
    } else if let Ok(date) = httpdate_parse(value) {
        let wait = date.duration_since(now).unwrap_or_default();
        wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
    } else {
        DEFAULT_RETRY_AFTER_SECONDS
    };
    seconds.clamp(1, MAX_RETRY_AFTER_SECONDS)
}

fn httpdate_parse(value: &str) -> Result<SystemTime, ()> {
    httpdate::parse_http_date(value).map_err(|_| ())
}

/// Reads the body, refusing it as soon as it grows past `limit` (a hostile or broken upstream
/// must not make the gateway buffer without bound).
async fn read_capped(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, Error> {
    if response
        .content_length()
        .is_some_and(|length| length > limit as u64)
    {
        return Err(Error::BadAnswer("answer larger than the limit"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        if body.len() + chunk.len() > limit {
            return Err(Error::BadAnswer("answer larger than the limit"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers_with_retry_after(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from_str(value).expect("ascii"),
        );
        headers
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            retry_after_seconds(&headers_with_retry_after("30"), now),
            30
        );
        assert_eq!(retry_after_seconds(&headers_with_retry_after("0"), now), 1);
        assert_eq!(
            retry_after_seconds(&headers_with_retry_after("999999"), now),
            3_600
        );
        let in_two_minutes = httpdate::fmt_http_date(now + Duration::from_secs(120));
        assert_eq!(
            retry_after_seconds(&headers_with_retry_after(&in_two_minutes), now),
            120
        );
        assert_eq!(
            retry_after_seconds(&headers_with_retry_after("soon"), now),
            5
        );
        assert_eq!(retry_after_seconds(&HeaderMap::new(), now), 5);
    }

    #[test]
    fn statuses_map_before_the_body_is_read() {
        let none = HeaderMap::new();
        assert_eq!(
            error_from_status(StatusCode::UNAUTHORIZED, &none),
            Some(Error::Unauthenticated)
        );
        assert_eq!(
            error_from_status(StatusCode::FORBIDDEN, &none),
            Some(Error::Forbidden)
        );
        assert!(matches!(
            error_from_status(StatusCode::FOUND, &none),
            Some(Error::BadAnswer(_))
        ));
        assert!(matches!(
            error_from_status(StatusCode::BAD_GATEWAY, &none),
            Some(Error::BadAnswer(_))
        ));
        assert_eq!(error_from_status(StatusCode::OK, &none), None);
        assert_eq!(error_from_status(StatusCode::BAD_REQUEST, &none), None);
    }
}
