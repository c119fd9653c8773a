//! The seam between the link service and whoever issues health links.
//!
//! The link service (`crate::links`) talks to an [`Issuer`] and never learns which mode it runs
//! in: the upstream issuer (`crate::upstream`) relays to b.well, the bridge (`crate::bridge`)
//! turns b.well's links into direct ones with the embedded issuer's help, and the `embedded` issuer runs
//! the SHL protocol itself: [`store`] keeps links and records; [`fhir`] reads records in; [`ips`]
//! turns them into the IPS document of a passcode link and `patient_shared` into the Kill the
//! Clipboard PatientSharedBundle of a direct one (both copy resources as `entries` says), with
//! the PDFs `pdf` renders; [`crate::crypto::jwe`] encrypts the file, [`ticket`] signs file
//! locations. The service records what the issuers do; serving them over HTTP (the manifest
//! endpoints, the viewer page, the JWKS) is `crate::http`'s.
//!
//! The request types here are already validated, so an issuer never sees a malformed label,
//! resource type or passcode.

mod document_reference;
pub(crate) mod embedded;
mod entries;
pub mod fhir;
pub mod ips;
mod link_summary;
pub(crate) mod patient_shared;
mod pdf;
mod request;
pub mod store;
pub mod ticket;

use async_trait::async_trait;

pub use document_reference::{
    Attachment, CodeableConcept, Coding, DocumentReference, DocumentReferenceContent,
    DocumentReferenceContext, Identifier, Period, Reference, SHL_CONTENT_TYPE,
};
pub(crate) use link_summary::{AccessSummary, LinkSummary};
pub use request::{
    BearerToken, Caller, CreateLinkRequest, LinkMode, PatientStory, ResourceType, TraceContext,
    ValidatedLabel,
};

use crate::error::AppError;

/// Which kind of issuer serves this process; named in `NOT_SUPPORTED_IN_MODE` errors and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssuerMode {
    Upstream,
    Embedded,
}

impl IssuerMode {
    pub(crate) fn as_str(self) -> &'static str {
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

    /// The resource types this mode may share: `shareableResourceTypes`, and the types a
    /// request may select.
    fn shareable_resource_types(&self) -> &'static [ResourceType];

    /// This mode's own rules on a request whose fields are each valid, checked before anything
    /// runs (no quota spent, no attempt recorded). Nothing by default.
    fn check_request(&self, _request: &CreateLinkRequest) -> Result<(), AppError> {
        Ok(())
    }

    /// Creates one link. The passcode in `request` is final (generated or validated by the caller).
    async fn create_health_link(
        &self,
        caller: &Caller,
        request: &CreateLinkRequest,
    ) -> Result<DocumentReference, AppError>;

    /// The caller's links, newest first. Embedded mode, and the bridge's DIRECT links
    /// (`crate::bridge`): b.well offers no such query.
    async fn health_links(&self, _caller: &Caller) -> Result<Vec<LinkSummary>, AppError> {
        Err(AppError::not_supported_in_mode(
            "healthLinks",
            self.mode().as_str(),
        ))
    }

    /// Revokes one of the caller's links: its file is dropped and every later access is a 404.
    /// Revoking a revoked link is no error. The link service records the revocation as soon as
    /// this returns, before reading the link back with [`Issuer::health_link`].
    async fn revoke_health_link(&self, _caller: &Caller, _link_id: &str) -> Result<(), AppError> {
        Err(AppError::not_supported_in_mode(
            "revokeHealthLink",
            self.mode().as_str(),
        ))
    }

    /// One of the caller's links, as `healthLinks` lists it. Embedded mode and the bridge.
    async fn health_link(&self, _caller: &Caller, _link_id: &str) -> Result<LinkSummary, AppError> {
        Err(AppError::not_supported_in_mode(
            "healthLinks",
            self.mode().as_str(),
        ))
    }

    /// Whether the dependencies this issuer needs are reachable (for `/readyz`). The upstream
    /// issuer answers `true` without calling b.well: readiness must not depend on a third party.
    async fn is_ready(&self) -> bool {
        true
    }
}
