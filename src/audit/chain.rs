//! The record, its canonical bytes, and the sealing that links it to the previous one.
//!
//! Everything that decides what a valid line looks like lives here, shared by the writers and
//! the verifier, so the two can never disagree on the format.

use std::fmt;
use std::str::FromStr;

use hmac::Mac;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::event::AuditEvent;
use super::{AuditAction, AuditError};
use crate::crypto::{AuditKey, HmacSha256};

/// `prev` of the record with seq 0.
pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The bytes after the body's last field: `,"mac":"` + 64 hex + `"}`.
const MAC_PREFIX: &str = ",\"mac\":\"";
const MAC_HEX_LEN: usize = 64;
pub(crate) const MAC_SUFFIX_LEN: usize = MAC_PREFIX.len() + MAC_HEX_LEN + 2;

/// `outcome` of the checkpoint that opens a file created by rotation.
pub(crate) const ROTATED: &str = "rotated";

/// One audit record as stored, without its MAC. Field order is the canonical order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) seq: u64,
    pub(crate) time: String,
    pub(crate) chain: String,
    pub(crate) gateway_version: String,
    pub(crate) action: AuditAction,
    pub(crate) outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) actor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) client_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) link_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) resource_types: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) recipient: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) user_agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) upstream_status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) upstream_latency_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) remaining_attempts: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) mode: Option<String>,
    /// Written by the sink on its own records (checkpoint, recovery); never from a handler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) note: Option<String>,
    pub(crate) prev: String,
}

impl Record {
    /// Splits a stored line (without `\n`) into its record and MAC, *without* checking the MAC:
    /// for export and for tools that verify separately.
    pub(crate) fn parse_unverified(line: &str) -> Result<(Record, String), String> {
        let (body, mac) = split_line(line)?;
        let record = serde_json::from_str(&body).map_err(|e| format!("invalid JSON: {e}"))?;
        Ok((record, mac.to_owned()))
    }

    /// Whether this record opens a file created by rotation.
    pub(crate) fn is_rotation_start(&self) -> bool {
        self.action == AuditAction::Checkpoint && self.outcome == ROTATED
    }
}

/// The MAC-covered body of a line, and the hex MAC. Checks only the shape of the suffix.
pub(crate) fn split_line(line: &str) -> Result<(String, &str), String> {
    let Some(cut) = line.len().checked_sub(MAC_SUFFIX_LEN) else {
        return Err("too short to hold a MAC".into());
    };
    let (head, suffix) = (line.get(..cut), line.get(cut..));
    let (Some(head), Some(suffix)) = (head, suffix) else {
        return Err("no MAC at the end of the line".into());
    };
    let Some(hex) = suffix
        .strip_prefix(MAC_PREFIX)
        .and_then(|rest| rest.strip_suffix("\"}"))
    else {
        return Err("no MAC at the end of the line".into());
    };
    if !head.starts_with('{')
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err("malformed line or MAC".into());
    }
    Ok((format!("{head}}}"), hex))
}

/// A position in a chain: the seq and MAC of one record. Exported as `seq:mac`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Head {
    pub seq: u64,
    pub(crate) mac: String,
}

impl fmt::Display for Head {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.seq, self.mac)
    }
}

impl FromStr for Head {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (seq, mac) = s
            .trim()
            .split_once(':')
            .ok_or_else(|| "expected seq:mac".to_owned())?;
        let seq = seq.parse().map_err(|_| format!("invalid seq {seq:?}"))?;
        let valid = mac.len() == MAC_HEX_LEN && mac.bytes().all(|b| b.is_ascii_hexdigit());
        if !valid {
            return Err("the MAC must be 64 hex digits".into());
        }
        Ok(Head {
            seq,
            mac: mac.to_ascii_lowercase(),
        })
    }
}

/// Where the next record goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChainState {
    pub(crate) next_seq: u64,
    pub(crate) prev: String,
}

impl ChainState {
    pub(crate) fn genesis() -> Self {
        Self {
            next_seq: 0,
            prev: GENESIS.to_owned(),
        }
    }

    pub(crate) fn after(head: &Head) -> Self {
        Self {
            next_seq: head.seq + 1,
            prev: head.mac.clone(),
        }
    }

    /// The last record written, if any.
    pub(crate) fn head(&self) -> Option<Head> {
        self.next_seq.checked_sub(1).map(|seq| Head {
            seq,
            mac: self.prev.clone(),
        })
    }
}

/// A record ready to store: the line (without `\n`) and where it puts the chain.
#[derive(Debug, Clone)]
pub(crate) struct Sealed {
    pub(crate) head: Head,
    pub(crate) line: String,
    pub(crate) is_checkpoint: bool,
}

/// A keyed HMAC, set up once: cloning it skips re-hashing the key pads for every record.
pub(crate) fn hmac_for(key: &[u8]) -> Result<HmacSha256, AuditError> {
    <HmacSha256 as Mac>::new_from_slice(key).map_err(|_| AuditError::InvalidKey)
}

/// Seals records for one chain.
#[derive(Clone)]
pub(crate) struct Sealer {
    mac: HmacSha256,
    chain: String,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("chain", &self.chain)
            .finish_non_exhaustive()
    }
}

impl Sealer {
    pub(crate) fn new(key: &AuditKey, chain: String) -> Result<Self, AuditError> {
        Ok(Self {
            mac: hmac_for(key.as_bytes())?,
            chain,
        })
    }

    pub(crate) fn chain(&self) -> &str {
        &self.chain
    }

    /// Whether `body` carries `mac_hex` under this key (constant time).
    pub(crate) fn verify(&self, body: &str, mac_hex: &str) -> bool {
        let Ok(tag) = hex::decode(mac_hex) else {
            return false;
        };
        let mut mac = self.mac.clone();
        mac.update(body.as_bytes());
        mac.verify_slice(&tag).is_ok()
    }

    /// Seals an already sanitized event (or a sink record with a `note`) after `state`, and
    /// advances `state`.
    pub(crate) fn seal(
        &self,
        state: &mut ChainState,
        event: AuditEvent,
        note: Option<String>,
    ) -> Result<Sealed, AuditError> {
        let record = Record {
            seq: state.next_seq,
            time: now_utc(),
            chain: self.chain.clone(),
            gateway_version: env!("CARGO_PKG_VERSION").to_owned(),
            action: event.action,
            outcome: event.outcome,
            request_id: event.request_id,
            actor: event.actor,
            client_ip: event.client_ip,
            link_id: event.link_id,
            resource_types: event.resource_types,
            recipient: event.recipient,
            user_agent: event.user_agent,
            upstream_status: event.upstream_status,
            upstream_latency_ms: event.upstream_latency_ms,
            remaining_attempts: event.remaining_attempts,
            mode: event.mode,
            note,
            prev: state.prev.clone(),
        };
        let body = serde_json::to_string(&record)?;
        let mut mac = self.mac.clone();
        mac.update(body.as_bytes());
        let mac = hex::encode(mac.finalize().into_bytes());
        // The body always ends with the closing brace of the object serde_json wrote.
        let open = body.strip_suffix('}').unwrap_or(&body);
        let line = format!("{open}{MAC_PREFIX}{mac}\"}}");
        let head = Head {
            seq: record.seq,
            mac,
        };
        *state = ChainState::after(&head);
        Ok(Sealed {
            head,
            line,
            is_checkpoint: record.action == AuditAction::Checkpoint,
        })
    }

    /// A sink-written record (checkpoint or recovery).
    pub(crate) fn seal_own(
        &self,
        state: &mut ChainState,
        action: AuditAction,
        outcome: &str,
        note: Option<String>,
    ) -> Result<Sealed, AuditError> {
        self.seal(state, AuditEvent::new(action, outcome), note)
    }

    /// Checks a stored line, returning its record and head: the MAC, then the body.
    pub(crate) fn open_line(&self, line: &str) -> Result<(Record, Head), LineError> {
        let (body, mac) = split_line(line).map_err(LineError::Unparsable)?;
        if !self.verify(&body, mac) {
            return Err(LineError::BadMac);
        }
        let record: Record = serde_json::from_str(&body)
            .map_err(|e| LineError::Unparsable(format!("invalid JSON: {e}")))?;
        let head = Head {
            seq: record.seq,
            mac: mac.to_owned(),
        };
        Ok((record, head))
    }
}

/// Why a single line is not a valid record, before any chain check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LineError {
    Unparsable(String),
    BadMac,
}

/// UTC, millisecond precision, `Z`: sortable as text and a valid FHIR `instant`.
pub(crate) fn now_utc() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// What a caller of a sink waits on.
pub(crate) type Reply = oneshot::Sender<Result<Head, AuditError>>;

/// One queued request to a writer.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) job: Job,
    pub(crate) reply: Reply,
    /// Whether the reply waits for the record to be synced (`false`: an attempt, see
    /// `AuditSink::record_attempt`; only the file sink tells the two apart).
    pub(crate) durable: bool,
}

#[derive(Debug)]
pub(crate) enum Job {
    Event(Box<AuditEvent>),
    #[cfg_attr(
        not(test),
        expect(
            dead_code,
            reason = "only the tests ask for a checkpoint or a rotation"
        )
    )]
    Checkpoint,
    /// File sink only: rename the file to this path and continue in a new one.
    #[cfg_attr(
        not(test),
        expect(
            dead_code,
            reason = "only the tests ask for a checkpoint or a rotation"
        )
    )]
    Rotate(std::path::PathBuf),
}

/// A batch sealed but not yet stored. Only when storing succeeds does the writer adopt
/// `state`; until then the chain in memory still ends at the durable head.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) state: ChainState,
    pub(crate) since_checkpoint: u64,
    pub(crate) records: Vec<Sealed>,
    pub(crate) waiters: Vec<(Reply, Head)>,
}

impl Batch {
    /// Answers every waiter with its head.
    pub(crate) fn succeed(self) {
        for (reply, head) in self.waiters {
            // A waiter that timed out meanwhile no longer listens; its record is still durable.
            let _ = reply.send(Ok(head));
        }
    }

    /// Answers every waiter with an error made by `error`.
    pub(crate) fn fail(self, error: impl Fn() -> AuditError) {
        for (reply, _) in self.waiters {
            let _ = reply.send(Err(error()));
        }
    }
}

/// Seals `requests` in order after `state`, adding a periodic checkpoint every
/// `checkpoint_every` events (0: never).
pub(crate) fn seal_batch(
    sealer: &Sealer,
    state: &ChainState,
    since_checkpoint: u64,
    checkpoint_every: u64,
    requests: Vec<Request>,
) -> Batch {
    let mut batch = Batch {
        state: state.clone(),
        since_checkpoint,
        records: Vec::with_capacity(requests.len()),
        waiters: Vec::with_capacity(requests.len()),
    };
    for Request { job, reply, .. } in requests {
        // Its caller gave up (timeout) and has already failed closed: writing the event now
        // would record a disclosure that did not happen.
        if reply.is_closed() {
            continue;
        }
        let sealed = match job {
            Job::Event(event) => sealer.seal(&mut batch.state, *event, None),
            Job::Checkpoint => {
                sealer.seal_own(&mut batch.state, AuditAction::Checkpoint, "on-demand", None)
            }
            Job::Rotate(_) => Err(AuditError::Unavailable(
                "rotation is handled by the file writer".into(),
            )),
        };
        match sealed {
            Ok(sealed) => {
                if sealed.is_checkpoint {
                    batch.since_checkpoint = 0;
                } else {
                    batch.since_checkpoint += 1;
                }
                batch.waiters.push((reply, sealed.head.clone()));
                batch.records.push(sealed);
            }
            Err(error) => {
                let _ = reply.send(Err(error));
                continue;
            }
        }
        if checkpoint_every > 0 && batch.since_checkpoint >= checkpoint_every {
            match sealer.seal_own(&mut batch.state, AuditAction::Checkpoint, "periodic", None) {
                Ok(sealed) => {
                    batch.since_checkpoint = 0;
                    batch.records.push(sealed);
                }
                // Cannot happen for a record of plain strings; the next event retries.
                Err(error) => tracing::error!(target: "audit", %error, "checkpoint not sealed"),
            }
        }
    }
    batch
}

/// Logs the heads of the checkpoints just made durable: the log pipeline is the cheapest place
/// outside the audit file to keep them.
pub(crate) fn log_checkpoints(chain: &str, records: &[Sealed]) {
    for sealed in records.iter().filter(|s| s.is_checkpoint) {
        tracing::info!(
            target: "audit",
            chain,
            head = %sealed.head,
            "audit checkpoint"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer() -> Sealer {
        Sealer::new(&AuditKey::new([42; 32]), "gw-0".into()).expect("sealer")
    }

    #[test]
    fn a_sealed_line_opens_and_its_mac_covers_the_exact_body() {
        let sealer = sealer();
        let mut state = ChainState::genesis();
        let event = AuditEvent {
            link_id: Some("abc".into()),
            recipient: Some("Dr. \"Q\" Ana".into()),
            ..AuditEvent::new(AuditAction::ManifestRequested, "ok")
        };
        let sealed = sealer.seal(&mut state, event, None).expect("seal");
        assert_eq!(sealed.head.seq, 0);
        assert_eq!(state.next_seq, 1);
        assert_eq!(state.prev, sealed.head.mac);

        let (record, head) = sealer.open_line(&sealed.line).expect("valid line");
        assert_eq!(head, sealed.head);
        assert_eq!(record.prev, GENESIS);
        assert_eq!(record.recipient.as_deref(), Some("Dr. \"Q\" Ana"));

        // The documented canonical form: strip the 74-byte suffix, append `}`, HMAC.
        let body = format!("{}}}", &sealed.line[..sealed.line.len() - MAC_SUFFIX_LEN]);
        let mut mac = hmac_for(&[42; 32]).expect("hmac");
        mac.update(body.as_bytes());
        assert_eq!(hex::encode(mac.finalize().into_bytes()), sealed.head.mac);
        assert!(sealed.line.starts_with("{\"seq\":0,\"time\":\""));
        assert!(sealed.line.contains(",\"prev\":\"0000"));
    }

    #[test]
    fn any_change_to_the_line_breaks_it() {
        let sealer = sealer();
        let mut state = ChainState::genesis();
        let line = sealer
            .seal(
                &mut state,
                AuditEvent::new(AuditAction::LinkCreated, "ok"),
                None,
            )
            .expect("seal")
            .line;
        let edited = line.replace("\"ok\"", "\"no\"");
        assert_eq!(sealer.open_line(&edited), Err(LineError::BadMac));
        let spaced = line.replacen(",", ", ", 1);
        assert_eq!(sealer.open_line(&spaced), Err(LineError::BadMac));
        assert!(matches!(
            sealer.open_line(&line[..line.len() - 1]),
            Err(LineError::Unparsable(_))
        ));
        let other = Sealer::new(&AuditKey::new([1; 32]), "gw-0".into()).expect("sealer");
        assert_eq!(other.open_line(&line), Err(LineError::BadMac));
    }

    #[test]
    fn heads_round_trip_as_text() {
        let head = Head {
            seq: 41,
            mac: "ab".repeat(32),
        };
        assert_eq!(head.to_string().parse::<Head>(), Ok(head));
        assert!("41".parse::<Head>().is_err());
        assert!("x:ab".parse::<Head>().is_err());
    }

    #[test]
    fn timestamps_are_utc_with_milliseconds() {
        let t = now_utc();
        assert_eq!(t.len(), "2025-12-19T19:42:02.887Z".len());
        assert!(t.ends_with('Z'));
        let format = time::format_description::well_known::Rfc3339;
        assert!(time::OffsetDateTime::parse(&t, &format).is_ok());
    }
}
