//! The app attestation (attestation stage, optional): a Bundle may carry, in `meta.extension`,
//! an ES256 JWT saying which app took part in making it. The JWT's `iss` names the app; its
//! keys are at `{iss}/.well-known/jwks.json`, fetched under the same outbound policy as the
//! link (the Bundle's author chooses `iss`, so it is as untrusted as the link).
//!
//! The profile says receivers must never block on it: a failure here is reported, and the
//! Bundle is still received.

use serde_json::Value;
use url::Url;

use crate::crypto::jws::{self, JwsError};

use super::outbound::{FetchError, OutboundClient};

/// `Bundle.meta.extension[].url` of the attestation.
pub const EXTENSION_URL: &str = "https://cms.gov/fhir/StructureDefinition/app-attestation";
/// The largest JWKS read: a few keys for rotation are a few kilobytes.
const MAX_JWKS_BYTES: usize = 64 * 1024;
/// The claims the profile allows, and no others.
const CLAIMS: [&str; 3] = ["iss", "iat", "jti"];

/// Why an attestation did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttestationError {
    #[error("the extension has no valueString")]
    NoValue,
    #[error("{0}")]
    Token(JwsError),
    #[error("iss is missing or not an https URL")]
    Issuer,
    #[error("JWKS GET: {0}")]
    Fetch(FetchError),
    #[error("JWKS GET answered HTTP {0}")]
    Status(u16),
    #[error("the JWKS is not JSON")]
    NotJson,
    #[error("{0}")]
    Verify(JwsError),
    #[error("no JWKS within the {0:?} a link's requests may take together")]
    Deadline(std::time::Duration),
}

/// An attestation read from a Bundle, before its signature is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attestation {
    /// `iss`, as claimed.
    pub issuer: String,
    pub kid: String,
    /// Deviations from the profile's shape that do not stop verification.
    pub warnings: Vec<String>,
    token: String,
}

/// The attestation of `bundle`, read but not verified; `None` when there is none.
pub fn read(bundle: &Value) -> Option<Result<Attestation, AttestationError>> {
    let extensions = bundle.get("meta")?.get("extension")?.as_array()?;
    let mut attestations = extensions
        .iter()
        .filter(|extension| extension.get("url").and_then(Value::as_str) == Some(EXTENSION_URL));
    let extension = attestations.next()?;
    let more = attestations.count();
    Some(read_extension(extension, more))
}

fn read_extension(extension: &Value, more: usize) -> Result<Attestation, AttestationError> {
    let token = extension
        .get("valueString")
        .and_then(Value::as_str)
        .ok_or(AttestationError::NoValue)?;
    let unverified = jws::read(token).map_err(AttestationError::Token)?;
    let issuer = unverified
        .claims
        .get("iss")
        .and_then(Value::as_str)
        .filter(|issuer| issuer.len() <= 512)
        .ok_or(AttestationError::Issuer)?
        .to_owned();
    let mut warnings = Vec::new();
    if more > 0 {
        warnings.push(format!(
            "{more} more attestations ignored; the first is checked"
        ));
    }
    let extra: Vec<&str> = unverified
        .claims
        .keys()
        .map(String::as_str)
        .filter(|name| !CLAIMS.contains(name))
        .take(5)
        .collect();
    if !extra.is_empty() {
        warnings.push(format!(
            "claims other than iss, iat and jti: {}",
            extra
                .iter()
                .map(|name| format!("{name:.20}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !unverified.claims.get("iat").is_some_and(Value::is_i64) {
        warnings.push("iat is not whole seconds".to_owned());
    }
    let jti_is_uuid = unverified
        .claims
        .get("jti")
        .and_then(Value::as_str)
        .is_some_and(|jti| uuid::Uuid::parse_str(jti).is_ok());
    if !jti_is_uuid {
        warnings.push("jti is not a UUID".to_owned());
    }
    Ok(Attestation {
        issuer,
        kid: unverified.kid,
        warnings,
        token: token.to_owned(),
    })
}

impl Attestation {
    /// Where the app's keys are: `{iss}/.well-known/jwks.json`.
    pub fn jwks_url(&self) -> Result<Url, AttestationError> {
        let issuer = Url::parse(&self.issuer).map_err(|_| AttestationError::Issuer)?;
        if !matches!(issuer.scheme(), "https" | "http") || issuer.cannot_be_a_base() {
            return Err(AttestationError::Issuer);
        }
        Url::parse(&format!(
            "{}/.well-known/jwks.json",
            self.issuer.trim_end_matches('/')
        ))
        .map_err(|_| AttestationError::Issuer)
    }

    /// Fetches the issuer's JWKS and verifies the signature with the key the `kid` names.
    pub(crate) async fn verify(&self, client: &OutboundClient) -> Result<(), AttestationError> {
        let url = self.jwks_url()?;
        let answer = client
            .get(&url, Some(MAX_JWKS_BYTES))
            .await
            .map_err(AttestationError::Fetch)?;
        if answer.status != 200 {
            return Err(AttestationError::Status(answer.status));
        }
        let jwks: Value =
            serde_json::from_slice(&answer.body).map_err(|_| AttestationError::NotJson)?;
        // Read again rather than kept: the token borrows, and reading is cheap.
        jws::read(&self.token)
            .map_err(AttestationError::Token)?
            .verify(&jwks)
            .map_err(AttestationError::Verify)
    }
}
