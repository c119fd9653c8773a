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

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt as _;

use crate::error::{AppError, ErrorCode};

/// How bodies are read.
#[derive(Debug, Clone, Copy)]
pub struct BodyRead {
    /// The whole body must arrive within this, counted from the end of the headers.
    pub timeout: Duration,
    /// The largest body any route accepts.
    pub max_bytes: usize,
}

pub async fn read_whole_body(
    State(read): State<BodyRead>,
    request: Request,
    next: Next,
) -> Response {
    use http_body::Body as _;
    if request.body().is_end_stream() {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    match tokio::time::timeout(read.timeout, collect_up_to(body, read.max_bytes + 1)).await {
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        // The client broke off or sent a malformed chunked body.
        Ok(Err(())) => {
            AppError::bad_user_input("the request body could not be read").into_response()
        }
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
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            response
        }
    }
}

/// The body's bytes, at most `limit` of them (the rest is left unread).
async fn collect_up_to(mut body: Body, limit: usize) -> Result<Vec<u8>, ()> {
    let mut collected = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(drop)?.into_data() else {
            // Trailers: nothing any route reads.
            continue;
        };
        let room = limit - collected.len();
        collected.extend_from_slice(&data[..data.len().min(room)]);
        if collected.len() >= limit {
            break;
        }
    }
    Ok(collected)
}
