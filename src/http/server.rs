//! The listener: accepting connections and bounding what one connection may cost.
//!
//! `axum::serve` has no header read timeout, no idle timeout and no connection limits, so a
//! client that drips bytes, or just holds connections open, could keep them forever. This loop
//! serves the router with hyper's own connection builder (HTTP/1.1 and HTTP/2, plain or TLS) and
//! adds what an edge needs:
//! - **at most `max_connections`**, and at most `max_connections_per_ip` from one address (IPv6
//!   by /64; peers in `--trusted-proxies` are exempt: a proxy carries many clients). Over either,
//!   the connection is closed at once, before any byte is read;
//! - **the first request's headers within `header_read_timeout`** (TLS handshake included), and
//!   every later request's headers within it too (hyper's HTTP/1 timer);
//! - **idle connections closed** after `idle_timeout` without a request in flight;
//! - **HTTP/2 bounds**: concurrent streams per connection, pending-reset streams (the "rapid
//!   reset" attack), header list size, and keep-alive pings that drop dead peers.
//!
//! Request bodies are read with their own deadline before a request takes a work slot (see
//! `request_body`), so a slow client costs its connection, never the service's capacity.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tower::ServiceExt as _;

/// Limits on connections, each with a flag (see `Config`).
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Connections open at once, from everyone.
    pub max_connections: usize,
    /// Connections open at once from one address (0: no per-address limit).
    pub max_connections_per_ip: usize,
    /// Longest wait for a request's headers (and, on a new connection, the TLS handshake).
    pub header_read_timeout: Duration,
    /// A connection without a request in flight for this long is closed.
    pub idle_timeout: Duration,
    /// HTTP/2 streams one connection may have open at once.
    pub http2_max_concurrent_streams: u32,
    /// HTTP/2: streams a client may open and reset before the server sees them.
    pub http2_max_pending_accept_reset_streams: usize,
    /// HTTP/2 keep-alive ping interval; a ping unanswered for as long closes the connection.
    pub http2_keep_alive_interval: Duration,
    /// Peers exempt from the per-address limit (they forward for many clients).
    pub trusted_proxies: Vec<IpNet>,
}

/// Largest HTTP/2 header list (and HTTP/1 header count): the gateway's requests carry a few
/// short headers; hyper's defaults (16 MiB list, 100 headers) are for general servers.
const HTTP2_MAX_HEADER_LIST_BYTES: u32 = 64 * 1024;
const HTTP1_MAX_HEADERS: usize = 64;
/// HTTP/2 flow-control windows: how much a client may send before the gateway has read it.
/// hyper's defaults (1 MiB each) are for uploads; the gateway's bodies are a few KiB, and what
/// a client pushes past the window waits on its side, not in the gateway's memory.
const HTTP2_STREAM_WINDOW_BYTES: u32 = 64 * 1024;
const HTTP2_CONNECTION_WINDOW_BYTES: u32 = 512 * 1024;

/// Serves `router` on `listener` until `shutdown` resolves, then closes idle connections, lets
/// requests in flight finish, and returns when every connection has closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let builder = Arc::new(connection_builder(&limits));
    let limits = Arc::new(limits);
    let admission = Admission::new(&limits);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        // Finished connections are reaped here, so the set holds only live ones.
        while connections.try_join_next().is_some() {}
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    wait_after_accept_error(&error).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(slot) = admission.admit(peer.ip()) else {
            // Dropping the stream closes it: nothing is read from a client over its limit.
            continue;
        };
        let connection = Connection {
            peer,
            router: router.clone(),
            builder: Arc::clone(&builder),
            limits: Arc::clone(&limits),
            stop: stop_rx.clone(),
        };
        let tls = tls.clone();
        connections.spawn(async move {
            let _slot = slot;
            connection.run(stream, tls).await;
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

fn connection_builder(limits: &ConnectionLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_headers(HTTP1_MAX_HEADERS);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.http2_max_concurrent_streams.max(1))
        .max_pending_accept_reset_streams(limits.http2_max_pending_accept_reset_streams)
        .max_header_list_size(HTTP2_MAX_HEADER_LIST_BYTES)
        .initial_stream_window_size(HTTP2_STREAM_WINDOW_BYTES)
        .initial_connection_window_size(HTTP2_CONNECTION_WINDOW_BYTES)
        .keep_alive_interval(limits.http2_keep_alive_interval)
        .keep_alive_timeout(limits.http2_keep_alive_interval);
    builder
}

/// Accept errors are about this process (out of file descriptors) or one failed handshake:
/// the first kind gets a pause, so the loop does not spin while nothing can be accepted.
async fn wait_after_accept_error(error: &std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::ConnectionRefused
    ) {
        return;
    }
    tracing::error!(error = %error, "accepting a connection failed; pausing");
    tokio::time::sleep(Duration::from_millis(200)).await;
}

/// One accepted connection and what serving it needs.
struct Connection {
    peer: SocketAddr,
    router: Router,
    builder: Arc<auto::Builder<TokioExecutor>>,
    limits: Arc<ConnectionLimits>,
    stop: watch::Receiver<bool>,
}

impl Connection {
    async fn run(self, stream: TcpStream, tls: Option<tokio_rustls::TlsAcceptor>) {
        // Small answers go out at once rather than waiting for Nagle's timer.
        let _ = stream.set_nodelay(true);
        match tls {
            None => self.serve(stream).await,
            Some(acceptor) => {
                let handshake = acceptor.accept(stream);
                // A failed or too slow handshake is the client's problem; nothing to log per
                // connection (a scanner would fill the log).
                let limit = self.limits.header_read_timeout;
                if let Ok(Ok(stream)) = tokio::time::timeout(limit, handshake).await {
                    self.serve(stream).await;
                }
            }
        }
    }

    async fn serve<I>(self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Self {
            peer,
            router,
            builder,
            limits,
            mut stop,
        } = self;
        let activity = Arc::new(Activity::new());
        let service = {
            let activity = Arc::clone(&activity);
            hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
                    .extensions_mut()
                    .insert(ConnectionControl(Arc::clone(&activity)));
                let request_in_flight = activity.request_started();
                let call = router.clone().oneshot(request.map(Body::new));
                async move {
                    let response = call.await;
                    drop(request_in_flight);
                    response
                }
            })
        };
        let io = Tracked {
            inner: io,
            activity: Arc::clone(&activity),
        };
        let connection = builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(connection);
        // The timer never sleeps past the shorter limit, so a change of phase (a first request
        // seen) is noticed in time.
        let step = limits.header_read_timeout.min(limits.idle_timeout);
        let mut phase = Phase::Serving;
        loop {
            let now = Instant::now();
            let next_look = match phase {
                Phase::Serving if activity.close_requested() => {
                    connection.as_mut().graceful_shutdown();
                    phase = Phase::Draining {
                        hard_deadline: Some(now + limits.header_read_timeout),
                    };
                    continue;
                }
                // A request is being served: the connection must move bytes now and then. A
                // handler's own work is bounded elsewhere (upstream, body and hash timeouts).
                Phase::Serving if activity.in_flight() > 0 => {
                    let stalled_at = activity.last_progress() + limits.idle_timeout;
                    if stalled_at <= now {
                        return;
                    }
                    stalled_at
                }
                Phase::Serving => {
                    // Before its first request a connection gets the header timeout: a client
                    // that connects and sends nothing (or too little to tell HTTP/1 from
                    // HTTP/2) is dropped. After it, the idle timeout.
                    let quiet_limit = if activity.requests_seen() == 0 {
                        limits.header_read_timeout
                    } else {
                        limits.idle_timeout
                    };
                    let idle_at = activity.quiet_since() + quiet_limit;
                    if idle_at <= now {
                        connection.as_mut().graceful_shutdown();
                        phase = Phase::Draining {
                            hard_deadline: Some(now + limits.header_read_timeout),
                        };
                        continue;
                    }
                    idle_at
                }
                // Closing for being idle (or on request): an answer the client never reads
                // must not hold the connection open, so the close has a deadline of its own.
                Phase::Draining {
                    hard_deadline: Some(deadline),
                } => {
                    if deadline <= now {
                        return;
                    }
                    deadline
                }
                // Closing for shutdown: `--shutdown-timeout` bounds the drain as a whole.
                Phase::Draining {
                    hard_deadline: None,
                } => now + step,
            };
            let next_look = next_look.min(now + step);
            tokio::select! {
                _ = connection.as_mut() => return,
                _ = stop.wait_for(|stop| *stop), if matches!(phase, Phase::Serving) => {
                    connection.as_mut().graceful_shutdown();
                    phase = Phase::Draining { hard_deadline: None };
                }
                () = activity.wake.notified() => {}
                () = tokio::time::sleep_until(next_look.into()) => {}
            }
        }
    }
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy)]
enum Phase {
    Serving,
    /// Told to close (GOAWAY on HTTP/2, `Connection: close` on HTTP/1); requests in flight
    /// finish. Dropped at `hard_deadline` if it has not closed by then.
    Draining {
        hard_deadline: Option<Instant>,
    },
}

/// What the connection's timers need to know about its requests and its bytes.
struct Activity {
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
    fn new() -> Self {
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

    fn request_started(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.requests.fetch_add(1, Ordering::SeqCst);
        InFlight(Arc::clone(self))
    }

    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    fn requests_seen(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    /// Since when nothing has been served: the connection's start, or the last answer.
    fn quiet_since(&self) -> Instant {
        self.started + Duration::from_millis(self.last_finished_ms.load(Ordering::SeqCst))
    }

    fn last_progress(&self) -> Instant {
        self.started + Duration::from_millis(self.last_progress_ms.load(Ordering::SeqCst))
    }

    fn close_requested(&self) -> bool {
        self.close_requested.load(Ordering::SeqCst)
    }
}

/// A request being served on a connection; dropping it marks the request done.
struct InFlight(Arc<Activity>);

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
pub struct ConnectionControl(Arc<Activity>);

impl ConnectionControl {
    /// Closes the connection once the answers in flight are out: GOAWAY on HTTP/2, where a
    /// `Connection: close` header is not allowed and would be dropped.
    pub fn close_after_answer(&self) {
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
struct Tracked<I> {
    inner: I,
    activity: Arc<Activity>,
}

impl<I> Tracked<I> {
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

/// Counts open connections, in all and per address.
#[derive(Clone)]
struct Admission {
    state: Arc<Mutex<AdmissionState>>,
    max_connections: usize,
    max_per_ip: usize,
    exempt: Arc<Vec<IpNet>>,
}

#[derive(Default)]
struct AdmissionState {
    open: usize,
    per_ip: HashMap<IpAddr, usize>,
}

impl Admission {
    fn new(limits: &ConnectionLimits) -> Self {
        Self {
            state: Arc::default(),
            max_connections: limits.max_connections.max(1),
            max_per_ip: limits.max_connections_per_ip,
            exempt: Arc::new(limits.trusted_proxies.clone()),
        }
    }

    /// A slot for a connection from `peer`, or `None` over a limit.
    fn admit(&self, peer: IpAddr) -> Option<ConnectionSlot> {
        let key = crate::ratelimit::subscriber_network(peer);
        // A dual-stack listener sees IPv4 peers as `::ffff:a.b.c.d`; proxies are configured as IPv4.
        let canonical = peer.to_canonical();
        let limited =
            self.max_per_ip > 0 && !self.exempt.iter().any(|net| net.contains(&canonical));
        let mut state = self.lock();
        if state.open >= self.max_connections {
            drop(state);
            refused("total");
            return None;
        }
        let from_peer = state.per_ip.entry(key).or_insert(0);
        if limited && *from_peer >= self.max_per_ip {
            drop(state);
            refused("per_ip");
            return None;
        }
        *from_peer += 1;
        state.open += 1;
        metrics::gauge!(crate::metrics::OPEN_CONNECTIONS).set(state.open as f64);
        Some(ConnectionSlot {
            admission: self.clone(),
            key,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AdmissionState> {
        // Each update is one step on plain counters: valid after any panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn refused(reason: &'static str) {
    metrics::counter!(crate::metrics::REFUSED_CONNECTIONS, "reason" => reason).increment(1);
}

/// An admitted connection; dropping it frees its place.
struct ConnectionSlot {
    admission: Admission,
    key: IpAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut state = self.admission.lock();
        state.open = state.open.saturating_sub(1);
        if let Some(count) = state.per_ip.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                state.per_ip.remove(&self.key);
            }
        }
        metrics::gauge!(crate::metrics::OPEN_CONNECTIONS).set(state.open as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_connections: usize, per_ip: usize) -> ConnectionLimits {
        ConnectionLimits {
            max_connections,
            max_connections_per_ip: per_ip,
            header_read_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
            http2_max_concurrent_streams: 8,
            http2_max_pending_accept_reset_streams: 8,
            http2_keep_alive_interval: Duration::from_secs(1),
            trusted_proxies: vec!["10.0.0.0/8".parse().expect("cidr")],
        }
    }

    #[test]
    fn connections_are_admitted_up_to_the_per_address_limit_and_freed_on_drop() {
        let admission = Admission::new(&limits(100, 2));
        let peer: IpAddr = "192.0.2.1".parse().expect("ip");
        let first = admission.admit(peer).expect("first");
        let _second = admission.admit(peer).expect("second");
        assert!(admission.admit(peer).is_none(), "third over the limit");
        assert!(admission.admit("192.0.2.2".parse().expect("ip")).is_some());
        drop(first);
        assert!(admission.admit(peer).is_some(), "a freed place is reused");
    }

    #[test]
    fn an_ipv6_client_is_one_address_per_64() {
        let admission = Admission::new(&limits(100, 1));
        let _held = admission
            .admit("2001:db8::1".parse().expect("ip"))
            .expect("first");
        assert!(
            admission
                .admit("2001:db8::2".parse().expect("ip"))
                .is_none()
        );
        assert!(
            admission
                .admit("2001:db8:0:1::1".parse().expect("ip"))
                .is_some()
        );
    }

    #[test]
    fn trusted_proxies_are_exempt_from_the_per_address_limit_but_not_the_total() {
        let admission = Admission::new(&limits(3, 1));
        let proxy: IpAddr = "10.1.2.3".parse().expect("ip");
        let held: Vec<_> = (0..3)
            .map(|_| admission.admit(proxy).expect("exempt"))
            .collect();
        assert!(admission.admit(proxy).is_none(), "the total still holds");
        drop(held);
        assert_eq!(admission.lock().open, 0);
        assert!(
            admission.lock().per_ip.is_empty(),
            "no entry outlives its connections"
        );
    }
}
