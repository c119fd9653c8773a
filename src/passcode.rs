//! Six-digit passcodes: generated from the operating system's CSPRNG, validated, kept secret.
//!
//! b.well's workflow leaves passcode generation to every client app. Done naively
//! (`random_u32() % 1_000_000`) the low codes come up slightly more often than the high ones;
//! here a draw outside the largest multiple of 10^6 is thrown away and drawn again, so every
//! code is exactly equally likely. The value lives in a [`SecretString`] so `Debug` and logs
//! print `[REDACTED]`.
//!
//! Stored passcodes are peppered then hashed ([`PasscodeHasher`]): HMAC-SHA256 with a key derived
//! from `--secret-key`, then argon2id. Argon2id alone would not protect a six-digit code against
//! someone holding a database dump (a million guesses); the pepper, which is not in the
//! database, does. Argon2id is still there so that the pepper alone does not suffice either.

use std::sync::{Arc, Mutex, PoisonError};

use argon2::password_hash::{
    Output, ParamsString, PasswordHash, PasswordVerifier as _, SaltString,
};
use argon2::{ARGON2ID_IDENT, Algorithm, Argon2, Block, Params, Version};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

use crate::crypto::PurposeKey;

/// How many digits a passcode has (b.well's rule and the SHL reference servers').
pub(crate) const PASSCODE_DIGITS: usize = 6;

const PASSCODE_SPACE: u32 = 1_000_000;

/// The largest multiple of [`PASSCODE_SPACE`] that fits in a `u32`: draws at or above it are
/// rejected, so the remainder is uniform. The rejection chance is below 0.03 %.
const UNBIASED_LIMIT: u32 = u32::MAX - (u32::MAX % PASSCODE_SPACE);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasscodeError {
    /// The message never repeats the value: it is a secret even when malformed.
    #[error("passcode must be exactly 6 ASCII digits")]
    Malformed,
    #[error("the operating system's random number generator failed")]
    Rng,
    #[error("passcode hashing failed")]
    Hashing,
}

/// A validated six-digit passcode.
#[derive(Debug, Clone)]
pub struct Passcode(SecretString);

impl Passcode {
    /// Draws a fresh passcode from the OS CSPRNG.
    pub fn generate() -> Result<Self, PasscodeError> {
        loop {
            let draw = getrandom::u32().map_err(|_| PasscodeError::Rng)?;
            if let Some(code) = passcode_from_draw(draw) {
                return Ok(Self(SecretString::from(code)));
            }
        }
    }

    /// Accepts exactly six ASCII digits (leading zeros are significant).
    pub fn parse(candidate: &str) -> Result<Self, PasscodeError> {
        let well_formed = candidate.len() == PASSCODE_DIGITS
            && candidate.bytes().all(|byte| byte.is_ascii_digit());
        if well_formed {
            Ok(Self(SecretString::from(candidate.to_owned())))
        } else {
            Err(PasscodeError::Malformed)
        }
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

/// Argon2id with OWASP's first recommended setting: 19 MiB, 2 passes, 1 lane. Each hash in
/// flight holds its 19 MiB, which is why hashing is bounded by a semaphore.
const ARGON2_MEMORY_KIB: u32 = 19 * 1024;
const ARGON2_PASSES: u32 = 2;
const ARGON2_LANES: u32 = 1;

/// Hashes and verifies passcodes on the blocking pool, at most `max_concurrent` at a time.
#[derive(Debug, Clone)]
pub struct PasscodeHasher {
    pepper: PurposeKey,
    permits: Arc<Semaphore>,
    work_areas: Arc<WorkAreas>,
}

/// argon2id's 19 MiB working memory, one per permit, allocated once and reused. Allocating and
/// freeing it per hash left allocators holding hundreds of megabytes of fragments under
/// passcode load (glibc kept 1 GiB; BENCHMARKS.md); reused, the gateway's memory is its base
/// plus `max_concurrent` work areas, whatever the load.
struct WorkAreas {
    kept: Mutex<Vec<Vec<Block>>>,
    /// At most this many are kept (the permits).
    limit: usize,
}

impl std::fmt::Debug for WorkAreas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WorkAreas")
    }
}

impl WorkAreas {
    /// A work area; the caller holds a permit, so at most one per permit ever exists.
    fn new(limit: usize) -> Self {
        Self {
            kept: Mutex::new(Vec::new()),
            limit,
        }
    }

    fn take(&self) -> Vec<Block> {
        let kept = self
            .kept
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        // Every block is written before it is read, so a reused area needs no clearing.
        kept.unwrap_or_else(|| vec![Block::default(); params().block_count()])
    }

    fn give_back(&self, area: Vec<Block>) {
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.len() < self.limit {
            kept.push(area);
        }
    }

    /// Runs argon2id over `secret` and `salt` into `out` in a kept work area.
    fn hash_into(&self, secret: &[u8], salt: &[u8], out: &mut [u8]) -> Result<(), PasscodeError> {
        let mut area = self.take();
        let result = argon2().hash_password_into_with_memory(secret, salt, out, &mut area);
        self.give_back(area);
        result.map_err(|_| PasscodeError::Hashing)
    }

    /// The PHC string of a fresh hash.
    fn hash(&self, secret: &[u8], salt: &[u8]) -> Result<String, PasscodeError> {
        let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
        self.hash_into(secret, salt, &mut out)?;
        let salt = SaltString::encode_b64(salt).map_err(|_| PasscodeError::Hashing)?;
        let phc = PasswordHash {
            algorithm: ARGON2ID_IDENT,
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&params()).map_err(|_| PasscodeError::Hashing)?,
            salt: Some(salt.as_salt()),
            hash: Some(Output::new(&out).map_err(|_| PasscodeError::Hashing)?),
        };
        Ok(phc.to_string())
    }

    /// Whether `secret` is behind `phc`. A hash made with other parameters (none are, today)
    /// is checked by the argon2 crate itself, in memory of its own.
    fn verify(&self, secret: &[u8], phc: &str) -> bool {
        let Ok(hash) = PasswordHash::new(phc) else {
            return false;
        };
        let ours = ParamsString::try_from(&params()).ok();
        let same_parameters = hash.algorithm == ARGON2ID_IDENT
            && hash.version == Some(Version::V0x13.into())
            && Some(&hash.params) == ours.as_ref();
        let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
            return false;
        };
        if !same_parameters || expected.len() != Params::DEFAULT_OUTPUT_LEN {
            return argon2().verify_password(secret, &hash).is_ok();
        }
        let mut salt_bytes = [0u8; 64];
        let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
            return false;
        };
        let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
        if self.hash_into(secret, salt, &mut out).is_err() {
            return false;
        }
        // `Output`'s equality is constant-time.
        Output::new(&out).is_ok_and(|computed| computed == expected)
    }
}

impl PasscodeHasher {
    pub fn new(pepper: PurposeKey, max_concurrent: usize) -> Self {
        Self {
            pepper,
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            work_areas: Arc::new(WorkAreas::new(max_concurrent.max(1))),
        }
    }

    /// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`) of the peppered passcode.
    pub async fn hash(&self, passcode: &Passcode) -> Result<String, PasscodeError> {
        let peppered = self.pepper.mac(passcode.expose().as_bytes());
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).map_err(|_| PasscodeError::Rng)?;
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| PasscodeError::Hashing)?;
        let work_areas = Arc::clone(&self.work_areas);
        // The permit travels with the work: a cancelled request must not free its place while
        // its hash still runs (and holds a work area).
        tokio::task::spawn_blocking(move || {
            let hashed = work_areas.hash(&peppered, &salt);
            drop(permit);
            hashed
        })
        .await
        .map_err(|_| PasscodeError::Hashing)?
    }

    /// A place in the hashing queue, taken before the work that will need it (see
    /// [`Self::verify_holding`]).
    pub(crate) async fn permit(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        Arc::clone(&self.permits).acquire_owned().await.ok()
    }

    /// Whether `candidate` is the passcode behind `phc`. Any malformed input is simply `false`.
    #[cfg(test)]
    pub(crate) async fn verify(&self, candidate: &str, phc: &str) -> bool {
        match self.permit().await {
            Some(permit) => self.verify_holding(permit, candidate, phc).await.0,
            None => false,
        }
    }

    /// [`Self::verify`] with a permit already held, handed back with the verdict (`None` only if
    /// the hashing thread panicked). A manifest request takes its permit before it reserves a
    /// passcode attempt and keeps it until the attempt is settled, so the attempts in flight on
    /// one gateway never outnumber its permits. The permit travels with the hashing thread: if
    /// the caller were dropped mid-hash, the 19 MiB stay accounted for until the hash ends.
    pub(crate) async fn verify_holding(
        &self,
        permit: tokio::sync::OwnedSemaphorePermit,
        candidate: &str,
        phc: &str,
    ) -> (bool, Option<tokio::sync::OwnedSemaphorePermit>) {
        let peppered = self.pepper.mac(candidate.as_bytes());
        let phc = phc.to_owned();
        let work_areas = Arc::clone(&self.work_areas);
        tokio::task::spawn_blocking(move || (work_areas.verify(&peppered, &phc), Some(permit)))
            .await
            .unwrap_or((false, None))
    }
}

fn params() -> Params {
    Params::new(ARGON2_MEMORY_KIB, ARGON2_PASSES, ARGON2_LANES, None)
        .expect("constant argon2 parameters are valid")
}

fn argon2() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params())
}

/// Maps one uniform `u32` draw to a passcode, or `None` when the draw falls in the biased tail.
fn passcode_from_draw(draw: u32) -> Option<String> {
    (draw < UNBIASED_LIMIT).then(|| format!("{:06}", draw % PASSCODE_SPACE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_below_the_limit_map_to_zero_padded_codes() {
        assert_eq!(passcode_from_draw(0).as_deref(), Some("000000"));
        assert_eq!(passcode_from_draw(42).as_deref(), Some("000042"));
        assert_eq!(passcode_from_draw(999_999).as_deref(), Some("999999"));
        assert_eq!(passcode_from_draw(1_000_000).as_deref(), Some("000000"));
    }

    #[test]
    fn the_last_draw_below_the_limit_is_kept_and_the_first_above_is_rejected() {
        assert_eq!(UNBIASED_LIMIT % PASSCODE_SPACE, 0);
        assert_eq!(
            passcode_from_draw(UNBIASED_LIMIT - 1).as_deref(),
            Some("999999")
        );
        assert_eq!(passcode_from_draw(UNBIASED_LIMIT), None);
        assert_eq!(passcode_from_draw(u32::MAX), None);
    }

    #[test]
    fn every_residue_has_the_same_number_of_accepted_draws() {
        // Accepted draws are 0..UNBIASED_LIMIT: a whole number of cycles through 0..10^6.
        let per_code = UNBIASED_LIMIT / PASSCODE_SPACE;
        assert_eq!(
            u64::from(per_code) * u64::from(PASSCODE_SPACE),
            u64::from(UNBIASED_LIMIT)
        );
    }

    #[test]
    fn generated_passcodes_are_six_digits() {
        for _ in 0..1_000 {
            let passcode = Passcode::generate().expect("the OS RNG works");
            assert_eq!(passcode.expose().len(), 6);
            assert!(passcode.expose().bytes().all(|b| b.is_ascii_digit()));
        }
    }

    #[test]
    fn generated_passcodes_cover_the_space() {
        // 2,000 draws from 10^6 codes: all equal would mean a broken generator.
        let distinct: std::collections::HashSet<String> = (0..2_000)
            .map(|_| Passcode::generate().expect("rng").expose().to_owned())
            .collect();
        assert!(distinct.len() > 1_990, "only {} distinct", distinct.len());
    }

    #[test]
    fn parse_accepts_six_ascii_digits_only() {
        assert_eq!(Passcode::parse("743730").expect("valid").expose(), "743730");
        assert_eq!(Passcode::parse("000000").expect("valid").expose(), "000000");
        for bad in [
            "",
            "12345",
            "1234567",
            "12345a",
            " 12345",
            "１２３４５６",
            "12 456",
            "-12345",
        ] {
            assert_eq!(
                Passcode::parse(bad).err(),
                Some(PasscodeError::Malformed),
                "{bad:?}"
            );
        }
    }

    fn hasher_for(secret: &str) -> PasscodeHasher {
        let keys = crate::crypto::Keys::derive(&secrecy::SecretBox::new(Box::new(
            secret.as_bytes().to_vec(),
        )));
        PasscodeHasher::new(keys.passcode_pepper, 2)
    }

    #[tokio::test]
    async fn hashes_verify_only_the_right_passcode_with_the_right_pepper() {
        let hasher = hasher_for("0123456789abcdef0123456789abcdef");
        let phc = hasher
            .hash(&Passcode::parse("743730").expect("valid"))
            .await
            .expect("hash");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(!phc.contains("743730"));
        assert!(hasher.verify("743730", &phc).await);
        assert!(!hasher.verify("743731", &phc).await);
        assert!(
            !hasher_for("another secret key, 32 bytes long")
                .verify("743730", &phc)
                .await
        );
        assert!(!hasher.verify("743730", "not a phc string").await);
    }

    /// The kept work areas compute what the argon2 crate's own allocating API computes, both
    /// ways, so hashes stored before and after read the same.
    #[tokio::test]
    async fn work_area_hashes_match_the_argon2_crate() {
        use argon2::password_hash::PasswordHasher as _;
        let hasher = hasher_for("0123456789abcdef0123456789abcdef");
        let peppered = hasher.pepper.mac(b"743730");
        let salt = SaltString::encode_b64(&[9u8; 16]).expect("salt");
        let by_crate = argon2()
            .hash_password(&peppered, &salt)
            .expect("hash")
            .to_string();
        assert!(hasher.verify("743730", &by_crate).await);
        assert!(!hasher.verify("743731", &by_crate).await);
        assert_eq!(
            hasher.work_areas.hash(&peppered, &[9u8; 16]).expect("hash"),
            by_crate
        );
        let ours = hasher
            .hash(&Passcode::parse("743730").expect("valid"))
            .await
            .expect("hash");
        let parsed = PasswordHash::new(&ours).expect("PHC");
        assert!(argon2().verify_password(&peppered, &parsed).is_ok());
        // Areas are kept: at most one per permit after any number of hashes.
        assert!(hasher.work_areas.kept.lock().expect("lock").len() <= 2);
    }

    #[tokio::test]
    async fn a_hash_with_other_parameters_still_verifies() {
        use argon2::password_hash::PasswordHasher as _;
        let hasher = hasher_for("0123456789abcdef0123456789abcdef");
        let peppered = hasher.pepper.mac(b"123456");
        let cheaper = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(1024, 1, 1, None).expect("params"),
        );
        let salt = SaltString::encode_b64(&[3u8; 16]).expect("salt");
        let phc = cheaper
            .hash_password(&peppered, &salt)
            .expect("hash")
            .to_string();
        assert!(hasher.verify("123456", &phc).await);
        assert!(!hasher.verify("654321", &phc).await);
    }

    #[tokio::test]
    async fn the_same_passcode_hashes_differently_each_time() {
        let hasher = hasher_for("0123456789abcdef0123456789abcdef");
        let passcode = Passcode::parse("000000").expect("valid");
        let first = hasher.hash(&passcode).await.expect("hash");
        let second = hasher.hash(&passcode).await.expect("hash");
        assert_ne!(first, second, "salted");
    }

    #[test]
    fn debug_does_not_reveal_the_passcode() {
        let passcode = Passcode::parse("743730").expect("valid");
        assert!(!format!("{passcode:?}").contains("743730"));
    }
}
