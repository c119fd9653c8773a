//! Resolving b.well's passcode link as a receiver would, once, into a patient record.
//!
//! The stages are the receiver module's (`crate::receiver`), run one by one so that the host
//! check sits between reading the link and sending the passcode anywhere. Every failure is a
//! [`ResolveError`] that names its stage and maps to a code of the closed list: whatever b.well
//! answers, the caller gets `UPSTREAM_TIMEOUT`, `UPSTREAM_UNAVAILABLE` or `UPSTREAM_ERROR`,
//! within the bridge's deadline.

use secrecy::SecretString;

use super::BridgeSettings;
use crate::error::{AppError, ErrorCode};
use crate::issuer::fhir::{PatientRecord, Unimportable};
use crate::passcode::Passcode;
use crate::receiver::outbound::FetchError;
use crate::receiver::retrieve::RetrieveError;
use crate::receiver::{
    BuildError, OutboundSettings, Profile, Receiver, ReceiverSettings, content, decrypt, link,
};

/// Who the bridge says it is in its manifest request: b.well's access log shows this name.
pub(crate) const RECIPIENT: &str = "shl-gateway (Kill the Clipboard bridge)";

/// Why b.well's link did not become a record. The texts name stages, hosts, statuses and rules,
/// never the link, its key or the passcode (the receiver module's errors hold none either).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ResolveError {
    #[error("b.well's answer holds no link")]
    NoLink,
    #[error("b.well's link does not decode: {0}")]
    Decode(#[from] link::DecodeError),
    #[error("b.well's link breaks the SHL rules: {0}")]
    Payload(#[from] link::PayloadError),
    #[error("b.well's link is not a passcode link")]
    NotPasscode,
    #[error("b.well's manifest host {0} is not in --ktc-bridge-hosts")]
    HostNotAllowed(String),
    #[error("retrieving b.well's file: {0}")]
    Retrieve(#[from] RetrieveError),
    #[error("b.well's manifest lists {0} files; the bridge takes exactly one")]
    FileCount(usize),
    #[error("b.well's file does not decrypt: {0}")]
    Decrypt(#[from] decrypt::DecryptError),
    #[error("b.well's file is not a valid document: {0}")]
    Content(#[from] content::ContentError),
    #[error("b.well's document cannot be read as a patient record: {0}")]
    Import(#[from] crate::issuer::fhir::ImportError),
}

impl ResolveError {
    /// A short stable name for logs.
    pub(crate) fn stage(&self) -> &'static str {
        match self {
            Self::NoLink | Self::Decode(_) | Self::Payload(_) | Self::NotPasscode => "link",
            Self::HostNotAllowed(_) => "host",
            Self::Retrieve(_) | Self::FileCount(_) => "retrieve",
            Self::Decrypt(_) => "decrypt",
            Self::Content(_) | Self::Import(_) => "content",
        }
    }
}

/// The public answer: b.well's side failed, and how. A slow or unreachable b.well is told
/// apart from a wrong answer, as the upstream client does for the GraphQL call.
impl From<ResolveError> for AppError {
    fn from(error: ResolveError) -> Self {
        let timed_out = AppError::new(
            ErrorCode::UpstreamTimeout,
            "the upstream's health link did not answer in time",
        );
        let unavailable = AppError::new(
            ErrorCode::UpstreamUnavailable,
            "the upstream's health link is unreachable",
        );
        match error {
            ResolveError::Retrieve(
                RetrieveError::Deadline(_) | RetrieveError::Fetch(_, FetchError::Timeout(_)),
            ) => timed_out,
            ResolveError::Retrieve(
                RetrieveError::Fetch(_, FetchError::Connect) | RetrieveError::RateLimited { .. },
            ) => unavailable,
            _ => AppError::new(
                ErrorCode::UpstreamError,
                "the upstream's health link could not be converted into a direct link",
            ),
        }
    }
}

/// Resolves b.well's links: a hardened receiver and the hosts it may reach.
#[derive(Debug, Clone)]
pub(crate) struct LinkResolver {
    receiver: Receiver,
    hosts: crate::receiver::hosts::HostPatterns,
}

impl LinkResolver {
    pub(crate) fn new(settings: &BridgeSettings) -> Result<Self, BuildError> {
        let receiver = Receiver::new(ReceiverSettings {
            outbound: OutboundSettings {
                allow_http: settings.allow_http,
                allow_private_addresses: settings.allow_http,
                connect_timeout: settings.connect_timeout,
                request_timeout: settings.timeout,
                // The manifest, and any location it lists: no request leaves the named hosts.
                hosts: Some(settings.hosts.clone()),
                ..OutboundSettings::default()
            },
            // Retrieval as a whole, a location fetch included, within the upstream's timeout.
            deadline: settings.timeout,
            // b.well makes one file per link; a longer list is refused anyway.
            max_files: 4,
            ..ReceiverSettings::new(RECIPIENT)
        })?;
        Ok(Self {
            receiver,
            hosts: settings.hosts.clone(),
        })
    }

    /// Fetches, decrypts and reads b.well's link (`now` in seconds judges its `exp`). The
    /// plaintext lives in memory for the length of this call only.
    pub(crate) async fn resolve(
        &self,
        viewer_url: &str,
        passcode: &Passcode,
        now: i64,
    ) -> Result<PatientRecord, ResolveError> {
        let payload = link::check(link::decode(viewer_url)?, Profile::Shl, now)?;
        if !payload.flags.passcode {
            // The gateway asked for a passcode link; anything else is not what it asked for.
            return Err(ResolveError::NotPasscode);
        }
        let host = payload.url.host_str().unwrap_or_default();
        if !self.hosts.allows(host) {
            return Err(ResolveError::HostNotAllowed(host.to_owned()));
        }
        let passcode = SecretString::from(passcode.expose().to_owned());
        let retrieved = self.receiver.retrieve(&payload, Some(&passcode)).await?;
        let [file] = retrieved.files.as_slice() else {
            return Err(ResolveError::FileCount(retrieved.files.len()));
        };
        let opened = decrypt::open(&payload.key, &file.jwe)?;
        content::check(
            &opened.content,
            file.content_type_of_content(),
            Profile::Shl,
        )?;
        let import = PatientRecord::import(&opened.content, Unimportable::Skip)?;
        Ok(import.record)
    }
}
