//! The receiver side of SMART Health Links: what an EHR does with a link a patient shows it.
//! `shl-gateway inspect` runs it against any link; it is a library first, so other parts of the
//! gateway can resolve a link the same way (a bridge that turns b.well's passcode links into
//! direct ones, say).
//!
//! A link is received in stages, each with its own module and its own error type, so a
//! failure always says where it happened (the stage names are those of the CMS IG's test
//! vectors, plus attestation):
//!
//! 1. **decode** ([`link::decode`]): find `shlink:/` (bare or behind a viewer), base64url, JSON.
//! 2. **payload** ([`link::check`]): the SHL base rules, and for [`Profile::Ktc`] the Kill the
//!    Clipboard profile's (flag exactly `U`, `exp` required and not past, ...).
//! 3. **retrieve** ([`retrieve`]): the manifest protocol, or one `GET` for a `U` link, through
//!    [`outbound`]'s hardened client (https only, checked addresses, no redirects, timeouts, caps).
//! 4. **decrypt** ([`decrypt::open`]): the compact JWE under the link's key, `zip: DEF` inflated.
//! 5. **bundle** ([`content::check`]): an IPS document or a PatientSharedBundle.
//! 6. **attestation** ([`attestation`], optional): the app attestation's ES256 signature against
//!    its issuer's JWKS. Never blocks receipt, as the profile asks.
//!
//! [`Receiver::receive`] runs them all; the stages are also public one by one, for a caller
//! that reports on each (`inspect`) or checks something between them (which hosts it trusts).
//!
//! Nothing here logs, and no error or `Debug` output holds a key, a passcode, a link or a
//! link's URL path (a capability): messages name hosts, lengths, statuses and rules.

pub mod attestation;
pub mod content;
pub mod decrypt;
pub mod hosts;
pub mod link;
pub mod outbound;
pub mod retrieve;

use std::time::Duration;

use secrecy::SecretString;
use serde::Serialize;

use self::outbound::OutboundClient;
pub use self::outbound::{BuildError, OutboundSettings};

/// Which rules a link and its content are held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// HL7 SMART Health Links STU1: any flags; the content an IPS document or a
    /// PatientSharedBundle.
    Shl,
    /// The CMS Kill the Clipboard profile: flag exactly `U`, `exp` required, a
    /// PatientSharedBundle.
    Ktc,
}

impl Profile {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Shl => "SMART Health Links",
            Self::Ktc => "Kill the Clipboard",
        }
    }
}

/// The stages of receiving a link, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Decode,
    Payload,
    Retrieve,
    Decrypt,
    Bundle,
    Attestation,
}

impl Stage {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Decode => "decode",
            Self::Payload => "payload",
            Self::Retrieve => "retrieve",
            Self::Decrypt => "decrypt",
            Self::Bundle => "bundle",
            Self::Attestation => "attestation",
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a link was not received, by stage.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReceiveError {
    #[error("decode: {0}")]
    Decode(#[from] link::DecodeError),
    #[error("payload: {0}")]
    Payload(#[from] link::PayloadError),
    #[error("retrieve: {0}")]
    Retrieve(#[from] retrieve::RetrieveError),
    #[error("decrypt: {0}")]
    Decrypt(#[from] decrypt::DecryptError),
    #[error("bundle: {0}")]
    Bundle(#[from] content::ContentError),
    #[error("attestation: {0}")]
    Attestation(#[from] attestation::AttestationError),
}

impl ReceiveError {
    pub const fn stage(&self) -> Stage {
        match self {
            Self::Decode(_) => Stage::Decode,
            Self::Payload(_) => Stage::Payload,
            Self::Retrieve(_) => Stage::Retrieve,
            Self::Decrypt(_) => Stage::Decrypt,
            Self::Bundle(_) => Stage::Bundle,
            Self::Attestation(_) => Stage::Attestation,
        }
    }
}

/// How a receiver introduces itself and what it may spend.
#[derive(Debug, Clone)]
pub struct ReceiverSettings {
    /// `recipient` of every manifest request and `U` fetch: who is asking, for the sharer's
    /// access log.
    pub recipient: String,
    pub outbound: OutboundSettings,
    /// `embeddedLengthMax` of manifest requests: the longest JWE the server may put in the
    /// manifest itself; `None` lets the server choose (often `location` URLs).
    pub embedded_length_max: Option<u64>,
    /// The most files a manifest may list.
    pub max_files: usize,
    /// The most bytes of files a link's retrieval may bring back, all files together (each
    /// answer is also capped by [`OutboundSettings::max_response_bytes`]).
    pub max_total_bytes: usize,
    /// The longest retrieval of one link, all its requests together.
    pub deadline: Duration,
}

impl ReceiverSettings {
    pub fn new(recipient: impl Into<String>) -> Self {
        Self {
            recipient: recipient.into(),
            outbound: OutboundSettings::default(),
            embedded_length_max: None,
            max_files: 16,
            // Two files of the largest size: every file is held, decrypted and parsed at once.
            max_total_bytes: 48 * 1024 * 1024,
            deadline: Duration::from_secs(60),
        }
    }
}

/// A receiver: the settings and the HTTP client of [`outbound`].
#[derive(Debug, Clone)]
pub struct Receiver {
    client: OutboundClient,
    settings: ReceiverSettings,
}

/// A file received whole: decrypted and judged.
#[derive(Debug)]
pub struct ReceivedFile {
    pub opened: decrypt::Opened,
    pub content: content::ContentSummary,
}

/// A link received: its payload and its files.
#[derive(Debug)]
pub struct Received {
    pub payload: link::LinkPayload,
    pub files: Vec<ReceivedFile>,
    /// Each file's attestation, when it has one: verified, or why not (never a failure of
    /// the whole).
    pub attestations: Vec<Result<attestation::Attestation, ReceiveError>>,
}

impl Receiver {
    pub fn new(settings: ReceiverSettings) -> Result<Self, BuildError> {
        Ok(Self {
            client: OutboundClient::new(&settings.outbound)?,
            settings,
        })
    }

    /// Retrieves the link's encrypted files, within the settings' deadline.
    pub async fn retrieve(
        &self,
        payload: &link::LinkPayload,
        passcode: Option<&SecretString>,
    ) -> Result<retrieve::Retrieved, retrieve::RetrieveError> {
        if payload.flags.passcode && passcode.is_none() {
            // Asking without one would only be refused (and may count as a failed attempt).
            return Err(retrieve::RetrieveError::PasscodeNeeded);
        }
        let request = retrieve::ManifestRequest {
            recipient: &self.settings.recipient,
            // Only a link that asks for a passcode gets one: the caller may hold it for another
            // link, and a link without `P` can come from anyone (a manifest host that was
            // handed someone else's passcode could try it on their link).
            passcode: passcode.filter(|_| payload.flags.passcode),
            embedded_length_max: self.settings.embedded_length_max,
            max_files: self.settings.max_files,
            max_total_bytes: self.settings.max_total_bytes,
        };
        tokio::time::timeout(
            self.settings.deadline,
            retrieve::retrieve(&self.client, payload, request),
        )
        .await
        .map_err(|_| retrieve::RetrieveError::Deadline(self.settings.deadline))?
    }

    /// When a link's requests must all be done by, if they start now: the JWKS fetches of its
    /// attestations count with its retrieval, since the Bundle's author chooses where they go.
    pub fn deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + self.settings.deadline
    }

    /// Verifies an attestation against its issuer's JWKS, by `deadline` (see
    /// [`Receiver::deadline`]).
    pub async fn verify_attestation(
        &self,
        attestation: &attestation::Attestation,
        deadline: tokio::time::Instant,
    ) -> Result<(), attestation::AttestationError> {
        tokio::time::timeout_at(deadline, attestation.verify(&self.client))
            .await
            .map_err(|_| attestation::AttestationError::Deadline(self.settings.deadline))?
    }

    /// Every stage: decodes and checks `link` by `profile` (`now` in seconds since the epoch
    /// judges `exp`), retrieves, decrypts and judges each file, and verifies attestations.
    pub async fn receive(
        &self,
        link: &str,
        passcode: Option<&SecretString>,
        profile: Profile,
        now: i64,
    ) -> Result<Received, ReceiveError> {
        let payload = link::check(link::decode(link)?, profile, now)?;
        let deadline = self.deadline();
        let retrieved = self.retrieve(&payload, passcode).await?;
        let mut files = Vec::with_capacity(retrieved.files.len());
        let mut attestations = Vec::new();
        for file in &retrieved.files {
            let opened = decrypt::open(&payload.key, &file.jwe)?;
            let content = content::check(&opened.content, file.content_type_of_content(), profile)?;
            if let Some(read) = attestation::read(&opened.content) {
                attestations.push(match read {
                    Ok(found) => self
                        .verify_attestation(&found, deadline)
                        .await
                        .map(|()| found)
                        .map_err(ReceiveError::from),
                    Err(error) => Err(error.into()),
                });
            }
            files.push(ReceivedFile { opened, content });
        }
        Ok(Received {
            payload,
            files,
            attestations,
        })
    }
}

impl retrieve::RetrievedFile {
    /// The media type of the plaintext: the manifest's `contentType`. A `U` link's answer is
    /// `application/jose` (the envelope), which says nothing of what is inside.
    pub fn content_type_of_content(&self) -> Option<&str> {
        match self.source {
            retrieve::FileSource::Direct => None,
            retrieve::FileSource::Embedded | retrieve::FileSource::Location => {
                self.content_type.as_deref()
            }
        }
    }
}

/// `seconds` since the epoch as an RFC 3339 instant, or the number when out of range.
pub(crate) fn instant(seconds: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .and_then(|at| {
            at.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| seconds.to_string())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::json;

    use super::*;

    /// A manifest server on 127.0.0.1 that keeps every request body and answers 404.
    async fn recording_manifest() -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&bodies);
        let router = axum::Router::new().route(
            "/m",
            axum::routing::post(move |body: String| {
                let kept = Arc::clone(&kept);
                async move {
                    kept.lock().expect("lock").push(body);
                    axum::http::StatusCode::NOT_FOUND
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, router).await });
        (address, bodies)
    }

    fn local_receiver() -> Receiver {
        let mut settings = ReceiverSettings::new("a test");
        settings.outbound.allow_http = true;
        settings.outbound.allow_private_addresses = true;
        settings.deadline = Duration::from_secs(5);
        Receiver::new(settings).expect("receiver")
    }

    fn payload(url: &str, flag: &str) -> link::LinkPayload {
        let key = crate::crypto::jwe::ShlKey::generate().expect("key");
        let encoded = URL_SAFE_NO_PAD
            .encode(json!({"url": url, "flag": flag, "key": key.to_base64url()}).to_string());
        link::check(
            link::decode(&format!("shlink:/{encoded}")).expect("decodes"),
            Profile::Shl,
            0,
        )
        .expect("a valid payload")
    }

    #[tokio::test]
    async fn a_links_files_together_stay_within_a_budget() {
        // Each answer is under the per-answer cap; together, they are not: a manifest of many
        // full-size files must not make the receiver hold all of them.
        let router = axum::Router::new()
            .route(
                "/m",
                axum::routing::post(|headers: axum::http::HeaderMap| async move {
                    let host = headers[axum::http::header::HOST]
                        .to_str()
                        .expect("host")
                        .to_owned();
                    let file = json!({"contentType": "application/fhir+json",
                                      "location": format!("http://{host}/f")});
                    axum::Json(json!({"files": vec![file; 3]}))
                }),
            )
            .route("/f", axum::routing::get(|| async { "x".repeat(800) }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, router).await });
        let mut settings = ReceiverSettings::new("a test");
        settings.outbound.allow_http = true;
        settings.outbound.allow_private_addresses = true;
        settings.outbound.max_response_bytes = 1_000;
        settings.max_total_bytes = 2_000;
        let receiver = Receiver::new(settings).expect("receiver");
        let url = format!("http://{address}/m");

        let outcome = receiver.retrieve(&payload(&url, ""), None).await;

        assert_eq!(
            outcome.map(|retrieved| retrieved.files.len()),
            Err(retrieve::RetrieveError::Fetch(
                retrieve::Request::Location,
                outbound::FetchError::TooLarge(400)
            ))
        );
    }

    #[tokio::test]
    async fn a_passcode_goes_only_to_a_link_that_asks_for_one() {
        let (address, bodies) = recording_manifest().await;
        let url = format!("http://{address}/m");
        let passcode = SecretString::from("kept-for-another-link");
        let receiver = local_receiver();

        // A link without P (a stranger's, say) is asked without the passcode the caller holds.
        for flag in ["", "L"] {
            let outcome = receiver
                .retrieve(&payload(&url, flag), Some(&passcode))
                .await;
            assert!(matches!(
                outcome,
                Err(retrieve::RetrieveError::NotActive(_))
            ));
        }
        // A P link gets it.
        let outcome = receiver
            .retrieve(&payload(&url, "P"), Some(&passcode))
            .await;
        assert!(matches!(
            outcome,
            Err(retrieve::RetrieveError::NotActive(_))
        ));

        let bodies = bodies.lock().expect("lock").clone();
        assert_eq!(bodies.len(), 3);
        for body in &bodies[..2] {
            assert!(!body.contains("kept-for-another-link"), "{body}");
            assert_eq!(body, r#"{"recipient":"a test"}"#);
        }
        assert!(bodies[2].contains(r#""passcode":"kept-for-another-link""#));
    }

    #[tokio::test]
    async fn a_401_to_a_link_without_p_is_not_called_a_wrong_passcode() {
        let router = axum::Router::new().route(
            "/m",
            axum::routing::post(|| async {
                (
                    axum::http::StatusCode::UNAUTHORIZED,
                    axum::Json(json!({"remainingAttempts": 3})),
                )
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, router).await });
        let url = format!("http://{address}/m");
        let passcode = SecretString::from("123456");
        let receiver = local_receiver();

        let without_p = receiver.retrieve(&payload(&url, ""), Some(&passcode)).await;
        let with_p = receiver
            .retrieve(&payload(&url, "P"), Some(&passcode))
            .await;

        assert_eq!(
            without_p.map(|_| ()),
            Err(retrieve::RetrieveError::UnannouncedPasscode)
        );
        assert_eq!(
            with_p.map(|_| ()),
            Err(retrieve::RetrieveError::WrongPasscode {
                remaining_attempts: Some(3)
            })
        );
    }
}
