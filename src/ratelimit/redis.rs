//! Quotas in Redis: one atomic Lua step per check, so every replica enforces the same quota.
//!
//! The script (`gcra.lua`, beside this file) reads the server's clock, so replicas need not agree
//! on the time. Each call is bounded by a timeout: a slow or vanished Redis turns into
//! [`QuotaError::Unavailable`] quickly, never into a request that hangs.
//!
//! The connection is a `ConnectionManager`, which reconnects by itself after errors that say the
//! connection is gone. A peer that vanishes silently (a failed-over host whose address now drops
//! packets) gives no such error, only timeouts, and TCP would take many minutes to notice; so after
//! [`STALE_AFTER`] without a single answer this store replaces the connection itself.
//!
//! A timeout can fire after Redis ran the script: the cell is then charged though the caller was
//! told `Unavailable`. That errs on the strict side, which is the right side for a rate limit.

use std::sync::{Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{Decision, Gcra, Quota, QuotaError, QuotaStore, WarnThrottle, record_decision};
use crate::metrics::RATELIMIT_STORE_ERRORS;

/// Without one answer for this long, the connection is presumed dead and replaced.
const STALE_AFTER: Duration = Duration::from_secs(3);

/// How long `connect` waits for the first connection before it returns anyway. Longer than a
/// check's timeout: a TLS handshake to a managed Redis may take more than 100 ms once.
const FIRST_CONNECTION_GRACE: Duration = Duration::from_secs(1);

/// GCRA quotas kept in Redis, shared by every replica that uses the same Redis and prefix.
pub(crate) struct RedisQuotas {
    client: redis::Client,
    connection: RwLock<Connection>,
    script: redis::Script,
    prefix: String,
    timeout: Duration,
    last_answer: Mutex<Instant>,
    stale_after: Duration,
    warnings: WarnThrottle,
}

struct Connection {
    manager: ConnectionManager,
    since: Instant,
}

impl std::fmt::Debug for RedisQuotas {
    // The client is left out: its connection info may hold a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQuotas")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Why a call failed, as the `cause` label of [`RATELIMIT_STORE_ERRORS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Timeout,
    Connection,
    Reply,
}

impl Failure {
    fn as_str(self) -> &'static str {
        match self {
            Failure::Timeout => "timeout",
            Failure::Connection => "connection",
            Failure::Reply => "reply",
        }
    }

    fn of(error: &redis::RedisError) -> Self {
        if error.is_timeout() {
            Failure::Timeout
        } else if error.is_io_error()
            || error.is_connection_dropped()
            || error.is_connection_refusal()
        {
            Failure::Connection
        } else {
            Failure::Reply
        }
    }
}

impl RedisQuotas {
    /// Prepares a store on the Redis at `url` (`redis://`, `rediss://` or `unix://`), its keys
    /// named `{prefix}{quota name}:{key}`, each call bounded by `timeout`.
    ///
    /// Only a malformed URL is an error. An unreachable Redis is not: the store is returned anyway
    /// (a warning is logged), checks answer `Unavailable` until Redis is back, and [`Self::ping`]
    /// tells readiness. So a replica can start while Redis restarts, and recovers without help.
    /// Must run inside a Tokio runtime.
    pub(crate) async fn connect(
        url: &str,
        prefix: String,
        timeout: Duration,
    ) -> Result<Self, QuotaError> {
        let client = redis::Client::open(url).map_err(|_| QuotaError::InvalidRedisUrl)?;
        let manager = lazy_manager(&client, timeout)?;
        let now = Instant::now();
        let store = Self {
            client,
            connection: RwLock::new(Connection {
                manager,
                since: now,
            }),
            script: redis::Script::new(include_str!("gcra.lua")),
            prefix,
            timeout,
            last_answer: Mutex::new(now),
            stale_after: STALE_AFTER,
            warnings: WarnThrottle::new(),
        };
        // Connects and loads the script now, so the first real check pays neither.
        let mut manager = store.manager();
        let invocation = store.script.prepare_invoke();
        let warm_up = invocation.load_async(&mut manager);
        match tokio::time::timeout(FIRST_CONNECTION_GRACE.max(timeout), warm_up).await {
            Ok(Ok(_)) => store.answered(),
            Ok(Err(error)) => tracing::warn!(
                cause = Failure::of(&error).as_str(),
                "Redis for rate limits not reachable at startup; retrying in the background"
            ),
            Err(_) => tracing::warn!(
                cause = Failure::Timeout.as_str(),
                "Redis for rate limits not reachable at startup; retrying in the background"
            ),
        }
        Ok(store)
    }

    /// Whether Redis answers a PING within the timeout (for readiness).
    pub(crate) async fn ping(&self) -> bool {
        let mut manager = self.manager();
        let command = redis::cmd("PING");
        let ping = command.query_async::<String>(&mut manager);
        match tokio::time::timeout(self.timeout, ping).await {
            Ok(Ok(_)) => {
                self.answered();
                true
            }
            Ok(Err(_)) => false,
            Err(_) => {
                self.replace_if_stale();
                false
            }
        }
    }

    fn manager(&self) -> ConnectionManager {
        let connection = self
            .connection
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        connection.manager.clone()
    }

    fn answered(&self) {
        *self
            .last_answer
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Instant::now();
    }

    /// Replaces a connection that has answered nothing for `stale_after`, at most once per
    /// `stale_after`, so a Redis that is merely overloaded is not also stormed with reconnects.
    fn replace_if_stale(&self) {
        let silent_for = self
            .last_answer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .elapsed();
        if silent_for < self.stale_after {
            return;
        }
        let mut connection = self
            .connection
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if connection.since.elapsed() < self.stale_after {
            return;
        }
        // Only a config error can fail here, and the config was accepted once already.
        if let Ok(manager) = lazy_manager(&self.client, self.timeout) {
            *connection = Connection {
                manager,
                since: Instant::now(),
            };
            tracing::warn!("Redis for rate limits silent; replaced the connection");
        }
    }

    fn failed(&self, quota: &'static str, failure: Failure) -> QuotaError {
        metrics::counter!(RATELIMIT_STORE_ERRORS, "quota" => quota, "cause" => failure.as_str())
            .increment(1);
        // The key is not logged: it is usually a client address.
        if let Some(suppressed) = self.warnings.admit() {
            tracing::warn!(
                quota,
                cause = failure.as_str(),
                suppressed,
                "Redis for rate limits failed to answer"
            );
        }
        if failure == Failure::Timeout {
            self.replace_if_stale();
        }
        QuotaError::Unavailable
    }

    #[cfg(test)]
    fn with_stale_after(mut self, stale_after: Duration) -> Self {
        self.stale_after = stale_after;
        self
    }
}

fn lazy_manager(
    client: &redis::Client,
    timeout: Duration,
) -> Result<ConnectionManager, QuotaError> {
    // Reconnection backs off, but never for longer than a second, so a Redis that comes back is
    // used again within about a second.
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(FIRST_CONNECTION_GRACE.max(timeout)))
        .set_response_timeout(Some(timeout))
        .set_max_delay(Duration::from_secs(1));
    client
        .get_connection_manager_lazy(config)
        .map_err(|_| QuotaError::InvalidRedisUrl)
}

#[async_trait]
impl QuotaStore for RedisQuotas {
    async fn check(&self, quota: &Quota, key: &str, cost: u32) -> Result<Decision, QuotaError> {
        let gcra = Gcra::new(quota, cost)?;
        let redis_key = format!("{}{}:{}", self.prefix, quota.name, key);
        let mut manager = self.manager();
        let mut invocation = self.script.key(&redis_key);
        invocation
            .arg(gcra.interval_us)
            .arg(gcra.burst.get())
            .arg(gcra.cost.get());
        let call = invocation.invoke_async::<(i64, i64)>(&mut manager);
        let decision = match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok((1, remaining))) => Decision::Allowed {
                remaining: u32::try_from(remaining.max(0)).unwrap_or(u32::MAX),
            },
            Ok(Ok((0, wait_us))) => Decision::Refused {
                retry_after: Duration::from_micros(u64::try_from(wait_us).unwrap_or(0)),
            },
            Ok(Ok(_)) => return Err(self.failed(quota.name, Failure::Reply)),
            Ok(Err(error)) => return Err(self.failed(quota.name, Failure::of(&error))),
            Err(_) => return Err(self.failed(quota.name, Failure::Timeout)),
        };
        self.answered();
        record_decision(quota.name, &decision);
        Ok(decision)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::net::TcpListener;

    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;
    use crate::ratelimit::tests::{redis_url_for_tests, unique_prefix};

    const TIMEOUT: Duration = Duration::from_millis(100);
    /// Scheduling on a loaded two-core CI machine: generous, the point is "not a hang".
    const SLACK: Duration = Duration::from_millis(400);

    #[tokio::test]
    async fn an_unreachable_redis_is_unavailable_within_the_timeout() {
        let store = RedisQuotas::connect("redis://127.0.0.1:1/", unique_prefix(), TIMEOUT)
            .await
            .expect("a well-formed URL is accepted even when nothing listens");
        let quota = Quota::new("test_unreachable", 5, Duration::from_secs(60));
        for _ in 0..3 {
            let started = Instant::now();
            assert_eq!(
                store.check(&quota, "a", 1).await,
                Err(QuotaError::Unavailable)
            );
            assert!(
                started.elapsed() < TIMEOUT + SLACK,
                "{:?}",
                started.elapsed()
            );
        }
        assert!(!store.ping().await);
    }

    #[tokio::test]
    async fn a_redis_that_accepts_and_never_answers_is_unavailable_within_the_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        // Accepts and never answers, like a Redis stuck in a long command.
        let silent = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let store = RedisQuotas::connect(&format!("redis://{address}/"), unique_prefix(), TIMEOUT)
            .await
            .expect("connect returns even when Redis is silent");
        let quota = Quota::new("test_silent", 5, Duration::from_secs(60));
        let started = Instant::now();
        assert_eq!(
            store.check(&quota, "a", 1).await,
            Err(QuotaError::Unavailable)
        );
        assert!(
            started.elapsed() < TIMEOUT + SLACK,
            "{:?}",
            started.elapsed()
        );
        silent.abort();
    }

    #[tokio::test]
    async fn a_malformed_url_is_an_error_that_does_not_repeat_it() {
        let error = RedisQuotas::connect("not a url :secret@", unique_prefix(), TIMEOUT)
            .await
            .expect_err("malformed");
        assert_eq!(error, QuotaError::InvalidRedisUrl);
        assert!(!error.to_string().contains("secret"));
    }

    #[tokio::test]
    async fn the_debug_form_leaves_the_url_out() {
        let store = RedisQuotas::connect("redis://:hunter2@127.0.0.1:1/", unique_prefix(), TIMEOUT)
            .await
            .expect("well-formed");
        assert!(!format!("{store:?}").contains("hunter2"));
    }

    async fn real_redis(prefix: &str) -> RedisQuotas {
        let url = redis_url_for_tests();
        let store = RedisQuotas::connect(&url, prefix.to_owned(), Duration::from_secs(2))
            .await
            .expect("a well-formed test Redis URL");
        assert!(
            store.ping().await,
            "SHL_GATEWAY_TEST_REDIS_URL is set but Redis does not answer"
        );
        store
    }

    #[tokio::test]
    #[ignore = "needs Redis: set SHL_GATEWAY_TEST_REDIS_URL and run with `cargo test -- --include-ignored` (CI does)"]
    async fn two_replicas_enforce_one_quota_together() {
        let prefix = unique_prefix();
        let (first, second) = (real_redis(&prefix).await, real_redis(&prefix).await);
        let replicas = [Arc::new(first), Arc::new(second)];
        let quota = Quota::new("test_replicas", 10, Duration::from_secs(60));
        let checks: Vec<_> = (0..20)
            .map(|i| {
                let replica = Arc::clone(&replicas[i % 2]);
                let quota = quota.clone();
                tokio::spawn(async move { replica.check(&quota, "shared", 1).await })
            })
            .collect();
        let mut allowed = 0;
        for check in checks {
            let decision = check.await.expect("task").expect("Redis answers");
            allowed += usize::from(decision.is_allowed());
        }
        assert_eq!(allowed, 10);
        // Both replicas see the same empty bucket afterwards.
        for replica in &replicas {
            assert!(
                !replica
                    .check(&quota, "shared", 1)
                    .await
                    .expect("answers")
                    .is_allowed()
            );
        }
    }

    #[tokio::test]
    #[ignore = "needs Redis: set SHL_GATEWAY_TEST_REDIS_URL and run with `cargo test -- --include-ignored` (CI does)"]
    async fn keys_live_under_the_prefix_and_expire_with_their_debt() {
        let prefix = unique_prefix();
        let store = real_redis(&prefix).await;
        let quota = Quota::new("test_ttl", 2, Duration::from_secs(4));
        assert_eq!(
            store.check(&quota, "a", 1).await,
            Ok(Decision::Allowed { remaining: 1 })
        );
        let mut connection = store.manager();
        let ttl_ms: i64 = redis::cmd("PTTL")
            .arg(format!("{prefix}test_ttl:a"))
            .query_async(&mut connection)
            .await
            .expect("PTTL");
        // One cell of a 2-per-4 s quota is 2 s of debt.
        assert!((1500..=2000).contains(&ttl_ms), "ttl {ttl_ms} ms");
    }

    #[tokio::test]
    #[ignore = "needs Redis: set SHL_GATEWAY_TEST_REDIS_URL and run with `cargo test -- --include-ignored` (CI does)"]
    async fn a_silent_connection_is_replaced_and_checks_recover() {
        let _reachable = real_redis(&unique_prefix()).await;
        let url = redis_url_for_tests();
        let client = redis::Client::open(url.as_str()).expect("a well-formed test Redis URL");
        let redis::ConnectionAddr::Tcp(host, port) = client.get_connection_info().addr().clone()
        else {
            panic!("this test needs a plain TCP Redis URL");
        };
        let upstream = format!("{host}:{port}");
        assert!(
            url.contains(&upstream),
            "this test needs an explicit host:port in the URL"
        );

        // A relay whose connections can be frozen: open, but passing no bytes, which is what a
        // peer that vanished without a reset looks like. Connections made later pass bytes.
        let epoch = Arc::new(AtomicU64::new(0));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let relay_url = url.replacen(
            &upstream,
            &listener.local_addr().expect("address").to_string(),
            1,
        );
        let relay_epoch = Arc::clone(&epoch);
        let relay = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    continue;
                };
                tokio::spawn(pipe(client, server, Arc::clone(&relay_epoch)));
            }
        });

        let store = RedisQuotas::connect(&relay_url, unique_prefix(), TIMEOUT)
            .await
            .expect("well-formed")
            .with_stale_after(Duration::from_millis(300));
        let quota = Quota::new("test_stale", 100, Duration::from_secs(60));
        assert!(store.check(&quota, "a", 1).await.is_ok());

        epoch.fetch_add(1, Ordering::SeqCst);
        assert_eq!(
            store.check(&quota, "a", 1).await,
            Err(QuotaError::Unavailable)
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
        // Silent for longer than stale_after: this timeout replaces the connection.
        assert_eq!(
            store.check(&quota, "a", 1).await,
            Err(QuotaError::Unavailable)
        );
        let started = Instant::now();
        let mut recovered = false;
        while started.elapsed() < Duration::from_secs(5) {
            if store.check(&quota, "a", 1).await.is_ok() {
                recovered = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(recovered, "no answer after replacing the connection");
        relay.abort();

        async fn pipe(
            client: tokio::net::TcpStream,
            server: tokio::net::TcpStream,
            epoch: Arc<AtomicU64>,
        ) {
            let born = epoch.load(Ordering::SeqCst);
            let mut buffer = [0u8; 4096];
            loop {
                let (from, to) = tokio::select! {
                    ready = client.readable() => { if ready.is_err() { return } (&client, &server) }
                    ready = server.readable() => { if ready.is_err() { return } (&server, &client) }
                };
                let n = match from.try_read(&mut buffer) {
                    Ok(0) => return,
                    Ok(n) => n,
                    Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Err(_) => return,
                };
                if epoch.load(Ordering::SeqCst) != born {
                    continue;
                }
                let mut bytes = &buffer[..n];
                while !bytes.is_empty() {
                    if to.writable().await.is_err() {
                        return;
                    }
                    match to.try_write(bytes) {
                        Ok(written) => bytes = &bytes[written..],
                        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(_) => return,
                    }
                }
            }
        }
    }
}
