//! `createHealthLink`: credentials, input, idempotency, quotas, the attempt record, the issuer,
//! the outcome record, metrics; judged in that order (the input arrives already parsed, and its
//! verdict is looked at only once the credentials pass).

use std::time::Instant;

use super::events::CallerEvents;
use super::{CreatedLink, LinkService, require_bearer};
use crate::audit::{AuditAction, AuditEvent};
use crate::error::{AppError, ErrorCode};
use crate::idempotency::StoredAnswer;
use crate::issuer::{BearerToken, Caller, CreateLinkRequest, IssuerMode, ResourceType};
use crate::passcode::Passcode;

/// How a creation failed: before its attempt record (the refusal still needs one) or after
/// (its outcome is recorded already, or the trail itself failed).
enum Refusal {
    BeforeAttempt(AppError),
    Recorded(AppError),
}

impl LinkService {
    /// Creates one link for `caller`. `request` is the input as the edge validated it, or why it
    /// could not: the credentials are checked first, so an anonymous caller learns nothing about
    /// the input rules. Every outcome is recorded (see the module header).
    pub(crate) async fn create(
        &self,
        caller: &Caller,
        request: Result<CreateLinkRequest, AppError>,
    ) -> Result<CreatedLink, AppError> {
        let events = self.events(caller);
        match self.create_recorded(caller, request, &events).await {
            Ok(created) => Ok(created),
            Err(Refusal::BeforeAttempt(error)) => {
                self.record_refusal(&events, error.code()).await;
                Err(error)
            }
            Err(Refusal::Recorded(error)) => Err(error),
        }
    }

    /// Records a creation refused as a whole document, before anything ran (the GraphQL
    /// executor's own checks of a document that asks for `createHealthLink`).
    pub(crate) async fn record_refused_document(&self, caller: &Caller) {
        let events = self.events(caller);
        self.record_refusal(&events, ErrorCode::GraphqlValidationFailed)
            .await;
    }

    /// The resource types this mode shares (`shareableResourceTypes`).
    pub(crate) fn shareable_resource_types(&self) -> &'static [ResourceType] {
        self.issuer.shareable_resource_types()
    }

    /// The mode's rules on a request each of whose fields is valid: the types it may share,
    /// then the issuer's own.
    fn check_request(&self, request: &CreateLinkRequest) -> Result<(), AppError> {
        let shareable = self.issuer.shareable_resource_types();
        if let Some(refused) = request
            .resources
            .iter()
            .find(|resource_type| !shareable.contains(resource_type))
        {
            return Err(AppError::bad_user_input(format!(
                "resources: {} is not shareable in {} mode (see shareableResourceTypes)",
                refused.as_str(),
                self.issuer.mode().as_str()
            )));
        }
        self.issuer.check_request(request)
    }

    pub(super) fn events<'a>(&self, caller: &'a Caller) -> CallerEvents<'a> {
        CallerEvents::new(&self.audit, caller, self.issuer.mode())
    }

    async fn record_refusal(&self, events: &CallerEvents<'_>, code: ErrorCode) {
        // Nothing was disclosed, so a failing trail does not change the answer; the trail logs
        // its own failure.
        let _ = self
            .audit
            .record(events.event(AuditAction::CreationRefused, code.as_str()))
            .await;
    }

    /// Credentials, input, then a replay for a retry or a new link.
    async fn create_recorded(
        &self,
        caller: &Caller,
        request: Result<CreateLinkRequest, AppError>,
        events: &CallerEvents<'_>,
    ) -> Result<CreatedLink, Refusal> {
        let token = require_bearer(caller).map_err(Refusal::BeforeAttempt)?;
        let request = request.map_err(Refusal::BeforeAttempt)?;
        self.check_request(&request)
            .map_err(Refusal::BeforeAttempt)?;
        let idempotency_key = caller
            .idempotency_key
            .as_deref()
            .map(crate::idempotency::parse_key)
            .transpose()
            .map_err(Refusal::BeforeAttempt)?;
        let Some(key) = idempotency_key else {
            return self.create_new(caller, token, request, events).await;
        };
        // A retry: the first answer again, not a second link (and no quota spent on it).
        if let Some(stored) = self
            .idempotency
            .begin(&token.credential(), key)
            .await
            .map_err(Refusal::BeforeAttempt)?
        {
            return self.replay(stored, events).await;
        }
        let result = self.create_new(caller, token, request, events).await;
        self.settle_idempotency(token, key, &result).await;
        result
    }

    async fn replay(
        &self,
        stored: StoredAnswer,
        events: &CallerEvents<'_>,
    ) -> Result<CreatedLink, Refusal> {
        self.audit
            .record(AuditEvent {
                link_id: Some(stored.document.id.to_string()),
                ..events.event(AuditAction::LinkCreated, "replayed")
            })
            .await
            .map_err(Refusal::Recorded)?;
        Ok(CreatedLink {
            document: stored.document,
            passcode: stored
                .passcode
                .as_deref()
                .and_then(|code| Passcode::parse(code).ok()),
        })
    }

    /// Keeps a new link's answer for the key's retries, or frees the key after a failure.
    async fn settle_idempotency(
        &self,
        token: &BearerToken,
        key: &str,
        result: &Result<CreatedLink, Refusal>,
    ) {
        match result {
            Ok(created) => {
                let answer = StoredAnswer {
                    document: created.document.clone(),
                    passcode: created
                        .passcode
                        .as_ref()
                        .map(|code| code.expose().to_owned()),
                };
                if let Err(error) = self
                    .idempotency
                    .complete(&token.credential(), key, &answer)
                    .await
                {
                    tracing::warn!(error = ?error.code(), "idempotent answer not stored; a retry would create again");
                }
            }
            Err(_) => self.idempotency.release(&token.credential(), key).await,
        }
    }

    /// Quota, attempt record, issuer call, outcome record, metrics.
    async fn create_new(
        &self,
        caller: &Caller,
        token: &BearerToken,
        request: CreateLinkRequest,
        events: &CallerEvents<'_>,
    ) -> Result<CreatedLink, Refusal> {
        self.rate_policy
            .charge_link_creation(token.expose(), caller.client_ip)
            .await
            .map_err(Refusal::BeforeAttempt)?;
        let resource_types: Vec<String> = request
            .resources
            .iter()
            .map(|resource_type| resource_type.as_str().to_owned())
            .collect();
        self.audit
            .record_attempt(AuditEvent {
                resource_types: resource_types.clone(),
                ..events.event(AuditAction::CreationAttempt, "attempt")
            })
            .await
            .map_err(Refusal::Recorded)?;

        let started = Instant::now();
        let outcome = self.issuer.create_health_link(caller, &request).await;
        // Only b.well's latency is worth recording: the embedded issuer's is the gateway's own.
        let upstream = self.issuer.mode() == IssuerMode::Upstream;
        let upstream_latency_ms =
            upstream.then(|| u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX));
        let document = match outcome {
            Ok(document) => document,
            Err(error) => {
                self.audit
                    .record(AuditEvent {
                        resource_types,
                        upstream_latency_ms,
                        ..events.event(AuditAction::CreationRefused, error.code().as_str())
                    })
                    .await
                    .map_err(Refusal::Recorded)?;
                return Err(Refusal::Recorded(error));
            }
        };
        // The link leaves only once this record is durable.
        self.audit
            .record(AuditEvent {
                link_id: Some(document.id.to_string()),
                resource_types,
                upstream_status: upstream.then_some(200),
                upstream_latency_ms,
                ..events.event(AuditAction::LinkCreated, "ok")
            })
            .await
            .map_err(Refusal::Recorded)?;
        metrics::counter!(
            crate::metrics::LINKS_CREATED,
            "issuer" => self.issuer.mode().as_str(),
            "mode" => request.mode.as_str()
        )
        .increment(1);
        Ok(CreatedLink {
            document,
            passcode: request.passcode,
        })
    }
}
