//! Tests shared by the stores: one table of checks that every store must answer the same way.

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

use governor::clock::FakeRelativeClock;

use super::*;
use crate::metrics::{
    RATELIMIT_DECISIONS, RATELIMIT_EVICTIONS, RATELIMIT_KEYS, RATELIMIT_STORE_ERRORS,
};

/// The Redis the tests may use. The tests that need one are `#[ignore]`d with that reason, so a
/// plain `cargo test` reports them as ignored; run (`--include-ignored`) without the variable,
/// or with a Redis that does not answer, they fail.
pub(crate) fn redis_url_for_tests() -> String {
    std::env::var("SHL_GATEWAY_TEST_REDIS_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
        .expect("this test needs SHL_GATEWAY_TEST_REDIS_URL")
}

/// A key prefix no other test or run shares, so concurrent runs on one Redis never meet.
pub(crate) fn unique_prefix() -> String {
    let random = RandomState::new().hash_one(std::time::SystemTime::now());
    format!("shl-gateway-test:{}:{random:016x}:", std::process::id())
}

#[test]
fn retry_after_seconds_rounds_up_and_is_never_zero() {
    let refused = |retry_after| Decision::Refused { retry_after };
    assert_eq!(
        Decision::Allowed { remaining: 3 }.retry_after_seconds(),
        None
    );
    assert_eq!(refused(Duration::ZERO).retry_after_seconds(), Some(1));
    assert_eq!(
        refused(Duration::from_micros(1)).retry_after_seconds(),
        Some(1)
    );
    assert_eq!(
        refused(Duration::from_secs(1)).retry_after_seconds(),
        Some(1)
    );
    assert_eq!(
        refused(Duration::from_millis(1001)).retry_after_seconds(),
        Some(2)
    );
    assert_eq!(
        refused(Duration::from_secs(90)).retry_after_seconds(),
        Some(90)
    );
}

#[test]
fn the_emission_interval_is_whole_microseconds() {
    let gcra = Gcra::new(&Quota::new("q", 3, Duration::from_secs(1)), 1).expect("valid");
    assert_eq!(gcra.interval_us, 333_333);
    let gcra = Gcra::new(&Quota::new("q", 5, Duration::from_secs(900)), 5).expect("valid");
    assert_eq!(gcra.interval(), Duration::from_secs(180));
}

#[test]
fn warnings_are_throttled_and_count_what_they_skipped() {
    let throttle = WarnThrottle::every(Duration::from_secs(3600));
    assert_eq!(throttle.admit(), Some(0));
    assert_eq!(throttle.admit(), None);
    assert_eq!(throttle.admit(), None);
    let throttle = WarnThrottle::every(Duration::ZERO);
    assert_eq!(throttle.admit(), Some(0));
    assert_eq!(throttle.admit(), Some(0));
}

#[derive(Debug, Clone, Copy)]
enum Expect {
    Allowed(u32),
    Refused(Duration),
    CostOutOfRange,
}

#[derive(Debug, Clone, Copy)]
enum Step {
    Check {
        key: &'static str,
        cost: u32,
        expect: Expect,
    },
    Wait(Duration),
}

const TABLE_QUOTA: Quota = Quota::new("test_table", 3, Duration::from_millis(600));

const fn check(key: &'static str, cost: u32, expect: Expect) -> Step {
    Step::Check { key, cost, expect }
}

const fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// Burst 3, one cell every 200 ms. Waits are placed so that on a real clock a late wake-up of
/// up to about 100 ms changes no decision and no `remaining`, only the waits, which are compared
/// with a tolerance.
const TABLE: &[Step] = &[
    check("a", 1, Expect::Allowed(2)),
    check("a", 1, Expect::Allowed(1)),
    check("a", 1, Expect::Allowed(0)),
    check("a", 1, Expect::Refused(ms(200))),
    check("a", 2, Expect::Refused(ms(400))),
    check("b", 1, Expect::Allowed(2)),
    check("a", 4, Expect::CostOutOfRange),
    check("a", 0, Expect::CostOutOfRange),
    Step::Wait(ms(250)),
    check("a", 1, Expect::Allowed(0)),
    check("a", 1, Expect::Refused(ms(150))),
    check("a", 3, Expect::Refused(ms(550))),
    Step::Wait(ms(1000)),
    check("a", 3, Expect::Allowed(0)),
    check("a", 1, Expect::Refused(ms(200))),
    check("b", 2, Expect::Allowed(1)),
];

enum Time {
    Fake(FakeRelativeClock),
    Real,
}

impl Time {
    async fn wait(&self, duration: Duration) {
        match self {
            Time::Fake(clock) => clock.advance(duration),
            Time::Real => tokio::time::sleep(duration).await,
        }
    }
}

/// Runs [`TABLE`]. On a real clock time only moves forward, so a refusal's wait can only be
/// shorter than the table's: by at most `tolerance`.
async fn run_table(store: &dyn QuotaStore, time: Time, tolerance: Duration) {
    for (index, step) in TABLE.iter().enumerate() {
        let (key, cost, expect) = match *step {
            Step::Wait(duration) => {
                time.wait(duration).await;
                continue;
            }
            Step::Check { key, cost, expect } => (key, cost, expect),
        };
        let answer = store.check(&TABLE_QUOTA, key, cost).await;
        let matches = match (expect, &answer) {
            (Expect::Allowed(want), Ok(Decision::Allowed { remaining })) => *remaining == want,
            (Expect::Refused(want), Ok(Decision::Refused { retry_after })) => {
                *retry_after <= want && want - *retry_after <= tolerance
            }
            (Expect::CostOutOfRange, Err(QuotaError::CostOutOfRange { .. })) => true,
            _ => false,
        };
        assert!(
            matches,
            "step {index} {step:?}: got {answer:?} from {store:?}"
        );
    }
}

#[tokio::test]
async fn in_process_on_a_fake_clock_answers_the_table_exactly() {
    let clock = FakeRelativeClock::default();
    let store = InProcessQuotas::with_clock(1000, clock.clone());
    run_table(&store, Time::Fake(clock), Duration::ZERO).await;
}

#[tokio::test]
async fn in_process_on_the_real_clock_answers_the_table() {
    run_table(&InProcessQuotas::new(1000), Time::Real, ms(100)).await;
}

#[tokio::test]
#[ignore = "needs Redis: set SHL_GATEWAY_TEST_REDIS_URL and run with `cargo test -- --include-ignored` (CI does)"]
async fn redis_answers_the_table_like_in_process() {
    let url = redis_url_for_tests();
    let store = RedisQuotas::connect(&url, unique_prefix(), Duration::from_secs(2))
        .await
        .expect("a well-formed test Redis URL");
    assert!(
        store.ping().await,
        "SHL_GATEWAY_TEST_REDIS_URL is set but Redis does not answer"
    );
    run_table(&store, Time::Real, ms(100)).await;
}

#[tokio::test]
async fn a_fallen_back_shared_store_answers_the_table() {
    // A 1 ms Redis timeout keeps the drift it adds to each check well inside the table's margins.
    let redis = RedisQuotas::connect("redis://127.0.0.1:1/", unique_prefix(), ms(1))
        .await
        .expect("well-formed");
    let shared = SharedQuotas::new(
        redis,
        InProcessQuotas::new(1000),
        RedisFailurePolicy::FallBackToInProcess,
    );
    run_table(&shared, Time::Real, ms(100)).await;
}

/// Renders what `run` records, as `/metrics` would show it.
fn recorded(run: impl FnOnce()) -> String {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, run);
    handle.render()
}

fn sample<'a>(rendered: &'a str, name: &str, labels: &[&str]) -> Option<&'a str> {
    rendered
        .lines()
        .find(|line| line.starts_with(name) && labels.iter().all(|label| line.contains(label)))
        .and_then(|line| line.rsplit(' ').next())
}

#[test]
fn decisions_keys_and_evictions_are_counted() {
    let rendered = recorded(|| {
        let store = InProcessQuotas::with_clock(4, FakeRelativeClock::default());
        let quota = Quota::new("test_metrics", 2, Duration::from_secs(60));
        for key in ["a", "a", "a", "b", "c", "d", "e"] {
            store.check_now(&quota, key, 1).expect("valid");
        }
        store.housekeeping();
    });
    let quota = r#"quota="test_metrics""#;
    let allowed = [quota, r#"decision="allowed""#];
    let refused = [quota, r#"decision="refused""#];
    assert_eq!(
        sample(&rendered, RATELIMIT_DECISIONS, &allowed),
        Some("6"),
        "{rendered}"
    );
    assert_eq!(sample(&rendered, RATELIMIT_DECISIONS, &refused), Some("1"));
    assert_eq!(sample(&rendered, RATELIMIT_EVICTIONS, &[quota]), Some("1"));
    assert!(sample(&rendered, RATELIMIT_KEYS, &[quota]).is_some());
}

#[test]
fn redis_failures_are_counted_by_cause() {
    let rendered = recorded(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let redis = RedisQuotas::connect("redis://127.0.0.1:1/", unique_prefix(), ms(20))
                .await
                .expect("well-formed");
            let quota = Quota::new("test_metrics_redis", 2, Duration::from_secs(60));
            assert_eq!(
                redis.check(&quota, "a", 1).await,
                Err(QuotaError::Unavailable)
            );
        });
    });
    // Timeout or connection, depending on where the reconnection backoff stands.
    let labels = [r#"quota="test_metrics_redis""#, r#"cause=""#];
    assert_eq!(
        sample(&rendered, RATELIMIT_STORE_ERRORS, &labels),
        Some("1"),
        "{rendered}"
    );
}
