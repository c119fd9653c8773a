//! Validated inputs of link creation and who is asking.
//!
//! GraphQL input objects are parsed into these types once, at the edge; after that a label is
//! known to be short and printable, a resource type is known to be shareable, and a bearer token
//! is wrapped so that no `Debug` or log line can show it.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

use crate::passcode::Passcode;

/// At most this many Unicode scalar values in a label (SHL payload rule).
pub(crate) const LABEL_MAX_CHARS: usize = 80;

/// A label checked against the SHL rules: it travels in plaintext inside the QR code.
#[derive(Clone, PartialEq, Eq)]
pub struct ValidatedLabel(String);

impl ValidatedLabel {
    /// Error messages never repeat the label: it may hold PHI.
    pub fn parse(label: &str) -> Result<Self, &'static str> {
        if label.chars().count() > LABEL_MAX_CHARS {
            return Err("label must be at most 80 characters");
        }
        if label.chars().any(char::is_control) {
            return Err("label must not contain control characters");
        }
        if label.chars().any(crate::text::is_invisible_format_char) {
            return Err(
                "label must not contain invisible formatting characters (Unicode category Cf, \
                 such as bidi controls and zero-width spaces)",
            );
        }
        Ok(Self(label.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Labels are patient-chosen text and may name a condition: never print them.
impl fmt::Debug for ValidatedLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ValidatedLabel([REDACTED])")
    }
}

/// At most this many Unicode scalar values in a patient's story (`input.patientStory`).
pub(crate) const STORY_MAX_CHARS: usize = 10_000;

/// The patient's own story, checked: plain text of at most [`STORY_MAX_CHARS`] Unicode scalar
/// values, paragraphs and line breaks kept (`\r\n` read as `\n`). It is health data in the
/// patient's words: no `Debug`, log line, metric or audit record may show it.
#[derive(Clone, PartialEq, Eq)]
pub struct PatientStory(String);

impl PatientStory {
    /// Error messages never repeat the story.
    pub fn parse(story: &str) -> Result<Self, &'static str> {
        // Pasted text often carries a byte-order mark or soft hyphens: invisible, harmless, and
        // dropped rather than refused.
        let story = story
            .replace("\r\n", "\n")
            .replace(['\u{FEFF}', '\u{00AD}'], "");
        if story.trim().is_empty() {
            return Err("patientStory must not be blank");
        }
        if story.chars().count() > STORY_MAX_CHARS {
            return Err("patientStory must be at most 10000 characters");
        }
        if story
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
        {
            return Err(
                "patientStory must not contain control characters (line breaks and tabs are fine)",
            );
        }
        if story.chars().any(crate::text::is_invisible_format_char) {
            return Err(
                "patientStory must not contain invisible formatting characters (Unicode category \
                 Cf, such as bidi controls and zero-width spaces)",
            );
        }
        Ok(Self(story))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PatientStory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PatientStory([REDACTED])")
    }
}

/// The FHIR resource types a patient may share: b.well's IPS set, and `MedicationRequest` where
/// the gateway issues links itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceType {
    Patient,
    CarePlan,
    Condition,
    AllergyIntolerance,
    MedicationStatement,
    Immunization,
    Procedure,
    Observation,
    Coverage,
    /// Embedded mode only: part of the Kill the Clipboard profile's "persistence core" (with
    /// Condition, AllergyIntolerance and Immunization), which b.well's set lacks.
    MedicationRequest,
}

impl ResourceType {
    /// b.well's IPS set, in the seed's order: what upstream mode may share.
    pub const UPSTREAM: [ResourceType; 9] = [
        ResourceType::Patient,
        ResourceType::CarePlan,
        ResourceType::Condition,
        ResourceType::AllergyIntolerance,
        ResourceType::MedicationStatement,
        ResourceType::Immunization,
        ResourceType::Procedure,
        ResourceType::Observation,
        ResourceType::Coverage,
    ];

    /// What embedded mode may import and share: b.well's set and `MedicationRequest`.
    pub const EMBEDDED: [ResourceType; 10] = [
        ResourceType::Patient,
        ResourceType::CarePlan,
        ResourceType::Condition,
        ResourceType::AllergyIntolerance,
        ResourceType::MedicationStatement,
        ResourceType::MedicationRequest,
        ResourceType::Immunization,
        ResourceType::Procedure,
        ResourceType::Observation,
        ResourceType::Coverage,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ResourceType::Patient => "Patient",
            ResourceType::CarePlan => "CarePlan",
            ResourceType::Condition => "Condition",
            ResourceType::AllergyIntolerance => "AllergyIntolerance",
            ResourceType::MedicationStatement => "MedicationStatement",
            ResourceType::Immunization => "Immunization",
            ResourceType::Procedure => "Procedure",
            ResourceType::Observation => "Observation",
            ResourceType::Coverage => "Coverage",
            ResourceType::MedicationRequest => "MedicationRequest",
        }
    }

    /// Exact, case-sensitive match against every type either mode knows: FHIR resource type
    /// names are case-sensitive. Whether this mode may share it is the issuer's to say.
    pub fn parse(name: &str) -> Option<Self> {
        Self::EMBEDDED
            .into_iter()
            .find(|resource_type| resource_type.as_str() == name)
    }
}

/// How the link is protected: `P` with a passcode (b.well's only mode) or `U` (the KTC direct profile).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkMode {
    Passcode,
    Direct,
}

impl LinkMode {
    /// The stored word, also the metrics label and the schema's enum value.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            LinkMode::Passcode => "PASSCODE",
            LinkMode::Direct => "DIRECT",
        }
    }

    /// The stored word back; `None` for anything else (a damaged row).
    pub(crate) fn parse(word: &str) -> Option<Self> {
        [LinkMode::Passcode, LinkMode::Direct]
            .into_iter()
            .find(|mode| mode.as_str() == word)
    }

    /// The SHL payload's `flag`: `P` (passcode) or `U` (a single file, fetched directly).
    pub(crate) const fn flag(self) -> &'static str {
        match self {
            LinkMode::Passcode => "P",
            LinkMode::Direct => "U",
        }
    }
}

/// A `createHealthLink` request after validation.
#[derive(Debug, Clone)]
pub struct CreateLinkRequest {
    pub(crate) label: Option<ValidatedLabel>,
    /// Deduplicated, in the caller's order; empty means the whole shareable set.
    pub(crate) resources: Vec<ResourceType>,
    /// Present for [`LinkMode::Passcode`]: given by the caller or generated by the gateway.
    pub(crate) passcode: Option<Passcode>,
    pub(crate) mode: LinkMode,
    /// The validity the caller asked for (`expiresInSeconds`, at least a second); `None` means
    /// the mode's default. Whether the mode allows it is the issuer's to say.
    pub(crate) expires_in: Option<std::time::Duration>,
    /// Direct links: add the FHIR-rendered summary PDF (`renderedSummary`, on by default).
    pub(crate) rendered_summary: bool,
    /// Direct links: the patient's story, shared as a PDF note.
    pub(crate) story: Option<PatientStory>,
}

/// W3C trace context headers, relayed to the upstream so its spans join the caller's trace.
#[derive(Debug, Clone, Default)]
pub struct TraceContext {
    pub(crate) traceparent: Option<String>,
    pub(crate) tracestate: Option<String>,
}

/// The token of an `Authorization: Bearer <token>` header, read once by the HTTP layer. Every
/// use keys on the token itself (never the header text, whose scheme may be spelled in any
/// case), and neither `Debug` nor a log line can show it.
#[derive(Clone)]
pub struct BearerToken(SecretString);

impl BearerToken {
    /// The token of an `Authorization` value; `None` unless the scheme is `Bearer` (in any case,
    /// RFC 9110 11.1) and a token follows.
    pub fn from_authorization(authorization: &str) -> Option<Self> {
        let (scheme, token) = authorization.split_once(' ')?;
        let token = token.trim();
        (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty())
            .then(|| Self(SecretString::from(token.to_owned())))
    }

    /// The token itself: the key of the caller's quota and of the embedded issuer's token
    /// lookup.
    pub(crate) fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// The credential in its canonical spelling, `Bearer <token>`: what the upstream receives,
    /// and what the audit actor and the idempotency scope are keyed on. Those two hashed the
    /// header as sent before this type existed; the canonical spelling keeps their values for
    /// every caller who spelled it the usual way (a stored answer is still found across an
    /// upgrade), and makes other spellings of one token the same caller. Wiped when dropped.
    pub(crate) fn credential(&self) -> zeroize::Zeroizing<String> {
        zeroize::Zeroizing::new(format!("Bearer {}", self.expose()))
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken([REDACTED])")
    }
}

/// Who is calling, as taken from the HTTP request by the transport layer.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The bearer token, if the request had an `Authorization: Bearer` header. Any other
    /// `Authorization` value is no credential here: every link operation needs a bearer token.
    pub bearer: Option<BearerToken>,
    pub request_id: String,
    pub trace: TraceContext,
    /// The client's address as the HTTP layer decided it (proxies considered).
    pub client_ip: Option<std::net::IpAddr>,
    /// The `Idempotency-Key` header, unvalidated.
    pub idempotency_key: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_read_case_insensitively() {
        let token =
            |value: &str| BearerToken::from_authorization(value).map(|t| t.expose().to_owned());
        assert_eq!(token("Bearer abc"), Some("abc".to_owned()));
        assert_eq!(token("bearer  abc "), Some("abc".to_owned()));
        assert_eq!(token("Basic abc"), None);
        assert_eq!(token("Bearer "), None);
        assert_eq!(token("Bearer"), None);
    }

    #[test]
    fn bearer_tokens_do_not_print() {
        let token = BearerToken::from_authorization("Bearer s3cr3t-token").expect("bearer");
        assert_eq!(format!("{token:?}"), "BearerToken([REDACTED])");
    }

    #[test]
    fn link_modes_map_to_their_words_and_flags() {
        for mode in [LinkMode::Passcode, LinkMode::Direct] {
            assert_eq!(LinkMode::parse(mode.as_str()), Some(mode));
        }
        assert_eq!(LinkMode::parse("passcode"), None);
        assert_eq!(LinkMode::Passcode.flag(), "P");
        assert_eq!(LinkMode::Direct.flag(), "U");
    }
}
