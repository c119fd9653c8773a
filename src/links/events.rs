//! The audit events of one caller or one data-plane request, with what every event carries.

use crate::audit::{AuditAction, AuditEvent, AuditTrail};
use crate::issuer::{Caller, IssuerMode};

/// Builds the events of one caller's operation. A creation records two or three events about
/// the same caller: the keyed hash of the token is computed once.
pub(super) struct CallerEvents<'a> {
    caller: &'a Caller,
    actor: Option<String>,
    client_ip: Option<String>,
    mode: IssuerMode,
}

impl<'a> CallerEvents<'a> {
    pub(super) fn new(audit: &AuditTrail, caller: &'a Caller, mode: IssuerMode) -> Self {
        Self {
            caller,
            actor: caller
                .bearer
                .as_ref()
                .map(|token| audit.actor(&token.credential())),
            client_ip: caller.client_ip.map(|ip| ip.to_string()),
            mode,
        }
    }

    pub(super) fn event(&self, action: AuditAction, outcome: &str) -> AuditEvent {
        AuditEvent {
            request_id: Some(self.caller.request_id.clone()),
            client_ip: self.client_ip.clone(),
            actor: self.actor.clone(),
            mode: Some(self.mode.as_str().to_owned()),
            ..AuditEvent::new(action, outcome)
        }
    }
}
