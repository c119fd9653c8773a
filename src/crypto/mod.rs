//! The gateway's cryptography in one place: the keys, the MAC and the JWE every other module
//! uses.
//!
//! - [`jwe`]: compact JWE with `alg: dir` and `enc: A256GCM`, which encrypts the files of a
//!   SMART Health Link and seals idempotent answers, and [`ShlKey`], its 256-bit key.
//! - [`SecretKey`], [`Keys`] and [`PurposeKey`]: the gateway's secret and the per-purpose keys
//!   derived from it (tokens, passcode pepper, location tickets, rate-limit keys, audit,
//!   idempotency); [`AuditKey`]: the key of the audit chain's MACs.
//! - `HmacSha256`: the one MAC, behind every purpose key and the audit chain.
//! - `attestation`: the app attestation of Kill the Clipboard bundles (ES256 over P-256), its
//!   keys' thumbprints and the JWKS that publishes them; `jws`: the receiver's side, verifying
//!   such a JWT against an issuer's JWKS.
//!
//! Every type here that holds key bytes wipes them when dropped and prints `[REDACTED]` as
//! `Debug`; none has a `Display`.

pub(crate) mod attestation;
pub mod jwe;
pub mod jws;
mod keys;
mod mac;

pub(crate) use keys::InvalidKeyLength;
pub(crate) use keys::SecretKey;
pub use keys::{AuditKey, Keys, PurposeKey};
pub(crate) use mac::HmacSha256;
