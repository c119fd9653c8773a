//! Rate limits for guessable secrets and record disclosure, shared across replicas.
//!
//! A six-digit passcode carries about 20 bits: with no limit, a million guesses open any link.
//! Creating a link discloses health records, so it is limited too. This module is the mechanism
//! only; the HTTP and GraphQL layers decide which quotas apply to what, and how a refusal is told.
//!
//! # What is limited, and by what key
//!
//! Limits are charged per **GraphQL field execution** where a field is what costs: one request can
//! carry many aliased `createHealthLink` fields, and a per-request limit would let each of them
//! disclose for free. The key is the client address (by [`ip_key()`]), the
//! caller (an HMAC of the bearer token) or the thing attacked (a link), and often two of them: a
//! per-address quota slows one client down, a per-link quota bounds the guesses against one
//! passcode whatever the number of addresses. `policy.rs` has the table of which quota is charged
//! for what.
//!
//! # Why GCRA
//!
//! The generic cell rate algorithm keeps one number per key, the theoretical arrival time (TAT)
//! of the next request, and updates it in one compare-and-set (in process) or one script step
//! (Redis). It gives exactly `burst` requests at once and then one every `period / burst`, with no
//! window boundary at which a client could spend two bursts back to back (a fixed window's flaw),
//! and it knows exactly how long a refused client must wait, which becomes `Retry-After`.
//! A charge of `cost` cells is all or nothing: a refused request leaves the key as it was, so
//! hammering a closed door does not push the reopening further out and a client that waits the
//! `Retry-After` it was given is served.
//!
//! Both stores run the same arithmetic on whole microseconds (the emission interval is
//! `period / burst` rounded down to a microsecond), so a quota means the same thing in memory
//! and in Redis.
//!
//! # Stores
//!
//! - [`InProcessQuotas`]: governor's keyed GCRA, one limiter per quota, memory bounded by a hard
//!   cap on keys per quota. At the cap it forgets the half of its keys that owe the least, not all
//!   of them (a flood of made-up keys would otherwise reset the key under attack) and not new
//!   ones (a flood would then lock every newcomer out); `in_process.rs` argues it in full.
//! - [`RedisQuotas`]: one Lua script step per check, so N replicas enforce one quota together.
//!   Time comes from the Redis server (`TIME`), not from the replicas: the TAT is a point in
//!   time, and replicas whose clocks disagree by a second would otherwise hand out a second's
//!   worth of extra requests (or refuse a second too long). Every call is bounded by a timeout.
//! - [`SharedQuotas`]: Redis first; when Redis cannot answer, [`RedisFailurePolicy`] decides
//!   between refusing (an error the caller maps to `OVERLOADED`) and answering from memory.
//!
//! # Errors and refusals
//!
//! A [`Decision::Refused`] is the client's doing and becomes `RATE_LIMITED` with
//! [`Decision::retry_after_seconds`]. A [`QuotaError`] is not: `Unavailable` means the store could
//! not decide (map it to `OVERLOADED`: telling a client "retry in 1 s" when the limiter is down
//! would be a lie that invites it to hammer), and `CostOutOfRange` means a request asked for more
//! cells than the bucket can ever hold (map it to `BAD_USER_INPUT`: no `Retry-After` would ever
//! be honoured, so a refusal with one would send the client into a retry loop). `InvalidQuota`
//! and `InvalidRedisUrl` are configuration mistakes: `INTERNAL_SERVER_ERROR` at check time,
//! a refusal to start at startup.
//!
//! # Metrics
//!
//! Names in `crate::metrics` (`RATELIMIT_*`). Every label comes from a fixed set: quota names are
//! `&'static str` constants, never client input, and keys (addresses) never reach a label.
//!
//! # Wiring
//!
//! The quotas come from the command line (`--link-quota-per-caller` and the others, as
//! [`QuotaSpecs`]). `startup.rs` builds the store once (`SharedQuotas` when a Redis URL is
//! configured, else `InProcessQuotas`, behind `Arc<dyn QuotaStore>`; the in-process store's
//! housekeeping runs for the life of the server) and hands it to one [`RatePolicy`]. The HTTP
//! layer decides the client address once per request (the socket peer, or `X-Forwarded-For`
//! from a trusted proxy, by `http::client_ip`); the request middleware, the SHL handlers and the
//! `createHealthLink` resolver then call the policy's `charge_request`, `charge_shl` and
//! `charge_link_creation` before doing the work.

mod address;
mod in_process;
mod policy;
mod redis;
mod shared;

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::metrics::RATELIMIT_DECISIONS;

pub use address::ip_key;
pub(crate) use address::subscriber_network;
pub use in_process::InProcessQuotas;
pub use policy::{QuotaSpec, QuotaSpecs, RatePolicy};
pub(crate) use redis::RedisQuotas;
pub use shared::RedisFailurePolicy;
pub(crate) use shared::SharedQuotas;

/// A GCRA quota: `burst` requests at once, refilled at `burst` per `period` (i.e. one every
/// `period / burst`).
///
/// The name identifies the quota in metrics and in Redis keys: two quotas must not share a name.
#[derive(Debug, Clone)]
pub struct Quota {
    pub(crate) name: &'static str,
    pub(crate) burst: u32,
    pub(crate) period: Duration,
}

impl Quota {
    pub const fn new(name: &'static str, burst: u32, period: Duration) -> Self {
        Self {
            name,
            burst,
            period,
        }
    }
}

/// What a store answered for one charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Charged; `remaining` more cells would be allowed right now.
    Allowed { remaining: u32 },
    /// Nothing charged; the same charge fits after `retry_after`.
    Refused { retry_after: Duration },
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allowed { .. })
    }

    /// Retry-After in whole seconds, rounded up, never 0 (`None` when allowed).
    ///
    /// Rounding down would tell a client to come back a fraction of a second early, be refused
    /// again, and 0 would invite a tight retry loop.
    pub(crate) fn retry_after_seconds(&self) -> Option<u64> {
        match self {
            Decision::Allowed { .. } => None,
            Decision::Refused { retry_after } => {
                let whole = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                Some(whole.max(1))
            }
        }
    }
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum QuotaError {
    /// The store could not decide in time (Redis down, slow, or answering nonsense).
    #[error("quota store unavailable")]
    Unavailable,
    /// The charge can never fit: `cost` is 0 or above the quota's burst. Nothing was charged.
    #[error("cost {cost} is outside 1..={burst} for quota {quota}")]
    CostOutOfRange {
        quota: &'static str,
        cost: u32,
        burst: u32,
    },
    /// The quota itself is unusable (a configuration mistake, caught on first use).
    #[error("quota {quota} is invalid: {reason}")]
    InvalidQuota {
        quota: &'static str,
        reason: &'static str,
    },
    /// The Redis URL does not parse. The URL is not repeated: it may hold a password.
    #[error("invalid Redis URL")]
    InvalidRedisUrl,
}

#[async_trait::async_trait]
pub trait QuotaStore: Send + Sync + std::fmt::Debug {
    /// Charges `cost` (>= 1) cells against `key` under `quota`, all or nothing: if the whole cost
    /// does not fit, nothing is charged and the answer is `Refused` with the wait until it would
    /// fit.
    ///
    /// A cost of 0 or above `quota.burst` can never be served and is
    /// `Err(QuotaError::CostOutOfRange)`, not a refusal: no wait would make it fit, and a
    /// `Retry-After` would only start a retry loop. It is checked before any store is asked, so
    /// every store answers it the same way, and it charges nothing.
    async fn check(&self, quota: &Quota, key: &str, cost: u32) -> Result<Decision, QuotaError>;
}

/// Longest period accepted. Redis' Lua numbers are doubles: microsecond timestamps plus a period
/// stay exact integers (below 2^53) only while the period stays far below a few centuries; a year
/// is far more than any rate limit needs.
const MAX_PERIOD: Duration = Duration::from_secs(366 * 24 * 3600);

/// The GCRA parameters of a validated quota and charge, shared by both stores so that they agree
/// to the microsecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Gcra {
    /// The emission interval `period / burst`, whole microseconds.
    interval_us: u64,
    burst: NonZeroU32,
    cost: NonZeroU32,
}

impl Gcra {
    fn new(quota: &Quota, cost: u32) -> Result<Self, QuotaError> {
        let invalid = |reason| QuotaError::InvalidQuota {
            quota: quota.name,
            reason,
        };
        let burst = NonZeroU32::new(quota.burst).ok_or(invalid("burst must be at least 1"))?;
        if quota.period > MAX_PERIOD {
            return Err(invalid("period must be at most a year"));
        }
        // Microseconds of at most a year fit u64 with room to spare.
        let period_us = u64::try_from(quota.period.as_micros()).unwrap_or(u64::MAX);
        let interval_us = period_us / u64::from(burst.get());
        if interval_us == 0 {
            return Err(invalid("more than one request per microsecond"));
        }
        let cost = NonZeroU32::new(cost).filter(|cost| *cost <= burst).ok_or(
            QuotaError::CostOutOfRange {
                quota: quota.name,
                cost,
                burst: burst.get(),
            },
        )?;
        Ok(Self {
            interval_us,
            burst,
            cost,
        })
    }

    fn interval(&self) -> Duration {
        Duration::from_micros(self.interval_us)
    }
}

/// Counts one answer; both stores call it so the counter means the same whichever answered.
fn record_decision(quota: &'static str, decision: &Decision) {
    let label = if decision.is_allowed() {
        "allowed"
    } else {
        "refused"
    };
    metrics::counter!(RATELIMIT_DECISIONS, "quota" => quota, "decision" => label).increment(1);
}

/// At most one warning per this interval; the others are counted into the next one.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Lets one warning through per interval and counts the rest, so a Redis outage or a key flood
/// under load writes a line every few seconds, not one per request.
#[derive(Debug)]
struct WarnThrottle {
    every: Duration,
    next: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

impl WarnThrottle {
    fn new() -> Self {
        Self::every(WARN_EVERY)
    }

    fn every(every: Duration) -> Self {
        Self {
            every,
            next: Mutex::new(None),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(n)`: write the line now, `n` having been suppressed since the previous one.
    fn admit(&self) -> Option<u64> {
        let now = Instant::now();
        let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
        match *next {
            Some(at) if now < at => {
                self.suppressed.fetch_add(1, Ordering::Relaxed);
                None
            }
            _ => {
                *next = Some(now + self.every);
                Some(self.suppressed.swap(0, Ordering::Relaxed))
            }
        }
    }
}

#[cfg(test)]
mod tests;
