//! What a connection's timers watch: its requests in flight, when it last answered, when bytes
//! last moved, and whether a handler asked for it to close.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;

/// What the connection's timers need to know about its requests and its bytes.
pub(super) struct Activity {
    started: Instant,
    in_flight: AtomicUsize,
    requests: AtomicU64,
    /// When the last request finished, in milliseconds since `started`.
    last_finished_ms: AtomicU64,
    /// When bytes last moved either way, in milliseconds since `started`.
    last_progress_ms: AtomicU64,
    /// A handler asked for the connection to close after its answer (a `408` on HTTP/2).
    close_requested: AtomicBool,
    wake: Notify,
}

impl Activity {
    pub(super) fn new() -> Self {
        Self {
            started: Instant::now(),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            last_finished_ms: AtomicU64::new(0),
            last_progress_ms: AtomicU64::new(0),
            close_requested: AtomicBool::new(false),
            wake: Notify::new(),
        }
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub(super) fn request_started(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.requests.fetch_add(1, Ordering::SeqCst);
        InFlight(Arc::clone(self))
    }

    pub(super) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    pub(super) fn requests_seen(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    /// Since when nothing has been served: the connection's start, or the last answer.
    pub(super) fn quiet_since(&self) -> Instant {
        self.started + Duration::from_millis(self.last_finished_ms.load(Ordering::SeqCst))
    }

    pub(super) fn last_progress(&self) -> Instant {
        self.started + Duration::from_millis(self.last_progress_ms.load(Ordering::SeqCst))
    }

    pub(super) fn close_requested(&self) -> bool {
        self.close_requested.load(Ordering::SeqCst)
    }

    /// Resolves when a handler asks for the connection to close.
    pub(super) async fn woken(&self) {
        self.wake.notified().await;
    }
}

/// A request being served on a connection; dropping it marks the request done.
pub(super) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0
            .last_finished_ms
            .store(self.0.elapsed_ms(), Ordering::SeqCst);
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A handle on the connection a request came on, in the request's extensions.
#[derive(Clone)]
pub(crate) struct ConnectionControl(Arc<Activity>);

impl ConnectionControl {
    pub(super) fn new(activity: Arc<Activity>) -> Self {
        Self(activity)
    }

    /// Closes the connection once the answers in flight are out: GOAWAY on HTTP/2, where a
    /// `Connection: close` header is not allowed and would be dropped.
    pub(crate) fn close_after_answer(&self) {
        self.0.close_requested.store(true, Ordering::SeqCst);
        self.0.wake.notify_one();
    }
}

impl std::fmt::Debug for ConnectionControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConnectionControl")
    }
}

/// The connection's socket, noting when bytes move: a connection with a request in flight and
/// no bytes moving for `--idle-timeout` (a client that stopped reading its answer) is dropped.
pub(super) struct Tracked<I> {
    inner: I,
    activity: Arc<Activity>,
}

impl<I> Tracked<I> {
    pub(super) fn new(inner: I, activity: Arc<Activity>) -> Self {
        Self { inner, activity }
    }

    fn progressed(&self) {
        self.activity
            .last_progress_ms
            .store(self.activity.elapsed_ms(), Ordering::Relaxed);
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Tracked<I> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.progressed();
        }
        poll
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Tracked<I> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let poll = std::pin::Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(poll, std::task::Poll::Ready(Ok(written)) if written > 0) {
            self.progressed();
        }
        poll
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let poll = std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(poll, std::task::Poll::Ready(Ok(written)) if written > 0) {
            self.progressed();
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
