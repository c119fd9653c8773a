//! Keys derived from `--secret-key`, one per purpose.
//!
//! Every HMAC the gateway makes is keyed by the one secret shared by all replicas, but never
//! with the secret itself: each purpose gets its own key, `HMAC-SHA256(secret, purpose label)`,
//! so a value made for one purpose (a token's lookup hash) can never be replayed as another (a
//! location ticket's signature).

use hmac::Mac;
use secrecy::{ExposeSecret, SecretBox};
use zeroize::ZeroizeOnDrop;

use super::mac::{HmacSha256, hmac_sha256};

/// The key behind every HMAC the gateway makes (`--secret-key`, or the file that holds it).
/// `SecretBox` wipes the whole buffer on drop and prints no content as `Debug`.
pub(crate) type SecretKey = SecretBox<Vec<u8>>;

/// A 256-bit HMAC key for one purpose. `Debug` does not print it, and it is wiped on drop like
/// the other key types.
#[derive(Clone)]
pub struct PurposeKey([u8; 32]);

impl Drop for PurposeKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl ZeroizeOnDrop for PurposeKey {}

impl std::fmt::Debug for PurposeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PurposeKey([REDACTED])")
    }
}

impl PurposeKey {
    fn derive(secret: &[u8], purpose: &str) -> Self {
        Self(hmac_sha256(secret, purpose.as_bytes()))
    }

    /// The key itself, borrowed, for the one consumer that keys its own HMACs (the audit chain
    /// and its verifier): a copy would be a key nobody wipes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub(crate) fn mac(&self, message: &[u8]) -> [u8; 32] {
        hmac_sha256(&self.0, message)
    }

    /// Constant-time check of a MAC (or a prefix of one, at least 16 bytes).
    pub(crate) fn verify(&self, message: &[u8], tag: &[u8]) -> bool {
        let Ok(mut mac) = HmacSha256::new_from_slice(&self.0) else {
            return false;
        };
        mac.update(message);
        tag.len() >= 16 && mac.verify_truncated_left(tag).is_ok()
    }
}

/// The purpose keys. Each is wiped on drop, and so therefore is the whole set.
#[derive(Debug, Clone)]
pub struct Keys {
    /// Bearer tokens are stored and looked up as this HMAC.
    pub(crate) token: PurposeKey,
    /// Passcodes are HMAC-ed with this pepper before argon2id, so a database dump alone cannot
    /// be brute-forced: 10^6 passcodes are few, the key is not.
    pub passcode_pepper: PurposeKey,
    /// Signs short-lived file location tickets.
    pub location_ticket: PurposeKey,
    /// Turns bearer tokens into rate-limit keys (which reach Redis) without the token.
    pub rate_limit: PurposeKey,
    /// Keys the audit chain's MACs.
    pub audit_chain: PurposeKey,
    /// Turns bearer tokens into audit actor ids.
    pub audit_actor: PurposeKey,
    /// Files and seals idempotent answers (with the caller's token mixed in).
    pub idempotency: PurposeKey,
}

impl Keys {
    pub fn derive(secret: &SecretKey) -> Self {
        let secret = secret.expose_secret();
        Self {
            token: PurposeKey::derive(secret, "shl-gateway/v1/bearer-token"),
            passcode_pepper: PurposeKey::derive(secret, "shl-gateway/v1/passcode-pepper"),
            location_ticket: PurposeKey::derive(secret, "shl-gateway/v1/location-ticket"),
            rate_limit: PurposeKey::derive(secret, "shl-gateway/v1/rate-limit-key"),
            audit_chain: PurposeKey::derive(secret, "shl-gateway/v1/audit-chain"),
            audit_actor: PurposeKey::derive(secret, "shl-gateway/v1/audit-actor"),
            idempotency: PurposeKey::derive(secret, "shl-gateway/v1/idempotency"),
        }
    }

    /// The stored form of a bearer token: hex HMAC of the token (without the `Bearer ` scheme).
    pub(crate) fn token_hmac(&self, token: &str) -> String {
        hex::encode(self.token.mac(token.as_bytes()))
    }
}

impl ZeroizeOnDrop for Keys {}

/// The 256-bit HMAC key of the audit chain. `Debug` does not print it; it is wiped on drop.
#[derive(Clone)]
pub struct AuditKey([u8; 32]);

/// A key of the wrong length was given where 256 bits are required.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("audit key must be 32 bytes")]
pub(crate) struct InvalidKeyLength;

impl AuditKey {
    #[cfg(test)]
    pub(crate) fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A key from a slice, which must be exactly 32 bytes: a shorter one would silently weaken
    /// every MAC in the trail.
    pub(crate) fn from_slice(bytes: &[u8]) -> Result<Self, InvalidKeyLength> {
        <[u8; 32]>::try_from(bytes)
            .map(Self)
            .map_err(|_| InvalidKeyLength)
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl From<[u8; 32]> for AuditKey {
    fn from(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

/// The audit chain's key from its purpose key, copied straight into the wiped-on-drop value.
impl From<&PurposeKey> for AuditKey {
    fn from(key: &PurposeKey) -> Self {
        Self(*key.as_bytes())
    }
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey([REDACTED])")
    }
}

impl Drop for AuditKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl ZeroizeOnDrop for AuditKey {}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretBox;

    fn keys(secret: &str) -> Keys {
        Keys::derive(&SecretBox::new(Box::new(secret.as_bytes().to_vec())))
    }

    #[test]
    fn purposes_get_different_keys() {
        let keys = keys("0123456789abcdef0123456789abcdef");
        assert_ne!(keys.token.mac(b"x"), keys.passcode_pepper.mac(b"x"));
        assert_ne!(keys.token.mac(b"x"), keys.location_ticket.mac(b"x"));
    }

    #[test]
    fn token_hmacs_depend_on_the_secret() {
        let a = keys("0123456789abcdef0123456789abcdef");
        let b = keys("0123456789abcdef0123456789abcdeF");
        assert_eq!(a.token_hmac("t"), a.token_hmac("t"));
        assert_ne!(a.token_hmac("t"), b.token_hmac("t"));
        assert_eq!(a.token_hmac("t").len(), 64);
    }

    #[test]
    fn verify_accepts_truncated_tags_of_16_bytes_or_more() {
        let keys = keys("0123456789abcdef0123456789abcdef");
        let tag = keys.location_ticket.mac(b"message");
        assert!(keys.location_ticket.verify(b"message", &tag));
        assert!(keys.location_ticket.verify(b"message", &tag[..16]));
        assert!(!keys.location_ticket.verify(b"message", &tag[..15]));
        assert!(!keys.location_ticket.verify(b"other", &tag));
    }

    #[test]
    fn debug_hides_keys() {
        let keys = keys("0123456789abcdef0123456789abcdef");
        let printed = format!("{keys:?}");
        assert!(printed.contains("REDACTED"));
        assert!(!printed.contains(&format!("{:?}", keys.token.0)));
    }

    #[test]
    fn every_key_type_is_wiped_on_drop() {
        fn wiped_on_drop<T: ZeroizeOnDrop>(_: &T) {}
        let keys = keys("0123456789abcdef0123456789abcdef");
        wiped_on_drop(&keys);
        // Exhaustive, so a field added to `Keys` must be looked at here.
        let Keys {
            token,
            passcode_pepper,
            location_ticket,
            rate_limit,
            audit_chain,
            audit_actor,
            idempotency,
        } = &keys;
        for key in [
            token,
            passcode_pepper,
            location_ticket,
            rate_limit,
            audit_chain,
            audit_actor,
            idempotency,
        ] {
            wiped_on_drop(key);
        }
        wiped_on_drop(&AuditKey::from(audit_chain));
        wiped_on_drop(&crate::crypto::jwe::ShlKey::from_bytes([1; 32]));
        // The secret they come from: secrecy wipes the whole buffer.
        wiped_on_drop(&SecretBox::new(Box::new(vec![1u8; 32])));
    }

    #[test]
    fn the_audit_key_is_the_audit_chain_purpose_key() {
        let keys = keys("0123456789abcdef0123456789abcdef");
        let audit = AuditKey::from(&keys.audit_chain);
        assert_eq!(audit.as_bytes(), keys.audit_chain.as_bytes());
        assert_eq!(format!("{audit:?}"), "AuditKey([REDACTED])");
    }

    #[test]
    fn audit_key_debug_is_redacted_and_length_checked() {
        let key = AuditKey::new([7; 32]);
        assert_eq!(format!("{key:?}"), "AuditKey([REDACTED])");
        assert!(AuditKey::from_slice(&[1; 31]).is_err());
        assert!(AuditKey::from_slice(&[1; 32]).is_ok());
    }
}
