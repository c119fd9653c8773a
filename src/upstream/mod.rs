//! The b.well client: relays `createHealthLink` to the upstream GraphQL API.
//!
//! The gateway never forwards the caller's GraphQL document. It sends one fixed operation
//! ([`operation`]) built from validated variables, with the caller's `Authorization` header, the
//! W3C trace context and the request id, and nothing else of the caller's. The call is bounded
//! (connect and total timeouts, a response size cap), follows no redirect (a redirect would carry
//! the bearer token elsewhere), and is never retried (a retried mutation could disclose twice).
//! Every way it can fail becomes one [`Error`] variant; the upstream's own error text is logged
//! by kind only and never reaches the client.

mod breaker;
mod client;
mod operation;

use async_trait::async_trait;

pub(crate) use breaker::CircuitBreaker;
pub(crate) use client::{UpstreamClient, UpstreamSettings};

use crate::error::{AppError, ErrorCode};
use crate::issuer::{
    Caller, CreateLinkRequest, DocumentReference, Issuer, IssuerMode, LinkMode, ResourceType,
};

/// Why an upstream call failed, as far as the client may know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Error {
    #[error("upstream timed out")]
    Timeout,
    #[error("upstream unreachable (refused, reset or closed)")]
    Unavailable,
    #[error("upstream refused the credentials")]
    Unauthenticated,
    #[error("upstream forbade the operation")]
    Forbidden,
    #[error("upstream rate limited the caller")]
    RateLimited { retry_after_seconds: u64 },
    #[error("upstream rejected the input")]
    RejectedInput,
    /// 5xx, garbage, oversized answers, redirects and GraphQL errors without a known code. The
    /// reason is a fixed description for logs, never upstream text.
    #[error("upstream answered badly: {0}")]
    BadAnswer(&'static str),
}

impl Error {
    /// A short stable name for logs and metrics labels.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Error::Timeout => "timeout",
            Error::Unavailable => "unavailable",
            Error::Unauthenticated => "unauthenticated",
            Error::Forbidden => "forbidden",
            Error::RateLimited { .. } => "rate_limited",
            Error::RejectedInput => "rejected_input",
            Error::BadAnswer(_) => "bad_answer",
        }
    }
}

/// The [`Issuer`] of upstream mode: every link is created by b.well.
#[derive(Debug)]
pub(crate) struct UpstreamIssuer {
    client: UpstreamClient,
    breaker: CircuitBreaker,
}

impl UpstreamIssuer {
    pub(crate) fn new(client: UpstreamClient, breaker: CircuitBreaker) -> Self {
        Self { client, breaker }
    }
}

#[async_trait]
impl Issuer for UpstreamIssuer {
    fn mode(&self) -> IssuerMode {
        IssuerMode::Upstream
    }

    fn shareable_resource_types(&self) -> &'static [ResourceType] {
        &ResourceType::UPSTREAM
    }

    /// b.well makes passcode links only, and decides how long they are valid.
    fn check_request(&self, request: &CreateLinkRequest) -> Result<(), AppError> {
        if request.mode == LinkMode::Direct {
            return Err(AppError::not_supported_in_mode(
                "mode DIRECT",
                IssuerMode::Upstream.as_str(),
            ));
        }
        if request.expires_in.is_some() {
            return Err(AppError::bad_user_input(
                "expiresInSeconds is not accepted in upstream mode: b.well decides how long its \
                 links are valid",
            ));
        }
        Ok(())
    }

    async fn create_health_link(
        &self,
        caller: &Caller,
        request: &CreateLinkRequest,
    ) -> Result<DocumentReference, AppError> {
        let Some(permit) = self.breaker.try_acquire() else {
            tracing::warn!(
                upstream.error = "breaker_open",
                "upstream call refused: circuit open"
            );
            return Err(Error::Unavailable.into());
        };
        let result = self.client.create_health_link(caller, request).await;
        self.breaker
            .record(permit, &result.as_ref().map(|_| ()).map_err(Clone::clone));
        Ok(result?)
    }
}

/// Where an upstream failure becomes a public answer: here, beside the failures, so that the
/// shared error type knows nothing of the upstream.
impl From<Error> for AppError {
    /// The upstream's own words stay in the upstream module's log line; clients get a fixed message.
    fn from(error: Error) -> Self {
        match error {
            Error::Timeout => AppError::new(
                ErrorCode::UpstreamTimeout,
                "the upstream did not answer in time",
            ),
            Error::Unavailable => AppError::new(
                ErrorCode::UpstreamUnavailable,
                "the upstream is unreachable",
            ),
            Error::Unauthenticated => AppError::new(
                ErrorCode::Unauthenticated,
                "the upstream did not accept the credentials",
            ),
            Error::Forbidden => AppError::new(
                ErrorCode::Forbidden,
                "the upstream refused this operation for these credentials",
            ),
            Error::RateLimited {
                retry_after_seconds,
            } => AppError::rate_limited(retry_after_seconds),
            Error::RejectedInput => AppError::bad_user_input("the upstream rejected the input"),
            Error::BadAnswer(_) => AppError::new(
                ErrorCode::UpstreamError,
                "the upstream answered with an error",
            ),
        }
    }
}
