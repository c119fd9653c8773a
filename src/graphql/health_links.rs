//! `HealthLink`: what the embedded issuer keeps about a link, for the patient's own eyes.

use async_graphql::{Enum, ID, Object, SimpleObject};

use super::inputs::HealthLinkMode;
use crate::issuer::store::LinkState;
use crate::issuer::{AccessSummary, LinkMode, LinkSummary};

/// Whether a link can still be opened.
#[derive(Debug, Enum, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HealthLinkStatus {
    Active,
    /// Past its `expiresAt`.
    Expired,
    /// Revoked by the patient.
    Revoked,
    /// Too many wrong passcodes: the lifetime budget is spent.
    Locked,
}

/// A link the patient created. The gateway cannot rebuild its URL: the key lives only in the link.
#[derive(Debug)]
pub(crate) struct HealthLink(pub(crate) LinkSummary);

#[Object]
impl HealthLink {
    /// The `DocumentReference` id returned when the link was created.
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }

    async fn label(&self) -> Option<&str> {
        self.0.label.as_deref()
    }

    async fn mode(&self) -> HealthLinkMode {
        match self.0.mode {
            LinkMode::Passcode => HealthLinkMode::Passcode,
            LinkMode::Direct => HealthLinkMode::Direct,
        }
    }

    async fn status(&self) -> HealthLinkStatus {
        match self.0.state {
            LinkState::Active => HealthLinkStatus::Active,
            LinkState::Expired => HealthLinkStatus::Expired,
            LinkState::Revoked => HealthLinkStatus::Revoked,
            LinkState::Locked => HealthLinkStatus::Locked,
        }
    }

    async fn created_at(&self) -> &str {
        &self.0.created_at
    }

    async fn expires_at(&self) -> Option<&str> {
        self.0.expires_at.as_deref()
    }

    /// Every attempt to open the link, oldest first (the Kill the Clipboard profile asks that the
    /// patient can see who opened their data, and when).
    async fn accesses(&self) -> Vec<HealthLinkAccess> {
        self.0.accesses.iter().map(HealthLinkAccess::from).collect()
    }
}

/// One attempt to open a link.
#[derive(Debug, SimpleObject)]
pub(crate) struct HealthLinkAccess {
    pub(crate) at: String,
    /// The name the recipient gave (empty for file fetches by location ticket).
    pub(crate) recipient: String,
    /// `manifest`, `file` or `direct`.
    pub(crate) action: String,
    /// `ok`, `bad-passcode`, `no-passcode` or `inactive`.
    pub(crate) outcome: String,
}

impl From<&AccessSummary> for HealthLinkAccess {
    fn from(access: &AccessSummary) -> Self {
        Self {
            at: access.at.clone(),
            recipient: access.recipient.clone(),
            action: access.action.as_str().to_owned(),
            outcome: access.outcome.as_str().to_owned(),
        }
    }
}
