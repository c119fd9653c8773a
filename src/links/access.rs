//! The data plane's accesses to embedded links: each one recorded (the audit trail, then the
//! patient's history of the link) before its answer is given.

use std::sync::Arc;

use crate::audit::{AuditAction, AuditEvent, AuditTrail};
use crate::error::AppError;
use crate::issuer::IssuerMode;
use crate::issuer::embedded::{Access, EmbeddedIssuer, ManifestAnswer, ManifestRequest};
use crate::issuer::store::{AccessAction, AccessRecord};

/// Who is asking on the data plane, for the audit record.
#[derive(Debug, Clone, Default)]
pub(crate) struct AccessContext {
    pub(crate) request_id: Option<String>,
    pub(crate) client_ip: Option<String>,
    pub(crate) user_agent: Option<String>,
}

/// The accesses to the embedded issuer's links. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct LinkAccesses {
    issuer: Arc<EmbeddedIssuer>,
    audit: AuditTrail,
}

impl LinkAccesses {
    pub(crate) fn new(issuer: Arc<EmbeddedIssuer>, audit: AuditTrail) -> Self {
        Self { issuer, audit }
    }

    /// A manifest request (flag `P`): the files, a wrong-passcode answer, or not active.
    pub(crate) async fn open_manifest(
        &self,
        manifest_id: &str,
        request: ManifestRequest,
        context: &AccessContext,
    ) -> Result<ManifestAnswer, AppError> {
        let access = self.issuer.open_manifest(manifest_id, request).await?;
        self.answer(access, context).await
    }

    /// A location ticket from a manifest: the encrypted file, or `None` (a `404`).
    pub(crate) async fn open_file(
        &self,
        ticket: &str,
        context: &AccessContext,
    ) -> Result<Option<String>, AppError> {
        let access = self.issuer.open_file(ticket).await?;
        self.answer(access, context).await
    }

    /// A direct request (flag `U`): the encrypted file, or `None` (a `404`).
    pub(crate) async fn open_direct(
        &self,
        manifest_id: &str,
        recipient: &str,
        context: &AccessContext,
    ) -> Result<Option<String>, AppError> {
        let access = self.issuer.open_direct(manifest_id, recipient).await?;
        self.answer(access, context).await
    }

    /// The access's records, then its answer: the audit record first (fail closed), then the
    /// history the patient sees, so a failure of either withholds the answer.
    async fn answer<T>(&self, access: Access<T>, context: &AccessContext) -> Result<T, AppError> {
        if let Some(record) = &access.record {
            self.audit
                .record(audit_event(record, access.remaining_attempts, context))
                .await?;
            metrics::counter!(
                crate::metrics::SHL_ACCESSES,
                "action" => record.action.as_str(),
                "outcome" => record.outcome.as_str()
            )
            .increment(1);
            self.issuer.add_to_history(record).await?;
        }
        Ok(access.answer)
    }
}

fn audit_event(
    record: &AccessRecord,
    remaining_attempts: Option<i64>,
    context: &AccessContext,
) -> AuditEvent {
    let action = match record.action {
        AccessAction::Manifest => AuditAction::ManifestRequested,
        AccessAction::File => AuditAction::FileFetched,
        AccessAction::Direct => AuditAction::DirectFetched,
    };
    AuditEvent {
        request_id: context.request_id.clone(),
        client_ip: context.client_ip.clone(),
        user_agent: context.user_agent.clone(),
        link_id: Some(record.link_id.clone()),
        recipient: (!record.recipient.is_empty()).then(|| record.recipient.clone()),
        remaining_attempts,
        mode: Some(IssuerMode::Embedded.as_str().to_owned()),
        ..AuditEvent::new(action, record.outcome.as_str())
    }
}
