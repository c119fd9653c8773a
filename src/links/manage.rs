//! A caller's links: listed, or one revoked.

use super::LinkService;
use super::require_bearer;
use crate::audit::{AuditAction, AuditEvent};
use crate::error::AppError;
use crate::issuer::{Caller, LinkSummary};

impl LinkService {
    /// The caller's links, newest first, with who opened them. Embedded mode only.
    pub(crate) async fn list(&self, caller: &Caller) -> Result<Vec<LinkSummary>, AppError> {
        require_bearer(caller)?;
        self.issuer.health_links(caller).await
    }

    /// Revokes one of the caller's links at once, records it as soon as the issuer has, and
    /// answers the link as it now stands. A failing trail answers `AUDIT_UNAVAILABLE` and the
    /// link stays revoked (withholding access needs no record first; a retry records it).
    pub(crate) async fn revoke(
        &self,
        caller: &Caller,
        link_id: &str,
    ) -> Result<LinkSummary, AppError> {
        require_bearer(caller)?;
        self.issuer.revoke_health_link(caller, link_id).await?;
        self.audit
            .record(AuditEvent {
                link_id: Some(link_id.to_owned()),
                ..self.events(caller).event(AuditAction::LinkRevoked, "ok")
            })
            .await?;
        self.issuer.health_link(caller, link_id).await
    }
}
