//! The Kill the Clipboard bridge: DIRECT links in upstream mode (`--ktc-bridge`, opt-in).
//!
//! b.well makes passcode (`P`) links to an IPS document; Kill the Clipboard receivers accept
//! only `U` links to a PatientSharedBundle. The gateway sees both halves of b.well's link (it
//! generates the passcode, it relays the link), so for `mode: DIRECT` it asks b.well for a link
//! with a passcode of its own, resolves that link once as a receiver would ([`resolve`], through
//! `crate::receiver`'s hardened client and only towards the hosts the operator named, for the
//! manifest and every `location` alike), and
//! reissues the record as a direct link of the embedded issuer: the PatientSharedBundle with
//! its PDFs and attestation, encrypted under a fresh key, only the ciphertext stored. The
//! patient's data is in the gateway's memory in plaintext for the length of one request; b.well's
//! passcode and key are never stored or logged.
//!
//! PASSCODE links are b.well's, relayed as without the bridge. The bridged links live in the
//! embedded store, owned by the caller's identity in upstream mode ([`owner_of`]), so listing,
//! revoking and access history work for them as for embedded links.

mod resolve;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub(crate) use crate::receiver::hosts::HostPatterns;
pub(crate) use resolve::LinkResolver;
use resolve::ResolveError;

use crate::clock::now_ms;
use crate::crypto::Keys;
use crate::error::{AppError, ErrorCode};
use crate::issuer::embedded::EmbeddedIssuer;
use crate::issuer::{
    Caller, CreateLinkRequest, DocumentReference, Issuer, IssuerMode, LinkMode, LinkSummary,
    Reference, ResourceType, SHL_CONTENT_TYPE,
};
use crate::passcode::Passcode;

/// The default `--ktc-bridge-hosts`: b.well's viewer and manifest hosts are all below this
/// domain (`api-gateway.client-sandbox.icanbwell.com`, `api-gateway.dev.icanbwell.com` in its
/// examples).
pub(crate) const DEFAULT_HOSTS: &str = "*.icanbwell.com";

/// How the bridge reaches b.well's links.
#[derive(Debug, Clone)]
pub(crate) struct BridgeSettings {
    /// The hosts a manifest may be fetched from.
    pub(crate) hosts: HostPatterns,
    /// Plain http and loopback/private addresses (tests, local use).
    pub(crate) allow_http: bool,
    pub(crate) connect_timeout: Duration,
    /// Longest wait for one fetch, and for the whole resolution of a link.
    pub(crate) timeout: Duration,
}

/// The [`Issuer`] of upstream mode with the bridge on: b.well's for passcode links, the
/// embedded issuer's store and builders for direct ones.
#[derive(Debug)]
pub(crate) struct BridgeIssuer {
    upstream: Arc<dyn Issuer>,
    embedded: Arc<EmbeddedIssuer>,
    resolver: LinkResolver,
    keys: Keys,
}

/// Who owns a bridged link: the keyed hash of the caller's bearer token, the same HMAC the store
/// keeps embedded mode's tokens as. Upstream mode knows callers by their token only (b.well
/// tells the patient behind it, but only in answer to a call), and a prefix no FHIR id can
/// have keeps these owners apart from embedded patients' ids. See docs/decisions.md.
fn owner_of(keys: &Keys, caller: &Caller) -> Result<String, AppError> {
    let token = caller.bearer.as_ref().ok_or_else(|| {
        AppError::new(
            ErrorCode::Unauthenticated,
            "an Authorization: Bearer <token> header is required",
        )
    })?;
    Ok(format!("bearer:{}", keys.token_hmac(token.expose())))
}

impl BridgeIssuer {
    pub(crate) fn new(
        upstream: Arc<dyn Issuer>,
        embedded: Arc<EmbeddedIssuer>,
        resolver: LinkResolver,
        keys: Keys,
    ) -> Self {
        Self {
            upstream,
            embedded,
            resolver,
            keys,
        }
    }

    /// b.well's link for the same selection, protected by a passcode only the gateway knows,
    /// and b.well's `subject` (the patient's reference there, which the bridged link names too).
    async fn upstream_link(
        &self,
        caller: &Caller,
        request: &CreateLinkRequest,
        passcode: Passcode,
    ) -> Result<(String, Option<Reference>), AppError> {
        let upstream_request = CreateLinkRequest {
            label: request.label.clone(),
            resources: request.resources.clone(),
            passcode: Some(passcode),
            mode: LinkMode::Passcode,
            expires_in: None,
            rendered_summary: false,
            story: None,
        };
        let answer = self
            .upstream
            .create_health_link(caller, &upstream_request)
            .await?;
        let url = answer
            .content
            .iter()
            .flatten()
            .filter_map(|content| content.attachment.as_ref())
            .find(|attachment| attachment.content_type.as_deref() == Some(SHL_CONTENT_TYPE))
            .and_then(|attachment| attachment.url.clone())
            .ok_or(ResolveError::NoLink)
            .map_err(|error| self.refused(error))?;
        Ok((url, answer.subject))
    }

    /// Logs why b.well's link was refused, once, by stage (the texts hold no secret), and
    /// gives the public answer.
    fn refused(&self, error: ResolveError) -> AppError {
        tracing::warn!(
            bridge.stage = error.stage(),
            bridge.error = %error,
            "b.well's link not converted"
        );
        error.into()
    }

    async fn create_direct(
        &self,
        caller: &Caller,
        request: &CreateLinkRequest,
    ) -> Result<DocumentReference, AppError> {
        let owner = owner_of(&self.keys, caller)?;
        let passcode = Passcode::generate().map_err(|_| {
            AppError::internal_at("drawing a passcode from the OS random number generator")
        })?;
        // The passcode goes to b.well and to b.well's manifest host, nowhere else, and is
        // dropped (wiped) with this call.
        let (viewer_url, subject) = self
            .upstream_link(caller, request, passcode.clone())
            .await?;
        let record = self
            .resolver
            .resolve(&viewer_url, &passcode, now_ms().div_euclid(1000))
            .await
            .map_err(|error| self.refused(error))?;
        drop(passcode);
        let mut document = self.embedded.issue(&owner, &record, request).await?;
        // The gateway's owner id is an HMAC, meaningless to the app; b.well's is the patient's.
        document.subject = subject;
        Ok(document)
    }
}

#[async_trait]
impl Issuer for BridgeIssuer {
    fn mode(&self) -> IssuerMode {
        IssuerMode::Upstream
    }

    fn shareable_resource_types(&self) -> &'static [ResourceType] {
        self.upstream.shareable_resource_types()
    }

    /// A direct link's validity is the gateway's to bound (`--max-direct-link-validity`); a
    /// passcode link's rules are b.well's.
    fn check_request(&self, request: &CreateLinkRequest) -> Result<(), AppError> {
        match request.mode {
            LinkMode::Direct => self.embedded.check_request(request),
            LinkMode::Passcode => self.upstream.check_request(request),
        }
    }

    async fn create_health_link(
        &self,
        caller: &Caller,
        request: &CreateLinkRequest,
    ) -> Result<DocumentReference, AppError> {
        match request.mode {
            LinkMode::Direct => self.create_direct(caller, request).await,
            LinkMode::Passcode => self.upstream.create_health_link(caller, request).await,
        }
    }

    /// The caller's bridged links (b.well's passcode links are b.well's to list, and it offers
    /// no such query).
    async fn health_links(&self, caller: &Caller) -> Result<Vec<LinkSummary>, AppError> {
        self.embedded
            .links_of_owner(&owner_of(&self.keys, caller)?)
            .await
    }

    async fn revoke_health_link(&self, caller: &Caller, link_id: &str) -> Result<(), AppError> {
        self.embedded
            .revoke_of_owner(&owner_of(&self.keys, caller)?, link_id)
            .await
    }

    async fn health_link(&self, caller: &Caller, link_id: &str) -> Result<LinkSummary, AppError> {
        self.embedded
            .link_summary_of_owner(&owner_of(&self.keys, caller)?, link_id)
            .await
    }

    /// The store the bridged links live in; never b.well.
    async fn is_ready(&self) -> bool {
        self.embedded.is_ready().await
    }
}
