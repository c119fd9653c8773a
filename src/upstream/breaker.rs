//! A circuit breaker in front of the upstream.
//!
//! When b.well is failing (5xx, garbage, timeouts, refused connections), every request that still
//! goes through waits out its timeout and adds load to a struggling service. After
//! `failure_threshold` consecutive failures the breaker opens: calls fail fast with
//! `UPSTREAM_UNAVAILABLE` for `cooldown`, then one probe is let through; its success closes the
//! breaker, its failure opens it again. Answers that are about the caller (401, 403, 429, bad
//! input) never count: random tokens must not be able to open the breaker for everyone.
//!
//! Hand-written rather than taken from a crate: it is a few dozen lines over a mutex, and the
//! crates that offer one bring their own retry and backoff machinery that a non-idempotent
//! mutation must not use.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        consecutive_failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe is in flight; everyone else fails fast until it reports.
    HalfOpen,
}

#[derive(Debug)]
pub(crate) struct CircuitBreaker {
    state: Mutex<State>,
    failure_threshold: u32,
    cooldown: Duration,
}

/// Permission to call the upstream; report the outcome with [`CircuitBreaker::record`].
#[derive(Debug)]
#[must_use]
pub(crate) struct Permit(());

impl CircuitBreaker {
    pub(crate) fn new(failure_threshold: u32, cooldown: Duration) -> Self {
        Self {
            state: Mutex::new(State::Closed {
                consecutive_failures: 0,
            }),
            failure_threshold: failure_threshold.max(1),
            cooldown,
        }
    }

    /// `Some` if the call may go ahead.
    pub(crate) fn try_acquire(&self) -> Option<Permit> {
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => Some(Permit(())),
            State::Open { until } if Instant::now() >= until => {
                *state = State::HalfOpen;
                publish(&state);
                Some(Permit(()))
            }
            State::Open { .. } | State::HalfOpen => None,
        }
    }

    /// Reports how the permitted call went.
    pub(crate) fn record(&self, _permit: Permit, outcome: &Result<(), Error>) {
        let failed = matches!(
            outcome,
            Err(Error::Timeout | Error::Unavailable | Error::BadAnswer(_))
        );
        let mut state = self.lock();
        *state = match (*state, failed) {
            (_, false) => State::Closed {
                consecutive_failures: 0,
            },
            (
                State::Closed {
                    consecutive_failures,
                },
                true,
            ) if consecutive_failures + 1 < self.failure_threshold => State::Closed {
                consecutive_failures: consecutive_failures + 1,
            },
            (_, true) => {
                tracing::warn!(
                    cooldown_ms = self.cooldown.as_millis() as u64,
                    "upstream circuit breaker open"
                );
                State::Open {
                    until: Instant::now() + self.cooldown,
                }
            }
        };
        publish(&state);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the state half-written (it is Copy),
        // so a poisoned lock is safe to use.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// `shl_gateway_upstream_breaker_state`: 0 closed, 1 half-open, 2 open.
fn publish(state: &State) {
    let value = match state {
        State::Closed { .. } => 0.0,
        State::HalfOpen => 1.0,
        State::Open { .. } => 2.0,
    };
    metrics::gauge!(crate::metrics::UPSTREAM_BREAKER_STATE).set(value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail(breaker: &CircuitBreaker, error: Error) {
        let permit = breaker.try_acquire().expect("permitted");
        breaker.record(permit, &Err(error));
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_then_probes_after_the_cooldown() {
        let breaker = CircuitBreaker::new(3, Duration::from_secs(30));
        fail(&breaker, Error::Timeout);
        fail(&breaker, Error::Unavailable);
        fail(&breaker, Error::BadAnswer("server error status"));
        assert!(breaker.try_acquire().is_none(), "open");

        tokio::time::advance(Duration::from_secs(31)).await;
        let probe = breaker.try_acquire().expect("one probe after the cooldown");
        assert!(breaker.try_acquire().is_none(), "only one probe at a time");
        breaker.record(probe, &Ok(()));
        assert!(breaker.try_acquire().is_some(), "closed again");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_opens_it_again() {
        let breaker = CircuitBreaker::new(1, Duration::from_secs(10));
        fail(&breaker, Error::Timeout);
        tokio::time::advance(Duration::from_secs(11)).await;
        fail(&breaker, Error::Timeout);
        assert!(breaker.try_acquire().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn caller_errors_never_count() {
        let breaker = CircuitBreaker::new(2, Duration::from_secs(10));
        for _ in 0..10 {
            fail(&breaker, Error::Unauthenticated);
            fail(&breaker, Error::Forbidden);
            fail(
                &breaker,
                Error::RateLimited {
                    retry_after_seconds: 1,
                },
            );
            fail(&breaker, Error::RejectedInput);
        }
        assert!(breaker.try_acquire().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_resets_the_count() {
        let breaker = CircuitBreaker::new(2, Duration::from_secs(10));
        fail(&breaker, Error::Timeout);
        let permit = breaker.try_acquire().expect("closed");
        breaker.record(permit, &Ok(()));
        fail(&breaker, Error::Timeout);
        assert!(
            breaker.try_acquire().is_some(),
            "one failure since the success"
        );
    }
}
