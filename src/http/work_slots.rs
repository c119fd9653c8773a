//! Work slots: at most `--max-concurrent-requests` pieces of request work at once, including the
//! work a client abandoned.
//!
//! A request takes a slot when it reaches a work route (with its body already read) and is
//! refused at once with `503 OVERLOADED` when none is free: a queue would only turn overload
//! into timeouts for everyone. Work that must finish once started runs in a task of its own
//! ([`to_completion`]), because axum drops a request's future when its connection goes; the slot
//! moves into that task, so a client that hangs up and asks again cannot pile up detached work
//! beyond the limit. At shutdown the gateway waits for every slot to come back
//! ([`WorkSlots::all_returned`]), so detached work is not cut off half way either.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::AppError;

/// The slots of one gateway. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct WorkSlots {
    semaphore: Arc<Semaphore>,
    total: u32,
}

impl WorkSlots {
    pub(crate) fn new(total: usize) -> Self {
        let total = u32::try_from(total.max(1)).unwrap_or(u32::MAX);
        Self {
            semaphore: Arc::new(Semaphore::new(total as usize)),
            total,
        }
    }

    pub(crate) fn total(&self) -> usize {
        self.total as usize
    }

    /// Resolves once no work holds a slot (no request in a handler, no detached task).
    pub(crate) async fn all_returned(&self) {
        // The semaphore is never closed, so the acquisition only waits.
        let _ = self.semaphore.acquire_many(self.total).await;
    }
}

/// The slot a request holds, in its extensions, until the request ends or its work is detached.
#[derive(Debug, Clone)]
pub(crate) struct WorkSlot(Arc<Mutex<Option<OwnedSemaphorePermit>>>);

impl WorkSlot {
    fn take(&self) -> Option<OwnedSemaphorePermit> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

/// Admits a request to a work route if a slot is free; refuses it at once otherwise.
pub(crate) async fn admit(
    State(slots): State<WorkSlots>,
    mut request: Request,
    next: Next,
) -> Response {
    let Ok(permit) = Arc::clone(&slots.semaphore).try_acquire_owned() else {
        ::metrics::counter!(crate::metrics::SHED_REQUESTS).increment(1);
        return AppError::overloaded().into_response();
    };
    request
        .extensions_mut()
        .insert(WorkSlot(Arc::new(Mutex::new(Some(permit)))));
    next.run(request).await
}

/// Runs `work` to its end even if the client hangs up, holding the request's work slot until it
/// does. Every sequence that must not stop half way goes through here: a passcode attempt
/// reserved but neither settled nor recorded, a disclosure without its audit outcome, an
/// idempotency key left pending. The task keeps the request's span, so its log lines keep the
/// request id.
pub(crate) async fn to_completion<T: Send + 'static>(
    slot: Option<&WorkSlot>,
    work: impl Future<Output = T> + Send + 'static,
) -> Result<T, AppError> {
    use tracing::Instrument as _;
    let permit = slot.and_then(WorkSlot::take);
    let task = async move {
        let output = work.await;
        drop(permit);
        output
    };
    tokio::spawn(task.in_current_span()).await.map_err(|error| {
        // Not the panic's message: it could hold whatever the panicking code was handling.
        tracing::error!(panicked = error.is_panic(), "a request's task failed");
        AppError::internal()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn detached_work_keeps_its_slot_until_it_ends() {
        let slots = WorkSlots::new(1);
        let permit = Arc::clone(&slots.semaphore)
            .try_acquire_owned()
            .expect("a slot");
        let slot = WorkSlot(Arc::new(Mutex::new(Some(permit))));
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        // The caller gives up at once, as a request whose client hung up.
        let call = to_completion(Some(&slot), async move {
            let _ = released.await;
        });
        let _ = tokio::time::timeout(std::time::Duration::from_millis(20), call).await;
        drop(slot);
        assert!(
            Arc::clone(&slots.semaphore).try_acquire_owned().is_err(),
            "the detached task still holds the slot"
        );
        let _ = release.send(());
        tokio::time::timeout(std::time::Duration::from_secs(5), slots.all_returned())
            .await
            .expect("the slot comes back when the work ends");
    }
}
