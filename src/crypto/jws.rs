//! Verifying an ES256 compact JWS against a JWK Set: how a receiver checks the app attestation
//! of a Kill the Clipboard Bundle (`attestation` is the signing side).
//!
//! Verification is in two steps because a receiver needs the claims before it can verify: the
//! JWKS lives at `{iss}/.well-known/jwks.json`. [`read`] splits the token and decodes header and
//! claims without trusting them; [`UnverifiedJws::verify`] then checks the signature with the
//! key the header's `kid` names. Nothing read in the first step may be acted on as true until
//! the second succeeds, except to decide where to fetch the keys from.
//!
//! Only what the profile allows is accepted: `alg` ES256, a `kid`, an EC P-256 key, and the
//! 64-byte `r || s` signature of JWS (not DER). The token is bounded in length before any
//! decoding, since it comes from whoever made the Bundle.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::EncodedPoint;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use serde_json::{Map, Value};

/// The longest token read. An attestation carries three short claims (a few hundred
/// characters); anything near this is not one.
const MAX_JWS_LEN: usize = 8 * 1024;

/// Why a JWS was not verified. The messages name the part at fault, never a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwsError {
    #[error("not a compact JWS: {0}")]
    Malformed(&'static str),
    #[error("alg must be ES256")]
    Algorithm,
    #[error("the JWKS has no usable EC P-256 key with this kid")]
    UnknownKey,
    #[error("the signature does not verify")]
    Signature,
}

/// A compact JWS split and decoded, its signature not yet checked.
#[derive(Debug)]
pub(crate) struct UnverifiedJws<'a> {
    /// `BASE64URL(header) . BASE64URL(claims)`, exactly as received: what was signed.
    signing_input: &'a str,
    signature: Signature,
    /// The header's `kid`: which key of the JWKS must verify it.
    pub(crate) kid: String,
    /// The claims, as the signer (or a forger) wrote them.
    pub(crate) claims: Map<String, Value>,
}

/// Splits and decodes `token`, checking its form and `alg`, not its signature.
pub(crate) fn read(token: &str) -> Result<UnverifiedJws<'_>, JwsError> {
    if token.len() > MAX_JWS_LEN {
        return Err(JwsError::Malformed("longer than any attestation"));
    }
    let mut parts = token.split('.');
    let (Some(header_part), Some(claims_part), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwsError::Malformed("a compact JWS has exactly three parts"));
    };
    let header = decode_object(header_part, "the header is not a base64url JSON object")?;
    if header.contains_key("crit") {
        return Err(JwsError::Malformed("crit header"));
    }
    if header.get("alg").and_then(Value::as_str) != Some("ES256") {
        return Err(JwsError::Algorithm);
    }
    let kid = header
        .get("kid")
        .and_then(Value::as_str)
        .filter(|kid| !kid.is_empty())
        .ok_or(JwsError::Malformed("the header has no kid"))?
        .to_owned();
    let claims = decode_object(claims_part, "the claims are not a base64url JSON object")?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .ok()
        .and_then(|bytes| Signature::from_slice(&bytes).ok())
        .ok_or(JwsError::Malformed(
            "the signature is not 64 bytes of r || s",
        ))?;
    let signing_input = &token[..header_part.len() + 1 + claims_part.len()];
    Ok(UnverifiedJws {
        signing_input,
        signature,
        kid,
        claims,
    })
}

fn decode_object(part: &str, malformed: &'static str) -> Result<Map<String, Value>, JwsError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwsError::Malformed(malformed))?;
    serde_json::from_slice(&bytes).map_err(|_| JwsError::Malformed(malformed))
}

impl UnverifiedJws<'_> {
    /// Verifies the signature with the key of `jwks` (`{"keys": [...]}`) whose `kid` is the
    /// header's. Keys of other types, curves or algorithms are not candidates.
    pub(crate) fn verify(&self, jwks: &Value) -> Result<(), JwsError> {
        let key = jwks
            .get("keys")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|jwk| jwk.get("kid").and_then(Value::as_str) == Some(self.kid.as_str()))
            .find_map(p256_key)
            .ok_or(JwsError::UnknownKey)?;
        key.verify(self.signing_input.as_bytes(), &self.signature)
            .map_err(|_| JwsError::Signature)
    }
}

/// The P-256 public key of an EC JWK meant for ES256 signatures, if it is one.
fn p256_key(jwk: &Value) -> Option<VerifyingKey> {
    let text = |name: &str| jwk.get(name).and_then(Value::as_str);
    let usable = text("kty") == Some("EC")
        && text("crv") == Some("P-256")
        && text("alg").is_none_or(|alg| alg == "ES256")
        && text("use").is_none_or(|usage| usage == "sig");
    if !usable {
        return None;
    }
    let coordinate = |name: &str| -> Option<[u8; 32]> {
        URL_SAFE_NO_PAD.decode(text(name)?).ok()?.try_into().ok()
    };
    let (x, y) = (coordinate("x")?, coordinate("y")?);
    let point = EncodedPoint::from_affine_coordinates(&x.into(), &y.into(), false);
    VerifyingKey::from_encoded_point(&point).ok()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::crypto::attestation::{AppAttestation, new_private_key_pem, parse_private_key};

    fn attestation() -> AppAttestation {
        let (pem, _) = new_private_key_pem().expect("a key");
        let key = parse_private_key(&pem).expect("parses");
        AppAttestation::new("https://app.example.org", key, &[]).expect("attestation")
    }

    fn jwks(attestation: &AppAttestation) -> Value {
        serde_json::from_str(attestation.jwks()).expect("JSON")
    }

    #[test]
    fn the_gateways_own_attestation_verifies_against_its_jwks() {
        let attestation = attestation();
        let token = attestation.sign(1_767_225_600);

        let read = read(&token).expect("reads");
        assert_eq!(read.kid, attestation.kid());
        assert_eq!(read.claims["iss"], "https://app.example.org");
        assert_eq!(read.claims["iat"], 1_767_225_600);
        assert_eq!(read.verify(&jwks(&attestation)), Ok(()));
    }

    #[test]
    fn a_changed_claim_or_signature_or_another_key_does_not_verify() {
        let attestation = attestation();
        let token = attestation.sign(1);
        let parts: Vec<&str> = token.split('.').collect();
        let forged_claims = URL_SAFE_NO_PAD.encode(r#"{"iss":"https://evil.example","iat":1}"#);
        let forged = format!("{}.{forged_claims}.{}", parts[0], parts[2]);
        assert_eq!(
            read(&forged).expect("reads").verify(&jwks(&attestation)),
            Err(JwsError::Signature)
        );

        let mut signature = URL_SAFE_NO_PAD.decode(parts[2]).expect("base64url");
        signature[10] ^= 1;
        let altered = format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            URL_SAFE_NO_PAD.encode(signature)
        );
        assert_eq!(
            read(&altered).expect("reads").verify(&jwks(&attestation)),
            Err(JwsError::Signature)
        );

        // Another app's JWKS, with the same kid forced onto its key: still no.
        let other = attestation_with_kid_of(&attestation);
        assert_eq!(
            read(&token).expect("reads").verify(&other),
            Err(JwsError::Signature)
        );
    }

    fn attestation_with_kid_of(attestation: &AppAttestation) -> Value {
        let mut other = jwks(&self::attestation());
        other["keys"][0]["kid"] = json!(attestation.kid());
        other
    }

    #[test]
    fn a_kid_the_jwks_lacks_or_holds_with_another_curve_is_unknown() {
        let attestation = attestation();
        let token = attestation.sign(1);
        let read = read(&token).expect("reads");
        let mut keys = jwks(&attestation);
        keys["keys"][0]["kid"] = json!("someone-else");
        assert_eq!(read.verify(&keys), Err(JwsError::UnknownKey));

        let mut keys = jwks(&attestation);
        keys["keys"][0]["crv"] = json!("P-384");
        assert_eq!(read.verify(&keys), Err(JwsError::UnknownKey));
        assert_eq!(read.verify(&json!({})), Err(JwsError::UnknownKey));
        assert_eq!(
            read.verify(&json!({"keys": "not a list"})),
            Err(JwsError::UnknownKey)
        );
    }

    #[test]
    fn only_es256_with_a_kid_and_a_raw_signature_is_read() {
        let encode = |value: Value| URL_SAFE_NO_PAD.encode(value.to_string());
        let claims = encode(json!({"iss": "https://a.example"}));
        let signature = URL_SAFE_NO_PAD.encode([1u8; 64]);
        for (header, expected) in [
            (json!({"alg": "RS256", "kid": "k"}), JwsError::Algorithm),
            (json!({"alg": "none", "kid": "k"}), JwsError::Algorithm),
            (json!({"kid": "k"}), JwsError::Algorithm),
            (
                json!({"alg": "ES256"}),
                JwsError::Malformed("the header has no kid"),
            ),
            (
                json!({"alg": "ES256", "kid": "k", "crit": ["b64"]}),
                JwsError::Malformed("crit header"),
            ),
        ] {
            let token = format!("{}.{claims}.{signature}", encode(header.clone()));
            assert_eq!(read(&token).map(|_| ()), Err(expected), "{header}");
        }
        let header = encode(json!({"alg": "ES256", "kid": "k"}));
        let der_length = URL_SAFE_NO_PAD.encode([1u8; 70]);
        for token in [
            format!("{header}.{claims}"),
            format!("{header}.{claims}.{signature}.extra"),
            format!("{header}.{claims}.{der_length}"),
            format!("{header}.bm90IGpzb24.{signature}"),
            "x".repeat(MAX_JWS_LEN + 1),
        ] {
            assert!(
                matches!(read(&token), Err(JwsError::Malformed(_))),
                "{token:.60}"
            );
        }
    }
}
