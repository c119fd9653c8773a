//! The rate-limit key of an address: one key per subscriber, whatever the address form.

use std::net::{IpAddr, Ipv6Addr};

/// The rate-limit key of an address: IPv4 as is, IPv6 by its /64 (one subscriber usually holds a
/// whole /64, and per-address keys would hand each of them 2^64 buckets), IPv4-mapped IPv6 as
/// IPv4.
pub fn ip_key(ip: IpAddr) -> String {
    match subscriber_network(ip) {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("{v6}/64"),
    }
}

/// The address that stands for one subscriber, by [`ip_key`]'s rule: IPv4 as is, IPv6 the first
/// address of its /64.
pub(crate) fn subscriber_network(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("a test address")
    }

    #[test]
    fn ipv4_keys_are_the_address() {
        assert_eq!(ip_key(ip("198.51.100.9")), "198.51.100.9");
        assert_ne!(ip_key(ip("198.51.100.9")), ip_key(ip("198.51.100.10")));
    }

    #[test]
    fn ipv6_keys_group_a_slash_64() {
        assert_eq!(ip_key(ip("2001:db8:1:2:aaaa::1")), "2001:db8:1:2::/64");
        assert_eq!(
            ip_key(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")),
            ip_key(ip("2001:db8:1:2::"))
        );
        assert_ne!(ip_key(ip("2001:db8:1:2::1")), ip_key(ip("2001:db8:1:3::1")));
        assert_eq!(ip_key(ip("::1")), "::/64");
    }

    #[test]
    fn ipv4_mapped_keys_are_ipv4_keys() {
        assert_eq!(ip_key(ip("::ffff:198.51.100.9")), "198.51.100.9");
    }
}
