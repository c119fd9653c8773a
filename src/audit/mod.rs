//! The audit trail: tamper-evident, durable records of every link creation and every access.
//!
//! Creating a SMART Health Link discloses a patient's records, and each manifest or file fetch
//! discloses them again. HIPAA (45 CFR 164.312(b)) asks for audit controls over such access, and
//! the CMS Kill the Clipboard profile asks the sharer to audit every access with its time and
//! recipient. A plain log line fails both: anyone with write access can edit it, nothing says
//! whether it reached the disk, and it tends to carry whatever the handler had at hand
//! (passcodes included). So:
//!
//! - The link service (`crate::links`, the one place that records) `await`s
//!   [`AuditSink::record`] *before* anything is disclosed, and fails closed (`AUDIT_UNAVAILABLE`)
//!   when it returns an error: a disclosure never happens without a durable record. `record`
//!   returns only once the record is fsynced (file) or committed (PostgreSQL), and gives up
//!   after a bounded time rather than hanging a request.
//! - [`AuditEvent`] has no field for a secret or for clinical content, and the sink caps and
//!   escapes every string itself ([`sanitize`]).
//! - Records form an HMAC chain, so editing, deleting, inserting or reordering any record is
//!   detected by [`verify_file`], which names the first bad record.
//!
//! # Record format
//!
//! One JSON object per line (JSON Lines, UTF-8, `\n`-terminated), fields in this order, absent
//! optional fields omitted:
//!
//! ```text
//! {"seq":3,"time":"2025-12-19T19:42:02.887Z","chain":"gw-0","gateway_version":"0.1.0",
//!  "action":"manifest-requested","outcome":"ok","request_id":"7f6c…","client_ip":"203.0.113.9",
//!  "link_id":"Qx2…","recipient":"Dr. Ana Souza","prev":"<64 hex>","mac":"<64 hex>"}
//! ```
//! (one line on disk). `seq` counts from 0 within a chain; `time` is UTC with milliseconds, taken
//! when the record is sealed; `chain` names the writer (one chain per replica); `prev` is the
//! previous record's `mac`, or [`GENESIS`] (64 zeros) for seq 0; `note` (sink-written records
//! only) explains a checkpoint or a recovery.
//!
//! # Canonical form and MAC
//!
//! `mac` is the lowercase hex of HMAC-SHA256(key, *body*), where *body* is the exact bytes of
//! the line without its `\n`, with the trailing `,"mac":"<64 hex>"}` (always the last 74 bytes)
//! replaced by `}`. The MAC therefore covers the bytes as written, not a re-serialization, so an
//! independent verifier needs no JSON canonicalization: strip the suffix, append `}`, HMAC,
//! compare. The writer produces *body* as compact `serde_json` of a struct with the fixed field
//! order above (no whitespace, `None` fields skipped), then splices the MAC in before the final
//! brace. The key is a per-purpose key derived from the gateway secret
//! ([`AuditKey`](crate::crypto::AuditKey)), so the MAC cannot be replayed as any other gateway
//! HMAC.
//!
//! Verification, record by record, stops at the first failure and names its line (or seq):
//! suffix and hex well-formed, MAC correct, body parses, same `chain` as the first record, `seq`
//! one more than the previous one, `prev` equal to the previous `mac`. The first record must be
//! seq 0 with `prev` = [`GENESIS`], or a `rotated` checkpoint (the start of a rotated file).
//!
//! # Heads, checkpoints and truncation
//!
//! A chain cannot reveal that its last records were cut off: the shorter chain is still valid.
//! The defence is to keep the *head* (`seq:mac` of the last record, [`Head`]) somewhere the file's
//! writer cannot rewrite, and to check against it with [`verify_file_against_head`]. The sink
//! writes a `checkpoint` record every [`FileSinkOptions::checkpoint_every`] records and on
//! [`FileAuditSink::checkpoint`], and logs each checkpoint's head through `tracing` (target
//! `audit`), so the ordinary log pipeline exports heads without extra work; `head()` gives the
//! current head for any other export. [`AuditSink::close`], at shutdown, logs the final head.
//!
//! # Group commit (file sink)
//!
//! One writer thread owns the file. Each `record` call queues its event and waits. The writer
//! takes the first queued event, then everything else already queued (up to
//! [`FileSinkOptions::max_batch`]), seals them in queue order, appends them with one `write`,
//! calls `fdatasync` once, and only then answers every waiter of the batch. It never waits to
//! fill a batch: at low load each record costs one fsync (lowest latency), under load the batch
//! grows to whatever arrived during the previous fsync, so throughput scales with concurrency
//! while durability is still per record. A waiter that gave up (timed out) before its event was
//! sealed is skipped, so the trail does not claim an event whose handler reported failure.
//!
//! # Failures
//!
//! A failed write or fsync fails the whole batch; the writer then truncates the file back to its
//! last durable length and carries on. If even that fails, or an fsync fails while attempts
//! written without one are pending, the sink stops accepting records (every `record` returns an
//! error at once, `is_ready` is false) until the process is restarted, because after a failed
//! fsync the page cache can no longer be trusted. A failed `write` (ENOSPC) is not that: the
//! roll-back's own sync still proves the pending attempts. After a failed batch the sink is
//! *degraded* until a batch is stored again, and `is_ready` then probes the file's directory
//! (a small file written, `fdatasync`ed and removed), so readiness turns back on by itself once
//! the disk has room, without waiting for traffic a load balancer would not send. The writer
//! also checks, before each batch, that the path still names the file it holds open: records
//! appended to a file that was deleted or moved would vanish, so that fails too.
//!
//! On open the sink reads the end of the file. A torn last record (no trailing newline, or an
//! unparsable last line: a crash mid-write) is cut off and a `recovered` record noting how many
//! bytes were cut (and their SHA-256) continues the chain. A last record with a bad MAC is not
//! a crash but a wrong key or tampering: opening fails and an operator must look.
//!
//! # Rotation and retention
//!
//! [`FileAuditSink::rotate`] renames the current file to an archive name and starts a new file
//! whose first record is a `rotated` checkpoint continuing the same chain (next seq, `prev` = the
//! old head). [`verify_files`] checks a series of files as one chain. The new file is written in
//! full (under `<file>.rotating`) before the renames, and opening finishes or discards an
//! interrupted rotation, so a crash at any point leaves one valid chain. Retention is deleting
//! the oldest archives: the remaining series still verifies (it starts at a `rotated`
//! checkpoint), so keep exported heads and an archive inventory for the retention period (HIPAA
//! documentation: six years).
//!
//! # PostgreSQL sink
//!
//! [`PostgresAuditSink`] keeps one chain per replica in `audit_records (chain, seq, record)`,
//! stores each line as `TEXT` (JSONB would re-encode it and lose the bytes the MAC covers;
//! `record::jsonb` works in queries), and group-commits the same way: one task, one multi-row
//! `INSERT` per batch, committed before anyone is answered.
//!
//! # FHIR export
//!
//! [`export_fhir`] turns a file into a FHIR R4 `Bundle` of `AuditEvent`s shaped after IHE BALP,
//! for auditors and for a patient's accounting of disclosures. See [`fhir`].

mod chain;
pub(crate) mod event;
pub(crate) mod fhir;
mod file;
mod memory;
mod postgres;
mod trail;
mod verify;

use std::time::Duration;

use crate::crypto::InvalidKeyLength;

pub(crate) use event::{AuditAction, AuditEvent, sanitize};
pub use fhir::export_fhir;
pub use file::FileAuditSink;
pub use memory::MemoryAuditSink;
pub(crate) use postgres::PostgresAuditSink;
pub use postgres::verify_postgres;
pub use trail::AuditTrail;
pub use verify::{verify_file, verify_file_against_head, verify_files};

/// Takes what a sink's slot holds (its queue's sender, its writer) at close. Taking an `Option`
/// leaves it valid whatever panicked while the lock was held, so a poisoned lock is used as is.
fn take<T>(slot: &std::sync::Mutex<Option<T>>) -> Option<T> {
    slot.lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take()
}

/// Where the link service sends audit events. Shared as `Arc<dyn AuditSink>`.
#[async_trait::async_trait]
pub trait AuditSink: Send + Sync + std::fmt::Debug {
    /// Returns only when the record is durable (fsynced for the file sink, committed for
    /// PostgreSQL). `Err` means the caller must fail closed with `AUDIT_UNAVAILABLE`; it is
    /// returned within a bounded time (the sink's timeout), never by hanging.
    async fn record(&self, event: AuditEvent) -> Result<(), AuditError>;

    /// Records an attempt whose outcome will be recorded with [`AuditSink::record`] by the
    /// same operation. The file sink returns once the record is written to the operating
    /// system, without its own `fdatasync`: it survives the gateway process dying, and the
    /// outcome's sync (or the next durable record, or shutdown, when the operation was
    /// cancelled before its outcome) makes it durable with everything before it. Only a machine
    /// crash inside that window can lose it, and then the outcome was never made durable either,
    /// so nothing was disclosed. Sinks without a cheaper way record it durably.
    async fn record_attempt(&self, event: AuditEvent) -> Result<(), AuditError> {
        self.record(event).await
    }

    /// Whether the sink can take records now (for readiness probes).
    async fn is_ready(&self) -> bool;

    /// Stops taking records and releases the storage once what was accepted is durable: the
    /// file sink writes and syncs what is queued and pending and joins its writer (which
    /// closes the file and its lock), the PostgreSQL sink commits what is queued and closes
    /// its pool. Every `record` after it fails (`AUDIT_UNAVAILABLE`), and `is_ready` is false.
    /// Called at shutdown, once in-flight requests have drained, since they still record.
    /// Bounded by the sink's timeout; calling it again does nothing.
    async fn close(&self);
}

/// Why an audit record could not be made durable, or a chain could not be opened. A wrapped
/// error's text is part of the message, and not also its `source()`, so that a report walking
/// the causes says it once.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("the audit sink is closed")]
    Closed,
    #[error("audit storage I/O failed: {0}")]
    Io(std::io::Error),
    #[error("audit database failed: {0}")]
    Database(sqlx::Error),
    /// The database's first connection failed: where to, and why, in words (never the URL).
    #[error("{0}")]
    Connect(String),
    #[error("audit record was not durable within {0:?}")]
    Timeout(Duration),
    #[error("audit sink unavailable: {0}")]
    Unavailable(String),
    #[error("audit chain cannot be continued at {location}: {reason}")]
    Corrupt { location: String, reason: String },
    #[error("audit file belongs to chain {found:?}, not the configured {configured:?}")]
    ChainMismatch { found: String, configured: String },
    #[error("invalid audit chain name: {0}")]
    InvalidChainName(String),
    #[error("audit key must be 32 bytes")]
    InvalidKey,
    #[error("the audit file {0} is locked: another process writes it")]
    Locked(String),
    #[error("action {0:?} is written by the audit sink itself")]
    ReservedAction(AuditAction),
    #[error("audit record could not be encoded: {0}")]
    Encode(serde_json::Error),
}

impl From<std::io::Error> for AuditError {
    fn from(error: std::io::Error) -> Self {
        Self::Io(error)
    }
}

impl From<sqlx::Error> for AuditError {
    fn from(error: sqlx::Error) -> Self {
        Self::Database(error)
    }
}

impl From<serde_json::Error> for AuditError {
    fn from(error: serde_json::Error) -> Self {
        Self::Encode(error)
    }
}

impl From<crate::database::ConnectError> for AuditError {
    fn from(error: crate::database::ConnectError) -> Self {
        Self::Connect(error.to_string())
    }
}

impl From<InvalidKeyLength> for AuditError {
    fn from(_: InvalidKeyLength) -> Self {
        Self::InvalidKey
    }
}

/// Chain names end up in every record and in FHIR `source.observer`; they come from
/// configuration, so a bad one is refused rather than silently rewritten.
pub(crate) fn validate_chain_name(chain: &str) -> Result<(), AuditError> {
    if chain.is_empty()
        || chain.chars().count() > event::caps::CHAIN
        || chain.chars().any(|c| c.is_control() || c == '\\')
        || sanitize(chain, event::caps::CHAIN) != chain
    {
        return Err(AuditError::InvalidChainName(sanitize(chain, 40)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_names_are_validated() {
        assert!(validate_chain_name("gw-0").is_ok());
        assert!(validate_chain_name("shl-gateway-7d9f8c-xk2p4").is_ok());
        assert!(validate_chain_name("").is_err());
        assert!(validate_chain_name("a\nb").is_err());
        assert!(validate_chain_name("a\u{202e}b").is_err());
        assert!(validate_chain_name(&"x".repeat(200)).is_err());
    }
}
