//! Decryption (decrypt stage): a compact JWE under the link's key, with the gateway's own JWE
//! code ([`crate::crypto::jwe`]: `dir` + `A256GCM`, `zip: DEF` inflated with a cap on the
//! inflated size), then the plaintext read as JSON.
//!
//! A plaintext that is not JSON fails here rather than at the content stage: the usual cause
//! is a `zip: DEF` file a receiver did not inflate, or the wrong bytes decrypted, which are
//! decryption problems from the sender's point of view.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use crate::crypto::jwe::{self, JweError, ShlKey};

/// Why a file did not decrypt.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecryptError {
    #[error("the file is not text, so not a compact JWE")]
    NotText,
    #[error("{0}")]
    Jwe(#[from] JweError),
    #[error("decrypted, but the plaintext is not JSON")]
    NotJson,
}

/// The protected header's fields that say how the file was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoseHeader {
    pub alg: String,
    pub enc: String,
    pub cty: Option<String>,
    /// `zip: DEF`: the plaintext was inflated.
    pub deflated: bool,
    pub kid: bool,
}

/// A decrypted file.
pub struct Opened {
    pub header: JoseHeader,
    /// The plaintext's length, inflated.
    pub plaintext_len: usize,
    /// The plaintext, parsed.
    pub content: Value,
    /// The plaintext's bytes, as the sender encrypted them (for a digest, say).
    pub plaintext: Vec<u8>,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("header", &self.header)
            .field("plaintext_len", &self.plaintext_len)
            .finish_non_exhaustive()
    }
}

/// Decrypts `jwe` with `key` and parses the plaintext. Whitespace around the compact form (a
/// trailing newline from a static file server) is not part of it and is ignored.
pub fn open(key: &ShlKey, jwe: &[u8]) -> Result<Opened, DecryptError> {
    let compact = std::str::from_utf8(jwe)
        .map_err(|_| DecryptError::NotText)?
        .trim_matches(|c: char| c.is_ascii_whitespace());
    let plaintext = jwe::decrypt(key, compact)?;
    // The header has passed `decrypt`'s checks, so it is a JSON object with alg and enc.
    let header =
        read_header(compact).ok_or(JweError::Malformed("protected header is not a JSON object"))?;
    let content = serde_json::from_slice(&plaintext).map_err(|_| DecryptError::NotJson)?;
    Ok(Opened {
        header,
        plaintext_len: plaintext.len(),
        content,
        plaintext,
    })
}

fn read_header(compact: &str) -> Option<JoseHeader> {
    let encoded = compact.split('.').next()?;
    let bytes = URL_SAFE_NO_PAD.decode(encoded).ok()?;
    let fields: Map<String, Value> = serde_json::from_slice(&bytes).ok()?;
    let text = |name: &str| fields.get(name).and_then(Value::as_str).map(str::to_owned);
    Some(JoseHeader {
        alg: text("alg")?,
        enc: text("enc")?,
        cty: text("cty"),
        deflated: text("zip").as_deref() == Some("DEF"),
        kid: fields.contains_key("kid"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::jwe::ContentType;

    const HL7_KEY: &str = "rxTgYlOaKJPFtcEd0qcceN8wEU4p94SqAwIWQe6uX7Q";
    const HL7_JWE: &str = include_str!("../../tests/fixtures/hl7-ips-bundle-01.jwe");

    #[test]
    fn the_hl7_example_opens_with_its_header_read() {
        let key = ShlKey::from_base64url(HL7_KEY).expect("key");
        let opened = open(&key, HL7_JWE.as_bytes()).expect("opens");
        assert_eq!(opened.header.alg, "dir");
        assert_eq!(opened.header.enc, "A256GCM");
        assert!(opened.header.kid, "the example has a kid");
        assert_eq!(opened.header.cty, None);
        assert_eq!(opened.content["resourceType"], "Bundle");
    }

    #[test]
    fn surrounding_whitespace_is_ignored_and_non_text_refused() {
        let key = ShlKey::generate().expect("key");
        let jwe = jwe::encrypt(&key, ContentType::FhirJson, br#"{"a":1}"#).expect("encrypts");
        let padded = format!("\n {jwe}\r\n");
        assert_eq!(
            open(&key, padded.as_bytes()).expect("opens").content["a"],
            1
        );
        assert_eq!(
            open(&key, &[0xff, 0xfe]).map(|_| ()),
            Err(DecryptError::NotText)
        );
    }

    #[test]
    fn a_plaintext_that_is_not_json_fails_here() {
        let key = ShlKey::generate().expect("key");
        let jwe = jwe::encrypt(&key, ContentType::FhirJson, b"%PDF-1.7").expect("encrypts");
        assert_eq!(
            open(&key, jwe.as_bytes()).map(|_| ()),
            Err(DecryptError::NotJson)
        );
    }

    #[test]
    fn a_wrong_key_is_a_decryption_error() {
        let jwe = jwe::encrypt(
            &ShlKey::generate().expect("key"),
            ContentType::FhirJson,
            b"{}",
        )
        .expect("encrypts");
        let other = ShlKey::generate().expect("key");
        assert_eq!(
            open(&other, jwe.as_bytes()).map(|_| ()),
            Err(DecryptError::Jwe(JweError::Decryption))
        );
    }
}
