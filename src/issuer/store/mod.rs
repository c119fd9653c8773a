//! The embedded issuer's persistence, behind [`LinkStore`].
//!
//! One implementation, [`SqlStore`], speaks SQLite (a file, the single-instance default) and
//! PostgreSQL (shared by replicas) through sqlx's `Any` driver, so that every query is written
//! once and both databases run the same tests. Times are milliseconds since the Unix epoch.

mod sql;

use async_trait::async_trait;

pub use sql::SqlStore;

use super::LinkMode;
use super::fhir::PatientRecord;

/// Why the store failed. A wrapped error's text is part of the message, and not also its
/// `source()`, so that a report walking the causes says it once.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(sqlx::Error),
    #[error("migration error: {0}")]
    Migration(sqlx::migrate::MigrateError),
    #[error("stored data is not valid: {0}")]
    Corrupt(&'static str),
    /// The URL is of no database the gateway speaks (the message names those it does).
    #[error("{0}")]
    UnsupportedUrl(String),
    /// The first connection failed: where to, and why, in words (never the URL).
    #[error("{0}")]
    Connect(String),
}

impl From<crate::database::ConnectError> for StoreError {
    fn from(error: crate::database::ConnectError) -> Self {
        Self::Connect(error.to_string())
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        Self::Database(error)
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        Self::Migration(error)
    }
}

/// A link as the issuer keeps it. It holds no key: the issuer cannot rebuild the link's URL.
#[derive(Clone, PartialEq, Eq)]
pub struct LinkRecord {
    pub(crate) id: String,
    pub(crate) patient_id: String,
    pub(crate) label: Option<String>,
    /// Stored as its word (`PASSCODE`, `DIRECT`) beside its SHL flag (`P`, `U`).
    pub(crate) mode: LinkMode,
    pub(crate) resource_types: Vec<String>,
    /// PHC string of argon2id over the peppered passcode; `None` for direct links.
    pub(crate) passcode_hash: Option<String>,
    /// Wrong passcodes the link may still take, not counting reservations in flight.
    pub(crate) attempts_remaining: i64,
    /// Attempts reserved whose verdict is not in yet.
    pub(crate) attempts_in_flight: i64,
    /// Until when those reservations are presumed live; after it, they count as spent.
    pub(crate) attempt_lease_until: i64,
    pub(crate) created_at: i64,
    pub(crate) expires_at: i64,
    pub(crate) revoked_at: Option<i64>,
    /// The encrypted file; `None` once purged (expired or revoked).
    pub jwe: Option<String>,
}

/// Labels are patient text and the JWE is the shared file: neither goes to a log.
impl std::fmt::Debug for LinkRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkRecord")
            .field("id", &self.id)
            .field("mode", &self.mode)
            .field("attempts_remaining", &self.attempts_remaining)
            .field("expires_at", &self.expires_at)
            .field("revoked_at", &self.revoked_at)
            .finish_non_exhaustive()
    }
}

/// What a link is, now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LinkState {
    Active,
    Expired,
    Revoked,
    /// The wrong-passcode budget is spent.
    Locked,
}

impl LinkRecord {
    pub(crate) fn state(&self, now_ms: i64) -> LinkState {
        if self.revoked_at.is_some() {
            LinkState::Revoked
        } else if self.expires_at <= now_ms {
            LinkState::Expired
        } else if self.passcode_hash.is_some()
            && self.attempts_remaining <= 0
            && !self.has_pending_attempts(now_ms)
        {
            LinkState::Locked
        } else {
            LinkState::Active
        }
    }

    /// Attempts are reserved and being verified: until their verdicts, a spent budget may
    /// still be given back.
    pub(crate) fn has_pending_attempts(&self, now_ms: i64) -> bool {
        self.attempts_in_flight > 0 && self.attempt_lease_until > now_ms
    }

    /// Active and still holding its file: the only links whose data may be served.
    pub(crate) fn is_servable(&self, now_ms: i64) -> bool {
        self.state(now_ms) == LinkState::Active && self.jwe.is_some()
    }
}

/// One access to a link (KTC: the patient can see who opened their data, and when).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRecord {
    pub(crate) link_id: String,
    pub(crate) at: i64,
    pub(crate) recipient: String,
    pub(crate) action: AccessAction,
    pub(crate) outcome: AccessOutcome,
}

/// How an access to a link went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AccessOutcome {
    /// The file (or its location) was handed out.
    Ok,
    /// A passcode link asked for without a passcode.
    NoPasscode,
    /// A wrong passcode: one attempt of the budget spent.
    BadPasscode,
    /// Expired, revoked, locked, or the wrong kind of access for the link.
    Inactive,
}

impl AccessOutcome {
    /// The stored and displayed word (`HealthLink.accesses.outcome`, the audit outcome, the
    /// metrics label).
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            AccessOutcome::Ok => "ok",
            AccessOutcome::NoPasscode => "no-passcode",
            AccessOutcome::BadPasscode => "bad-passcode",
            AccessOutcome::Inactive => "inactive",
        }
    }

    /// The stored word back; `None` for anything else (a damaged row).
    pub(crate) fn parse(word: &str) -> Option<Self> {
        [
            AccessOutcome::Ok,
            AccessOutcome::NoPasscode,
            AccessOutcome::BadPasscode,
            AccessOutcome::Inactive,
        ]
        .into_iter()
        .find(|outcome| outcome.as_str() == word)
    }
}

/// What an access to a link asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AccessAction {
    /// A manifest `POST` (flag `P`).
    Manifest,
    /// A file location handed out by a manifest.
    File,
    /// A direct `GET` (flag `U`).
    Direct,
}

impl AccessAction {
    /// The stored and displayed word (`HealthLink.accesses.action`, the metrics label).
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            AccessAction::Manifest => "manifest",
            AccessAction::File => "file",
            AccessAction::Direct => "direct",
        }
    }

    /// The stored word back; `None` for anything else (a damaged row).
    pub(crate) fn parse(word: &str) -> Option<Self> {
        [
            AccessAction::Manifest,
            AccessAction::File,
            AccessAction::Direct,
        ]
        .into_iter()
        .find(|action| action.as_str() == word)
    }
}

/// The result of reserving one passcode attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptReservation {
    /// One attempt is reserved; this many remain if it turns out wrong.
    Reserved { remaining_after: i64 },
    /// Every attempt left is reserved by a verification in flight: ask again shortly (the
    /// verdicts come within milliseconds, and a lost one expires with its lease).
    Pending,
    /// The link is not active (unknown, expired, revoked, or out of attempts).
    Refused,
}

/// How a reserved attempt turned out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptVerdict {
    /// The right passcode: the attempt goes back to the budget.
    Right,
    /// A wrong passcode: the attempt stays spent.
    Wrong,
}

#[async_trait]
pub trait LinkStore: Send + Sync + std::fmt::Debug {
    /// Closes the connections, once nothing uses the store any more (shutdown).
    async fn close(&self);

    /// Whether the database answers (for `/readyz`).
    async fn ping(&self) -> bool;

    /// Inserts or replaces a patient and all of their resources.
    async fn put_patient(&self, record: &PatientRecord, now_ms: i64) -> Result<(), StoreError>;
    async fn patient(&self, patient_id: &str) -> Result<Option<PatientRecord>, StoreError>;

    /// Replaces, in one transaction, every token of `source` (`config` or `demo`) with `tokens`
    /// (pairs of token HMAC and patient id): a token removed from the configuration stops
    /// working at the next start, and other replicas never see a half-replaced set.
    async fn replace_tokens(
        &self,
        source: &str,
        tokens: &[(String, String)],
        now_ms: i64,
    ) -> Result<(), StoreError>;
    async fn patient_for_token(&self, token_hmac: &str) -> Result<Option<String>, StoreError>;

    async fn insert_link(
        &self,
        link: &LinkRecord,
        manifest_id_hash: &str,
    ) -> Result<(), StoreError>;
    async fn link_by_manifest(
        &self,
        manifest_id_hash: &str,
    ) -> Result<Option<LinkRecord>, StoreError>;
    async fn link_by_id(&self, link_id: &str) -> Result<Option<LinkRecord>, StoreError>;
    /// A patient's links, newest first.
    async fn links_of_patient(&self, patient_id: &str) -> Result<Vec<LinkRecord>, StoreError>;

    /// Atomically takes one attempt from an active passcode link's budget and marks it in
    /// flight until `lease_until_ms`. Correct under any number of concurrent callers: the
    /// decrement and the check are one statement.
    async fn reserve_attempt(
        &self,
        link_id: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<AttemptReservation, StoreError>;
    /// Settles a reserved attempt: given back for the right passcode, spent for a wrong one.
    async fn settle_attempt(
        &self,
        link_id: &str,
        verdict: AttemptVerdict,
    ) -> Result<(), StoreError>;

    /// Revokes and drops the file at once; `false` if already revoked.
    async fn revoke_link(&self, link_id: &str, now_ms: i64) -> Result<bool, StoreError>;

    async fn record_access(&self, access: &AccessRecord) -> Result<(), StoreError>;
    async fn accesses_of_link(&self, link_id: &str) -> Result<Vec<AccessRecord>, StoreError>;

    /// Drops the files of expired or revoked links, and deletes links (with their access
    /// history) that ended before `retain_after_ms`. Returns (files purged, links deleted).
    async fn purge(&self, now_ms: i64, retain_after_ms: i64) -> Result<(u64, u64), StoreError>;
}
