//! Which connections are let in: at most so many in all, and so many from one address (IPv6
//! by /64), trusted proxies exempt from the second.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use ipnet::IpNet;

use super::ConnectionLimits;

/// Counts open connections, in all and per address.
#[derive(Clone)]
pub(super) struct Admission {
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
    pub(super) fn new(limits: &ConnectionLimits) -> Self {
        Self {
            state: Arc::default(),
            max_connections: limits.max_connections.max(1),
            max_per_ip: limits.max_connections_per_ip,
            exempt: Arc::new(limits.trusted_proxies.clone()),
        }
    }

    /// A slot for a connection from `peer`, or `None` over a limit.
    pub(super) fn admit(&self, peer: IpAddr) -> Option<ConnectionSlot> {
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
pub(super) struct ConnectionSlot {
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
    use std::time::Duration;

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
