//! What a handler hands to the sink, and the scrubbing applied before anything is written.
//!
//! The event deliberately has no field that could hold a secret or clinical content: no
//! passcode, bearer token, SHL key, `shlink:/` URI, FHIR payload or label. An audit trail is
//! read by more people than the records it describes, and it is kept for years.
//!
//! Some fields come straight from the network (the `recipient` a viewer sends, its user agent,
//! a request id header, a link id from a URL path). They are capped and their control
//! characters made visible by [`sanitize`] inside the sink, so no handler can forget to, and a
//! hostile value cannot grow records without bound, forge extra lines in a terminal or a log
//! viewer, or hide text behind ANSI or bidirectional-override codes.

use serde::{Deserialize, Serialize};

/// What happened. The two last ones are written by the sink itself, never by the link service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditAction {
    /// A client asked for a link; written before the upstream call, so a creation that crashes
    /// half-way still leaves a trace.
    CreationAttempt,
    LinkCreated,
    CreationRefused,
    LinkRevoked,
    /// A viewer asked for the manifest (SHL `POST` to the manifest URL, with a recipient).
    ManifestRequested,
    /// A viewer fetched an encrypted file through a location from the manifest.
    FileFetched,
    /// A `U`-flag link fetched directly (`GET` with `recipient` in the query).
    DirectFetched,
    /// Integrity anchor written by the sink; its MAC is the head worth exporting.
    Checkpoint,
    /// The sink cut a torn tail (a crash mid-write) before continuing the chain.
    Recovered,
}

impl AuditAction {
    /// Whether a viewer received (or tried to receive) patient data: the accesses the Kill
    /// the Clipboard profile wants audited with time and recipient.
    pub(crate) fn is_disclosure(self) -> bool {
        matches!(
            self,
            Self::ManifestRequested | Self::FileFetched | Self::DirectFetched
        )
    }

    /// Actions only the sink may write: accepting them from a handler would let a bug forge
    /// integrity markers that verification and rotation rely on.
    pub(crate) fn is_reserved(self) -> bool {
        matches!(self, Self::Checkpoint | Self::Recovered)
    }
}

/// One auditable event, as a handler fills it in.
///
/// Build it with [`AuditEvent::new`] and struct update syntax:
/// `AuditEvent { link_id: Some(id), ..AuditEvent::new(AuditAction::FileFetched, "ok") }`.
///
/// Never put a passcode, token, SHL key, shlink URI, FHIR content or label here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub(crate) action: AuditAction,
    /// `ok`, `refused`, `bad-passcode`, `inactive`, `attempt`, or an error code such as
    /// `UPSTREAM_TIMEOUT`.
    pub(crate) outcome: String,
    pub(crate) request_id: Option<String>,
    /// Who acted: the keyed hash of the bearer token for API calls, or the patient id.
    pub(crate) actor: Option<String>,
    pub(crate) client_ip: Option<String>,
    pub(crate) link_id: Option<String>,
    /// FHIR resource types disclosed or shared (`Patient`, `Immunization`, ...), not content.
    #[serde(default)]
    pub(crate) resource_types: Vec<String>,
    /// The `recipient` a viewer declares when it fetches (attacker-supplied).
    pub(crate) recipient: Option<String>,
    /// The viewer's `User-Agent` (attacker-supplied).
    pub(crate) user_agent: Option<String>,
    pub(crate) upstream_status: Option<u16>,
    pub(crate) upstream_latency_ms: Option<u64>,
    /// Passcode attempts left on the link after this request.
    pub(crate) remaining_attempts: Option<i64>,
    /// `upstream` or `embedded`.
    pub(crate) mode: Option<String>,
}

impl AuditEvent {
    /// An event with only its action and outcome set.
    pub(crate) fn new(action: AuditAction, outcome: impl Into<String>) -> Self {
        Self {
            action,
            outcome: outcome.into(),
            request_id: None,
            actor: None,
            client_ip: None,
            link_id: None,
            resource_types: Vec::new(),
            recipient: None,
            user_agent: None,
            upstream_status: None,
            upstream_latency_ms: None,
            remaining_attempts: None,
            mode: None,
        }
    }

    /// The same event with every string capped and its control characters escaped.
    pub(crate) fn sanitized(self) -> Self {
        let opt = |value: Option<String>, cap: usize| value.map(|v| sanitize_owned(v, cap));
        Self {
            action: self.action,
            outcome: sanitize_owned(self.outcome, caps::OUTCOME),
            request_id: opt(self.request_id, caps::ID),
            actor: opt(self.actor, caps::ID),
            client_ip: opt(self.client_ip, caps::CLIENT_IP),
            link_id: opt(self.link_id, caps::ID),
            resource_types: self
                .resource_types
                .iter()
                .take(caps::RESOURCE_TYPES)
                .map(|t| sanitize(t, caps::RESOURCE_TYPE))
                .collect(),
            recipient: opt(self.recipient, caps::FREE_TEXT),
            user_agent: opt(self.user_agent, caps::FREE_TEXT),
            upstream_status: self.upstream_status,
            upstream_latency_ms: self.upstream_latency_ms,
            remaining_attempts: self.remaining_attempts,
            mode: opt(self.mode, caps::MODE),
        }
    }
}

/// Caps in characters (after escaping). They bound a record to a few kilobytes, which is what
/// lets the file sink find the last record by reading only the end of the file.
pub(crate) mod caps {
    /// Free text typed or sent by a viewer: `recipient`, `user_agent`.
    pub(crate) const FREE_TEXT: usize = 100;
    /// Identifiers: request id, actor, link id.
    pub(crate) const ID: usize = 128;
    pub(crate) const OUTCOME: usize = 64;
    pub(crate) const CLIENT_IP: usize = 64;
    pub(crate) const MODE: usize = 16;
    pub(crate) const RESOURCE_TYPE: usize = 64;
    /// How many resource types are kept; FHIR R4 has about 150, a bundle rarely holds 20.
    pub(crate) const RESOURCE_TYPES: usize = 32;
    /// Chain names come from configuration; longer ones are refused, not cut.
    pub(crate) const CHAIN: usize = 128;
}

/// Caps `value` at `cap` characters and makes control characters visible.
///
/// [`sanitize`] without a copy for the common case: printable ASCII within the cap, which
/// sanitizing leaves as it is (request ids, addresses, outcome words, resource types).
fn sanitize_owned(value: String, cap: usize) -> String {
    if is_clean(&value, cap) {
        value
    } else {
        sanitize(&value, cap)
    }
}

/// Printable ASCII without backslashes, at most `cap` bytes (and so characters).
fn is_clean(value: &str, cap: usize) -> bool {
    value.len() <= cap
        && value
            .bytes()
            .all(|byte| (0x20..0x7f).contains(&byte) && byte != b'\\')
}

/// Control characters (C0, DEL, C1) and the Unicode bidirectional controls become `\u{..}`
/// (hex code point), and a backslash becomes `\\`, so the escaping cannot be confused with a
/// value that already contained the escape text. When the escaped text is longer than `cap`,
/// it is cut at a character (never inside an escape) and ends with `…`, so a reader can tell a
/// cut value from a short one.
pub(crate) fn sanitize(value: &str, cap: usize) -> String {
    if is_clean(value, cap) {
        return value.to_owned();
    }
    let mut out = String::with_capacity(value.len().min(cap * 4));
    let mut used = 0usize;
    let mut piece = String::new();
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        piece.clear();
        if c == '\\' {
            piece.push_str("\\\\");
        } else if c.is_control() || is_bidi_control(c) {
            piece.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            piece.push(c);
        }
        let len = piece.chars().count();
        // Keep one character free for the ellipsis unless this piece ends the value exactly.
        let is_last = chars.peek().is_none();
        let room = if is_last { cap } else { cap.saturating_sub(1) };
        if used + len > room {
            if cap > 0 {
                out.push('…');
            }
            return out;
        }
        out.push_str(&piece);
        used += len;
    }
    out
}

/// Bidirectional embedding, override and isolate controls: they reorder how the text around
/// them is displayed ("Trojan Source"), so a recipient could make a record read differently
/// from what it holds.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_clean_values_are_unchanged() {
        assert_eq!(
            sanitize("Dr. Ana Souza, Clinic 3", 100),
            "Dr. Ana Souza, Clinic 3"
        );
        assert_eq!(sanitize("", 100), "");
        assert_eq!(sanitize("exactly10!", 10), "exactly10!");
    }

    #[test]
    fn control_characters_are_escaped_and_backslash_doubled() {
        assert_eq!(sanitize("a\nb\x1b[31mc", 100), "a\\u{a}b\\u{1b}[31mc");
        assert_eq!(sanitize("x\u{202e}y", 100), "x\\u{202e}y");
        assert_eq!(sanitize("\u{85}", 100), "\\u{85}");
        assert_eq!(sanitize("a\\u{a}", 100), "a\\\\u{a}");
    }

    #[test]
    fn long_values_are_cut_with_an_ellipsis_never_inside_an_escape() {
        let cut = sanitize(&"x".repeat(10_000), 100);
        assert_eq!(cut.chars().count(), 100);
        assert!(cut.ends_with('…'));

        // 95 letters then newlines: the first escape (5 characters) would leave no room for
        // the ellipsis, so the value stops before it rather than keeping half of it.
        let value = format!("{}{}", "y".repeat(95), "\n".repeat(10));
        let cut = sanitize(&value, 100);
        assert_eq!(cut, format!("{}…", "y".repeat(95)));
        assert_eq!(sanitize("abcdef", 3), "ab…");
    }

    #[test]
    fn reserved_actions_are_the_sink_s_own() {
        assert!(AuditAction::Checkpoint.is_reserved());
        assert!(AuditAction::Recovered.is_reserved());
        assert!(!AuditAction::LinkCreated.is_reserved());
        assert!(AuditAction::DirectFetched.is_disclosure());
        assert_eq!(
            serde_json::to_string(&AuditAction::ManifestRequested).expect("serializes"),
            "\"manifest-requested\""
        );
    }
}
