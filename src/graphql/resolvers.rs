//! The root `Query` and `Mutation` types.

use std::sync::Arc;

use async_graphql::{Context, ID, Object, Result};
use secrecy::ExposeSecret;

use super::health_link::CreatedHealthLink;
use super::health_links::HealthLink;
use super::inputs::CreateHealthLinkInput;
use crate::audit::{AuditAction, AuditEvent, AuditTrail};
use crate::error::{AppError, ErrorCode};
use crate::idempotency::{Idempotency, StoredAnswer};
use crate::issuer::{Caller, CreateLinkRequest, Issuer, IssuerMode, ResourceType};
use crate::passcode::Passcode;
use crate::ratelimit::RatePolicy;

#[derive(Debug, Default)]
pub struct QueryRoot;

#[Object(name = "Query")]
impl QueryRoot {
    /// The resource types a patient may choose from (the IPS set in b.well's workflow), for
    /// step 2 of the workflow. Omitting `resources` shares all of them.
    async fn shareable_resource_types(&self) -> Vec<&'static str> {
        ResourceType::SHAREABLE
            .iter()
            .map(|resource_type| resource_type.as_str())
            .collect()
    }

    /// The caller's links, newest first, with who opened them. Embedded mode only.
    async fn health_links(&self, ctx: &Context<'_>) -> Result<Vec<HealthLink>> {
        let caller = ctx.data::<Caller>()?;
        require_bearer(caller)?;
        let issuer = ctx.data::<Arc<dyn Issuer>>()?;
        let links = issuer.health_links(caller).await?;
        Ok(links.into_iter().map(HealthLink).collect())
    }
}

#[derive(Debug, Default)]
pub struct MutationRoot;

#[Object(name = "Mutation")]
impl MutationRoot {
    /// Creates a SMART Health Link, exactly as b.well's `createHealthLink`, and answers with the
    /// gateway fields `passcode` and `qrCodeSvg` so the app needs no second round trip.
    /// Requires `Authorization: Bearer <token>`.
    async fn create_health_link(
        &self,
        ctx: &Context<'_>,
        input: CreateHealthLinkInput,
    ) -> Result<CreatedHealthLink> {
        let caller = ctx.data::<Caller>()?;
        let audit = ctx.data::<AuditTrail>()?;
        let event = caller_events(audit, caller);
        match create(ctx, caller, audit, input, &event).await {
            Ok(created) => Ok(created),
            Err(Refusal::BeforeAttempt(error)) => {
                record_refusal(audit, &event, error.code()).await;
                Err(error.into())
            }
            Err(Refusal::Recorded(error)) => Err(error.into()),
        }
    }

    /// Revokes one of the caller's links at once: its encrypted file is deleted and every later
    /// access answers 404, including file tickets already handed out. Embedded mode only.
    async fn revoke_health_link(&self, ctx: &Context<'_>, id: ID) -> Result<HealthLink> {
        let caller = ctx.data::<Caller>()?;
        require_bearer(caller)?;
        let issuer = ctx.data::<Arc<dyn Issuer>>()?;
        Ok(HealthLink(
            issuer.revoke_health_link(caller, id.as_str()).await?,
        ))
    }
}

/// Builds the audit events of one caller. Each creation records two or three events about the
/// same caller: the keyed hash of the token is computed once.
pub(super) fn caller_events<'a>(
    audit: &AuditTrail,
    caller: &'a Caller,
) -> impl Fn(AuditAction, &str) -> AuditEvent + 'a {
    let actor = caller
        .authorization
        .as_ref()
        .map(|value| audit.actor(value.expose_secret()));
    let client_ip = caller.client_ip.map(|ip| ip.to_string());
    move |action: AuditAction, outcome: &str| AuditEvent {
        request_id: Some(caller.request_id.clone()),
        client_ip: client_ip.clone(),
        actor: actor.clone(),
        ..AuditEvent::new(action, outcome)
    }
}

/// Records a creation refused before its attempt record: by the resolver (auth, input, quota)
/// or, for a document invalid as a whole, by the executor before anything ran.
pub(super) async fn record_refusal(
    audit: &AuditTrail,
    event: &impl Fn(AuditAction, &str) -> AuditEvent,
    code: ErrorCode,
) {
    // Nothing was disclosed, so a failing trail does not change the answer; it is logged by
    // the trail.
    let _ = audit
        .record(event(AuditAction::CreationRefused, code.as_str()))
        .await;
}

/// How `createHealthLink` failed: before its attempt record (the refusal still needs one) or
/// after (its outcome is recorded already, or the trail itself failed).
enum Refusal {
    BeforeAttempt(AppError),
    Recorded(AppError),
}

/// Auth, input, quota, attempt record, issuer call, outcome record: in that order, so that
/// every creation leaves an attempt and an outcome in the audit trail, and no link leaves the
/// gateway without its record.
async fn create(
    ctx: &Context<'_>,
    caller: &Caller,
    audit: &AuditTrail,
    input: CreateHealthLinkInput,
    event: &impl Fn(AuditAction, &str) -> AuditEvent,
) -> Result<CreatedHealthLink, Refusal> {
    let internal = |_| {
        Refusal::BeforeAttempt(AppError::internal_at(
            "schema data missing (a wiring mistake)",
        ))
    };
    require_bearer(caller).map_err(Refusal::BeforeAttempt)?;
    let request = input.validate().map_err(Refusal::BeforeAttempt)?;
    let token = caller
        .authorization
        .as_ref()
        .map(|value| value.expose_secret().to_owned())
        .unwrap_or_default();
    let idempotency = ctx.data::<Arc<Idempotency>>().map_err(internal)?;
    let idempotency_key = caller
        .idempotency_key
        .as_deref()
        .map(crate::idempotency::parse_key)
        .transpose()
        .map_err(Refusal::BeforeAttempt)?;
    if let Some(key) = idempotency_key {
        // A retry: the first answer again, not a second link (and no quota spent on it).
        if let Some(stored) = idempotency
            .begin(&token, key)
            .await
            .map_err(Refusal::BeforeAttempt)?
        {
            audit
                .record(AuditEvent {
                    link_id: Some(stored.document.id.to_string()),
                    ..event(AuditAction::LinkCreated, "replayed")
                })
                .await
                .map_err(Refusal::Recorded)?;
            return Ok(CreatedHealthLink {
                document: stored.document,
                passcode: stored
                    .passcode
                    .as_deref()
                    .and_then(|code| Passcode::parse(code).ok()),
            });
        }
    }
    let result = create_new(ctx, caller, audit, request, &token, event).await;
    if let Some(key) = idempotency_key {
        match &result {
            Ok(created) => {
                let answer = StoredAnswer {
                    document: created.document.clone(),
                    passcode: created
                        .passcode
                        .as_ref()
                        .map(|code| code.expose().to_owned()),
                };
                if let Err(error) = idempotency.complete(&token, key, &answer).await {
                    tracing::warn!(error = ?error.code(), "idempotent answer not stored; a retry would create again");
                }
            }
            Err(_) => idempotency.release(&token, key).await,
        }
    }
    result
}

/// Quota, attempt record, issuer call, outcome record.
async fn create_new(
    ctx: &Context<'_>,
    caller: &Caller,
    audit: &AuditTrail,
    request: CreateLinkRequest,
    token: &str,
    event: &impl Fn(AuditAction, &str) -> AuditEvent,
) -> Result<CreatedHealthLink, Refusal> {
    let internal = |_| {
        Refusal::BeforeAttempt(AppError::internal_at(
            "schema data missing (a wiring mistake)",
        ))
    };
    ctx.data::<RatePolicy>()
        .map_err(internal)?
        .charge_link_creation(token, caller.client_ip)
        .await
        .map_err(Refusal::BeforeAttempt)?;
    let issuer = ctx.data::<Arc<dyn Issuer>>().map_err(internal)?;
    let resource_types: Vec<String> = request
        .resources
        .iter()
        .map(|r| r.as_str().to_owned())
        .collect();
    audit
        .record_attempt(AuditEvent {
            resource_types: resource_types.clone(),
            ..event(AuditAction::CreationAttempt, "attempt")
        })
        .await
        .map_err(Refusal::Recorded)?;

    let started = std::time::Instant::now();
    let outcome = issuer.create_health_link(caller, &request).await;
    let latency = Some(started.elapsed().as_millis() as u64);
    let upstream = issuer.mode() == IssuerMode::Upstream;
    let document = match outcome {
        Ok(document) => document,
        Err(error) => {
            audit
                .record(AuditEvent {
                    resource_types,
                    upstream_latency_ms: latency.filter(|_| upstream),
                    ..event(AuditAction::CreationRefused, error.code().as_str())
                })
                .await
                .map_err(Refusal::Recorded)?;
            return Err(Refusal::Recorded(error));
        }
    };
    audit
        .record(AuditEvent {
            link_id: Some(document.id.to_string()),
            resource_types,
            upstream_status: upstream.then_some(200),
            upstream_latency_ms: latency.filter(|_| upstream),
            ..event(AuditAction::LinkCreated, "ok")
        })
        .await
        .map_err(Refusal::Recorded)?;
    let link_mode = match request.mode {
        crate::issuer::LinkMode::Passcode => "PASSCODE",
        crate::issuer::LinkMode::Direct => "DIRECT",
    };
    metrics::counter!(crate::metrics::LINKS_CREATED, "issuer" => issuer.mode().as_str(), "mode" => link_mode)
        .increment(1);
    Ok(CreatedHealthLink {
        document,
        passcode: request.passcode,
    })
}

/// Refuses a request without a bearer credential before anything is sent anywhere.
fn require_bearer(caller: &Caller) -> Result<(), AppError> {
    let has_bearer = caller.authorization.as_ref().is_some_and(|value| {
        let value = value.expose_secret();
        value.split_once(' ').is_some_and(|(scheme, token)| {
            scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()
        })
    });
    if has_bearer {
        Ok(())
    } else {
        Err(AppError::new(
            ErrorCode::Unauthenticated,
            "an Authorization: Bearer <token> header is required",
        ))
    }
}
