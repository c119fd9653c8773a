//! The link service: the workflow of every operation on health links, for both issuers.
//!
//! The GraphQL resolvers and the SHL handlers are adapters over this module, and the rules that
//! make the audit trail whole are kept here, once:
//!
//! - Every creation leaves a `creation-attempt` record before its issuer is called and an
//!   outcome record after; one refused before its attempt (credentials, input, quota, a
//!   document refused whole) leaves a `creation-refused` record.
//! - Nothing is disclosed without its durable record: a new link leaves only after its
//!   `link-created` record, a manifest or file only after its access record (the audit trail
//!   first, then the patient's own history of the link).
//! - A failing trail stops the operation with `AUDIT_UNAVAILABLE`; where nothing was disclosed,
//!   a refusal's own record may fail without changing the answer.
//!
//! [`LinkService`] runs the control plane (create, list, revoke) over either [`Issuer`];
//! [`LinkAccesses`] runs the data plane of the embedded issuer (manifest, file, direct).

mod access;
mod create;
mod events;
mod manage;
#[cfg(test)]
mod tests;

use std::sync::Arc;

pub(crate) use access::{AccessContext, LinkAccesses};

use crate::audit::AuditTrail;
use crate::error::{AppError, ErrorCode};
use crate::idempotency::Idempotency;
use crate::issuer::{BearerToken, Caller, DocumentReference, Issuer};
use crate::passcode::Passcode;
use crate::ratelimit::RatePolicy;

/// The control plane of health links. Cheap to clone: everything inside is shared.
#[derive(Debug, Clone)]
pub struct LinkService {
    issuer: Arc<dyn Issuer>,
    rate_policy: RatePolicy,
    audit: AuditTrail,
    idempotency: Arc<Idempotency>,
}

/// A link just made (or replayed for a retry), with the passcode that protects it: the only
/// time the passcode leaves the gateway.
#[derive(Debug)]
pub(crate) struct CreatedLink {
    pub(crate) document: DocumentReference,
    pub(crate) passcode: Option<Passcode>,
}

impl LinkService {
    pub fn new(
        issuer: Arc<dyn Issuer>,
        rate_policy: RatePolicy,
        audit: AuditTrail,
        idempotency: Arc<Idempotency>,
    ) -> Self {
        Self {
            issuer,
            rate_policy,
            audit,
            idempotency,
        }
    }
}

/// Refuses a caller without a bearer token before anything is sent anywhere.
fn require_bearer(caller: &Caller) -> Result<&BearerToken, AppError> {
    caller.bearer.as_ref().ok_or_else(|| {
        AppError::new(
            ErrorCode::Unauthenticated,
            "an Authorization: Bearer <token> header is required",
        )
    })
}
