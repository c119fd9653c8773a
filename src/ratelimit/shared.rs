//! Redis first, and a stated policy for when Redis cannot answer.

use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;

use super::{Decision, InProcessQuotas, Quota, QuotaError, QuotaStore, RedisQuotas};

/// What [`SharedQuotas`] does when Redis cannot answer in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RedisFailurePolicy {
    /// Answer `Err(QuotaError::Unavailable)`: the limited fields fail (`OVERLOADED`) until Redis
    /// is back. For deployments where a limit that holds only per replica is not acceptable.
    FailClosed,
    /// Answer from this replica's memory: every limit still holds, but per replica, so during the
    /// outage N replicas allow up to N times a quota between them. The default: an outage of the
    /// limiter's store then degrades the limits, not the service.
    #[default]
    FallBackToInProcess,
}

/// Quotas shared through Redis, with a fallback decided by [`RedisFailurePolicy`].
///
/// Never panics and never waits longer than the Redis timeout (plus an in-memory check).
#[derive(Debug)]
pub(crate) struct SharedQuotas {
    redis: RedisQuotas,
    fallback: InProcessQuotas,
    policy: RedisFailurePolicy,
    /// Whether the last answer came without Redis; the transitions are logged, not every call.
    degraded: AtomicBool,
}

impl SharedQuotas {
    pub(crate) fn new(
        redis: RedisQuotas,
        fallback: InProcessQuotas,
        policy: RedisFailurePolicy,
    ) -> Self {
        Self {
            redis,
            fallback,
            policy,
            degraded: AtomicBool::new(false),
        }
    }

    /// Whether Redis answers (for readiness; whether an outage should fail readiness depends on
    /// the policy, and is the caller's call).
    pub(crate) async fn ping(&self) -> bool {
        self.redis.ping().await
    }

    /// The in-process store; clone it into the task that runs its housekeeping.
    #[cfg(test)]
    pub(crate) fn fallback(&self) -> &InProcessQuotas {
        &self.fallback
    }

    fn note_degraded(&self, degraded: bool) {
        if self.degraded.swap(degraded, Ordering::Relaxed) == degraded {
            return;
        }
        if !degraded {
            tracing::info!("Redis for rate limits answers again; limits are shared again");
        } else if self.policy == RedisFailurePolicy::FailClosed {
            tracing::warn!(
                "Redis for rate limits unavailable; limited fields fail until it is back"
            );
        } else {
            tracing::warn!("Redis for rate limits unavailable; limits now hold per replica");
        }
    }
}

#[async_trait]
impl QuotaStore for SharedQuotas {
    async fn check(&self, quota: &Quota, key: &str, cost: u32) -> Result<Decision, QuotaError> {
        match self.redis.check(quota, key, cost).await {
            Err(QuotaError::Unavailable) => {
                self.note_degraded(true);
                match self.policy {
                    RedisFailurePolicy::FailClosed => Err(QuotaError::Unavailable),
                    RedisFailurePolicy::FallBackToInProcess => {
                        self.fallback.check(quota, key, cost).await
                    }
                }
            }
            Ok(decision) => {
                self.note_degraded(false);
                Ok(decision)
            }
            // Invalid quotas and costs: the same answer from any store, so no fallback.
            Err(other) => Err(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::ratelimit::tests::{redis_url_for_tests, unique_prefix};

    const TIMEOUT: Duration = Duration::from_millis(100);
    const QUOTA: Quota = Quota::new("test_shared", 3, Duration::from_secs(60));

    async fn unreachable(policy: RedisFailurePolicy) -> SharedQuotas {
        let redis = RedisQuotas::connect("redis://127.0.0.1:1/", unique_prefix(), TIMEOUT)
            .await
            .expect("well-formed");
        SharedQuotas::new(redis, InProcessQuotas::new(1000), policy)
    }

    #[tokio::test]
    async fn fail_closed_answers_unavailable_within_the_timeout() {
        let shared = unreachable(RedisFailurePolicy::FailClosed).await;
        let started = Instant::now();
        assert_eq!(
            shared.check(&QUOTA, "a", 1).await,
            Err(QuotaError::Unavailable)
        );
        assert!(started.elapsed() < TIMEOUT + Duration::from_millis(400));
        assert!(
            shared.fallback().is_empty(),
            "nothing was charged in memory"
        );
    }

    #[tokio::test]
    async fn fall_back_answers_from_memory_with_the_same_semantics() {
        let shared = unreachable(RedisFailurePolicy::FallBackToInProcess).await;
        for remaining in (0..3).rev() {
            assert_eq!(
                shared.check(&QUOTA, "a", 1).await,
                Ok(Decision::Allowed { remaining })
            );
        }
        let refused = shared.check(&QUOTA, "a", 1).await.expect("answered");
        assert_eq!(refused.retry_after_seconds(), Some(20));
        assert_eq!(shared.fallback().len(), 1);
    }

    #[tokio::test]
    async fn invalid_charges_are_not_retried_in_memory() {
        let shared = unreachable(RedisFailurePolicy::FallBackToInProcess).await;
        assert!(matches!(
            shared.check(&QUOTA, "a", 4).await,
            Err(QuotaError::CostOutOfRange { .. })
        ));
        assert!(shared.fallback().is_empty());
    }

    #[tokio::test]
    #[ignore = "needs Redis: set SHL_GATEWAY_TEST_REDIS_URL and run with `cargo test -- --include-ignored` (CI does)"]
    async fn with_redis_up_the_answer_is_redis_and_memory_stays_empty() {
        let url = redis_url_for_tests();
        let redis = RedisQuotas::connect(&url, unique_prefix(), Duration::from_secs(2))
            .await
            .expect("well-formed");
        assert!(
            redis.ping().await,
            "SHL_GATEWAY_TEST_REDIS_URL is set but Redis does not answer"
        );
        let shared = SharedQuotas::new(
            redis,
            InProcessQuotas::new(1000),
            RedisFailurePolicy::FallBackToInProcess,
        );
        assert_eq!(
            shared.check(&QUOTA, "a", 3).await,
            Ok(Decision::Allowed { remaining: 0 })
        );
        assert!(
            !shared
                .check(&QUOTA, "a", 1)
                .await
                .expect("answered")
                .is_allowed()
        );
        assert!(shared.fallback().is_empty());
        assert!(shared.ping().await);
    }
}
