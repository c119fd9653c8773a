//! A caller's links: listed, or one revoked.

use super::LinkService;
use super::create::require_bearer;
use crate::audit::{AuditAction, AuditEvent};
use crate::error::AppError;
use crate::issuer::{Caller, LinkSummary};

impl LinkService {
    /// The caller's links, newest first, with who opened them. Embedded mode only.
    pub(crate) async fn list(&self, caller: &Caller) -> Result<Vec<LinkSummary>, AppError> {
        require_bearer(caller)?;
        self.issuer.health_links(caller).await
    }

    /// Revokes one of the caller's links at once. The revocation is recorded after the issuer
    /// has made it: a failing trail then answers `AUDIT_UNAVAILABLE`, and the link stays revoked
    /// (withholding access needs no record; a retry records it).
    pub(crate) async fn revoke(
        &self,
        caller: &Caller,
        link_id: &str,
    ) -> Result<LinkSummary, AppError> {
        require_bearer(caller)?;
        let revoked = self.issuer.revoke_health_link(caller, link_id).await?;
        self.audit
            .record(AuditEvent {
                link_id: Some(revoked.id.clone()),
                ..self.events(caller).event(AuditAction::LinkRevoked, "ok")
            })
            .await?;
        Ok(revoked)
    }
}
