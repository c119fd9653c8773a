//! Which hosts the bridge fetches b.well's manifests from (`--ktc-bridge-hosts`).
//!
//! The link b.well answers is data from a third party: its `url` decides where the gateway sends
//! the passcode it just generated. So the bridge fetches only from hosts the operator named, and
//! a pattern is deliberately simple: an exact host, or `*.` and a domain, which matches any name
//! below that domain (never the domain itself, never a look-alike such as `evilicanbwell.com`).

/// The default: b.well's viewer and manifest hosts are all below this domain
/// (`api-gateway.client-sandbox.icanbwell.com`, `api-gateway.dev.icanbwell.com` in its examples).
pub(crate) const DEFAULT_HOSTS: &str = "*.icanbwell.com";

/// A parsed `--ktc-bridge-hosts` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostPatterns(Vec<Pattern>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Exact(String),
    /// Holds the suffix with its leading dot: `.icanbwell.com`.
    Below(String),
}

impl HostPatterns {
    /// Parses patterns; the error names the pattern refused and why.
    pub(crate) fn parse<'a>(patterns: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
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
    pub(crate) fn allows(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        let host = host.trim_end_matches('.');
        self.0.iter().any(|pattern| match pattern {
            Pattern::Exact(name) => host == name,
            Pattern::Below(suffix) => host.len() > suffix.len() && host.ends_with(suffix.as_str()),
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
    fn the_default_allows_b_wells_hosts_and_nothing_beside() {
        let default = patterns(&[DEFAULT_HOSTS]);
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
