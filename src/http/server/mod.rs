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
//!
//! [`admission`] counts connections against their caps; [`activity`] is what each connection's
//! timer watches (requests in flight, bytes moving, a close asked for by a handler).

mod activity;
mod admission;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
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
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower::ServiceExt as _;

pub(crate) use activity::ConnectionControl;
use activity::{Activity, Tracked};
use admission::Admission;

/// Limits on connections, each with a flag (see `Config`).
#[derive(Debug, Clone)]
pub(crate) struct ConnectionLimits {
    /// Connections open at once, from everyone.
    pub(crate) max_connections: usize,
    /// Connections open at once from one address (0: no per-address limit).
    pub(crate) max_connections_per_ip: usize,
    /// Longest wait for a request's headers (and, on a new connection, the TLS handshake).
    pub(crate) header_read_timeout: Duration,
    /// A connection without a request in flight for this long is closed.
    pub(crate) idle_timeout: Duration,
    /// HTTP/2 streams one connection may have open at once.
    pub(crate) http2_max_concurrent_streams: u32,
    /// HTTP/2: streams a client may open and reset before the server sees them.
    pub(crate) http2_max_pending_accept_reset_streams: usize,
    /// HTTP/2 keep-alive ping interval; a ping unanswered for as long closes the connection.
    pub(crate) http2_keep_alive_interval: Duration,
    /// Peers exempt from the per-address limit (they forward for many clients).
    pub(crate) trusted_proxies: Vec<IpNet>,
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
pub(crate) async fn serve(
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
                    .insert(ConnectionControl::new(Arc::clone(&activity)));
                let request_in_flight = activity.request_started();
                let call = router.clone().oneshot(request.map(Body::new));
                async move {
                    let response = call.await;
                    drop(request_in_flight);
                    response
                }
            })
        };
        let io = Tracked::new(io, Arc::clone(&activity));
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
                () = activity.woken() => {}
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
