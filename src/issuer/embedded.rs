//! The embedded SMART Health Links issuer: the default mode, when no upstream is configured.
//!
//! Creating a link builds an IPS document from the caller's own records, encrypts it under a
//! fresh key, and stores only the ciphertext: the key lives in the link alone, and the passcode
//! only as a peppered argon2id hash. Opening a link follows the SHL manifest protocol: the
//! decisions live here, each answer comes back as an [`Access`] with the record it owes, and the
//! link service (`crate::links`) keeps that record before anything is disclosed. `crate::http`
//! maps it all to HTTP.

use std::sync::Arc;
use std::time::Duration;

use async_graphql::ID;
use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use url::Url;
use uuid::Uuid;

use super::fhir::PatientRecord;
use super::ips::{IpsOptions, build_ips};
use super::patient_shared::{
    SharedBundleOptions, SharedDocument, add_document, build_patient_shared_bundle, has_content,
};
use super::pdf::{PdfError, PdfRenderer};
use super::store::{
    AccessAction, AccessOutcome, AccessRecord, AttemptReservation, AttemptVerdict, LinkRecord,
    LinkStore, StoreError,
};
use super::{
    Attachment, Caller, CodeableConcept, Coding, CreateLinkRequest, DocumentReference,
    DocumentReferenceContent, DocumentReferenceContext, Identifier, Issuer, IssuerMode, LinkMode,
    LinkSummary, Period, Reference, ResourceType, SHL_CONTENT_TYPE, ticket,
};
use crate::clock::now_ms;
use crate::crypto::Keys;
use crate::crypto::attestation::AppAttestation;
use crate::crypto::jwe::{self, ContentType, ShlKey};
use crate::error::{AppError, ErrorCode};
use crate::passcode::PasscodeHasher;

/// The path every manifest URL starts with, after the public URL (mirrors b.well's).
pub(crate) const MANIFEST_PATH: &str = "/v1/health-link/manifests/";
pub(crate) const FILES_PATH: &str = "/v1/health-link/files/";
pub(crate) const VIEWER_PATH: &str = "/v1/health-link/viewer.html";
/// SHL rule: the `url` in a payload is at most 128 characters.
pub(crate) const MAX_SHL_URL_LEN: usize = 128;
/// 32 random bytes, base64url: 256 bits of entropy, 43 characters.
const MANIFEST_ID_LEN: usize = 43;

/// How the embedded issuer makes links.
#[derive(Debug, Clone)]
pub(crate) struct EmbeddedSettings {
    /// Base of manifest and viewer URLs, without a trailing slash.
    pub(crate) public_url: Url,
    /// `DocumentReference.identifier.system` of the gateway's links.
    pub(crate) identifier_system: String,
    pub(crate) passcode_link_validity: Duration,
    pub(crate) direct_link_validity: Duration,
    /// The longest validity a request may ask for (`expiresInSeconds`), per mode.
    pub(crate) max_passcode_link_validity: Duration,
    pub(crate) max_direct_link_validity: Duration,
    /// PDFs rendered at once (a direct link's summary and story).
    pub(crate) max_concurrent_pdf_renders: usize,
    /// Lifetime budget of wrong passcodes per link.
    pub(crate) passcode_attempts: u32,
    pub(crate) location_ticket_lifetime: Duration,
}

impl EmbeddedSettings {
    /// The manifest URL of the longest possible id; startup refuses a public URL that would
    /// make it longer than the SHL limit.
    pub(crate) fn longest_manifest_url(&self) -> String {
        format!(
            "{}{MANIFEST_PATH}{}",
            self.base(),
            "x".repeat(MANIFEST_ID_LEN)
        )
    }

    fn base(&self) -> &str {
        self.public_url.as_str().trim_end_matches('/')
    }
}

#[derive(Debug)]
pub(crate) struct EmbeddedIssuer {
    store: Arc<dyn LinkStore>,
    keys: Keys,
    hasher: PasscodeHasher,
    settings: EmbeddedSettings,
    /// Set: every DIRECT link's Bundle carries the app attestation.
    attestation: Option<AppAttestation>,
    /// Renders a DIRECT link's PDFs off the async workers, a bounded number at once.
    pdf: PdfRenderer,
}

/// What one access to a link decided: the record it owes and the answer it may give once that
/// record is kept. The issuer decides; the link service records, then answers.
#[derive(Debug)]
#[must_use = "an access owes its record before its answer is given"]
pub(crate) struct Access<T> {
    /// `None` when there is no link to record against (an unknown id, a bad ticket).
    pub(crate) record: Option<AccessRecord>,
    /// For passcode checks: the wrong passcodes the link may still take.
    pub(crate) remaining_attempts: Option<i64>,
    pub(crate) answer: T,
}

impl<T> Access<T> {
    fn unrecorded(answer: T) -> Self {
        Self {
            record: None,
            remaining_attempts: None,
            answer,
        }
    }

    fn recorded(record: AccessRecord, answer: T) -> Self {
        Self {
            record: Some(record),
            remaining_attempts: None,
            answer,
        }
    }
}

/// A manifest request after validation (`crate::http` checks the JSON and the recipient).
#[derive(Debug)]
pub(crate) struct ManifestRequest {
    pub(crate) recipient: String,
    pub(crate) passcode: Option<String>,
    pub(crate) embedded_length_max: Option<u64>,
}

/// One file of a manifest answer: the JWE itself or a ticket URL for it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ManifestFile {
    Embedded(String),
    Location(String),
}

/// How long a reserved passcode attempt is presumed in flight. A verification takes tens of
/// milliseconds; a reservation whose verdict has not come by then was lost with its process
/// and counts as spent.
const ATTEMPT_LEASE: Duration = Duration::from_secs(10);

/// The verdict on one passcode attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PasscodeCheck {
    Right,
    Wrong {
        remaining_after: i64,
    },
    /// The budget is spent (or the link ended meanwhile).
    Exhausted,
    /// No verdict within the deadline (hashing queued too long, verdicts lost): try again.
    Busy,
}

/// What a manifest request gets.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ManifestAnswer {
    Files(Vec<ManifestFile>),
    WrongPasscode {
        remaining_attempts: i64,
    },
    /// Unknown, expired, revoked or locked: one answer for all, so nothing leaks.
    NotActive,
}

fn duration_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// `2025-12-19T19:42:02.887Z`, the form of b.well's dates.
pub(crate) fn format_instant(ms: i64) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|instant| instant.format(&format).ok())
        .unwrap_or_default()
}

/// The stored form of a manifest id. A plain hash suffices: the id has 256 bits of entropy.
pub(crate) fn manifest_id_hash(manifest_id: &str) -> String {
    hex::encode(Sha256::digest(manifest_id.as_bytes()))
}

pub(crate) fn is_well_formed_manifest_id(candidate: &str) -> bool {
    candidate.len() == MANIFEST_ID_LEN
        && candidate
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}

fn store_error(error: StoreError) -> AppError {
    tracing::error!(error = %error, "store operation failed");
    AppError::internal()
}

impl EmbeddedIssuer {
    pub(crate) fn new(
        store: Arc<dyn LinkStore>,
        keys: Keys,
        hasher: PasscodeHasher,
        settings: EmbeddedSettings,
    ) -> Self {
        let pdf = PdfRenderer::new(settings.max_concurrent_pdf_renders);
        Self {
            store,
            keys,
            hasher,
            settings,
            attestation: None,
            pdf,
        }
    }

    /// Attests every DIRECT link's Bundle with `attestation`, when given.
    pub(crate) fn with_attestation(mut self, attestation: Option<AppAttestation>) -> Self {
        self.attestation = attestation;
        self
    }

    /// The JWK Set of the attestation keys, when attestation is on.
    pub(crate) fn attestation_jwks(&self) -> Option<&str> {
        self.attestation.as_ref().map(AppAttestation::jwks)
    }

    /// The app attestation (Kill the Clipboard) in a DIRECT link's `Bundle.meta.extension`,
    /// after any extension already there; PASSCODE links' IPS documents get none.
    fn attest(&self, mode: LinkMode, bundle: &mut Value, now: i64) {
        let Some(attestation) = &self.attestation else {
            return;
        };
        if mode != LinkMode::Direct {
            return;
        }
        let extension = attestation.extension(now.div_euclid(1000));
        let extensions = &mut bundle["meta"]["extension"];
        match extensions.as_array_mut() {
            Some(list) => list.push(extension),
            None => *extensions = json!([extension]),
        }
    }

    pub(crate) fn store(&self) -> &Arc<dyn LinkStore> {
        &self.store
    }

    /// The patient behind the caller's bearer token.
    async fn patient_of(&self, caller: &Caller) -> Result<String, AppError> {
        let unauthenticated = || AppError::new(ErrorCode::Unauthenticated, "unknown bearer token");
        let token = caller.bearer.as_ref().ok_or_else(unauthenticated)?;
        self.store
            .patient_for_token(&self.keys.token_hmac(token.expose()))
            .await
            .map_err(store_error)?
            .ok_or_else(unauthenticated)
    }

    /// What a link shares: b.well's IPS document for a passcode link (its viewer reads one), the
    /// Kill the Clipboard PatientSharedBundle for a direct one (its receivers reject a document),
    /// with the PDFs the request asks for.
    async fn shared_bundle(
        &self,
        record: &PatientRecord,
        request: &CreateLinkRequest,
        timestamp: &str,
    ) -> Result<Value, AppError> {
        let bundle_id = Uuid::new_v4().to_string();
        if request.mode == LinkMode::Passcode {
            return Ok(build_ips(
                record,
                &IpsOptions {
                    selected: &request.resources,
                    bundle_id: &bundle_id,
                    timestamp,
                    title: "Patient summary",
                },
            ));
        }
        let mut bundle = build_patient_shared_bundle(
            record,
            &SharedBundleOptions {
                selected: &request.resources,
                bundle_id: &bundle_id,
                timestamp,
            },
        );
        // Rendered from the resources alone: the summary shows no DocumentReference.
        let summary = if request.rendered_summary {
            let label = request
                .label
                .as_ref()
                .map(|label| label.as_str().to_owned());
            Some(
                self.pdf
                    .summary(Arc::new(bundle.clone()), label, timestamp.to_owned())
                    .await
                    .map_err(pdf_error)?,
            )
        } else {
            None
        };
        let story = match &request.story {
            Some(story) => {
                let text = story.as_str();
                let pdf = self
                    .pdf
                    .story(text.to_owned(), timestamp.to_owned())
                    .await
                    .map_err(pdf_error)?;
                Some((text, pdf))
            }
            None => None,
        };
        if let Some(pdf) = summary {
            add_document(
                &mut bundle,
                SharedDocument::RenderedSummary,
                &pdf,
                timestamp,
            );
        }
        if let Some((text, pdf)) = story {
            add_document(
                &mut bundle,
                SharedDocument::PatientStory { text },
                &pdf,
                timestamp,
            );
        }
        if !has_content(&bundle) {
            return Err(AppError::bad_user_input(
                "a DIRECT link needs something besides the Patient: a resource on file of the \
                 selected types, the rendered summary (renderedSummary) or the patient's story \
                 (the Kill the Clipboard profile asks for one)",
            ));
        }
        Ok(bundle)
    }

    /// One of the owner's own links; another owner's link is as unknown as a made-up id.
    async fn link_of(&self, owner: &str, link_id: &str) -> Result<LinkRecord, AppError> {
        self.store
            .link_by_id(link_id)
            .await
            .map_err(store_error)?
            .filter(|link| link.patient_id == owner)
            .ok_or_else(|| AppError::new(ErrorCode::NotFound, "no such health link"))
    }

    /// The owner's links, newest first. The owner is the patient id in embedded mode, the
    /// bridge's caller identity in upstream mode (`crate::bridge`).
    pub(crate) async fn links_of_owner(&self, owner: &str) -> Result<Vec<LinkSummary>, AppError> {
        let links = self
            .store
            .links_of_patient(owner)
            .await
            .map_err(store_error)?;
        let mut summaries = Vec::with_capacity(links.len());
        for link in links {
            summaries.push(self.summary(link).await?);
        }
        Ok(summaries)
    }

    /// Revokes one of the owner's links (see [`Issuer::revoke_health_link`]).
    pub(crate) async fn revoke_of_owner(&self, owner: &str, link_id: &str) -> Result<(), AppError> {
        let link = self.link_of(owner, link_id).await?;
        if self
            .store
            .revoke_link(&link.id, now_ms())
            .await
            .map_err(store_error)?
        {
            tracing::info!(link.id = %link.id, "health link revoked");
        }
        Ok(())
    }

    /// One of the owner's links, as listed.
    pub(crate) async fn link_summary_of_owner(
        &self,
        owner: &str,
        link_id: &str,
    ) -> Result<LinkSummary, AppError> {
        let link = self.link_of(owner, link_id).await?;
        self.summary(link).await
    }

    fn manifest_url(&self, manifest_id: &str) -> String {
        format!("{}{MANIFEST_PATH}{manifest_id}", self.settings.base())
    }

    /// Serves a manifest request (flag `P`, or no `U`).
    pub(crate) async fn open_manifest(
        &self,
        manifest_id: &str,
        request: ManifestRequest,
    ) -> Result<Access<ManifestAnswer>, AppError> {
        let now = now_ms();
        let Some(link) = self.find_link(manifest_id).await? else {
            return Ok(Access::unrecorded(ManifestAnswer::NotActive));
        };
        let access = |outcome: AccessOutcome| AccessRecord {
            link_id: link.id.clone(),
            at: now,
            recipient: request.recipient.clone(),
            action: AccessAction::Manifest,
            outcome,
        };
        let wrong_passcode = |outcome, remaining_attempts| Access {
            record: Some(access(outcome)),
            remaining_attempts: Some(remaining_attempts),
            answer: ManifestAnswer::WrongPasscode { remaining_attempts },
        };
        if link.mode == LinkMode::Direct || !link.is_servable(now) {
            return Ok(Access::recorded(
                access(AccessOutcome::Inactive),
                ManifestAnswer::NotActive,
            ));
        }
        if let Some(passcode_hash) = &link.passcode_hash {
            let Some(candidate) = request.passcode.as_deref() else {
                return Ok(wrong_passcode(
                    AccessOutcome::NoPasscode,
                    link.attempts_remaining,
                ));
            };
            match self
                .check_passcode(&link.id, candidate, passcode_hash)
                .await?
            {
                PasscodeCheck::Right => {}
                PasscodeCheck::Wrong { remaining_after } => {
                    return Ok(wrong_passcode(AccessOutcome::BadPasscode, remaining_after));
                }
                PasscodeCheck::Exhausted => {
                    return Ok(Access::recorded(
                        access(AccessOutcome::Inactive),
                        ManifestAnswer::NotActive,
                    ));
                }
                // Nothing was verified and nothing disclosed: no access to record.
                PasscodeCheck::Busy => return Err(AppError::overloaded()),
            }
        }
        let Some(jwe) = link.jwe.clone() else {
            return Ok(Access::unrecorded(ManifestAnswer::NotActive));
        };
        let embed = request
            .embedded_length_max
            .is_some_and(|max| max >= jwe.len() as u64);
        let file = if embed {
            ManifestFile::Embedded(jwe)
        } else {
            ManifestFile::Location(self.location_url(&link)?)
        };
        Ok(Access::recorded(
            access(AccessOutcome::Ok),
            ManifestAnswer::Files(vec![file]),
        ))
    }

    /// One passcode attempt: a hashing permit, then an attempt reserved from the link's budget,
    /// then the verification, then the attempt settled (given back when right), all under the
    /// one permit. Reserving before verifying makes the budget exact under any concurrency
    /// (hundreds of parallel guesses spend it exactly, and cost at most that many hashes); the
    /// permit held until the attempt is settled keeps the attempts in flight on this gateway
    /// within its permits. When every attempt left is in flight (`Pending`), a right passcode
    /// waits for their verdicts rather than taking the link for exhausted: a right one among
    /// them gives its attempt back. docs/decisions.md has the whole argument.
    async fn check_passcode(
        &self,
        link_id: &str,
        candidate: &str,
        passcode_hash: &str,
    ) -> Result<PasscodeCheck, AppError> {
        let lease = duration_ms(ATTEMPT_LEASE);
        // Pending ends by itself within a lease (no attempt left means no new reservation to
        // renew it); the deadline is a second line of defence against a skewed clock.
        let deadline = tokio::time::Instant::now() + ATTEMPT_LEASE + Duration::from_secs(1);
        let mut pause = Duration::from_millis(2);
        loop {
            // The wait for a hashing permit counts against the deadline too: under a queue of
            // hashes, a retry must not wait its turn for ever.
            let permit = match tokio::time::timeout_at(deadline, self.hasher.permit()).await {
                Ok(Some(permit)) => permit,
                Ok(None) => {
                    return Err(AppError::internal_at(
                        "the passcode hashing permits are closed",
                    ));
                }
                Err(_) => return Ok(PasscodeCheck::Busy),
            };
            let now = now_ms();
            match self
                .store
                .reserve_attempt(link_id, now, now.saturating_add(lease))
                .await
                .map_err(store_error)?
            {
                AttemptReservation::Reserved { remaining_after } => {
                    let (right, permit) = self
                        .hasher
                        .verify_holding(permit, candidate, passcode_hash)
                        .await;
                    let verdict = if right {
                        AttemptVerdict::Right
                    } else {
                        AttemptVerdict::Wrong
                    };
                    self.store
                        .settle_attempt(link_id, verdict)
                        .await
                        .map_err(store_error)?;
                    drop(permit);
                    return Ok(if right {
                        PasscodeCheck::Right
                    } else {
                        PasscodeCheck::Wrong { remaining_after }
                    });
                }
                AttemptReservation::Pending if tokio::time::Instant::now() < deadline => {
                    // The permit goes back while waiting: the verdicts awaited may need it.
                    drop(permit);
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(25));
                }
                // Still pending at the deadline: the verdicts awaited are lost or very late, and
                // the link is neither open to this request nor spent.
                AttemptReservation::Pending => return Ok(PasscodeCheck::Busy),
                AttemptReservation::Refused => return Ok(PasscodeCheck::Exhausted),
            }
        }
    }

    fn location_url(&self, link: &LinkRecord) -> Result<String, AppError> {
        let link_id = Uuid::parse_str(&link.id)
            .map_err(|_| AppError::internal_at("a stored link id is not a UUID"))?;
        let expires_at = now_ms() / 1000
            + i64::try_from(self.settings.location_ticket_lifetime.as_secs()).unwrap_or(300);
        let ticket = ticket::issue(&self.keys.location_ticket, link_id, expires_at);
        Ok(format!("{}{FILES_PATH}{ticket}", self.settings.base()))
    }

    /// Serves a location ticket: the JWE, if the ticket is valid and the link still live.
    pub(crate) async fn open_file(&self, ticket: &str) -> Result<Access<Option<String>>, AppError> {
        let now = now_ms();
        let Some(link_id) = ticket::verify(&self.keys.location_ticket, ticket, now / 1000) else {
            return Ok(Access::unrecorded(None));
        };
        let Some(link) = self
            .store
            .link_by_id(&link_id.to_string())
            .await
            .map_err(store_error)?
        else {
            return Ok(Access::unrecorded(None));
        };
        let servable = link.is_servable(now);
        Ok(Self::file_access(
            link,
            now,
            String::new(),
            AccessAction::File,
            servable,
        ))
    }

    /// Serves a direct (flag `U`) link: `GET {url}?recipient=...`.
    pub(crate) async fn open_direct(
        &self,
        manifest_id: &str,
        recipient: &str,
    ) -> Result<Access<Option<String>>, AppError> {
        let now = now_ms();
        let Some(link) = self.find_link(manifest_id).await? else {
            return Ok(Access::unrecorded(None));
        };
        let servable = link.mode == LinkMode::Direct && link.is_servable(now);
        Ok(Self::file_access(
            link,
            now,
            recipient.to_owned(),
            AccessAction::Direct,
            servable,
        ))
    }

    /// The file itself, or nothing, and the record either way.
    fn file_access(
        link: LinkRecord,
        now: i64,
        recipient: String,
        action: AccessAction,
        servable: bool,
    ) -> Access<Option<String>> {
        let outcome = if servable {
            AccessOutcome::Ok
        } else {
            AccessOutcome::Inactive
        };
        let record = AccessRecord {
            link_id: link.id,
            at: now,
            recipient,
            action,
            outcome,
        };
        Access::recorded(record, if servable { link.jwe } else { None })
    }

    /// Adds an access to the link's history, which the patient sees (`healthLinks`).
    pub(crate) async fn add_to_history(&self, access: &AccessRecord) -> Result<(), AppError> {
        self.store.record_access(access).await.map_err(store_error)
    }

    async fn find_link(&self, manifest_id: &str) -> Result<Option<LinkRecord>, AppError> {
        if !is_well_formed_manifest_id(manifest_id) {
            return Ok(None);
        }
        self.store
            .link_by_manifest(&manifest_id_hash(manifest_id))
            .await
            .map_err(store_error)
    }

    async fn summary(&self, link: LinkRecord) -> Result<LinkSummary, AppError> {
        let accesses = self
            .store
            .accesses_of_link(&link.id)
            .await
            .map_err(store_error)?;
        Ok(LinkSummary::new(link, accesses, now_ms()))
    }

    /// Drops expired and revoked files, and old link metadata. Returns (files, links).
    pub(crate) async fn purge(&self, retention: Duration) -> Result<(u64, u64), StoreError> {
        let now = now_ms();
        self.store.purge(now, now - duration_ms(retention)).await
    }
}

/// A render that failed is the gateway's fault, never the input's; its words are fixed.
fn pdf_error(error: PdfError) -> AppError {
    match error {
        PdfError::TooLarge => AppError::bad_user_input(
            "the selected records are too many to render as one PDF: select fewer resource \
             types, or share them as data only (renderedSummary: false)",
        ),
        PdfError::Busy => AppError::overloaded(),
        PdfError::NotRun(step) => AppError::internal_at(step),
        PdfError::Font | PdfError::Write | PdfError::StoryTooLong => {
            AppError::internal_at("rendering a direct link's PDF")
        }
    }
}

fn random_manifest_id() -> Result<String, AppError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|_| {
        AppError::internal_at("drawing a manifest id from the OS random number generator")
    })?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

#[async_trait]
impl Issuer for EmbeddedIssuer {
    fn mode(&self) -> IssuerMode {
        IssuerMode::Embedded
    }

    fn shareable_resource_types(&self) -> &'static [ResourceType] {
        &ResourceType::EMBEDDED
    }

    /// A requested validity within this mode's bound.
    fn check_request(&self, request: &CreateLinkRequest) -> Result<(), AppError> {
        let Some(asked) = request.expires_in else {
            return Ok(());
        };
        let (longest, flag) = match request.mode {
            LinkMode::Passcode => (
                self.settings.max_passcode_link_validity,
                "--max-link-validity",
            ),
            LinkMode::Direct => (
                self.settings.max_direct_link_validity,
                "--max-direct-link-validity",
            ),
        };
        if asked > longest {
            return Err(AppError::bad_user_input(format!(
                "expiresInSeconds must be at most {} for mode {} ({flag})",
                longest.as_secs(),
                request.mode.as_str()
            )));
        }
        Ok(())
    }

    async fn create_health_link(
        &self,
        caller: &Caller,
        request: &CreateLinkRequest,
    ) -> Result<DocumentReference, AppError> {
        let patient_id = self.patient_of(caller).await?;
        let record = self
            .store
            .patient(&patient_id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| {
                AppError::new(ErrorCode::NotFound, "no records on file for this patient")
            })?;
        self.issue(&patient_id, &record, request).await
    }

    async fn health_links(&self, caller: &Caller) -> Result<Vec<LinkSummary>, AppError> {
        let patient_id = self.patient_of(caller).await?;
        self.links_of_owner(&patient_id).await
    }

    async fn revoke_health_link(&self, caller: &Caller, link_id: &str) -> Result<(), AppError> {
        let patient_id = self.patient_of(caller).await?;
        self.revoke_of_owner(&patient_id, link_id).await
    }

    async fn health_link(&self, caller: &Caller, link_id: &str) -> Result<LinkSummary, AppError> {
        let patient_id = self.patient_of(caller).await?;
        self.link_summary_of_owner(&patient_id, link_id).await
    }

    async fn is_ready(&self) -> bool {
        self.store.ping().await
    }
}

impl EmbeddedIssuer {
    /// Makes a link of `record` owned by `owner` (the patient id in embedded mode; the bridge's
    /// caller identity for a link it converted from b.well's): the shared Bundle, encrypted under
    /// a fresh key, only the ciphertext stored.
    pub(crate) async fn issue(
        &self,
        owner: &str,
        record: &PatientRecord,
        request: &CreateLinkRequest,
    ) -> Result<DocumentReference, AppError> {
        let patient_id = owner.to_owned();
        let now = now_ms();
        let validity = request.expires_in.unwrap_or(match request.mode {
            LinkMode::Passcode => self.settings.passcode_link_validity,
            LinkMode::Direct => self.settings.direct_link_validity,
        });
        let expires_at = now + duration_ms(validity);
        let link_id = Uuid::new_v4();
        let manifest_id = random_manifest_id()?;

        let mut bundle = self
            .shared_bundle(record, request, &format_instant(now))
            .await?;
        self.attest(request.mode, &mut bundle, now);
        let key = ShlKey::generate().map_err(|_| {
            AppError::internal_at("drawing an SHL key from the OS random number generator")
        })?;
        let jwe = jwe::encrypt(&key, ContentType::FhirJson, bundle.to_string().as_bytes())
            .map_err(|_| AppError::internal_at("encrypting a link's file"))?;
        let passcode_hash = match &request.passcode {
            Some(passcode) => Some(
                self.hasher
                    .hash(passcode)
                    .await
                    .map_err(|_| AppError::internal_at("hashing a link's passcode"))?,
            ),
            None => None,
        };

        let link = LinkRecord {
            id: link_id.to_string(),
            patient_id: patient_id.clone(),
            label: request
                .label
                .as_ref()
                .map(|label| label.as_str().to_owned()),
            mode: request.mode,
            resource_types: request
                .resources
                .iter()
                .map(|r| r.as_str().to_owned())
                .collect(),
            passcode_hash,
            attempts_remaining: i64::from(self.settings.passcode_attempts),
            attempts_in_flight: 0,
            attempt_lease_until: 0,
            created_at: now,
            expires_at,
            revoked_at: None,
            jwe: Some(jwe),
        };
        self.store
            .insert_link(&link, &manifest_id_hash(&manifest_id))
            .await
            .map_err(store_error)?;
        tracing::info!(link.id = %link.id, link.mode = link.mode.as_str(), "health link created");

        let mut payload = json!({
            "url": self.manifest_url(&manifest_id),
            "key": key.to_base64url(),
            "exp": expires_at / 1000,
            "flag": request.mode.flag(),
            "v": 1,
        });
        if let Some(label) = &request.label {
            payload["label"] = json!(label.as_str());
        }
        let shlink = format!("shlink:/{}", URL_SAFE_NO_PAD.encode(payload.to_string()));
        let viewer_url = format!("{}{VIEWER_PATH}#{shlink}", self.settings.base());
        Ok(self.document_reference(&link, &viewer_url))
    }

    /// The same shape as b.well's answer, with the gateway's own identifier system.
    fn document_reference(&self, link: &LinkRecord, viewer_url: &str) -> DocumentReference {
        let created = format_instant(link.created_at);
        DocumentReference {
            id: ID(link.id.clone()),
            identifier: Some(vec![Identifier {
                system: Some(self.settings.identifier_system.clone()),
                value: Some(link.id.clone()),
            }]),
            description: Some("Patient Summary".to_owned()),
            resource_type: Some("DocumentReference".to_owned()),
            date: Some(created.clone()),
            status: Some("current".to_owned()),
            subject: Some(Reference {
                reference: Some(format!("Patient/{}", link.patient_id)),
            }),
            context: Some(DocumentReferenceContext {
                period: Some(Period {
                    start: Some(created),
                    end: Some(format_instant(link.expires_at)),
                }),
            }),
            content: Some(vec![DocumentReferenceContent {
                attachment: Some(Attachment {
                    content_type: Some(SHL_CONTENT_TYPE.to_owned()),
                    url: Some(viewer_url.to_owned()),
                    title: Some("SMART Health Link Payload".to_owned()),
                }),
            }]),
            category: Some(vec![CodeableConcept {
                coding: Some(vec![Coding {
                    system: Some(
                        "http://hl7.org/fhir/uv/smart-health-cards-and-links/StructureDefinition/ShlPayload"
                            .to_owned(),
                    ),
                    code: Some("smart-health-link".to_owned()),
                }]),
            }]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_have_the_seed_form() {
        assert_eq!(
            format_instant(1_766_173_322_887),
            "2025-12-19T19:42:02.887Z"
        );
        assert_eq!(format_instant(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn manifest_ids_are_43_base64url_characters() {
        let id = random_manifest_id().expect("rng");
        assert!(is_well_formed_manifest_id(&id), "{id}");
        assert!(!is_well_formed_manifest_id("short"));
        assert!(!is_well_formed_manifest_id(&format!("{}/", &id[..42])));
    }
}
