//! Reading a link: the `shlink:/` URI, bare or behind a viewer (decode stage), and its payload's
//! rules (payload stage): the SHL base rules every link must meet and, separately, the Kill the
//! Clipboard profile's stricter ones.
//!
//! Decoding is strict where the spec is exact (unpadded base64url, a JSON object), because a
//! receiver that guesses (`atob` on base64url, say) is what breaks links in the field: the
//! message says what was wrong instead. Unknown payload fields are ignored, as the spec asks.
//!
//! Nothing here keeps or prints the key, the URL's path or the label: [`LinkPayload`]'s `Debug`
//! shows the host and the rules' outcome only.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};
use url::Url;

use crate::crypto::jwe::ShlKey;

use super::Profile;

/// The longest link read. A payload is a few hundred characters and a viewer URL adds a few
/// dozen; QR codes cannot carry much more than this either.
pub const MAX_LINK_LEN: usize = 4096;
/// SHL: the payload `url` is at most 128 characters (it must fit a QR code with the rest).
pub const MAX_URL_LEN: usize = 128;
/// SHL: the label is at most 80 characters.
pub const MAX_LABEL_LEN: usize = 80;
/// An `exp` above this (the year 5138 in seconds) is milliseconds sent as seconds, a known
/// sender mistake that would otherwise read as "valid for millennia".
const EXP_MILLISECONDS_THRESHOLD: i64 = 100_000_000_000;

/// How the link was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkForm {
    /// `shlink:/...`
    Bare,
    /// `https://viewer.example/path#shlink:/...`; the viewer's origin (scheme, host, port).
    ViewerPrefixed { viewer: String },
}

/// Why a link did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("the link is longer than {MAX_LINK_LEN} characters")]
    TooLong,
    #[error("no shlink:/ found: a link is shlink:/... or a viewer URL ending #shlink:/...")]
    NoShlink,
    #[error("the payload is padded or standard base64: SHL payloads are base64url without padding")]
    NotBase64url,
    #[error("the payload is not valid base64url")]
    BadBase64url,
    #[error("the payload does not decode to JSON (truncated?)")]
    NotJson,
    #[error("the payload is JSON but not an object")]
    NotObject,
}

/// A decoded link: how it was written and its payload, not yet checked.
pub struct DecodedLink {
    pub form: LinkForm,
    /// The payload's characters after `shlink:/`.
    pub encoded_len: usize,
    fields: Map<String, Value>,
}

impl fmt::Debug for DecodedLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecodedLink")
            .field("form", &self.form)
            .field("fields", &self.fields.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl DecodedLink {
    /// The `flag` field as written, when it is a string (to choose a profile before checking).
    pub fn flag(&self) -> Option<&str> {
        self.fields.get("flag").and_then(Value::as_str)
    }
}

/// Finds the payload in a bare or viewer-prefixed link and decodes it to a JSON object.
pub fn decode(link: &str) -> Result<DecodedLink, DecodeError> {
    let link = link.trim();
    if link.len() > MAX_LINK_LEN {
        return Err(DecodeError::TooLong);
    }
    let (form, encoded) = if let Some(encoded) = link.strip_prefix("shlink:/") {
        (LinkForm::Bare, encoded)
    } else {
        // A viewer puts the payload in the fragment, so it never reaches a server's logs.
        let (viewer, fragment) = link.split_once('#').ok_or(DecodeError::NoShlink)?;
        let encoded = fragment
            .strip_prefix("shlink:/")
            .ok_or(DecodeError::NoShlink)?;
        let viewer = Url::parse(viewer)
            .ok()
            .filter(|url| matches!(url.scheme(), "https" | "http"))
            .ok_or(DecodeError::NoShlink)?;
        let origin = viewer.origin().ascii_serialization();
        (LinkForm::ViewerPrefixed { viewer: origin }, encoded)
    };
    let bytes = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| {
        if encoded.contains(['=', '+', '/']) {
            DecodeError::NotBase64url
        } else {
            DecodeError::BadBase64url
        }
    })?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| DecodeError::NotJson)?;
    let Value::Object(fields) = value else {
        return Err(DecodeError::NotObject);
    };
    Ok(DecodedLink {
        form,
        encoded_len: encoded.len(),
        fields,
    })
}

/// The flags of a link, from the `flag` letters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    /// `L`: long-term, the link may be polled for updates.
    pub long_term: bool,
    /// `P`: a passcode is required (manifest links only).
    pub passcode: bool,
    /// `U`: the URL answers the one encrypted file with a GET; no manifest.
    pub direct: bool,
}

impl fmt::Display for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (set, letter) in [
            (self.long_term, 'L'),
            (self.passcode, 'P'),
            (self.direct, 'U'),
        ] {
            if set {
                write!(f, "{letter}")?;
            }
        }
        Ok(())
    }
}

/// Why a payload was refused: every rule it breaks, each a sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", violations.join("; "))]
pub struct PayloadError {
    pub violations: Vec<String>,
}

/// A payload that meets the rules of its profile.
pub struct LinkPayload {
    pub form: LinkForm,
    /// The manifest URL, or with flag `U` the file's. A capability: never print it whole.
    pub url: Url,
    pub key: ShlKey,
    pub exp: Option<i64>,
    pub flags: Flags,
    /// The label's length in characters (the label itself may name the patient).
    pub label_chars: Option<usize>,
    /// `v`, when given (1 is the only version).
    pub version: Option<u64>,
    /// What is not wrong but worth saying (unknown flag letters, a `http` URL).
    pub warnings: Vec<String>,
}

impl fmt::Debug for LinkPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkPayload")
            .field("form", &self.form)
            .field("host", &self.url.host_str())
            .field("exp", &self.exp)
            .field("flags", &self.flags)
            .finish_non_exhaustive()
    }
}

/// Checks a decoded payload against the SHL base rules and, for [`Profile::Ktc`], the Kill the
/// Clipboard profile's; `now` (seconds since the epoch) judges `exp`. Every broken rule is
/// reported, not just the first, so one run tells a sender everything to fix.
pub fn check(
    decoded: DecodedLink,
    profile: Profile,
    now: i64,
) -> Result<LinkPayload, PayloadError> {
    let fields = &decoded.fields;
    let mut violations = Vec::new();
    let mut warnings = Vec::new();

    let url = match fields.get("url") {
        Some(Value::String(text)) => check_url(text, &mut violations, &mut warnings),
        Some(_) => fail(&mut violations, "url must be a string"),
        None => fail(&mut violations, "url is missing"),
    };
    let key = match fields.get("key") {
        Some(Value::String(text)) => ShlKey::from_base64url(text).map_or_else(
            |_| {
                fail(
                    &mut violations,
                    "key must be 43 base64url characters (32 bytes)",
                )
            },
            Some,
        ),
        Some(_) => fail(&mut violations, "key must be a string"),
        None => fail(&mut violations, "key is missing"),
    };
    let exp = check_exp(fields.get("exp"), now, &mut violations);
    let flags = check_flags(fields.get("flag"), &mut violations, &mut warnings);
    let label_chars = match fields.get("label") {
        None => None,
        Some(Value::String(label)) => {
            let chars = label.chars().count();
            if chars > MAX_LABEL_LEN {
                violations.push(format!(
                    "label is {chars} characters, more than {MAX_LABEL_LEN}"
                ));
            }
            Some(chars)
        }
        Some(_) => fail(&mut violations, "label must be a string"),
    };
    let version = match fields.get("v") {
        None => None,
        Some(value) => match value.as_u64() {
            Some(1) => Some(1),
            Some(other) => {
                violations.push(format!(
                    "v {other} is not a version this receiver knows (1)"
                ));
                Some(other)
            }
            None => fail(&mut violations, "v must be an integer"),
        },
    };
    let ktc = kill_the_clipboard_rules(fields);
    match profile {
        // The profile's own rules, on top of the base ones.
        Profile::Ktc => violations.extend(ktc),
        // Not required here, but worth knowing: Kill the Clipboard receivers (EHRs) refuse it.
        Profile::Shl if !ktc.is_empty() => warnings.push(format!(
            "a Kill the Clipboard receiver would refuse this link: {}",
            ktc.join("; ")
        )),
        Profile::Shl => {}
    }

    match (url, key, flags) {
        (Some(url), Some(key), Some(flags)) if violations.is_empty() => Ok(LinkPayload {
            form: decoded.form,
            url,
            key,
            exp,
            flags,
            label_chars,
            version,
            warnings,
        }),
        _ => Err(PayloadError { violations }),
    }
}

/// The Kill the Clipboard profile's payload rules beyond SHL's: flag exactly `U` (no manifest,
/// no passcode) and an `exp`.
fn kill_the_clipboard_rules(fields: &Map<String, Value>) -> Vec<String> {
    let mut violations = Vec::new();
    if fields.get("flag").and_then(Value::as_str) != Some("U") {
        let found = fields
            .get("flag")
            .map_or_else(|| "none".to_owned(), Value::to_string);
        violations.push(format!(
            "Kill the Clipboard requires flag exactly \"U\" (found {found})"
        ));
    }
    if fields.get("exp").is_none() {
        violations.push("Kill the Clipboard requires exp".to_owned());
    }
    violations
}

/// Records a violation; the field has no usable value.
fn fail<T>(violations: &mut Vec<String>, message: &str) -> Option<T> {
    violations.push(message.to_owned());
    None
}

fn check_url(text: &str, violations: &mut Vec<String>, warnings: &mut Vec<String>) -> Option<Url> {
    let length = text.chars().count();
    if length > MAX_URL_LEN {
        violations.push(format!(
            "url is {length} characters, more than {MAX_URL_LEN}"
        ));
    }
    match Url::parse(text) {
        Ok(url) if url.scheme() == "https" => Some(url),
        Ok(url) if url.scheme() == "http" => {
            warnings.push("url is plain http: receivers fetch over https only".to_owned());
            Some(url)
        }
        Ok(_) => fail(violations, "url must be an https URL"),
        Err(_) => fail(violations, "url is not an absolute URL"),
    }
}

fn check_exp(value: Option<&Value>, now: i64, violations: &mut Vec<String>) -> Option<i64> {
    let value = value?;
    let Some(exp) = value.as_i64() else {
        return fail(violations, "exp must be whole seconds since the epoch");
    };
    if exp >= EXP_MILLISECONDS_THRESHOLD {
        violations.push(format!(
            "exp {exp} looks like milliseconds: SHL exp is in seconds"
        ));
    } else if exp <= now {
        violations.push(format!("the link expired at {}", super::instant(exp)));
    }
    Some(exp)
}

fn check_flags(
    value: Option<&Value>,
    violations: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> Option<Flags> {
    let text = match value {
        None => return Some(Flags::default()),
        Some(Value::String(text)) => text,
        Some(_) => return fail(violations, "flag must be a string"),
    };
    let mut flags = Flags::default();
    let mut previous = None;
    let mut well_formed = true;
    for letter in text.chars() {
        if previous.is_some_and(|previous| letter <= previous) {
            // Order and uniqueness both: "PL" and "LL" are malformed.
            violations.push(format!(
                "flag {text:?} must list distinct letters in alphabetical order"
            ));
            well_formed = false;
            break;
        }
        previous = Some(letter);
        match letter {
            'L' => flags.long_term = true,
            'P' => flags.passcode = true,
            'U' => flags.direct = true,
            other => warnings.push(format!("unknown flag letter {other:?} ignored")),
        }
    }
    if flags.direct && flags.passcode {
        violations.push("flags U and P cannot go together".to_owned());
        well_formed = false;
    }
    well_formed.then_some(flags)
}

#[cfg(test)]
mod tests;
