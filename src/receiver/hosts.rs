//! Host allow-lists for outbound requests (`--ktc-bridge-hosts`, for one).
//!
//! A link is data from a third party: its `url`, and the `location`s its manifest lists, decide
//! where a receiver sends the passcode and whom it asks for the file. A receiver that knows whose
//! links it takes names their hosts, and every request goes through the list. A pattern is
//! deliberately simple: an exact host, or `*.` and a domain, which matches any name below that
//! domain (never the domain itself, never a look-alike such as `evilicanbwell.com`).

/// A parsed list of host patterns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPatterns(Vec<Pattern>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Exact(String),
    /// Holds the suffix with its leading dot: `.icanbwell.com`.
    Below(String),
}

impl HostPatterns {
    /// Parses patterns; the error names the pattern refused and why.
    pub fn parse<'a>(patterns: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut parsed = Vec::new();
        for pattern in patterns {
            let pattern = pattern.trim().to_ascii_lowercase();
            let (name, below) = match pattern.strip_prefix("*.") {
                Some(domain) => (domain.to_owned(), true),
                None => (pattern.clone(), false),
            };
            let well_formed = !name.is_empty()
                && name.len() <= 253
                && name.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && label
                            .bytes()
                            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
                });
            if !well_formed {
                return Err(format!(
                    "{pattern:?} is not a host name or *.domain (letters, digits, '-' and '.')"
                ));
            }
            parsed.push(match below {
                true => Pattern::Below(format!(".{name}")),
                false => Pattern::Exact(name),
            });
        }
        if parsed.is_empty() {
            return Err("at least one host pattern is needed".to_owned());
        }
        Ok(Self(parsed))
    }

    /// Whether `host` (a URL's host, as `url` normalizes it) matches a pattern.
    pub fn allows(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        let host = host.trim_end_matches('.');
        // An address has no names below it: `*.0.0.1` names hosts, and must not match 127.0.0.1.
        let address = host.starts_with('[') || host.parse::<std::net::IpAddr>().is_ok();
        self.0.iter().any(|pattern| match pattern {
            Pattern::Exact(name) => host == name,
            Pattern::Below(suffix) => {
                !address && host.len() > suffix.len() && host.ends_with(suffix.as_str())
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(list: &[&str]) -> HostPatterns {
        HostPatterns::parse(list.iter().copied()).expect("valid patterns")
    }

    #[test]
    fn a_domain_pattern_allows_the_names_below_it_and_nothing_beside() {
        let default = patterns(&["*.icanbwell.com"]);
        assert!(default.allows("api-gateway.dev.icanbwell.com"));
        assert!(default.allows("API-Gateway.client-sandbox.icanbwell.com"));
        assert!(!default.allows("icanbwell.com"));
        assert!(!default.allows("evilicanbwell.com"));
        assert!(!default.allows("icanbwell.com.evil.example"));
        assert!(!default.allows("127.0.0.1"));
    }

    #[test]
    fn exact_patterns_match_only_themselves() {
        let exact = patterns(&["127.0.0.1", "shl.example.org"]);
        assert!(exact.allows("127.0.0.1"));
        assert!(exact.allows("shl.example.org"));
        assert!(!exact.allows("a.shl.example.org"));
        assert!(!exact.allows("127.0.0.10"));
    }

    #[test]
    fn a_domain_pattern_never_matches_an_ip_address() {
        // Digits are letters of a host name to the parser, so `*.0.0.1` is a valid pattern;
        // it must not reach 127.0.0.1 (nor `*.1` any IPv4 address ending in .1).
        let numeric = patterns(&["*.0.0.1", "*.1"]);
        for address in ["127.0.0.1", "10.0.0.1", "192.168.0.1", "[::1]"] {
            assert!(!numeric.allows(address), "{address}");
        }
        assert!(numeric.allows("host.1"), "a name is still matched");
        assert!(patterns(&["127.0.0.1"]).allows("127.0.0.1"), "exact stays");
    }

    #[test]
    fn malformed_patterns_are_refused() {
        for bad in [
            "",
            "*",
            "*.",
            "a..b",
            "http://x",
            "x/y",
            "*.*.example",
            "a b",
        ] {
            assert!(HostPatterns::parse([bad]).is_err(), "{bad:?}");
        }
        assert!(HostPatterns::parse(std::iter::empty()).is_err());
    }
}
