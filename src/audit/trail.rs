//! The gateway's side of the audit trail: what it fills in for every event, and how a sink
//! failure reaches the client (`AUDIT_UNAVAILABLE`, fail closed).

use std::sync::Arc;

use super::{AuditEvent, AuditSink};
use crate::crypto::PurposeKey;
use crate::error::AppError;

/// The trail the link service records to (`crate::links`).
#[derive(Debug, Clone)]
pub struct AuditTrail {
    sink: Arc<dyn AuditSink>,
    actor_key: PurposeKey,
}

impl AuditTrail {
    pub fn new(sink: Arc<dyn AuditSink>, actor_key: PurposeKey) -> Self {
        Self { sink, actor_key }
    }

    /// The actor id of a credential (`Bearer <token>`): a keyed hash, so records name a caller
    /// consistently without holding anything that could be replayed as the token.
    pub(crate) fn actor(&self, credential: &str) -> String {
        hex::encode(&self.actor_key.mac(credential.as_bytes())[..16])
    }

    /// Records an event durably, or fails with `AUDIT_UNAVAILABLE`: nothing may be disclosed
    /// without its record.
    pub(crate) async fn record(&self, event: AuditEvent) -> Result<(), AppError> {
        self.sink.record(event).await.map_err(refused)
    }

    /// Records an attempt whose outcome this operation will record with [`Self::record`]
    /// (see [`AuditSink::record_attempt`] for how durable it is meanwhile). Fails like
    /// `record`.
    pub(crate) async fn record_attempt(&self, event: AuditEvent) -> Result<(), AppError> {
        self.sink.record_attempt(event).await.map_err(refused)
    }

    pub(crate) async fn is_ready(&self) -> bool {
        self.sink.is_ready().await
    }

    /// Closes the sink (see [`AuditSink::close`]): at shutdown, after the last request.
    pub(crate) async fn close(&self) {
        self.sink.close().await;
    }
}

fn refused(error: super::AuditError) -> AppError {
    tracing::error!(error = %error, "audit record failed; refusing the operation");
    AppError::audit_unavailable()
}
