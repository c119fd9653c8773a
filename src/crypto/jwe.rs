//! SMART Health Links file encryption: compact JWE with `alg: dir` and `enc: A256GCM`.
//!
//! The gateway also seals JSON that is not an SHL file with it (idempotent answers, see
//! [`crate::idempotency`]); the caller names what it seals ([`ContentType`]), so only SHL files
//! say `application/fhir+json`.
//!
//! Every file a SMART Health Link points at is stored and served encrypted under the link's own
//! 256-bit key. That key travels only inside the `shlink:/` payload, so whoever hosts the files
//! cannot read them. The SHL spec fixes the JOSE profile: direct encryption with that key
//! (`alg: dir`, so the encrypted-key part of the compact form is empty), AES-256-GCM with a 96-bit
//! IV and a 128-bit tag, and a `cty` header naming the plaintext's media type. The protected
//! header, exactly as encoded, is GCM's additional authenticated data, so the header cannot be
//! altered without the tag failing.
//!
//! Encryption never compresses. Compressing before encrypting makes the ciphertext's length
//! depend on the plaintext's content, and RFC 8725 (JWT best current practices, section 3.6) says
//! it SHOULD NOT be done for that reason: the length alone starts to leak what a record says.
//! Senders may still compress (`zip: DEF`, raw DEFLATE), so decryption inflates such files, with a
//! cap on the inflated size: a few kilobytes of DEFLATE can expand to gigabytes.
//!
//! Decryption is strict wherever leniency would only hide a broken or hostile sender: only `dir`
//! and `A256GCM`, no `crit` extensions, canonical unpadded base64url, exact IV and tag lengths. It
//! is lenient where conforming senders differ: any header field order, extra fields such as
//! `kid`, and no `cty` at all (the HL7 IG's own example file has a `kid` and no `cty`).
//!
//! Keys are secrets and plaintexts are health records: no error message repeats either.

use std::fmt;

use aes_gcm::aead::Nonce;
use aes_gcm::{AeadInOut, Aes256Gcm, KeyInit, Tag};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use miniz_oxide::inflate::{TINFLStatus, decompress_to_vec_with_limit};
use serde_json::{Map, Value};
use zeroize::{Zeroize, Zeroizing};

/// The largest plaintext a `zip: DEF` file may inflate to. Real FHIR bundles stay far below it;
/// a payload that inflates past it is refused rather than allowed to exhaust memory.
pub(crate) const MAX_INFLATED_LEN: usize = 16 * 1024 * 1024;

/// What a plaintext is, named by the `cty` header of what [`encrypt`] produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentType {
    /// `application/fhir+json`: a FHIR resource in JSON, the plaintext of every SHL file.
    /// Receivers read SHL files by this header, so its bytes never change.
    FhirJson,
    /// `application/json`: other JSON the gateway seals for itself (idempotent answers).
    Json,
}

impl ContentType {
    /// The media type, as the `cty` header carries it.
    #[cfg(test)]
    pub(crate) const fn media_type(self) -> &'static str {
        match self {
            Self::FhirJson => "application/fhir+json",
            Self::Json => "application/json",
        }
    }

    /// The protected header [`encrypt`] writes, byte for byte. A literal rather than serialized
    /// JSON so the bytes (and hence the AAD) cannot drift with a serializer's key order.
    const fn header(self) -> &'static str {
        match self {
            Self::FhirJson => r#"{"alg":"dir","enc":"A256GCM","cty":"application/fhir+json"}"#,
            Self::Json => r#"{"alg":"dir","enc":"A256GCM","cty":"application/json"}"#,
        }
    }
}

const KEY_LEN: usize = 32;
/// 32 bytes in unpadded base64url; no other length can hold exactly 256 bits.
const KEY_BASE64URL_LEN: usize = 43;
const IV_LEN: usize = 12;
const TAG_LEN: usize = 16;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JweError {
    /// Not a well-formed compact JWE or SHL key. The message names the faulty part, never its
    /// content, which may be a key.
    #[error("malformed input: {0}")]
    Malformed(&'static str),
    /// Well-formed, but using an algorithm or feature the SHL profile does not allow.
    #[error("unsupported JWE: {0}")]
    Unsupported(&'static str),
    /// The tag did not verify. GCM cannot tell a wrong key from altered data, and an error that
    /// tried to would help an attacker probe.
    #[error("JWE decryption failed: wrong key or altered data")]
    Decryption,
    /// The inflated payload would exceed [`MAX_INFLATED_LEN`], or a plaintext exceeds GCM's limit.
    #[error("JWE payload is too large")]
    TooLarge,
    #[error("the operating system's random number generator failed")]
    Rng,
}

/// A 256-bit SHL key: the `key` field of an SHL payload, which decrypts every file of one link.
///
/// `Debug` prints `[REDACTED]` and there is no `Display`, so a key cannot end up in a log by
/// accident; the bytes are wiped when the value is dropped.
pub struct ShlKey([u8; KEY_LEN]);

impl ShlKey {
    /// Draws a fresh key from the OS CSPRNG.
    pub fn generate() -> Result<Self, JweError> {
        // Filled in place so no unwiped copy of the key is left behind on the stack.
        let mut key = Self([0; KEY_LEN]);
        getrandom::fill(&mut key.0).map_err(|_| JweError::Rng)?;
        Ok(key)
    }

    /// Accepts exactly 43 characters of unpadded base64url, the form the SHL payload uses.
    /// A key made elsewhere (e.g. derived by HMAC), for sealing that is not an SHL.
    pub(crate) fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    pub fn from_base64url(text: &str) -> Result<Self, JweError> {
        const MALFORMED: JweError = JweError::Malformed("SHL key must be 43 base64url characters");
        // Checked first so an oversized input is refused before any decoding work; 43 is also
        // the only length that carries exactly 256 bits without padding.
        if text.len() != KEY_BASE64URL_LEN {
            return Err(MALFORMED);
        }
        let decoded = Zeroizing::new(URL_SAFE_NO_PAD.decode(text).map_err(|_| MALFORMED)?);
        if decoded.len() != KEY_LEN {
            return Err(MALFORMED);
        }
        let mut key = Self([0; KEY_LEN]);
        key.0.copy_from_slice(&decoded);
        Ok(key)
    }

    /// The key as 43 characters of unpadded base64url, for the SHL payload.
    pub fn to_base64url(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(self.as_bytes().into())
    }
}

impl fmt::Debug for ShlKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ShlKey([REDACTED])")
    }
}

impl Drop for ShlKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl zeroize::ZeroizeOnDrop for ShlKey {}

/// Encrypts `plaintext` into a compact JWE with a fresh random IV and the header
/// `{"alg":"dir","enc":"A256GCM","cty":<content_type>}`; an SHL file is
/// [`ContentType::FhirJson`].
pub fn encrypt(
    key: &ShlKey,
    content_type: ContentType,
    plaintext: &[u8],
) -> Result<String, JweError> {
    // GCM's security collapses if an IV ever repeats under one key, and one SHL key encrypts
    // many files over a link's life: every IV comes from the CSPRNG, never from a counter or clock.
    let mut iv = [0u8; IV_LEN];
    getrandom::fill(&mut iv).map_err(|_| JweError::Rng)?;

    let header = URL_SAFE_NO_PAD.encode(content_type.header());
    let mut ciphertext = plaintext.to_vec();
    let tag = key
        .cipher()
        .encrypt_inout_detached(
            &Nonce::<Aes256Gcm>::from(iv),
            header.as_bytes(),
            ciphertext.as_mut_slice().into(),
        )
        // GCM refuses only plaintexts above 2^36 - 32 bytes.
        .map_err(|_| JweError::TooLarge)?;

    // The encoded ciphertext plus room for the dots, the IV (16 characters) and the tag (22).
    let mut compact = String::with_capacity(header.len() + 4 * ciphertext.len().div_ceil(3) + 48);
    compact.push_str(&header);
    compact.push_str("..");
    URL_SAFE_NO_PAD.encode_string(iv, &mut compact);
    compact.push('.');
    URL_SAFE_NO_PAD.encode_string(&ciphertext, &mut compact);
    compact.push('.');
    URL_SAFE_NO_PAD.encode_string(tag, &mut compact);
    Ok(compact)
}

/// Decrypts a compact JWE and returns the plaintext, inflated if the header says `zip: DEF`.
/// Whatever the `cty` (any value, or none), the bytes come back as they are: naming or checking
/// the content type is the caller's business, and what was sealed under an earlier `cty` still
/// opens.
pub fn decrypt(key: &ShlKey, compact: &str) -> Result<Vec<u8>, JweError> {
    let mut parts = compact.split('.');
    let (Some(header), Some(encrypted_key), Some(iv), Some(ciphertext), Some(tag), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(JweError::Malformed("a compact JWE has exactly five parts"));
    };

    let compression = check_header(header)?;
    // With `alg: dir` there is no key to wrap; anything here means the sender used another scheme.
    if !encrypted_key.is_empty() {
        return Err(JweError::Malformed(
            "encrypted key must be empty with alg dir",
        ));
    }
    let iv: [u8; IV_LEN] = decode_part(iv, "IV is not base64url")?
        .try_into()
        .map_err(|_| JweError::Malformed("IV must be 96 bits"))?;
    let tag: [u8; TAG_LEN] = decode_part(tag, "tag is not base64url")?
        .try_into()
        .map_err(|_| JweError::Malformed("tag must be 128 bits"))?;
    let mut plaintext = decode_part(ciphertext, "ciphertext is not base64url")?;

    key.cipher()
        .decrypt_inout_detached(
            &Nonce::<Aes256Gcm>::from(iv),
            // RFC 7516 section 5.2: the AAD is the encoded header as received, not a re-encoding.
            header.as_bytes(),
            plaintext.as_mut_slice().into(),
            &Tag::from(tag),
        )
        .map_err(|_| JweError::Decryption)?;

    match compression {
        Compression::None => Ok(plaintext),
        Compression::Deflate => inflate(&plaintext, MAX_INFLATED_LEN),
    }
}

/// What the protected header asks of the payload once it has passed every check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    None,
    Deflate,
}

/// Checks the encoded protected header against the SHL profile. Fields other than `alg`, `enc`,
/// `zip` and `crit` (`cty`, `kid`, ...) are ignored, as RFC 7516 asks of unknown parameters.
fn check_header(encoded: &str) -> Result<Compression, JweError> {
    let json = decode_part(encoded, "protected header is not base64url")?;
    // A map rather than a derived struct: serde would also accept a JSON array for a struct, and
    // the JOSE header must be an object.
    let header: Map<String, Value> = serde_json::from_slice(&json)
        .map_err(|_| JweError::Malformed("protected header is not a JSON object"))?;

    // RFC 7515 section 4.1.11: a recipient must refuse extensions listed in `crit` that it does
    // not understand, and this module understands none.
    if header.contains_key("crit") {
        return Err(JweError::Unsupported("crit header"));
    }
    match header.get("alg").map(Value::as_str) {
        None => return Err(JweError::Malformed("protected header has no alg")),
        Some(Some("dir")) => {}
        Some(_) => return Err(JweError::Unsupported("alg must be dir")),
    }
    match header.get("enc").map(Value::as_str) {
        None => return Err(JweError::Malformed("protected header has no enc")),
        Some(Some("A256GCM")) => {}
        Some(_) => return Err(JweError::Unsupported("enc must be A256GCM")),
    }
    match header.get("zip").map(Value::as_str) {
        None => Ok(Compression::None),
        Some(Some("DEF")) => Ok(Compression::Deflate),
        Some(_) => Err(JweError::Unsupported("zip must be DEF or absent")),
    }
}

/// Decodes one part of the compact form. The engine refuses padding, the standard alphabet's `+`
/// and `/`, and non-zero trailing bits, so each byte string has exactly one accepted encoding.
fn decode_part(part: &str, malformed: &'static str) -> Result<Vec<u8>, JweError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JweError::Malformed(malformed))
}

/// Inflates raw DEFLATE (RFC 1951, no zlib header, as `zip: DEF` means in RFC 7516) to at most
/// `limit` bytes.
fn inflate(deflated: &[u8], limit: usize) -> Result<Vec<u8>, JweError> {
    decompress_to_vec_with_limit(deflated, limit).map_err(|error| match error.status {
        TINFLStatus::HasMoreOutput => JweError::TooLarge,
        _ => JweError::Malformed("zip DEF payload is not valid raw DEFLATE"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HL7_KEY: &str = "rxTgYlOaKJPFtcEd0qcceN8wEU4p94SqAwIWQe6uX7Q";
    const HL7_JWE: &str = include_str!("../../tests/fixtures/hl7-ips-bundle-01.jwe");
    const HL7_PLAINTEXT: &[u8] = include_bytes!("../../tests/fixtures/hl7-ips-bundle-01.json");

    const PLAINTEXT: &[u8] = br#"{"resourceType":"Bundle","type":"collection","entry":[]}"#;

    fn fresh_key() -> ShlKey {
        ShlKey::generate().expect("CSPRNG available")
    }

    fn b64(bytes: impl AsRef<[u8]>) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn unb64(text: &str) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(text).expect("valid base64url")
    }

    /// Builds a compact JWE with an arbitrary header and payload, authenticated correctly, so a
    /// test of a header rule fails on that rule and not on the tag.
    fn seal(key: &ShlKey, header_json: &str, payload: &[u8]) -> String {
        let header = b64(header_json);
        let iv = [7u8; IV_LEN];
        let mut ciphertext = payload.to_vec();
        let tag = key
            .cipher()
            .encrypt_inout_detached(
                &Nonce::<Aes256Gcm>::from(iv),
                header.as_bytes(),
                ciphertext.as_mut_slice().into(),
            )
            .expect("payload within GCM limits");
        format!("{header}..{}.{}.{}", b64(iv), b64(ciphertext), b64(tag))
    }

    fn parts(compact: &str) -> Vec<String> {
        compact.split('.').map(str::to_owned).collect()
    }

    /// Replaces part `index` with `replacement`, already encoded.
    fn with_part(compact: &str, index: usize, replacement: &str) -> String {
        let mut parts = parts(compact);
        parts[index] = replacement.to_owned();
        parts.join(".")
    }

    /// Decodes part `index`, lets `change` alter the bytes, and re-encodes them canonically.
    fn tamper(compact: &str, index: usize, change: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut bytes = unb64(&parts(compact)[index]);
        change(&mut bytes);
        with_part(compact, index, &b64(bytes))
    }

    fn deflate(data: &[u8]) -> Vec<u8> {
        miniz_oxide::deflate::compress_to_vec(data, 6)
    }

    #[test]
    fn hl7_ig_example_decrypts_to_its_published_plaintext() {
        let header: Value =
            serde_json::from_slice(&unb64(&parts(HL7_JWE)[0])).expect("header is JSON");
        assert!(header.get("kid").is_some(), "the vector's header has a kid");
        assert!(
            header.get("cty").is_none(),
            "the vector's header has no cty"
        );

        let key = ShlKey::from_base64url(HL7_KEY).expect("the IG's key is valid");
        let plaintext = decrypt(&key, HL7_JWE).expect("the IG's example decrypts");
        assert!(
            plaintext == HL7_PLAINTEXT,
            "plaintext differs from the fixture"
        );
    }

    #[test]
    fn round_trip() {
        let key = fresh_key();
        let compact = encrypt(&key, ContentType::FhirJson, PLAINTEXT).expect("encrypts");
        assert_eq!(decrypt(&key, &compact).expect("decrypts"), PLAINTEXT);
    }

    #[test]
    fn empty_plaintext_round_trips() {
        let key = fresh_key();
        let compact = encrypt(&key, ContentType::FhirJson, b"").expect("encrypts");
        assert_eq!(parts(&compact)[3], "");
        assert_eq!(decrypt(&key, &compact).expect("decrypts"), b"");
    }

    #[test]
    fn every_encryption_has_the_exact_header_and_a_fresh_iv() {
        let key = fresh_key();
        let first = encrypt(&key, ContentType::FhirJson, PLAINTEXT).expect("encrypts");
        let second = encrypt(&key, ContentType::FhirJson, PLAINTEXT).expect("encrypts");
        assert_ne!(first, second);

        for compact in [&first, &second] {
            let parts = parts(compact);
            assert_eq!(parts.len(), 5);
            assert_eq!(
                unb64(&parts[0]),
                br#"{"alg":"dir","enc":"A256GCM","cty":"application/fhir+json"}"#
            );
            assert_eq!(parts[1], "");
            assert_eq!(unb64(&parts[2]).len(), IV_LEN);
            assert_eq!(unb64(&parts[3]).len(), PLAINTEXT.len(), "no compression");
            assert_eq!(unb64(&parts[4]).len(), TAG_LEN);
        }
        assert_ne!(parts(&first)[2], parts(&second)[2], "IVs must differ");
        assert_ne!(parts(&first)[3], parts(&second)[3]);
        assert!(
            ContentType::FhirJson
                .header()
                .contains(ContentType::FhirJson.media_type())
        );
    }

    #[test]
    fn other_json_gets_its_own_cty_and_decrypts_the_same() {
        let key = fresh_key();
        let compact = encrypt(&key, ContentType::Json, PLAINTEXT).expect("encrypts");
        assert_eq!(
            unb64(&parts(&compact)[0]),
            br#"{"alg":"dir","enc":"A256GCM","cty":"application/json"}"#
        );
        assert_eq!(decrypt(&key, &compact).expect("decrypts"), PLAINTEXT);

        // Every header is the JOSE object it claims: alg, enc and the media type as cty.
        for content_type in [ContentType::FhirJson, ContentType::Json] {
            let header: Value = serde_json::from_str(content_type.header()).expect("JSON");
            assert_eq!(
                header,
                serde_json::json!({
                    "alg": "dir",
                    "enc": "A256GCM",
                    "cty": content_type.media_type(),
                })
            );
        }
    }

    #[test]
    fn accepts_any_field_order_an_extra_kid_and_no_cty() {
        let key = fresh_key();
        for header in [
            r#"{"enc":"A256GCM","alg":"dir"}"#,
            r#"{"kid":"some-key-id","enc":"A256GCM","alg":"dir"}"#,
            r#"{"cty":"application/smart-health-card","alg":"dir","kid":"k","enc":"A256GCM"}"#,
            r#" { "alg" : "dir" , "enc" : "A256GCM" } "#,
        ] {
            let compact = seal(&key, header, PLAINTEXT);
            assert_eq!(decrypt(&key, &compact).expect(header), PLAINTEXT);
        }
    }

    #[test]
    fn zip_def_payload_is_inflated() {
        let key = fresh_key();
        let original = PLAINTEXT.repeat(50);
        let deflated = deflate(&original);
        assert!(deflated.len() < original.len());
        let compact = seal(
            &key,
            r#"{"alg":"dir","enc":"A256GCM","zip":"DEF","cty":"application/fhir+json"}"#,
            &deflated,
        );
        assert_eq!(decrypt(&key, &compact).expect("decrypts"), original);
    }

    #[test]
    fn zip_def_payload_that_is_not_deflate_is_malformed() {
        let key = fresh_key();
        let compact = seal(
            &key,
            r#"{"alg":"dir","enc":"A256GCM","zip":"DEF"}"#,
            &[0xff; 64],
        );
        assert!(matches!(
            decrypt(&key, &compact),
            Err(JweError::Malformed(_))
        ));
    }

    #[test]
    fn decompression_bomb_is_refused() {
        let key = fresh_key();
        let bomb = deflate(&vec![0u8; MAX_INFLATED_LEN + 1]);
        assert!(bomb.len() < 64 * 1024, "the bomb is small on the wire");
        let compact = seal(&key, r#"{"alg":"dir","enc":"A256GCM","zip":"DEF"}"#, &bomb);
        assert_eq!(decrypt(&key, &compact), Err(JweError::TooLarge));
    }

    #[test]
    fn inflate_limit_is_inclusive() {
        let limit = 4096;
        let exact = vec![b'a'; limit];
        assert_eq!(inflate(&deflate(&exact), limit).expect("fits"), exact);
        let over = vec![b'a'; limit + 1];
        assert_eq!(inflate(&deflate(&over), limit), Err(JweError::TooLarge));
    }

    #[test]
    fn tampering_or_a_wrong_key_fails_authentication() {
        let key = fresh_key();
        let compact = encrypt(&key, ContentType::FhirJson, PLAINTEXT).expect("encrypts");

        let flip_first = |bytes: &mut Vec<u8>| bytes[0] ^= 0x01;
        let flip_last = |bytes: &mut Vec<u8>| {
            if let Some(last) = bytes.last_mut() {
                *last ^= 0x80;
            }
        };
        for (what, altered) in [
            ("IV", tamper(&compact, 2, flip_first)),
            ("ciphertext start", tamper(&compact, 3, flip_first)),
            ("ciphertext end", tamper(&compact, 3, flip_last)),
            (
                "truncated ciphertext",
                tamper(&compact, 3, |bytes| bytes.truncate(1)),
            ),
            ("tag", tamper(&compact, 4, flip_last)),
            // Same meaning, different bytes: the AAD is the header as sent, so this must fail too.
            (
                "re-encoded header",
                with_part(&compact, 0, &b64(r#"{"enc":"A256GCM","alg":"dir"}"#)),
            ),
        ] {
            assert_eq!(decrypt(&key, &altered), Err(JweError::Decryption), "{what}");
        }

        let other = fresh_key();
        assert_eq!(decrypt(&other, &compact), Err(JweError::Decryption));
    }

    #[test]
    fn refuses_headers_outside_the_shl_profile() {
        let key = fresh_key();
        for (header, expected) in [
            (
                r#"{"alg":"RSA-OAEP","enc":"A256GCM"}"#,
                JweError::Unsupported("alg must be dir"),
            ),
            (
                r#"{"alg":"dir","enc":"A128GCM"}"#,
                JweError::Unsupported("enc must be A256GCM"),
            ),
            (
                r#"{"alg":"dir","enc":"A256GCM","zip":"GZIP"}"#,
                JweError::Unsupported("zip must be DEF or absent"),
            ),
            (
                r#"{"alg":"dir","enc":"A256GCM","crit":["exp"],"exp":1}"#,
                JweError::Unsupported("crit header"),
            ),
            (
                r#"{"alg":"dir","enc":"A256GCM","crit":[]}"#,
                JweError::Unsupported("crit header"),
            ),
            (
                r#"{"alg":"dir","enc":"A256GCM","zip":null}"#,
                JweError::Unsupported("zip must be DEF or absent"),
            ),
            (
                r#"{"enc":"A256GCM"}"#,
                JweError::Malformed("protected header has no alg"),
            ),
            (
                r#"{"alg":"dir"}"#,
                JweError::Malformed("protected header has no enc"),
            ),
            (
                r#"["dir","A256GCM"]"#,
                JweError::Malformed("protected header is not a JSON object"),
            ),
            (
                r#"{"alg":"dir","enc":"A256GCM""#,
                JweError::Malformed("protected header is not a JSON object"),
            ),
        ] {
            let compact = seal(&key, header, PLAINTEXT);
            assert_eq!(decrypt(&key, &compact), Err(expected), "{header}");
        }
    }

    #[test]
    fn refuses_an_encrypted_key() {
        let key = fresh_key();
        let compact = encrypt(&key, ContentType::FhirJson, PLAINTEXT).expect("encrypts");
        let altered = with_part(&compact, 1, &b64([1u8; 40]));
        assert_eq!(
            decrypt(&key, &altered),
            Err(JweError::Malformed(
                "encrypted key must be empty with alg dir"
            ))
        );
    }

    #[test]
    fn refuses_anything_but_five_parts() {
        let key = fresh_key();
        let compact = encrypt(&key, ContentType::FhirJson, PLAINTEXT).expect("encrypts");
        let four = parts(&compact)[..4].join(".");
        let six = format!("{compact}.");
        let six_filled = format!("{compact}.{}", b64(b"extra"));
        for altered in [four, six, six_filled, String::new(), ".....".to_owned()] {
            assert!(
                matches!(decrypt(&key, &altered), Err(JweError::Malformed(_))),
                "{altered}"
            );
        }
    }

    #[test]
    fn refuses_wrong_iv_and_tag_lengths() {
        let key = fresh_key();
        let compact = encrypt(&key, ContentType::FhirJson, PLAINTEXT).expect("encrypts");
        for (index, length, message) in [
            (2, 11, "IV must be 96 bits"),
            (2, 16, "IV must be 96 bits"),
            (2, 0, "IV must be 96 bits"),
            (4, 15, "tag must be 128 bits"),
            (4, 12, "tag must be 128 bits"),
            (4, 0, "tag must be 128 bits"),
        ] {
            let altered = with_part(&compact, index, &b64(vec![0u8; length]));
            assert_eq!(decrypt(&key, &altered), Err(JweError::Malformed(message)));
        }
    }

    #[test]
    fn refuses_padded_or_standard_alphabet_base64() {
        let key = fresh_key();
        // Five bytes leave a partial base64 quantum, so the ciphertext part has padding to add.
        let compact = encrypt(&key, ContentType::FhirJson, b"12345").expect("encrypts");
        let mut padded_parts = parts(&compact);
        padded_parts[3].push('=');
        padded_parts[4].push_str("==");
        for (index, part) in padded_parts.iter().enumerate().skip(3) {
            let altered = with_part(&compact, index, part);
            assert!(
                matches!(decrypt(&key, &altered), Err(JweError::Malformed(_))),
                "padding on part {index}"
            );
        }
        let padded_header = with_part(&compact, 0, &format!("{}=", parts(&compact)[0]));
        assert!(matches!(
            decrypt(&key, &padded_header),
            Err(JweError::Malformed(_))
        ));

        // A long payload is all but certain to have `-` or `_` somewhere in its encoding.
        let compact = encrypt(&key, ContentType::FhirJson, &[0x5a; 1024]).expect("encrypts");
        let standard = compact.replace('-', "+").replace('_', "/");
        assert_ne!(standard, compact);
        assert!(matches!(
            decrypt(&key, &standard),
            Err(JweError::Malformed(_))
        ));
        for (index, bad) in [(2, '+'), (3, '/'), (4, '+'), (0, '/')] {
            let mut part: Vec<char> = parts(&compact)[index].chars().collect();
            part[0] = bad;
            let altered = with_part(&compact, index, &part.into_iter().collect::<String>());
            assert!(
                matches!(decrypt(&key, &altered), Err(JweError::Malformed(_))),
                "{bad} in part {index}"
            );
        }

        // Surrounding whitespace is not part of the compact form.
        let newline = format!("{compact}\n");
        assert!(matches!(
            decrypt(&key, &newline),
            Err(JweError::Malformed(_))
        ));
    }

    #[test]
    fn generated_key_is_43_base64url_characters_and_round_trips() {
        let key = fresh_key();
        let text = key.to_base64url();
        assert_eq!(text.len(), 43);
        assert!(
            text.bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
        );
        let parsed = ShlKey::from_base64url(&text).expect("own encoding parses");
        assert_eq!(parsed.as_bytes(), key.as_bytes());
        assert_ne!(key.as_bytes(), fresh_key().as_bytes(), "keys are random");

        let hl7 = ShlKey::from_base64url(HL7_KEY).expect("the IG's key is valid");
        assert_eq!(hl7.to_base64url(), HL7_KEY);
    }

    #[test]
    fn key_parsing_refuses_other_lengths_and_alphabets() {
        let too_short = &HL7_KEY[..42];
        let too_long = format!("{HL7_KEY}A");
        let padded = format!("{HL7_KEY}=");
        let plus = format!("+{}", &HL7_KEY[1..]);
        let slash = format!("{}/", &HL7_KEY[..42]);
        let equals = format!("{}=", &HL7_KEY[..42]);
        // 'R' as the last character sets trailing bits that 32 bytes cannot carry.
        let non_canonical = format!("{}R", &HL7_KEY[..42]);
        let non_ascii = format!("{}é", &HL7_KEY[..41]);
        for text in [
            "",
            too_short,
            &too_long,
            &padded,
            &plus,
            &slash,
            &equals,
            &non_canonical,
            &non_ascii,
        ] {
            assert_eq!(
                ShlKey::from_base64url(text).map(|_| ()),
                Err(JweError::Malformed(
                    "SHL key must be 43 base64url characters"
                )),
                "{text}"
            );
        }
    }

    #[test]
    fn debug_and_errors_never_show_the_key() {
        let key = ShlKey::from_base64url(HL7_KEY).expect("valid");
        let debug = format!("{key:?}");
        assert_eq!(debug, "ShlKey([REDACTED])");
        assert!(!debug.contains(HL7_KEY));

        let almost = format!("{}!", &HL7_KEY[..42]);
        let error = ShlKey::from_base64url(&almost)
            .map(|_| ())
            .expect_err("bad key");
        assert!(!error.to_string().contains(&HL7_KEY[..42]));
        assert!(!format!("{error:?}").contains(&HL7_KEY[..42]));

        let wrong = decrypt(
            &key,
            &encrypt(&fresh_key(), ContentType::FhirJson, PLAINTEXT).expect("encrypts"),
        )
        .expect_err("wrong key");
        assert!(!wrong.to_string().contains("resourceType"));
    }
}
