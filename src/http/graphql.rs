//! GraphQL over HTTP: `POST /graphql` (JSON) and `GET /graphql` (queries only).
//!
//! Requests are read here rather than through async-graphql-axum's extractor (see
//! docs/decisions.md): an oversized body must answer 413 (the extractor makes it a 400), a batch
//! must be refused before anything is parsed, the extractor's rejection text quotes serde's
//! error (which can quote the request's own values), and its GET parser ignores the spec's
//! `operationName` parameter.
//!
//! Rules, after the GraphQL-over-HTTP draft and Apollo Router:
//! - a POST whose content type a browser form could send (`text/plain`, form encodings, none) is
//!   refused with `CSRF_ERROR` unless it carries a header that forces a CORS preflight;
//! - a mutation over GET is `405`;
//! - `application/graphql-response+json` answers use 4xx for request errors (nothing executed);
//!   `application/json` answers are always 200, as older clients expect.

use async_graphql::parser::types::OperationType;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tracing::Instrument as _;

use super::AppState;
use super::WorkSlot;
use super::client_ip::ClientIp;
use super::request_id::RequestId;
use crate::error::{AppError, ErrorCode};
use crate::graphql::is_request_error;
use crate::issuer::{BearerToken, Caller, TraceContext};

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";
const JSON: &str = "application/json";

/// Headers whose presence proves a CORS preflight happened (Apollo's CSRF rule).
const PREFLIGHT_HEADERS: [&str; 2] = ["apollo-require-preflight", "x-apollo-operation-name"];

pub(crate) async fn post(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    meta: RequestMeta,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let format = ResponseFormat::negotiate(&headers);
    if is_simple_request(&headers) {
        return format.refusal(
            StatusCode::BAD_REQUEST,
            ErrorCode::CsrfError,
            "this request could have come from a browser form: send it with \
             Content-Type: application/json or an Apollo-Require-Preflight header",
        );
    }
    if !is_json(&headers) {
        return format.refusal(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::BadUserInput,
            "POST /graphql takes Content-Type: application/json",
        );
    }
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return format.refusal(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::OperationLimitExceeded,
                &format!(
                    "request body exceeds the limit of {} bytes",
                    state.max_body_bytes
                ),
            );
        }
        Err(_) => {
            return format.refusal(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadUserInput,
                "the request body could not be read",
            );
        }
    };
    let request = match parse_single_request(&body) {
        Ok(request) => request,
        Err(message) => {
            return format.refusal(StatusCode::BAD_REQUEST, ErrorCode::BadUserInput, message);
        }
    };
    execute(&state, &headers, meta, request, format).await
}

/// `GET /graphql` parameters, named as the GraphQL-over-HTTP spec names them.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GetParams {
    query: String,
    operation_name: Option<String>,
    variables: Option<String>,
}

pub(crate) async fn get(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    meta: RequestMeta,
    params: Result<Query<GetParams>, QueryRejection>,
) -> Response {
    let format = ResponseFormat::negotiate(&headers);
    let request = match params
        .map_err(drop)
        .and_then(|Query(params)| params.into_request())
    {
        Ok(request) => request,
        Err(()) => {
            return format.refusal(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadUserInput,
                "GET /graphql takes `query`, and optionally `operationName` and `variables` (JSON)",
            );
        }
    };
    if state
        .graphql
        .operation_type(&request.query, request.operation_name.as_deref())
        == Some(OperationType::Mutation)
    {
        let mut response = format.refusal(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::BadUserInput,
            "mutations are only accepted over POST",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
        return response;
    }
    execute(&state, &headers, meta, request, format).await
}

impl GetParams {
    fn into_request(self) -> Result<async_graphql::Request, ()> {
        let mut request = async_graphql::Request::new(self.query);
        if let Some(name) = self.operation_name {
            request = request.operation_name(name);
        }
        if let Some(variables) = self.variables {
            let variables: serde_json::Value = serde_json::from_str(&variables).map_err(drop)?;
            request = request.variables(async_graphql::Variables::from_json(variables));
        }
        Ok(request)
    }
}

/// What the transport knows of a request besides its headers.
pub(crate) struct RequestMeta {
    request_id: RequestId,
    client_ip: std::net::IpAddr,
    work_slot: Option<WorkSlot>,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for RequestMeta {
    type Rejection = StatusCode;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self {
            request_id: RequestId::from_request_parts(parts, state).await?,
            client_ip: ClientIp::of(&parts.extensions).0,
            work_slot: parts.extensions.get::<WorkSlot>().cloned(),
        })
    }
}

async fn execute(
    state: &AppState,
    headers: &HeaderMap,
    meta: RequestMeta,
    request: async_graphql::Request,
    format: ResponseFormat,
) -> Response {
    let mut caller = caller_from(headers, meta.request_id);
    caller.client_ip = Some(meta.client_ip);
    // Execution runs to the end even if the client hangs up: a creation's attempt and outcome
    // records, and its idempotency key, must not be left half written.
    let executor = state.graphql.clone();
    let execution = async move { executor.execute(request, caller).await }
        .instrument(tracing::info_span!("graphql.execute"));
    let response = match super::to_completion(meta.work_slot.as_ref(), execution).await {
        Ok(response) => response,
        Err(_) => {
            return format.refusal(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::InternalServerError,
                "internal server error",
            );
        }
    };
    let outcome = response
        .errors
        .first()
        .and_then(|error| error.extensions.as_ref())
        .and_then(|extensions| extensions.get("code"))
        .and_then(|code| match code {
            async_graphql::Value::String(code) => Some(code.clone()),
            _ => None,
        })
        .unwrap_or_else(|| "ok".to_owned());
    metrics::counter!(crate::metrics::GRAPHQL_REQUESTS, "outcome" => outcome).increment(1);
    format.render(response)
}

fn caller_from(headers: &HeaderMap, request_id: RequestId) -> Caller {
    let text = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    Caller {
        bearer: text(header::AUTHORIZATION.as_str()).and_then(BearerToken::from_authorization),
        request_id: request_id.0,
        client_ip: None,
        idempotency_key: idempotency_key(headers),
        trace: TraceContext {
            traceparent: text("traceparent")
                .filter(|value| is_traceparent(value))
                .map(str::to_owned),
            tracestate: text("tracestate")
                .filter(|value| value.len() <= 512)
                .map(str::to_owned),
        },
    }
}

/// The `Idempotency-Key` header as sent, for `createHealthLink` to validate. Bytes that are not
/// UTF-8 are kept as replacement characters rather than dropped: a malformed key must be
/// refused (`BAD_USER_INPUT`), not ignored, or the retry it was meant for creates a second link.
/// Two such headers are refused the same way (one key per request).
fn idempotency_key(headers: &HeaderMap) -> Option<String> {
    let mut values = headers.get_all("idempotency-key").iter();
    let first = values.next()?;
    if values.next().is_some() {
        // Not printable ASCII, so `idempotency::parse_key` refuses it.
        return Some("\n".to_owned());
    }
    Some(String::from_utf8_lossy(first.as_bytes()).into_owned())
}

/// W3C `traceparent`: `version-traceid-parentid-flags`, lowercase hex, 2-32-16-2 digits.
fn is_traceparent(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    let widths = [2, 32, 16, 2];
    parts.len() == 4
        && parts.iter().zip(widths).all(|(part, width)| {
            part.len() == width
                && part
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

/// A body that is one GraphQL request object. The error messages never quote the body.
fn parse_single_request(body: &[u8]) -> Result<async_graphql::Request, &'static str> {
    let first = body.iter().find(|byte| !byte.is_ascii_whitespace());
    if first == Some(&b'[') {
        return Err("batched requests are not supported: send one operation per request");
    }
    serde_json::from_slice(body).map_err(|_| {
        "the body must be a JSON object with a string `query` and optional `operationName` and `variables`"
    })
}

fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next().unwrap_or_default().trim();
    Some(essence.to_ascii_lowercase())
}

fn is_json(headers: &HeaderMap) -> bool {
    media_type(headers).is_some_and(|media| media == JSON || media == GRAPHQL_RESPONSE_JSON)
}

/// A request a browser would send cross-site without a preflight.
fn is_simple_request(headers: &HeaderMap) -> bool {
    let simple_type = match media_type(headers) {
        None => true,
        Some(media) => matches!(
            media.as_str(),
            "text/plain" | "application/x-www-form-urlencoded" | "multipart/form-data"
        ),
    };
    let preflighted = PREFLIGHT_HEADERS
        .iter()
        .any(|name| headers.get(*name).is_some_and(|value| !value.is_empty()));
    simple_type && !preflighted
}

/// Which media type the client reads, which decides the status code rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResponseFormat {
    GraphqlResponseJson,
    LegacyJson,
}

impl ResponseFormat {
    fn negotiate(headers: &HeaderMap) -> Self {
        let accept = headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(|item| {
                item.split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_ascii_lowercase()
            });
        let mut format = ResponseFormat::LegacyJson;
        for media in accept {
            if media == GRAPHQL_RESPONSE_JSON {
                return ResponseFormat::GraphqlResponseJson;
            }
            if media == JSON || media == "*/*" || media == "application/*" {
                format = ResponseFormat::LegacyJson;
            }
        }
        format
    }

    fn content_type(self) -> &'static str {
        match self {
            ResponseFormat::GraphqlResponseJson => {
                "application/graphql-response+json; charset=utf-8"
            }
            ResponseFormat::LegacyJson => "application/json; charset=utf-8",
        }
    }

    /// A request refused before execution, as a GraphQL response without `data`.
    fn refusal(self, status: StatusCode, code: ErrorCode, message: &str) -> Response {
        let body = ResponseBody {
            data: None,
            errors: vec![ErrorBody {
                message: message.to_owned(),
                extensions: serde_json::json!({ "code": code.as_str() }),
            }],
        };
        // Under application/json the status still tells the truth for transport-level
        // refusals: no GraphQL processing happened, so there is nothing to say 200 about.
        self.respond(status, &body)
    }

    /// Values in async-graphql's messages are masked already (by the executor).
    fn render(self, response: async_graphql::Response) -> Response {
        let request_error =
            !response.errors.is_empty() && response.errors.iter().all(is_request_error);
        let errors = response.errors;
        let status = match (self, request_error) {
            (ResponseFormat::GraphqlResponseJson, true) => StatusCode::BAD_REQUEST,
            _ => StatusCode::OK,
        };
        let body = GraphqlBody {
            data: (!request_error).then_some(response.data),
            errors,
            extensions: response.extensions,
        };
        self.respond(status, &body)
    }

    fn respond(self, status: StatusCode, body: &impl Serialize) -> Response {
        let bytes = match serde_json::to_vec(body) {
            Ok(bytes) => bytes,
            Err(_) => {
                return AppError::internal_at("serializing a GraphQL response").into_response();
            }
        };
        (
            status,
            [
                (header::CONTENT_TYPE, self.content_type()),
                (header::CACHE_CONTROL, "no-store"),
            ],
            bytes,
        )
            .into_response()
    }
}

#[derive(Serialize)]
struct GraphqlBody {
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<async_graphql::Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<async_graphql::ServerError>,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    extensions: std::collections::BTreeMap<String, async_graphql::Value>,
}

#[derive(Serialize)]
struct ResponseBody {
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<async_graphql::Value>,
    errors: Vec<ErrorBody>,
}

#[derive(Serialize)]
struct ErrorBody {
    message: String,
    extensions: serde_json::Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn simple_content_types_without_preflight_header_are_csrf_risks() {
        assert!(is_simple_request(&headers(&[])));
        assert!(is_simple_request(&headers(&[(
            "content-type",
            "text/plain"
        )])));
        assert!(is_simple_request(&headers(&[(
            "content-type",
            "multipart/form-data; boundary=x"
        )])));
        assert!(is_simple_request(&headers(&[(
            "content-type",
            "Application/X-WWW-Form-Urlencoded"
        )])));
        assert!(!is_simple_request(&headers(&[(
            "content-type",
            "application/json"
        )])));
        assert!(!is_simple_request(&headers(&[
            ("content-type", "text/plain"),
            ("apollo-require-preflight", "true"),
        ])));
    }

    #[test]
    fn accept_header_picks_the_response_media_type() {
        assert_eq!(
            ResponseFormat::negotiate(&headers(&[])),
            ResponseFormat::LegacyJson
        );
        assert_eq!(
            ResponseFormat::negotiate(&headers(&[("accept", "application/json")])),
            ResponseFormat::LegacyJson
        );
        assert_eq!(
            ResponseFormat::negotiate(&headers(&[(
                "accept",
                "application/json;q=0.9, application/graphql-response+json"
            )])),
            ResponseFormat::GraphqlResponseJson
        );
    }

    #[test]
    fn malformed_idempotency_keys_reach_validation_instead_of_vanishing() {
        let mut map = HeaderMap::new();
        assert_eq!(idempotency_key(&map), None);
        map.insert(
            "idempotency-key",
            HeaderValue::from_bytes(b"caf\xc3\xa9-\xff").expect("opaque bytes"),
        );
        let key = idempotency_key(&map).expect("kept");
        assert!(crate::idempotency::parse_key(&key).is_err(), "{key:?}");
        map.insert("idempotency-key", HeaderValue::from_static(""));
        assert!(crate::idempotency::parse_key(&idempotency_key(&map).expect("kept")).is_err());
        map.insert("idempotency-key", HeaderValue::from_static("retry-1"));
        assert_eq!(idempotency_key(&map).as_deref(), Some("retry-1"));
        map.append("idempotency-key", HeaderValue::from_static("retry-2"));
        assert!(crate::idempotency::parse_key(&idempotency_key(&map).expect("kept")).is_err());
    }

    #[test]
    fn traceparent_must_be_well_formed() {
        assert!(is_traceparent(
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        ));
        assert!(!is_traceparent(
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01"
        ));
        assert!(!is_traceparent("00-xyz-b7ad6b7169203331-01"));
        assert!(!is_traceparent(""));
    }

    #[test]
    fn batches_and_non_objects_are_refused_without_quoting_the_body() {
        assert!(parse_single_request(b"  [{\"query\":\"{a}\"}]").is_err());
        let error = parse_single_request(b"{\"query\": 743730}").expect_err("not a string");
        assert!(!error.contains("743730"));
        assert!(parse_single_request(b"{\"query\":\"{ a }\"}").is_ok());
    }
}
