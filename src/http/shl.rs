//! The SMART Health Links data plane over HTTP: manifest, location and direct endpoints.
//!
//! Paths mirror b.well's (`/v1/health-link/...`). Every inactive state answers the same `404`, so
//! a prober learns nothing about which links exist. Receivers are browsers on other origins (web
//! viewers), so these endpoints answer `Access-Control-Allow-Origin: *`; they need no cookies or
//! credentials, only the capability in the URL. Answers are never cached.

use std::net::IpAddr;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use serde::Deserialize;
use serde_json::json;
use tower_http::cors::{Any, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;

use super::{ClientIp, WorkSlot};
use crate::error::{AppError, ErrorCode};
use crate::issuer::embedded::{ManifestAnswer, ManifestFile, ManifestRequest, manifest_id_hash};
use crate::links::{AccessContext, LinkAccesses};
use crate::ratelimit::RatePolicy;

/// Longest recipient name accepted: it is stored and shown to the patient.
pub(crate) const MAX_RECIPIENT_CHARS: usize = 100;
const JOSE: &str = "application/jose";

/// What the data-plane handlers share.
#[derive(Debug, Clone)]
pub(crate) struct DataPlane {
    accesses: LinkAccesses,
    rate_policy: RatePolicy,
}

pub(crate) fn router(accesses: LinkAccesses, rate_policy: RatePolicy) -> Router {
    Router::new()
        .route(
            "/v1/health-link/manifests/{manifest_id}",
            get(direct).post(manifest),
        )
        .route("/v1/health-link/files/{ticket}", get(file))
        .layer(DefaultBodyLimit::max(super::MAX_SHL_BODY_BYTES))
        .layer(
            CorsLayer::new()
                .allow_origin(Any)
                .allow_methods([Method::GET, Method::POST])
                .allow_headers([header::CONTENT_TYPE])
                .expose_headers([header::RETRY_AFTER]),
        )
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .with_state(DataPlane {
            accesses,
            rate_policy,
        })
}

/// The manifest request body. Unknown fields are ignored, as the spec asks of both sides.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestBody {
    recipient: Option<String>,
    passcode: Option<String>,
    embedded_length_max: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct DirectQuery {
    recipient: Option<String>,
}

fn not_found() -> Response {
    AppError::new(ErrorCode::NotFound, "not found").into_response()
}

fn bad_request() -> Response {
    AppError::bad_user_input("bad request").into_response()
}

/// A recipient is required, short, and printable: it is shown to the patient later, so it may
/// hold neither control characters nor invisible format characters (bidi overrides, zero-width
/// characters) that would make it read as another name.
fn valid_recipient(recipient: Option<String>) -> Option<String> {
    let recipient = recipient?;
    let trimmed = recipient.trim();
    let acceptable = !trimmed.is_empty()
        && trimmed.chars().count() <= MAX_RECIPIENT_CHARS
        && !trimmed
            .chars()
            .any(|c| c.is_control() || crate::text::is_invisible_format_char(c));
    acceptable.then(|| trimmed.to_owned())
}

/// The path's segment (a manifest id or a ticket), with the request charged to its quotas
/// first. A path that is not UTF-8 is a `400` and still costs the address its quota. With
/// `per_link`, the segment is a manifest id and its link's quota is charged too (a ticket names
/// its link only once verified).
async fn charged_segment(
    plane: &DataPlane,
    client_ip: IpAddr,
    path: Result<Path<String>, PathRejection>,
    per_link: bool,
) -> Result<String, Response> {
    let Ok(Path(segment)) = path else {
        charge(plane, client_ip, None).await?;
        return Err(bad_request());
    };
    let link_key = per_link.then(|| manifest_id_hash(&segment));
    charge(plane, client_ip, link_key).await?;
    Ok(segment)
}

/// Charges the address and the link: many links from one address, or many addresses on one
/// link, each meet a quota. The link is keyed by the hash of its id, like the store.
async fn charge(
    plane: &DataPlane,
    client_ip: IpAddr,
    link_key: Option<String>,
) -> Result<(), Response> {
    plane
        .rate_policy
        .charge_shl(client_ip, link_key.as_deref())
        .await
        .map_err(IntoResponse::into_response)
}

async fn manifest(
    State(plane): State<DataPlane>,
    ClientIp(client_ip): ClientIp,
    work_slot: Option<Extension<WorkSlot>>,
    context: AccessContext,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let manifest_id = match charged_segment(&plane, client_ip, path, true).await {
        Ok(segment) => segment,
        Err(refused) => return refused,
    };
    let Ok(body) = body else {
        return bad_request();
    };
    let Ok(body) = serde_json::from_slice::<ManifestBody>(&body) else {
        return bad_request();
    };
    let Some(recipient) = valid_recipient(body.recipient) else {
        return bad_request();
    };
    let request = ManifestRequest {
        recipient,
        passcode: body.passcode,
        embedded_length_max: body.embedded_length_max,
    };
    // Reserve, verify, settle and record run to the end even if the client hangs up.
    let accesses = plane.accesses.clone();
    let answer = super::to_completion(slot_of(work_slot.as_ref()), async move {
        accesses
            .open_manifest(&manifest_id, request, &context)
            .await
    })
    .await
    .and_then(|answer| answer);
    match answer {
        Ok(ManifestAnswer::Files(files)) => {
            let files: Vec<_> = files
                .into_iter()
                .map(|file| match file {
                    ManifestFile::Embedded(jwe) => {
                        json!({"contentType": "application/fhir+json", "embedded": jwe})
                    }
                    ManifestFile::Location(url) => {
                        json!({"contentType": "application/fhir+json", "location": url})
                    }
                })
                .collect();
            axum::Json(json!({"status": "finalized", "files": files})).into_response()
        }
        Ok(ManifestAnswer::WrongPasscode { remaining_attempts }) => (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"remainingAttempts": remaining_attempts.max(0)})),
        )
            .into_response(),
        Ok(ManifestAnswer::NotActive) => not_found(),
        Err(error) => error.into_response(),
    }
}

async fn direct(
    State(plane): State<DataPlane>,
    ClientIp(client_ip): ClientIp,
    work_slot: Option<Extension<WorkSlot>>,
    context: AccessContext,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<DirectQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let manifest_id = match charged_segment(&plane, client_ip, path, true).await {
        Ok(segment) => segment,
        Err(refused) => return refused,
    };
    let Some(recipient) = query
        .ok()
        .and_then(|Query(query)| valid_recipient(query.recipient))
    else {
        return bad_request();
    };
    let accesses = plane.accesses.clone();
    jose(
        super::to_completion(slot_of(work_slot.as_ref()), async move {
            accesses
                .open_direct(&manifest_id, &recipient, &context)
                .await
        })
        .await
        .and_then(|answer| answer),
    )
}

async fn file(
    State(plane): State<DataPlane>,
    ClientIp(client_ip): ClientIp,
    work_slot: Option<Extension<WorkSlot>>,
    context: AccessContext,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    let ticket = match charged_segment(&plane, client_ip, path, false).await {
        Ok(segment) => segment,
        Err(refused) => return refused,
    };
    let accesses = plane.accesses.clone();
    jose(
        super::to_completion(slot_of(work_slot.as_ref()), async move {
            accesses.open_file(&ticket, &context).await
        })
        .await
        .and_then(|answer| answer),
    )
}

/// The request's id, address and user agent, for the audit trail.
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for AccessContext {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        let text = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        };
        Ok(AccessContext {
            request_id: text("x-request-id"),
            client_ip: Some(ClientIp::of(&parts.extensions).0.to_string()),
            user_agent: text("user-agent"),
        })
    }
}

fn slot_of(slot: Option<&Extension<WorkSlot>>) -> Option<&WorkSlot> {
    slot.map(|Extension(slot)| slot)
}

fn jose(result: Result<Option<String>, AppError>) -> Response {
    match result {
        Ok(Some(jwe)) => ([(header::CONTENT_TYPE, JOSE)], jwe).into_response(),
        Ok(None) => not_found(),
        Err(error) => error.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_are_required_short_and_printable() {
        assert_eq!(
            valid_recipient(Some(" Dr. Who ".into())),
            Some("Dr. Who".into())
        );
        assert_eq!(valid_recipient(None), None);
        assert_eq!(valid_recipient(Some("  ".into())), None);
        assert_eq!(valid_recipient(Some("a\nb".into())), None);
        assert_eq!(valid_recipient(Some("x".repeat(101))), None);
        assert!(valid_recipient(Some("é".repeat(100))).is_some());
    }

    #[test]
    fn recipients_with_invisible_format_characters_are_refused() {
        for name in [
            "Dr. Ana\u{202E}azuoS",
            "Dr.\u{200B}Who",
            "\u{2066}Front desk\u{2069}",
            "\u{FEFF}Clinic",
            "Dr. Who\u{00AD}",
            "tag\u{E0041}",
        ] {
            assert_eq!(valid_recipient(Some(name.into())), None, "{name:?}");
        }
        assert!(valid_recipient(Some("Dra. Ana Souza-Müller".into())).is_some());
    }
}
