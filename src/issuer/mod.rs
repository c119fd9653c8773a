//! The seam between the GraphQL layer and whoever issues health links.
//!
//! Resolvers talk to an [`Issuer`] and never learn which mode they run in: the upstream issuer
//! (`crate::upstream`) relays to b.well, and the embedded issuer will run the SHL protocol itself.
//! The request types here are already validated, so an issuer never sees a malformed label,
//! resource type or passcode.

mod document_reference;
mod request;

use async_trait::async_trait;

pub use document_reference::{
    Attachment, CodeableConcept, Coding, DocumentReference, DocumentReferenceContent,
    DocumentReferenceContext, Identifier, Period, Reference, SHL_CONTENT_TYPE,
};
pub use request::{
    Caller, CreateLinkRequest, LinkMode, ResourceType, TraceContext, ValidatedLabel,
};

use crate::error::AppError;

/// Which kind of issuer serves this process; named in `NOT_SUPPORTED_IN_MODE` errors and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssuerMode {
    Upstream,
    Embedded,
}

impl IssuerMode {
    pub fn as_str(self) -> &'static str {
        match self {
            IssuerMode::Upstream => "upstream",
            IssuerMode::Embedded => "embedded",
        }
    }
}

/// Creates SMART Health Links on behalf of an authenticated caller.
#[async_trait]
pub trait Issuer: Send + Sync + std::fmt::Debug {
    fn mode(&self) -> IssuerMode;

    /// Creates one link. The passcode in `request` is final (generated or validated by the caller).
    async fn create_health_link(
        &self,
        caller: &Caller,
        request: &CreateLinkRequest,
    ) -> Result<DocumentReference, AppError>;

    /// Whether the dependencies this issuer needs are reachable (for `/readyz`). The upstream
    /// issuer answers `true` without calling b.well: readiness must not depend on a third party.
    async fn is_ready(&self) -> bool {
        true
    }
}
