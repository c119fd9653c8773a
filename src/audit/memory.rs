//! An in-memory sink for tests of the code that records events.
//!
//! The link service must fail closed when the sink fails; `set_failing` lets its tests prove it
//! without a broken disk.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{AuditError, AuditEvent, AuditSink};

/// Keeps events in memory, sanitized as a real sink would write them. Not durable.
#[derive(Debug, Default)]
pub struct MemoryAuditSink {
    events: Mutex<Vec<AuditEvent>>,
    failing: AtomicBool,
    closed: AtomicBool,
}

impl MemoryAuditSink {
    pub fn new() -> Self {
        Self::default()
    }

    /// The events recorded so far, in order.
    #[cfg(test)]
    pub(crate) fn events(&self) -> Vec<AuditEvent> {
        self.events
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// While set, `record` fails and `is_ready` is false.
    #[cfg(test)]
    pub(crate) fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl AuditSink for MemoryAuditSink {
    async fn record(&self, event: AuditEvent) -> Result<(), AuditError> {
        if event.action.is_reserved() {
            return Err(AuditError::ReservedAction(event.action));
        }
        if self.closed.load(Ordering::SeqCst) {
            return Err(AuditError::Closed);
        }
        if self.failing.load(Ordering::SeqCst) {
            return Err(AuditError::Unavailable("memory sink set to fail".into()));
        }
        self.events
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(event.sanitized());
        Ok(())
    }

    async fn is_ready(&self) -> bool {
        !self.failing.load(Ordering::SeqCst) && !self.closed.load(Ordering::SeqCst)
    }

    async fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditAction;

    #[tokio::test]
    async fn records_until_told_to_fail() {
        let sink = MemoryAuditSink::new();
        sink.record(AuditEvent::new(AuditAction::LinkCreated, "ok"))
            .await
            .expect("records");
        sink.set_failing(true);
        assert!(
            sink.record(AuditEvent::new(AuditAction::LinkRevoked, "ok"))
                .await
                .is_err()
        );
        assert!(!sink.is_ready().await);
        assert_eq!(sink.events().len(), 1);
    }

    #[tokio::test]
    async fn refuses_records_once_closed() {
        let sink = MemoryAuditSink::new();
        sink.record(AuditEvent::new(AuditAction::LinkCreated, "ok"))
            .await
            .expect("records");
        sink.close().await;
        assert!(matches!(
            sink.record(AuditEvent::new(AuditAction::LinkRevoked, "ok"))
                .await,
            Err(AuditError::Closed)
        ));
        assert!(!sink.is_ready().await);
        assert_eq!(sink.events().len(), 1);
    }

    #[tokio::test]
    async fn a_trail_fails_closed_once_its_sink_is_closed() {
        let sink = std::sync::Arc::new(MemoryAuditSink::new());
        let keys = crate::crypto::Keys::derive(&secrecy::SecretBox::new(Box::new(vec![9u8; 32])));
        let trail = crate::audit::AuditTrail::new(sink.clone(), keys.audit_actor);
        trail
            .record(AuditEvent::new(AuditAction::LinkCreated, "ok"))
            .await
            .expect("records");
        trail.close().await;
        let refused = trail
            .record(AuditEvent::new(AuditAction::LinkRevoked, "ok"))
            .await
            .expect_err("closed");
        assert_eq!(refused.code(), crate::error::ErrorCode::AuditUnavailable);
        assert!(!trail.is_ready().await);
        assert_eq!(sink.events().len(), 1);
    }
}
