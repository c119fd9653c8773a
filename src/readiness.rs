//! Readiness of the gateway's dependencies: bounded probes, and their transitions made visible.
//!
//! `/readyz` asks each dependency (audit sink, store, shared quotas) whether it can serve now.
//! Two rules make that answer useful to a load balancer:
//!
//! - A probe is bounded in time, and at most one per dependency runs at once ([`BoundedProbe`]):
//!   a hung disk or database makes `/readyz` answer 503 within [`PROBE_TIMEOUT`], never hang,
//!   and a flood of `/readyz` cannot pile up blocked threads or connections behind the hung one.
//!   A result is reused for [`PROBE_REUSE`], so probes cost the same however often they are asked.
//! - Each change of a dependency's state is logged once and exported as the gauge
//!   `shl_gateway_ready{component}` ([`Component`]): an operator sees when and what, without one
//!   log line per probe.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// Longest wait for one probe. Below the deployment's readiness `timeoutSeconds` (2 s), so the
/// orchestrator gets a 503 rather than a timeout of its own.
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a probe's result is reused.
pub(crate) const PROBE_REUSE: Duration = Duration::from_secs(1);

/// One dependency's last known state: a gauge always, a log line only when it changes.
#[derive(Debug)]
pub(crate) struct Component {
    name: &'static str,
    ready: AtomicBool,
}

impl Component {
    /// A component assumed ready: startup only succeeds once every dependency answered.
    pub(crate) const fn new(name: &'static str) -> Self {
        Self {
            name,
            ready: AtomicBool::new(true),
        }
    }

    /// Notes a probe's result. Returns whether the state changed (and so was logged).
    pub(crate) fn observe(&self, ready: bool) -> bool {
        ::metrics::gauge!(crate::metrics::READY, "component" => self.name).set(if ready {
            1.0
        } else {
            0.0
        });
        let changed = self.ready.swap(ready, Ordering::SeqCst) != ready;
        if changed {
            if ready {
                tracing::info!(component = self.name, "dependency ready again");
            } else {
                tracing::warn!(
                    component = self.name,
                    "dependency not ready; /readyz answers 503 until it is"
                );
            }
        }
        changed
    }

    #[cfg(test)]
    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

/// Runs one probe at a time, each bounded by a timeout, and reuses a fresh result.
///
/// The probe runs in a task of its own, which records its result when it ends. Callers who
/// arrive while it runs wait for that result, but never past the probe's deadline; once the
/// deadline has passed (a stuck `fdatasync`, a database that accepted the connection and went
/// silent) every caller answers "not ready" at once, and no second probe starts until the stuck
/// one ends, however many callers ask meanwhile.
#[derive(Debug)]
pub(crate) struct BoundedProbe {
    timeout: Duration,
    reuse: Duration,
    state: Arc<Mutex<ProbeState>>,
}

#[derive(Debug, Default)]
struct ProbeState {
    /// When the last probe ended, and its result.
    last: Option<(Instant, bool)>,
    /// The probe running now: when it started, and where its result will appear.
    running: Option<(Instant, watch::Receiver<Option<bool>>)>,
}

/// Marks the running probe as ended when dropped (normal end, panic or cancellation).
struct ClearRunning(Arc<Mutex<ProbeState>>);

impl Drop for ClearRunning {
    fn drop(&mut self) {
        lock(&self.0).running = None;
    }
}

impl Default for BoundedProbe {
    fn default() -> Self {
        Self::new(PROBE_TIMEOUT, PROBE_REUSE)
    }
}

impl BoundedProbe {
    pub(crate) fn new(timeout: Duration, reuse: Duration) -> Self {
        Self {
            timeout,
            reuse,
            state: Arc::default(),
        }
    }

    /// The result of a fresh probe, or a reused one; `false` when the probe fails, or has not
    /// answered within its timeout (this call's, or a stuck earlier one's).
    pub(crate) async fn check<F>(&self, probe: F) -> bool
    where
        F: Future<Output = bool> + Send + 'static,
    {
        let (started, mut result) = {
            let mut state = lock(&self.state);
            if let Some((at, ready)) = state.last
                && at.elapsed() < self.reuse
            {
                return ready;
            }
            match &state.running {
                Some((started, _)) if started.elapsed() >= self.timeout => return false,
                Some((started, result)) => (*started, result.clone()),
                None => {
                    let (publish, result) = watch::channel(None);
                    let started = Instant::now();
                    state.running = Some((started, result.clone()));
                    let shared = Arc::clone(&self.state);
                    tokio::spawn(async move {
                        // Cleared however the probe ends: a probe that panics must not leave
                        // "running" set, or every later check would answer not ready for ever.
                        let finished = ClearRunning(Arc::clone(&shared));
                        let ready = probe.await;
                        lock(&shared).last = Some((Instant::now(), ready));
                        drop(finished);
                        let _ = publish.send(Some(ready));
                    });
                    (started, result)
                }
            }
        };
        let deadline = tokio::time::Instant::from_std(started + self.timeout);
        match tokio::time::timeout_at(deadline, result.wait_for(Option::is_some)).await {
            Ok(Ok(ready)) => ready.unwrap_or(false),
            // Timed out, or the probe task panicked (its sender dropped).
            _ => false,
        }
    }

    /// Forgets the reused result, so the next check probes (after a failure seen elsewhere).
    pub(crate) fn invalidate(&self) {
        lock(&self.state).last = None;
    }
}

fn lock(state: &Mutex<ProbeState>) -> std::sync::MutexGuard<'_, ProbeState> {
    // Only plain assignments happen under this lock.
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// Counts the events a closure logs, per level, with a subscriber of its own.
    fn count_logs(f: impl FnOnce()) -> (usize, usize) {
        use tracing_subscriber::layer::SubscriberExt as _;

        #[derive(Clone, Default)]
        struct Counter(Arc<(AtomicUsize, AtomicUsize)>);
        impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Counter {
            fn on_event(
                &self,
                event: &tracing::Event<'_>,
                _: tracing_subscriber::layer::Context<'_, S>,
            ) {
                match *event.metadata().level() {
                    tracing::Level::WARN => self.0.0.fetch_add(1, Ordering::SeqCst),
                    tracing::Level::INFO => self.0.1.fetch_add(1, Ordering::SeqCst),
                    _ => 0,
                };
            }
        }
        let counter = Counter::default();
        let subscriber = tracing_subscriber::registry().with(counter.clone());
        tracing::subscriber::with_default(subscriber, f);
        (
            counter.0.0.load(Ordering::SeqCst),
            counter.0.1.load(Ordering::SeqCst),
        )
    }

    #[test]
    fn each_transition_is_logged_once_and_repeats_are_not() {
        let component = Component::new("audit");
        let (warnings, infos) = count_logs(|| {
            assert!(!component.observe(true), "ready at start: no change");
            assert!(component.observe(false));
            for _ in 0..10 {
                assert!(!component.observe(false));
            }
            assert!(!component.is_ready());
            assert!(component.observe(true));
            assert!(!component.observe(true));
            assert!(component.observe(false));
        });
        assert_eq!((warnings, infos), (2, 1));
    }

    #[test]
    fn the_gauge_follows_the_component() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let store = Component::new("store");
        let quotas = Component::new("quotas");
        let gauge_line = |text: &str, component: &str| {
            text.lines()
                .find(|line| {
                    line.starts_with(&format!(
                        "{}{{component=\"{component}\"}}",
                        crate::metrics::READY
                    ))
                })
                .map(str::to_owned)
        };
        metrics::with_local_recorder(&recorder, || {
            store.observe(false);
            quotas.observe(true);
        });
        let text = handle.render();
        assert!(
            gauge_line(&text, "store").is_some_and(|line| line.ends_with(" 0")),
            "{text}"
        );
        assert!(
            gauge_line(&text, "quotas").is_some_and(|line| line.ends_with(" 1")),
            "{text}"
        );
        metrics::with_local_recorder(&recorder, || store.observe(true));
        let text = handle.render();
        assert!(
            gauge_line(&text, "store").is_some_and(|line| line.ends_with(" 1")),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_hung_probe_answers_false_in_time_and_is_not_started_twice() {
        let probe = BoundedProbe::new(Duration::from_millis(100), Duration::ZERO);
        let started = Arc::new(AtomicUsize::new(0));
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let counter = Arc::clone(&started);
        let begun = Instant::now();
        let ready = probe
            .check(async move {
                counter.fetch_add(1, Ordering::SeqCst);
                let _ = released.await;
                true
            })
            .await;
        assert!(!ready, "timed out");
        assert!(begun.elapsed() < Duration::from_secs(2));
        for _ in 0..5 {
            let counter = Arc::clone(&started);
            let ready = probe
                .check(async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    true
                })
                .await;
            assert!(!ready, "still hung: last known state");
        }
        assert_eq!(
            started.load(Ordering::SeqCst),
            1,
            "no second probe while one hangs"
        );

        // Once the hung probe ends, the next check probes again.
        release.send(()).expect("still waiting");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(probe.check(async { true }).await);
    }

    #[tokio::test]
    async fn callers_during_a_probe_share_its_result() {
        let probe = Arc::new(BoundedProbe::new(Duration::from_secs(5), Duration::ZERO));
        let started = Arc::new(AtomicUsize::new(0));
        let mut callers = tokio::task::JoinSet::new();
        for _ in 0..10 {
            let (probe, counter) = (Arc::clone(&probe), Arc::clone(&started));
            callers.spawn(async move {
                probe
                    .check(async move {
                        counter.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        true
                    })
                    .await
            });
        }
        while let Some(ready) = callers.join_next().await {
            assert!(
                ready.expect("caller"),
                "every caller gets the one probe's answer"
            );
        }
        assert_eq!(started.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_fresh_result_is_reused_until_it_ages_or_is_invalidated() {
        let probe = BoundedProbe::new(Duration::from_secs(1), Duration::from_secs(60));
        assert!(probe.check(async { true }).await);
        assert!(probe.check(async { false }).await, "reused");
        probe.invalidate();
        assert!(!probe.check(async { false }).await, "probed again");
    }
}
