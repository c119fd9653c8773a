//! Location tickets: the short-lived, unguessable file URLs a manifest hands out.
//!
//! A ticket is `base64url(link id (16 bytes) || expiry in Unix seconds (8 bytes) || HMAC tag
//! (16 bytes))`. Being signed, it needs no table and works on every replica that shares the
//! secret key; being short-lived (300 s by default, the spec allows at most one hour), a leaked
//! ticket soon stops working. The file handler still checks that the link is live, so a
//! revocation takes effect at once, even for tickets already issued.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use uuid::Uuid;

use crate::crypto::PurposeKey;

const TAG_LEN: usize = 16;
const TICKET_LEN: usize = 16 + 8 + TAG_LEN;

/// Issues a ticket for `link_id` valid until `expires_at_secs`.
pub fn issue(key: &PurposeKey, link_id: Uuid, expires_at_secs: i64) -> String {
    let mut ticket = Vec::with_capacity(TICKET_LEN);
    ticket.extend_from_slice(link_id.as_bytes());
    ticket.extend_from_slice(&expires_at_secs.to_be_bytes());
    let tag = key.mac(&ticket);
    ticket.extend_from_slice(&tag[..TAG_LEN]);
    URL_SAFE_NO_PAD.encode(ticket)
}

/// The link a ticket opens, if its signature holds and it has not expired.
pub fn verify(key: &PurposeKey, ticket: &str, now_secs: i64) -> Option<Uuid> {
    let bytes = URL_SAFE_NO_PAD.decode(ticket).ok()?;
    if bytes.len() != TICKET_LEN {
        return None;
    }
    let (signed, tag) = bytes.split_at(16 + 8);
    if !key.verify(signed, tag) {
        return None;
    }
    let expires_at = i64::from_be_bytes(signed[16..].try_into().ok()?);
    (now_secs < expires_at).then(|| Uuid::from_slice(&signed[..16]).ok())?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keys;

    fn key() -> PurposeKey {
        Keys::derive(&secrecy::SecretBox::new(Box::new(vec![7u8; 32]))).location_ticket
    }

    #[test]
    fn a_ticket_opens_its_link_until_it_expires() {
        let link = Uuid::new_v4();
        let ticket = issue(&key(), link, 1_000);
        assert_eq!(verify(&key(), &ticket, 999), Some(link));
        assert_eq!(verify(&key(), &ticket, 1_000), None);
    }

    #[test]
    fn tampered_or_foreign_tickets_are_refused() {
        let link = Uuid::new_v4();
        let ticket = issue(&key(), link, 1_000);
        let mut bytes = URL_SAFE_NO_PAD.decode(&ticket).expect("base64");
        bytes[20] ^= 1; // push the expiry
        assert_eq!(verify(&key(), &URL_SAFE_NO_PAD.encode(&bytes), 0), None);
        let other = Keys::derive(&secrecy::SecretBox::new(Box::new(vec![8u8; 32]))).location_ticket;
        assert_eq!(verify(&other, &ticket, 0), None);
        assert_eq!(verify(&key(), "short", 0), None);
        assert_eq!(verify(&key(), &format!("{ticket}A"), 0), None);
    }
}
