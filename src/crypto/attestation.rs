//! App attestation (CMS Kill the Clipboard, optional): an ES256 JWT in a PatientSharedBundle's
//! `meta.extension` that says "a known app took part in making this Bundle", and the JWKS
//! receivers check it with.
//!
//! - Keys are EC P-256. The active key is a PKCS#8 private key and the only one that signs;
//!   retired keys (PKCS#8 private or SPKI public, only their public half is kept) are published
//!   until receivers' cached JWKS expire, so links made before a rotation still verify.
//! - A key's `kid` is its RFC 7638 thumbprint: SHA-256 over `{"crv","kty","x","y"}` in that
//!   member order, base64url. Any receiver can recompute it from the JWK.
//! - The JWT is a compact JWS, header `{"alg":"ES256","kid":…,"typ":"JWT"}`, claims exactly
//!   `iss` (the app's canonical URL), `iat` (seconds) and `jti` (a UUID v4): no PHI, no content
//!   hash, no `exp`, as the profile asks. The signature is the 64-byte `r || s` JWS uses, not DER.
//!
//! The signing key is wiped on drop (`ecdsa::SigningKey` zeroizes its scalar) and never printed:
//! `Debug` shows the issuer and the `kid`s only, and no error here repeats a key or a PEM.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _, EncodePrivateKey as _, LineEnding};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

/// `Bundle.meta.extension[].url` of the attestation.
pub(crate) const EXTENSION_URL: &str = "https://cms.gov/fhir/StructureDefinition/app-attestation";

/// Why a key was refused. The messages name what is wrong, never the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum KeyError {
    #[error(
        "not a PKCS#8 PEM private key (\"BEGIN PRIVATE KEY\"); a SEC1 key (\"BEGIN EC PRIVATE KEY\") \
         converts with `openssl pkcs8 -topk8 -nocrypt`"
    )]
    NotPkcs8,
    #[error("not a PEM key (\"BEGIN PRIVATE KEY\" or \"BEGIN PUBLIC KEY\")")]
    NotPem,
    #[error("not an EC P-256 key, or a malformed one")]
    NotP256,
    #[error("the operating system's random number generator failed")]
    Random,
    #[error("a retired key is the active key")]
    RetiredIsActive,
}

/// A public key as the JWKS publishes it: its coordinates and its thumbprint.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PublicJwk {
    x: String,
    y: String,
    kid: String,
}

impl PublicJwk {
    fn of(key: &VerifyingKey) -> Result<Self, KeyError> {
        let point = key.to_encoded_point(false);
        let (Some(x), Some(y)) = (point.x(), point.y()) else {
            return Err(KeyError::NotP256);
        };
        let x = URL_SAFE_NO_PAD.encode(x);
        let y = URL_SAFE_NO_PAD.encode(y);
        let kid = thumbprint(&x, &y);
        Ok(Self { x, y, kid })
    }

    fn to_json(&self) -> Value {
        json!({
            "kty": "EC",
            "crv": "P-256",
            "x": self.x,
            "y": self.y,
            "kid": self.kid,
            "use": "sig",
            "alg": "ES256",
        })
    }
}

/// RFC 7638: the required members of an EC JWK in lexicographic order, no whitespace, SHA-256,
/// base64url without padding. `x` and `y` are already base64url, so nothing needs escaping.
fn thumbprint(x: &str, y: &str) -> String {
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// The active key from a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
pub(crate) fn parse_private_key(pem: &str) -> Result<SigningKey, KeyError> {
    if pem.contains("-----BEGIN EC PRIVATE KEY-----") {
        return Err(KeyError::NotPkcs8);
    }
    if !pem.contains("-----BEGIN PRIVATE KEY-----") {
        return Err(KeyError::NotPkcs8);
    }
    SigningKey::from_pkcs8_pem(pem).map_err(|_| KeyError::NotP256)
}

/// A retired key's public half, from a PKCS#8 private key or an SPKI public key (PEM). A private
/// key is dropped (and wiped) as soon as its public half is taken.
pub(crate) fn parse_retired_key(pem: &str) -> Result<VerifyingKey, KeyError> {
    if pem.contains("-----BEGIN PUBLIC KEY-----") {
        return VerifyingKey::from_public_key_pem(pem).map_err(|_| KeyError::NotP256);
    }
    if pem.contains("-----BEGIN PRIVATE KEY-----") || pem.contains("-----BEGIN EC PRIVATE KEY") {
        return parse_private_key(pem).map(|key| *key.verifying_key());
    }
    Err(KeyError::NotPem)
}

/// A fresh P-256 key as PKCS#8 PEM (wiped on drop), with its `kid`.
pub(crate) fn new_private_key_pem() -> Result<(Zeroizing<String>, String), KeyError> {
    // A uniform 256-bit string is a valid scalar unless it is 0 or at least the group order
    // (chance about 2^-32); draw again then.
    let key = loop {
        let mut bytes = Zeroizing::new([0u8; 32]);
        getrandom::fill(bytes.as_mut_slice()).map_err(|_| KeyError::Random)?;
        if let Ok(key) = SigningKey::from_slice(bytes.as_slice()) {
            break key;
        }
    };
    let kid = PublicJwk::of(key.verifying_key())?.kid;
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|_| KeyError::NotP256)?;
    Ok((pem, kid))
}

/// The attesting app: its canonical URL, the key that signs, and the JWKS that publishes it
/// with the retired keys.
pub(crate) struct AppAttestation {
    /// `iss`: the app's canonical URL, without a trailing slash.
    issuer: String,
    key: SigningKey,
    active: PublicJwk,
    retired: Vec<PublicJwk>,
    /// `{"keys":[…]}`, serialized once: the active key first, then the retired ones.
    jwks: String,
}

impl fmt::Debug for AppAttestation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppAttestation")
            .field("issuer", &self.issuer)
            .field("kid", &self.active.kid)
            .field(
                "retired",
                &self.retired.iter().map(|key| &key.kid).collect::<Vec<_>>(),
            )
            .field("key", &"[REDACTED]")
            .finish()
    }
}

impl AppAttestation {
    /// `issuer` is used as given, less a trailing slash (receivers fetch `{iss}/.well-known/
    /// jwks.json`). A retired key listed twice is published once; one equal to the active key
    /// is refused (it would be published twice under one `kid`, and it is not retired).
    pub(crate) fn new(
        issuer: &str,
        key: SigningKey,
        retired: &[VerifyingKey],
    ) -> Result<Self, KeyError> {
        let active = PublicJwk::of(key.verifying_key())?;
        let mut published: Vec<PublicJwk> = Vec::with_capacity(retired.len());
        for retired_key in retired {
            let jwk = PublicJwk::of(retired_key)?;
            if jwk.kid == active.kid {
                return Err(KeyError::RetiredIsActive);
            }
            if !published.contains(&jwk) {
                published.push(jwk);
            }
        }
        let keys: Vec<Value> = std::iter::once(&active)
            .chain(&published)
            .map(PublicJwk::to_json)
            .collect();
        let jwks = json!({ "keys": keys }).to_string();
        Ok(Self {
            issuer: issuer.trim_end_matches('/').to_owned(),
            key,
            active,
            retired: published,
            jwks,
        })
    }

    pub(crate) fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The active key's `kid` (what `new-key` prints, and what the JWT's header names).
    pub(crate) fn kid(&self) -> &str {
        &self.active.kid
    }

    /// How many retired keys the JWKS publishes.
    pub(crate) fn retired_keys(&self) -> usize {
        self.retired.len()
    }

    /// The JWK Set (`application/json`) the gateway serves at `/.well-known/jwks.json`.
    pub(crate) fn jwks(&self) -> &str {
        &self.jwks
    }

    /// A fresh attestation JWT issued at `iat` (seconds since the epoch), with a new `jti`.
    pub(crate) fn sign(&self, iat: i64) -> String {
        let header = json!({ "alg": "ES256", "kid": self.active.kid, "typ": "JWT" });
        let claims = json!({
            "iss": self.issuer,
            "iat": iat,
            "jti": uuid::Uuid::new_v4().to_string(),
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        // SHA-256 and RFC 6979 nonces; `to_bytes` is the fixed-size `r || s` of JWS (RFC 7518,
        // section 3.4), not DER.
        let signature: Signature = self.key.sign(signing_input.as_bytes());
        format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        )
    }

    /// The `Bundle.meta.extension` entry carrying a fresh JWT.
    pub(crate) fn extension(&self, iat: i64) -> Value {
        json!({ "url": EXTENSION_URL, "valueString": self.sign(iat) })
    }
}

#[cfg(test)]
mod tests {
    use p256::ecdsa::signature::Verifier as _;

    use super::*;

    fn decode(part: &str) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(part).expect("base64url")
    }

    fn fresh() -> SigningKey {
        let (pem, _) = new_private_key_pem().expect("a key");
        parse_private_key(&pem).expect("parses")
    }

    fn public(key: &SigningKey) -> VerifyingKey {
        *key.verifying_key()
    }

    #[test]
    fn the_thumbprint_matches_a_published_example() {
        // RFC 9449 (DPoP), section 6.1: this P-256 key's SHA-256 JWK thumbprint (`jkt`).
        assert_eq!(
            thumbprint(
                "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
                "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA"
            ),
            "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
        );
    }

    #[test]
    fn the_kid_is_the_thumbprint_of_the_keys_coordinates() {
        // Computed here from the uncompressed point, independently of `PublicJwk`.
        let key = fresh();
        let point = public(&key).to_encoded_point(false);
        let bytes = point.as_bytes();
        assert_eq!(bytes.len(), 65);
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            URL_SAFE_NO_PAD.encode(&bytes[1..33]),
            URL_SAFE_NO_PAD.encode(&bytes[33..])
        );
        let expected = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
        let attestation = AppAttestation::new("https://app.example.org", key, &[]).expect("ok");
        assert_eq!(attestation.kid(), expected);
        assert_eq!(attestation.kid().len(), 43);
    }

    #[test]
    fn the_jwt_is_a_compact_es256_jws_with_exactly_three_claims() {
        let key = fresh();
        let verifying = public(&key);
        let attestation = AppAttestation::new("https://app.example.org/", key, &[]).expect("ok");
        let jwt = attestation.sign(1_766_173_322);

        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: Value = serde_json::from_slice(&decode(parts[0])).expect("header");
        assert_eq!(
            header,
            json!({"alg": "ES256", "kid": attestation.kid(), "typ": "JWT"})
        );
        let claims: Value = serde_json::from_slice(&decode(parts[1])).expect("claims");
        let claims = claims.as_object().expect("an object");
        assert_eq!(claims.len(), 3, "{claims:?}");
        assert_eq!(
            claims["iss"], "https://app.example.org",
            "no trailing slash"
        );
        assert_eq!(claims["iat"], 1_766_173_322);
        let jti = uuid::Uuid::parse_str(claims["jti"].as_str().expect("jti")).expect("a UUID");
        assert_eq!(jti.get_version_num(), 4);

        let signature = decode(parts[2]);
        assert_eq!(signature.len(), 64, "r || s, not DER");
        let signature = Signature::from_slice(&signature).expect("r || s");
        let signing_input = format!("{}.{}", parts[0], parts[1]);
        assert!(
            verifying
                .verify(signing_input.as_bytes(), &signature)
                .is_ok()
        );
    }

    #[test]
    fn every_jwt_has_its_own_jti() {
        let attestation = AppAttestation::new("https://a.example", fresh(), &[]).expect("ok");
        let jti = |jwt: &str| -> Value {
            let claims = jwt.split('.').nth(1).expect("claims");
            serde_json::from_slice::<Value>(&decode(claims)).expect("json")["jti"].clone()
        };
        assert_ne!(jti(&attestation.sign(1)), jti(&attestation.sign(1)));
    }

    #[test]
    fn the_jwks_publishes_the_active_key_then_the_retired_ones() {
        let active = fresh();
        let old = fresh();
        let older = fresh();
        let retired = [public(&old), public(&older), public(&old)];
        let attestation = AppAttestation::new("https://a.example", active, &retired).expect("ok");

        let jwks: Value = serde_json::from_str(attestation.jwks()).expect("json");
        let keys = jwks["keys"].as_array().expect("keys");
        assert_eq!(keys.len(), 3, "a repeated retired key is published once");
        assert_eq!(keys[0]["kid"], attestation.kid());
        let old_kid = PublicJwk::of(&public(&old)).expect("jwk").kid;
        assert_eq!(keys[1]["kid"], old_kid.as_str());
        for key in keys {
            let fields = key.as_object().expect("object");
            let mut names: Vec<&str> = fields.keys().map(String::as_str).collect();
            names.sort_unstable();
            assert_eq!(names, ["alg", "crv", "kid", "kty", "use", "x", "y"]);
            assert_eq!(key["kty"], "EC");
            assert_eq!(key["crv"], "P-256");
            assert_eq!(key["use"], "sig");
            assert_eq!(key["alg"], "ES256");
            assert_eq!(decode(key["x"].as_str().expect("x")).len(), 32);
            assert_eq!(decode(key["y"].as_str().expect("y")).len(), 32);
            assert_eq!(
                key["kid"],
                thumbprint(key["x"].as_str().expect("x"), key["y"].as_str().expect("y"))
            );
        }
        assert!(!attestation.jwks().contains("\"d\""), "no private part");
    }

    #[test]
    fn the_active_key_cannot_be_retired_too() {
        let key = fresh();
        let same = public(&key);
        assert_eq!(
            AppAttestation::new("https://a.example", key, &[same]).err(),
            Some(KeyError::RetiredIsActive)
        );
    }

    #[test]
    fn keys_parse_from_pkcs8_and_spki_pem_only() {
        use p256::pkcs8::EncodePublicKey as _;
        let (pem, kid) = new_private_key_pem().expect("a key");
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let key = parse_private_key(&pem).expect("PKCS#8");
        let public_pem = public(&key)
            .to_public_key_pem(LineEnding::LF)
            .expect("SPKI");
        assert_eq!(
            PublicJwk::of(&parse_retired_key(&public_pem).expect("SPKI"))
                .expect("jwk")
                .kid,
            kid
        );
        assert_eq!(
            PublicJwk::of(&parse_retired_key(&pem).expect("PKCS#8"))
                .expect("jwk")
                .kid,
            kid
        );
        assert_eq!(
            parse_private_key(&public_pem).err(),
            Some(KeyError::NotPkcs8)
        );
        let sec1 = key.to_bytes();
        let sec1_pem = format!(
            "-----BEGIN EC PRIVATE KEY-----\n{}\n-----END EC PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(sec1)
        );
        assert_eq!(parse_private_key(&sec1_pem).err(), Some(KeyError::NotPkcs8));
        assert_eq!(parse_retired_key("hello").err(), Some(KeyError::NotPem));
        let garbage = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert_eq!(parse_private_key(garbage).err(), Some(KeyError::NotP256));
    }

    #[test]
    fn debug_and_errors_never_show_the_key() {
        let (pem, _) = new_private_key_pem().expect("a key");
        let key = parse_private_key(&pem).expect("parses");
        let scalar = URL_SAFE_NO_PAD.encode(key.to_bytes());
        let attestation = AppAttestation::new("https://a.example", key, &[]).expect("ok");
        let printed = format!("{attestation:?}");
        assert!(printed.contains("REDACTED") && printed.contains(attestation.kid()));
        assert!(!printed.contains(&scalar));
        let body = pem.lines().nth(1).expect("a PEM line");
        assert!(!printed.contains(body));
        assert!(!attestation.jwks().contains(&scalar));
    }
}
