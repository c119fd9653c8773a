//! What a patient may see about one of their links (`HealthLink` in the schema).

use super::LinkMode;
use super::embedded::format_instant;
use super::store::{AccessAction, AccessOutcome, AccessRecord, LinkRecord, LinkState};

#[derive(Clone, PartialEq, Eq)]
pub struct LinkSummary {
    pub(crate) id: String,
    pub(crate) label: Option<String>,
    pub(crate) mode: LinkMode,
    pub(crate) state: LinkState,
    pub(crate) created_at: String,
    pub(crate) expires_at: Option<String>,
    /// Oldest first.
    pub(crate) accesses: Vec<AccessSummary>,
}

impl std::fmt::Debug for LinkSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkSummary")
            .field("id", &self.id)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// One access: who (the recipient name they gave), when, what, and how it went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AccessSummary {
    pub(crate) at: String,
    pub(crate) recipient: String,
    pub(crate) action: AccessAction,
    pub(crate) outcome: AccessOutcome,
}

impl LinkSummary {
    pub(crate) fn new(link: LinkRecord, accesses: Vec<AccessRecord>, now_ms: i64) -> Self {
        Self {
            state: link.state(now_ms),
            mode: link.mode,
            id: link.id,
            label: link.label,
            created_at: format_instant(link.created_at),
            expires_at: Some(format_instant(link.expires_at)),
            accesses: accesses
                .into_iter()
                .map(|access| AccessSummary {
                    at: format_instant(access.at),
                    recipient: access.recipient,
                    action: access.action,
                    outcome: access.outcome,
                })
                .collect(),
        }
    }
}
