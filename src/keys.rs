//! Keys derived from `--secret-key`, one per purpose.
//!
//! Every HMAC the gateway makes is keyed by the one secret shared by all replicas, but never
//! with the secret itself: each purpose gets its own key, `HMAC-SHA256(secret, purpose label)`,
//! so a value made for one purpose (a token's lookup hash) can never be replayed as another (a
//! location ticket's signature).

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretBox};
use sha2::Sha256;

/// The key behind every HMAC the gateway makes (`--secret-key`, or the file that holds it).
pub type SecretKey = SecretBox<Vec<u8>>;

/// HMAC-SHA256, the one MAC the gateway uses (its HMACs here, the audit chain's seals).
pub(crate) type HmacSha256 = Hmac<Sha256>;

/// A 256-bit HMAC key for one purpose. `Debug` does not print it, and it is wiped on drop like
/// the other key types.
#[derive(Clone)]
pub struct PurposeKey([u8; 32]);

impl Drop for PurposeKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl std::fmt::Debug for PurposeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PurposeKey([REDACTED])")
    }
}

impl PurposeKey {
    fn derive(secret: &[u8], purpose: &str) -> Self {
        Self(hmac_sha256(secret, purpose.as_bytes()))
    }

    /// The key itself, for the one consumer that keys its own HMACs (the audit chain).
    pub fn bytes(&self) -> [u8; 32] {
        self.0
    }

    pub fn mac(&self, message: &[u8]) -> [u8; 32] {
        hmac_sha256(&self.0, message)
    }

    /// Constant-time check of a MAC (or a prefix of one, at least 16 bytes).
    pub fn verify(&self, message: &[u8], tag: &[u8]) -> bool {
        let Ok(mut mac) = HmacSha256::new_from_slice(&self.0) else {
            return false;
        };
        mac.update(message);
        tag.len() >= 16 && mac.verify_truncated_left(tag).is_ok()
    }
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// The purpose keys.
#[derive(Debug, Clone)]
pub struct Keys {
    /// Bearer tokens are stored and looked up as this HMAC.
    pub token: PurposeKey,
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
    pub fn token_hmac(&self, token: &str) -> String {
        hex::encode(self.token.mac(token.as_bytes()))
    }
}

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
}
