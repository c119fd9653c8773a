//! The client's address, decided once per request: the socket peer, or, behind a configured
//! proxy, what that proxy says in `X-Forwarded-For`. Rate limits and audit records use it.
//!
//! Behind a load balancer the socket peer is the balancer, and the client is in
//! `X-Forwarded-For`. But anyone can send that header: it is believed only as far as it was
//! written by proxies we trust. Each proxy appends the address it received the request from, so
//! reading from the right, every entry written by a trusted proxy is either another trusted proxy
//! (keep walking) or the first hop we do not control: the client. Everything left of that entry
//! was written by the client and is ignored.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;

/// The address the request is charged to. Handlers take it as an extractor; [`resolve`] has
/// put it in every request before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClientIp(pub(crate) IpAddr);

impl ClientIp {
    /// The one fallback, for a router served without connection info (in-process tests of
    /// the router): loopback.
    const WITHOUT_CONNECTION_INFO: ClientIp = ClientIp(IpAddr::V4(Ipv4Addr::LOCALHOST));

    /// The address [`resolve`] decided for this request.
    pub(crate) fn of(extensions: &axum::http::Extensions) -> Self {
        extensions
            .get::<ClientIp>()
            .copied()
            .unwrap_or(Self::WITHOUT_CONNECTION_INFO)
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self::of(&parts.extensions))
    }
}

/// Proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default)]
pub(crate) struct TrustedProxies(pub(crate) Arc<Vec<IpNet>>);

pub(crate) async fn resolve(
    State(trusted): State<TrustedProxies>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(ClientIp::WITHOUT_CONNECTION_INFO.0, |info| info.0.ip());
    let forwarded: Vec<&str> = request
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .collect();
    let ip = client_ip(peer, &forwarded, &trusted.0);
    request.extensions_mut().insert(ClientIp(ip));
    next.run(request).await
}

/// Client IP behind proxies: the socket peer by default; `X-Forwarded-For` is trusted only when
/// the peer is in `trusted` (CIDRs), read from the right: addresses inside trusted networks are
/// skipped, the first untrusted one is the client.
///
/// `forwarded_for` holds every `X-Forwarded-For` value in the order received (several header
/// lines are one comma-separated list, in order). Entries may carry a port (`1.2.3.4:5678`,
/// `[2001:db8::1]:443`), as some balancers write; empty entries are skipped.
///
/// A malformed entry (`unknown`, a hostname, garbage) stops the walk at the last address known to
/// be right: the trusted hop that wrote it. Going on past it would mean believing what lies left
/// of garbage, which is exactly what a client can write; stopping at the peer instead would lump
/// every client of that proxy together for no better reason. If every entry is trusted, the
/// leftmost is the client (an internal caller). Spoofed headers from an untrusted peer change
/// nothing. Addresses are compared and returned in canonical form (IPv4-mapped IPv6 as IPv4).
pub fn client_ip(peer: IpAddr, forwarded_for: &[&str], trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let mut client = peer.to_canonical();
    if !is_trusted(&client) {
        return client;
    }
    let entries = forwarded_for
        .iter()
        .rev()
        .flat_map(|value| value.rsplit(','))
        .map(str::trim)
        .filter(|entry| !entry.is_empty());
    for entry in entries {
        let Some(hop) = parse_hop(entry) else {
            break;
        };
        client = hop;
        if !is_trusted(&client) {
            break;
        }
    }
    client
}

fn parse_hop(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|socket| socket.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("a test address")
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter()
            .map(|net| net.parse().expect("a test network"))
            .collect()
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client() {
        assert_eq!(
            client_ip(ip("203.0.113.7"), &["198.51.100.1"], &[]),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn an_untrusted_peer_cannot_spoof_its_address() {
        let trusted = nets(&["10.0.0.0/8"]);
        for spoof in [
            &["1.1.1.1"][..],
            &["10.0.0.1"],
            &["1.1.1.1, 10.0.0.2", "2.2.2.2"],
            &["garbage"],
        ] {
            assert_eq!(
                client_ip(ip("203.0.113.7"), spoof, &trusted),
                ip("203.0.113.7"),
                "{spoof:?}"
            );
        }
    }

    #[test]
    fn behind_a_trusted_proxy_the_rightmost_untrusted_entry_is_the_client() {
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(
            client_ip(ip("10.1.2.3"), &["198.51.100.9"], &trusted),
            ip("198.51.100.9")
        );
        // The client wrote 6.6.6.6 itself; the proxy appended the address it really saw.
        assert_eq!(
            client_ip(ip("10.1.2.3"), &["6.6.6.6, 198.51.100.9"], &trusted),
            ip("198.51.100.9")
        );
    }

    #[test]
    fn chains_of_trusted_proxies_are_walked_through() {
        let trusted = nets(&["10.0.0.0/8", "192.168.0.0/16"]);
        assert_eq!(
            client_ip(
                ip("10.0.0.1"),
                &["6.6.6.6, 198.51.100.9, 192.168.1.1, 10.9.9.9"],
                &trusted
            ),
            ip("198.51.100.9")
        );
    }

    #[test]
    fn several_header_lines_form_one_list_in_order() {
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(
            client_ip(
                ip("10.0.0.1"),
                &["6.6.6.6", "198.51.100.9, 10.0.0.5", "10.0.0.4"],
                &trusted
            ),
            ip("198.51.100.9")
        );
    }

    #[test]
    fn when_every_hop_is_trusted_the_leftmost_is_the_client() {
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), &["10.0.0.7, 10.0.0.5"], &trusted),
            ip("10.0.0.7")
        );
        assert_eq!(client_ip(ip("10.0.0.1"), &[], &trusted), ip("10.0.0.1"));
    }

    #[test]
    fn a_malformed_entry_stops_at_the_last_trusted_hop() {
        let trusted = nets(&["10.0.0.0/8"]);
        for garbage in [
            "unknown",
            "example.org",
            "1.2.3",
            "fe80::1%eth0",
            "_hidden",
            "1.2.3.4/8",
        ] {
            let header = format!("198.51.100.9, {garbage}, 10.0.0.5");
            assert_eq!(
                client_ip(ip("10.0.0.1"), &[&header], &trusted),
                ip("10.0.0.5"),
                "{garbage}"
            );
        }
        assert_eq!(
            client_ip(ip("10.0.0.1"), &["198.51.100.9, unknown"], &trusted),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn empty_entries_and_spaces_are_tolerated() {
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), &[" 198.51.100.9 ,, 10.0.0.5 ,"], &trusted),
            ip("198.51.100.9")
        );
    }

    #[test]
    fn entries_with_ports_are_read() {
        let trusted = nets(&["10.0.0.0/8", "fd00::/8"]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), &["198.51.100.9:51234"], &trusted),
            ip("198.51.100.9")
        );
        assert_eq!(
            client_ip(ip("fd00::1"), &["[2001:db8::7]:443"], &trusted),
            ip("2001:db8::7")
        );
    }

    #[test]
    fn ipv6_proxies_and_clients() {
        let trusted = nets(&["fd00::/8"]);
        assert_eq!(
            client_ip(
                ip("fd00::1"),
                &["2001:db8::bad, 2001:db8::7, fd12::3"],
                &trusted
            ),
            ip("2001:db8::7")
        );
        assert_eq!(
            client_ip(ip("2001:db8::1"), &["2001:db8::7"], &trusted),
            ip("2001:db8::1")
        );
    }

    #[test]
    fn ipv4_mapped_addresses_are_matched_and_returned_as_ipv4() {
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(
            client_ip(ip("::ffff:10.0.0.1"), &["::ffff:198.51.100.9"], &trusted),
            ip("198.51.100.9")
        );
        assert_eq!(
            client_ip(ip("::ffff:203.0.113.7"), &[], &[]),
            ip("203.0.113.7")
        );
    }
}
