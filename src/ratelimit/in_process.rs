//! Quotas held in this process: governor's keyed GCRA over a map whose size has a hard cap.
//!
//! # Memory
//!
//! Keys come from clients (addresses, link ids), so a flood of distinct keys must not grow the
//! map without bound. Two mechanisms:
//!
//! - [`InProcessQuotas::housekeeping`], run by the caller on an interval, drops the keys whose
//!   state is indistinguishable from a fresh one (governor's `retain_recent`) and gives the
//!   freed capacity back (`shrink_to_fit`). That alone keeps honest traffic small.
//! - A hard cap, `max_keys` per quota, checked whenever a new key arrives. It is what holds
//!   under a flood, when every key is recent.
//!
//! # What happens at the cap
//!
//! Refusing new keys at the cap would let anyone who can send a few hundred thousand distinct
//! keys lock out every new client. Clearing the quota's whole state is cheap, but it hands a
//! fresh bucket to the very key under attack: flood the per-link quota with made-up link ids and
//! the guesses against the real link start again from zero.
//!
//! So at the cap the quota forgets the half of its keys that owe the least: those whose TAT is
//! earliest, i.e. that spent the fewest cells lately (stale keys first, then keys that made one
//! request, which is what a flood of distinct keys consists of). A key an attacker has been
//! spending is in the other half and keeps its debt; to push it out, the attacker must hold
//! `max_keys / 2` keys each deeper in debt than it, which the per-address quotas make slow.
//!
//! The median TAT is estimated from a sample of the keys (the map iterates in hash order, so the
//! sample is unbiased), then one pass removes every key at or below it. The pass costs
//! O(`max_keys`) (5 to 15 ms for a million keys, optimized) and frees about `max_keys / 2` slots,
//! so it is amortized O(1) per new key. Keys tied at the median all go: when every key looks the
//! same, the quota is cleared, as none is more worth keeping than another. Should the sample
//! mislead and the pass free less than a quarter, the quota is cleared too, so the cap holds
//! whatever the keys look like.
//!
//! Keys are held as a 64-bit keyed hash of the key string: a fixed 16-byte entry however long the
//! key, and no allocation per check (about 40 bytes of memory per key held, all told). The hash
//! key is random per process, so nobody can aim two keys at one bucket; an accidental collision
//! (odds of about 3 in 10^8 at a million keys) makes two clients share a bucket, which is
//! stricter, never looser.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use dashmap::DashMap;
use governor::clock::{Clock, MonotonicClock};
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::ShrinkableKeyedStateStore;
use governor::state::{InMemoryState, NotKeyed, RateLimiter, StateStore};

use super::{Decision, Gcra, Quota, QuotaError, QuotaStore, WarnThrottle, record_decision};
use crate::metrics::{RATELIMIT_EVICTIONS, RATELIMIT_KEYS};

/// How many keys the cap eviction looks at to find the median TAT: enough for the median to be
/// within a few percent, few enough that the sample costs nothing next to the pass that follows.
const EVICTION_SAMPLE: usize = 1024;

/// In-process GCRA quotas, one keyed limiter per quota, created on first use.
///
/// Cloning is cheap and shares the state (so a housekeeping task can hold a clone). The clock is
/// a type parameter only so tests can drive time; production uses [`InProcessQuotas::new`].
pub struct InProcessQuotas<C: Clock = MonotonicClock> {
    inner: Arc<Inner<C>>,
}

struct Inner<C: Clock> {
    clock: C,
    max_keys: usize,
    hasher: RandomState,
    limiters: RwLock<HashMap<QuotaId, Arc<KeyedLimiter<C>>>>,
}

/// A quota is identified by all of its parameters, not its name alone: two quotas that share a
/// name by mistake then get separate state instead of one silently using the other's rate.
type QuotaId = (&'static str, u32, u64);

struct KeyedLimiter<C: Clock> {
    /// For the tests' count of keys per quota.
    #[cfg(test)]
    name: &'static str,
    cells: Cells,
    limiter: RateLimiter<u64, Cells, C, StateInformationMiddleware>,
}

impl<C: Clock> Clone for InProcessQuotas<C> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<C: Clock> std::fmt::Debug for InProcessQuotas<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessQuotas")
            .field("max_keys", &self.inner.max_keys)
            .field("keys", &self.len())
            .finish_non_exhaustive()
    }
}

impl InProcessQuotas {
    /// Quotas on the monotonic clock, holding at most `max_keys` keys per quota (at least 2).
    pub fn new(max_keys: usize) -> Self {
        Self::with_clock(max_keys, MonotonicClock)
    }
}

impl<C> InProcessQuotas<C>
where
    C: Clock + Clone,
{
    /// Quotas on the given clock (governor's `FakeRelativeClock` in tests).
    pub(crate) fn with_clock(max_keys: usize, clock: C) -> Self {
        Self {
            inner: Arc::new(Inner {
                clock,
                // Eviction keeps half: below 2 it would keep nothing and still be at the cap.
                max_keys: max_keys.max(2),
                hasher: RandomState::new(),
                limiters: RwLock::new(HashMap::new()),
            }),
        }
    }

    /// The synchronous form of [`QuotaStore::check`]: nothing here waits, so callers outside
    /// async code (or in a hot path that would rather not box a future) can use it directly.
    pub fn check_now(&self, quota: &Quota, key: &str, cost: u32) -> Result<Decision, QuotaError> {
        let gcra = Gcra::new(quota, cost)?;
        let keyed = self.limiter(quota, &gcra)?;
        let hashed = self.inner.hasher.hash_one(key);
        let decision = match keyed.limiter.check_key_n(&hashed, gcra.cost) {
            Ok(Ok(snapshot)) => Decision::Allowed {
                remaining: snapshot.remaining_burst_capacity(),
            },
            Ok(Err(not_until)) => Decision::Refused {
                retry_after: not_until.wait_time_from(self.inner.clock.now()),
            },
            // Gcra::new refused such costs already; kept as an error, not a panic.
            Err(_) => {
                return Err(QuotaError::CostOutOfRange {
                    quota: quota.name,
                    cost,
                    burst: quota.burst,
                });
            }
        };
        record_decision(quota.name, &decision);
        Ok(decision)
    }

    fn limiter(&self, quota: &Quota, gcra: &Gcra) -> Result<Arc<KeyedLimiter<C>>, QuotaError> {
        let id = (quota.name, gcra.burst.get(), gcra.interval_us);
        {
            let limiters = self
                .inner
                .limiters
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(keyed) = limiters.get(&id) {
                return Ok(Arc::clone(keyed));
            }
        }
        let governor_quota = governor::Quota::with_period(gcra.interval())
            .ok_or(QuotaError::InvalidQuota {
                quota: quota.name,
                reason: "zero emission interval",
            })?
            .allow_burst(gcra.burst);
        let mut limiters = self
            .inner
            .limiters
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let keyed = limiters.entry(id).or_insert_with(|| {
            let cells = Cells::new(quota.name, self.inner.max_keys);
            Arc::new(KeyedLimiter {
                #[cfg(test)]
                name: quota.name,
                limiter: RateLimiter::new(governor_quota, cells.clone(), self.inner.clock.clone()),
                cells,
            })
        });
        Ok(Arc::clone(keyed))
    }
}

impl<C: Clock> InProcessQuotas<C> {
    /// Drops keys whose state equals a fresh one and returns their memory; updates the keys
    /// gauge. Run it on an interval (every few seconds to a minute); it is also worth running
    /// after a flood. Cost: one pass over each quota's keys.
    pub(crate) fn housekeeping(&self) {
        for keyed in self.limiters() {
            keyed.limiter.retain_recent();
            keyed.limiter.shrink_to_fit();
            keyed.cells.report();
        }
    }

    /// Keys held, all quotas together.
    pub(crate) fn len(&self) -> usize {
        self.limiters().iter().map(|keyed| keyed.cells.len()).sum()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keys held for one quota name.
    #[cfg(test)]
    pub(crate) fn len_of(&self, quota_name: &str) -> usize {
        self.limiters()
            .iter()
            .filter(|keyed| keyed.name == quota_name)
            .map(|keyed| keyed.cells.len())
            .sum()
    }

    fn limiters(&self) -> Vec<Arc<KeyedLimiter<C>>> {
        let limiters = self
            .inner
            .limiters
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        limiters.values().cloned().collect()
    }
}

impl<C> InProcessQuotas<C>
where
    C: Clock + Send + Sync + 'static,
{
    /// Runs [`Self::housekeeping`] every `every` until the returned task is aborted (or the
    /// runtime stops). A pass over 100,000 keys takes about a millisecond.
    pub(crate) fn spawn_housekeeping(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let quotas = self.clone();
        tokio::spawn(async move {
            // A zero period would make tokio panic.
            let mut ticks = tokio::time::interval(every.max(Duration::from_millis(1)));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                quotas.housekeeping();
            }
        })
    }
}

#[async_trait]
impl<C> QuotaStore for InProcessQuotas<C>
where
    C: Clock + Clone + Send + Sync + 'static,
{
    async fn check(&self, quota: &Quota, key: &str, cost: u32) -> Result<Decision, QuotaError> {
        self.check_now(quota, key, cost)
    }
}

/// One quota's keyed state: governor's atomic cells in a concurrent map, capped.
///
/// governor's own `DashMapStateStore` cannot enforce a cap or tell how indebted a key is, so this
/// store implements governor's `StateStore` itself; the GCRA arithmetic stays governor's.
#[derive(Clone)]
struct Cells(Arc<CellMap>);

struct CellMap {
    name: &'static str,
    max_keys: usize,
    cells: DashMap<u64, InMemoryState>,
    /// One eviction at a time: two threads reaching the cap together must not both halve it.
    evicting: Mutex<()>,
    warnings: WarnThrottle,
}

impl Cells {
    fn new(name: &'static str, max_keys: usize) -> Self {
        Self(Arc::new(CellMap {
            name,
            max_keys,
            cells: DashMap::new(),
            evicting: Mutex::new(()),
            warnings: WarnThrottle::new(),
        }))
    }

    fn len(&self) -> usize {
        self.0.cells.len()
    }

    fn report(&self) {
        metrics::gauge!(RATELIMIT_KEYS, "quota" => self.0.name).set(self.0.cells.len() as f64);
    }

    /// Called before a new key is inserted. The cap can be overshot only by the threads that
    /// insert at the same instant, each by one key.
    fn make_room(&self) {
        let map = &self.0;
        if map.cells.len() < map.max_keys {
            return;
        }
        let _one_at_a_time = map.evicting.lock().unwrap_or_else(PoisonError::into_inner);
        if map.cells.len() < map.max_keys {
            return;
        }
        let mut sample: Vec<u64> = map
            .cells
            .iter()
            .take(EVICTION_SAMPLE)
            .map(|entry| tat_of(entry.value()))
            .collect();
        // Housekeeping may have emptied the map since the length was read.
        if sample.is_empty() {
            return;
        }
        let middle = sample.len() / 2;
        let (_, &mut median, _) = sample.select_nth_unstable(middle);
        map.cells.retain(|_, cell| tat_of(cell) > median);
        if map.cells.len() > map.max_keys - map.max_keys / 4 {
            map.cells.clear();
        }
        if let Some(suppressed) = map.warnings.admit() {
            tracing::warn!(
                quota = map.name,
                max_keys = map.max_keys,
                kept = map.cells.len(),
                suppressed,
                "rate-limit key cap reached; forgot the least indebted keys"
            );
        }
        metrics::counter!(RATELIMIT_EVICTIONS, "quota" => map.name).increment(1);
        self.report();
    }
}

/// The stored TAT in nanoseconds since the limiter's start (0: never charged). Read through
/// governor's own compare-and-set by declining to replace, since the cell offers no plain read.
fn tat_of(cell: &InMemoryState) -> u64 {
    let read = cell.measure_and_replace(&NotKeyed::NonKey, |tat| {
        Err::<((), Nanos), u64>(tat.map_or(0, u64::from))
    });
    match read {
        Err(tat) => tat,
        Ok(()) => 0,
    }
}

impl StateStore for Cells {
    type Key = u64;

    fn measure_and_replace<T, F, E>(&self, key: &u64, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        if let Some(cell) = self.0.cells.get(key) {
            return cell.measure_and_replace(&NotKeyed::NonKey, f);
        }
        self.make_room();
        let cell = self.0.cells.entry(*key).or_default();
        cell.measure_and_replace(&NotKeyed::NonKey, f)
    }
}

impl ShrinkableKeyedStateStore<u64> for Cells {
    fn retain_recent(&self, drop_below: Nanos) {
        let drop_below = u64::from(drop_below);
        self.0.cells.retain(|_, cell| tat_of(cell) > drop_below);
    }

    fn shrink_to_fit(&self) {
        self.0.cells.shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.0.cells.len()
    }

    fn is_empty(&self) -> bool {
        self.0.cells.is_empty()
    }
}

// The limiter only needs these to be `Debug` for its own derive; the map is not worth printing.
impl std::fmt::Debug for Cells {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cells")
            .field("quota", &self.0.name)
            .field("keys", &self.0.cells.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    const ONE_PER_SECOND_BURST_5: Quota = Quota::new("test_5_per_5s", 5, Duration::from_secs(5));

    fn quotas(max_keys: usize) -> (InProcessQuotas<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        (InProcessQuotas::with_clock(max_keys, clock.clone()), clock)
    }

    fn allowed(remaining: u32) -> Decision {
        Decision::Allowed { remaining }
    }

    fn refused(retry_after: Duration) -> Decision {
        Decision::Refused { retry_after }
    }

    fn check(store: &InProcessQuotas<FakeRelativeClock>, key: &str, cost: u32) -> Decision {
        store
            .check_now(&ONE_PER_SECOND_BURST_5, key, cost)
            .expect("a valid charge")
    }

    #[test]
    fn a_burst_is_allowed_then_refused_with_the_wait_for_one_cell() {
        let (store, clock) = quotas(1000);
        for remaining in (0..5).rev() {
            assert_eq!(check(&store, "a", 1), allowed(remaining));
        }
        assert_eq!(check(&store, "a", 1), refused(Duration::from_secs(1)));
        clock.advance(Duration::from_millis(400));
        assert_eq!(check(&store, "a", 1), refused(Duration::from_millis(600)));
    }

    #[test]
    fn cells_come_back_at_the_emission_interval() {
        let (store, clock) = quotas(1000);
        for _ in 0..5 {
            assert!(check(&store, "a", 1).is_allowed());
        }
        clock.advance(Duration::from_secs(1));
        assert_eq!(check(&store, "a", 1), allowed(0));
        assert!(!check(&store, "a", 1).is_allowed());
        clock.advance(Duration::from_secs(3));
        assert_eq!(check(&store, "a", 1), allowed(2));
        // A long rest refills to the burst, never beyond it.
        clock.advance(Duration::from_secs(3600));
        assert_eq!(check(&store, "a", 1), allowed(4));
    }

    #[test]
    fn a_cost_above_one_is_charged_all_or_nothing() {
        let (store, clock) = quotas(1000);
        assert_eq!(check(&store, "a", 3), allowed(2));
        // 3 more do not fit in 2: nothing is taken, and the wait is until 3 fit.
        assert_eq!(check(&store, "a", 3), refused(Duration::from_secs(1)));
        assert_eq!(check(&store, "a", 2), allowed(0));
        clock.advance(Duration::from_secs(2));
        assert_eq!(check(&store, "a", 3), refused(Duration::from_secs(1)));
        assert_eq!(check(&store, "a", 2), allowed(0));
    }

    #[test]
    fn a_refusal_charges_nothing() {
        let (store, clock) = quotas(1000);
        assert_eq!(check(&store, "a", 5), allowed(0));
        for _ in 0..100 {
            assert!(!check(&store, "a", 1).is_allowed());
        }
        clock.advance(Duration::from_secs(1));
        assert_eq!(check(&store, "a", 1), allowed(0));
    }

    #[test]
    fn a_cost_the_bucket_cannot_hold_is_an_error_and_charges_nothing() {
        let (store, _clock) = quotas(1000);
        assert_eq!(
            store.check_now(&ONE_PER_SECOND_BURST_5, "a", 6),
            Err(QuotaError::CostOutOfRange {
                quota: "test_5_per_5s",
                cost: 6,
                burst: 5
            })
        );
        assert!(matches!(
            store.check_now(&ONE_PER_SECOND_BURST_5, "a", 0),
            Err(QuotaError::CostOutOfRange { cost: 0, .. })
        ));
        assert_eq!(check(&store, "a", 5), allowed(0));
    }

    #[test]
    fn unusable_quotas_are_errors() {
        let (store, _clock) = quotas(1000);
        for quota in [
            Quota::new("no_burst", 0, Duration::from_secs(1)),
            Quota::new("too_fast", 10, Duration::from_micros(5)),
            Quota::new("too_long", 1, Duration::from_secs(400 * 24 * 3600)),
        ] {
            assert!(matches!(
                store.check_now(&quota, "a", 1),
                Err(QuotaError::InvalidQuota { .. })
            ));
        }
    }

    #[test]
    fn keys_are_independent() {
        let (store, _clock) = quotas(1000);
        assert_eq!(check(&store, "a", 5), allowed(0));
        assert!(!check(&store, "a", 1).is_allowed());
        assert_eq!(check(&store, "b", 1), allowed(4));
    }

    #[test]
    fn quotas_are_independent_even_on_the_same_key() {
        let (store, _clock) = quotas(1000);
        let other = Quota::new("test_other", 2, Duration::from_secs(60));
        assert_eq!(check(&store, "a", 5), allowed(0));
        assert_eq!(store.check_now(&other, "a", 1), Ok(allowed(1)));
        // Same name, other parameters: separate state rather than a silently wrong rate.
        let renamed = Quota::new("test_5_per_5s", 3, Duration::from_secs(5));
        assert_eq!(store.check_now(&renamed, "a", 1), Ok(allowed(2)));
        assert_eq!(store.len_of("test_other"), 1);
    }

    #[test]
    fn housekeeping_forgets_keys_that_are_as_good_as_new() {
        let (store, clock) = quotas(1000);
        for key in 0..100 {
            assert!(check(&store, &key.to_string(), 1).is_allowed());
        }
        assert_eq!(check(&store, "busy", 5), allowed(0));
        store.housekeeping();
        assert_eq!(store.len(), 101);
        // One cell refills in 1 s; governor keeps a key one more interval before calling it fresh.
        clock.advance(Duration::from_millis(2001));
        store.housekeeping();
        assert_eq!(store.len(), 1, "only the key still in debt stays");
        assert!(!check(&store, "busy", 3).is_allowed());
    }

    #[test]
    fn a_flood_of_distinct_keys_stays_under_the_cap() {
        const MAX_KEYS: usize = 10_000;
        let (store, clock) = quotas(MAX_KEYS);
        let mut peak = 0;
        for key in 0..100_000u32 {
            assert!(check(&store, &format!("flood-{key}"), 1).is_allowed());
            if key % 64 == 0 {
                clock.advance(Duration::from_micros(1));
            }
            peak = peak.max(store.len());
        }
        assert!(peak <= MAX_KEYS, "peak {peak} over the cap {MAX_KEYS}");
        assert!(store.len() >= MAX_KEYS / 4, "eviction kept {}", store.len());
    }

    #[test]
    fn a_flood_does_not_reset_the_key_under_attack() {
        const MAX_KEYS: usize = 1000;
        let (store, clock) = quotas(MAX_KEYS);
        assert_eq!(check(&store, "victim", 5), allowed(0));
        for key in 0..20 * MAX_KEYS {
            assert!(check(&store, &format!("flood-{key}"), 1).is_allowed());
            clock.advance(Duration::from_micros(10));
        }
        assert!(store.len() <= MAX_KEYS);
        // 0.2 s passed: the victim's bucket is still empty, not reset by the evictions.
        assert_eq!(
            check(&store, "victim", 1),
            refused(Duration::from_millis(800))
        );
    }

    #[test]
    fn keys_that_all_look_alike_are_cleared_at_the_cap() {
        // On a clock that never moves every flood key has the same TAT: no half is worth more.
        let (store, _clock) = quotas(100);
        for key in 0..1000 {
            assert!(check(&store, &format!("k{key}"), 1).is_allowed());
            assert!(store.len() <= 100);
        }
    }

    #[tokio::test]
    async fn the_trait_answers_like_the_synchronous_form() {
        let (store, _clock) = quotas(1000);
        let store: &dyn QuotaStore = &store;
        assert_eq!(
            store.check(&ONE_PER_SECOND_BURST_5, "a", 2).await,
            Ok(allowed(3))
        );
    }

    #[tokio::test]
    async fn the_housekeeping_task_runs_on_its_interval() {
        let (store, clock) = quotas(1000);
        for key in 0..10 {
            assert!(check(&store, &key.to_string(), 1).is_allowed());
        }
        clock.advance(Duration::from_secs(3));
        let task = store.spawn_housekeeping(Duration::from_millis(10));
        tokio::time::sleep(Duration::from_millis(50)).await;
        task.abort();
        assert!(store.is_empty());
    }

    #[test]
    fn clones_share_state() {
        let (store, _clock) = quotas(1000);
        let clone = store.clone();
        assert_eq!(check(&store, "a", 5), allowed(0));
        assert!(!check(&clone, "a", 1).is_allowed());
    }

    #[test]
    fn concurrent_checks_never_exceed_the_burst() {
        let (store, _clock) = quotas(1000);
        let quota = Quota::new("test_concurrent", 100, Duration::from_secs(3600));
        let allowed: usize = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        (0..100)
                            .filter(|_| {
                                store
                                    .check_now(&quota, "shared", 1)
                                    .expect("valid")
                                    .is_allowed()
                            })
                            .count()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|handle| handle.join().expect("no panic"))
                .sum()
        });
        assert_eq!(allowed, 100);
    }
}
