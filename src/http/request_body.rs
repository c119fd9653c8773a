//! Request bodies are read whole, within a deadline, before the request takes a work slot.
//!
//! A handler that reads its body holds a concurrency slot while it waits for the bytes, so
//! clients dripping one byte every few seconds could hold every slot (measured before this
//! layer: 520 such connections made every other request `503`). Here the body is read first,
//! with a deadline for the whole of it (a per-read timeout would let a client send one byte just
//! before each timeout forever), and only a complete request goes on to the shedding layer and
//! its handler. A body that misses the deadline is answered `408 REQUEST_TIMEOUT` and its
//! connection closed.
//!
//! At most `max_bytes + 1` bytes are read: a longer body is cut there, which the route's own
//! body limit then refuses as it always did (`413` on `/graphql`, `400` on the SHL endpoints).
//! The request has been charged to its address's quota before its body is read, and all
//! buffered bodies together stay within a budget (`503 OVERLOADED` beyond it).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::server::ConnectionControl;
use crate::error::{AppError, ErrorCode};

/// How bodies are read.
#[derive(Debug, Clone)]
pub(crate) struct BodyRead {
    /// The whole body must arrive within this, counted from the end of the headers.
    timeout: Duration,
    /// The largest body any route accepts.
    max_bytes: usize,
    /// Bytes all buffered bodies may hold at once: as much as every work slot's largest body.
    /// Without it, HTTP/2 clients could each park 32 streams of not-yet-complete bodies here,
    /// outside every other limit.
    budget: Arc<Semaphore>,
}

impl BodyRead {
    pub(crate) fn new(timeout: Duration, max_bytes: usize, work_slots: usize) -> Self {
        let budget = max_bytes
            .saturating_add(1)
            .saturating_mul(work_slots.max(1))
            .min(Semaphore::MAX_PERMITS);
        Self {
            timeout,
            max_bytes,
            budget: Arc::new(Semaphore::new(budget)),
        }
    }
}

/// Why a body could not be read.
enum Unread {
    /// The client broke off or sent a malformed chunked body.
    Broken,
    /// The budget of buffered bytes is spent: the gateway is overloaded.
    OverBudget,
}

pub(crate) async fn read_whole_body(
    State(read): State<BodyRead>,
    request: Request,
    next: Next,
) -> Response {
    use http_body::Body as _;
    if request.body().is_end_stream() {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let collect = collect_up_to(body, read.max_bytes + 1, &read.budget);
    match tokio::time::timeout(read.timeout, collect).await {
        Ok(Ok((bytes, held))) => {
            let response = next
                .run(Request::from_parts(parts, Body::from(bytes)))
                .await;
            drop(held);
            response
        }
        Ok(Err(Unread::Broken)) => {
            AppError::bad_user_input("the request body could not be read").into_response()
        }
        Ok(Err(Unread::OverBudget)) => AppError::overloaded().into_response(),
        Err(_) => {
            metrics::counter!(crate::metrics::SLOW_REQUEST_BODIES).increment(1);
            let mut response = AppError::new(
                ErrorCode::RequestTimeout,
                format!(
                    "the request body did not arrive within {} ms",
                    read.timeout.as_millis()
                ),
            )
            .into_response();
            // The rest of the body may still be on its way: the connection cannot be reused.
            // HTTP/1 reads the header; HTTP/2 drops it, so the connection is told directly
            // (GOAWAY), or a client could go on opening slow streams on it.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            if let Some(connection) = parts.extensions.get::<ConnectionControl>() {
                connection.close_after_answer();
            }
            response
        }
    }
}

/// The body's bytes, at most `limit` of them (the rest is left unread), each byte held against
/// `budget` until the request ends.
async fn collect_up_to(
    mut body: Body,
    limit: usize,
    budget: &Arc<Semaphore>,
) -> Result<(Vec<u8>, Option<OwnedSemaphorePermit>), Unread> {
    let mut collected = Vec::new();
    let mut held: Option<OwnedSemaphorePermit> = None;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(|_| Unread::Broken)?.into_data() else {
            // Trailers: nothing any route reads.
            continue;
        };
        let room = limit - collected.len();
        let taken = data.len().min(room);
        let bytes = u32::try_from(taken).map_err(|_| Unread::OverBudget)?;
        if bytes > 0 {
            let permit = Arc::clone(budget)
                .try_acquire_many_owned(bytes)
                .map_err(|_| Unread::OverBudget)?;
            match held.as_mut() {
                Some(held) => held.merge(permit),
                None => held = Some(permit),
            }
        }
        collected.extend_from_slice(&data[..taken]);
        if collected.len() >= limit {
            break;
        }
    }
    Ok((collected, held))
}
