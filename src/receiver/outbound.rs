//! Outbound HTTP for the receiver, hardened as the IG's receiver guidance asks: a link is
//! attacker-controlled input, and following it makes this process send requests wherever the
//! link says (server-side request forgery).
//!
//! - https only; plain http only when [`OutboundSettings::allow_http`] says so (tests, local use).
//! - The addresses a host name resolves to are checked before connecting, and the connection goes
//!   to exactly the addresses checked: the check lives in the DNS resolver reqwest connects
//!   through ([`CheckedResolver`]), so a name that resolves to a public address for a check and
//!   to `127.0.0.1` for the connection (DNS rebinding) cannot slip between the two. Loopback,
//!   private, link-local, unspecified and the other non-public ranges are refused unless
//!   [`OutboundSettings::allow_private_addresses`] says otherwise. An IP literal in a URL
//!   bypasses resolvers, so it is checked before the request instead.
//! - No redirects (a redirect is another URL the link did not name, and could point inside),
//!   no proxy from the environment (a proxy resolves names itself, past the check), connect and
//!   total timeouts, and a cap on every answer's size, checked as the bytes arrive.
//!
//! Errors never repeat a URL: reqwest's own messages include it, and a link's URL is a
//! capability (its path is the secret manifest id).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

use super::hosts::HostPatterns;

/// How outbound requests are bounded and what they may reach.
#[derive(Clone)]
pub struct OutboundSettings {
    /// Allow plain `http://` URLs (never for links from strangers: tests and local use).
    pub allow_http: bool,
    /// Allow loopback, private, link-local and other non-public addresses.
    pub allow_private_addresses: bool,
    /// Longest wait for a TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// Longest wait for one whole exchange, to the last byte of the answer.
    pub request_timeout: Duration,
    /// The largest answer read (a manifest, a file); larger ones are refused.
    pub max_response_bytes: usize,
    /// Host names answered from this list instead of DNS, like curl's `--resolve`. The
    /// addresses are checked like any other: for tests that serve a real host name on loopback.
    pub resolve: Vec<(String, SocketAddr)>,
    /// PEM certificates trusted besides the built-in roots (a test's own CA).
    pub extra_root_certificates: Vec<Vec<u8>>,
    /// The only hosts requests may go to; `None`: any host the rest of the policy allows.
    pub hosts: Option<HostPatterns>,
}

impl Default for OutboundSettings {
    fn default() -> Self {
        Self {
            allow_http: false,
            allow_private_addresses: false,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
            // A file is a JWE of a Bundle with PDFs inline: the 16 MiB the decryption inflates
            // to at most, in base64url, plus room.
            max_response_bytes: 24 * 1024 * 1024,
            resolve: Vec::new(),
            extra_root_certificates: Vec::new(),
            hosts: None,
        }
    }
}

impl std::fmt::Debug for OutboundSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundSettings")
            .field("allow_http", &self.allow_http)
            .field("allow_private_addresses", &self.allow_private_addresses)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("resolve", &self.resolve)
            .field(
                "extra_root_certificates",
                &self.extra_root_certificates.len(),
            )
            .field("hosts", &self.hosts)
            .finish()
    }
}

/// Why a request was not sent, or its answer not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// Refused before anything was sent.
    #[error("{0}")]
    Refused(Refusal),
    #[error("could not connect")]
    Connect,
    #[error("no complete answer within {0:?}")]
    Timeout(Duration),
    #[error("answered a redirect (HTTP {0}); redirects are not followed")]
    Redirect(u16),
    #[error("the answer is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the exchange failed (TLS, or the connection broke)")]
    Transport,
}

/// A request the policy forbids.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("plain http is refused: receivers fetch over https only")]
    Http,
    #[error("the {0} scheme is refused: receivers fetch over https only")]
    Scheme(String),
    #[error("the URL has no host")]
    NoHost,
    #[error("the URL carries credentials")]
    Credentials,
    #[error("{host} is a {range} address: refused")]
    Address { host: String, range: &'static str },
    #[error("{host} resolves to a {range} address ({address}): refused")]
    Resolved {
        host: String,
        address: IpAddr,
        range: &'static str,
    },
    #[error("{0} does not resolve")]
    Unresolved(String),
    #[error("{0} is not one of the hosts allowed")]
    HostNotListed(String),
}

/// An answer read whole, within the caps.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) content_type: Option<String>,
    pub(crate) retry_after: Option<String>,
    pub(crate) body: Vec<u8>,
}

/// The receiver's HTTP client: reqwest behind the policy of [`OutboundSettings`].
#[derive(Debug, Clone)]
pub(crate) struct OutboundClient {
    client: reqwest::Client,
    allow_http: bool,
    allow_private_addresses: bool,
    request_timeout: Duration,
    max_response_bytes: usize,
    hosts: Option<HostPatterns>,
}

/// The client could not be built (a bad extra certificate, or TLS unavailable).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the receiver's HTTP client: {0}")]
pub struct BuildError(String);

impl OutboundClient {
    pub(crate) fn new(settings: &OutboundSettings) -> Result<Self, BuildError> {
        let resolver = CheckedResolver {
            allow_private_addresses: settings.allow_private_addresses,
            overrides: Arc::new(
                settings
                    .resolve
                    .iter()
                    .map(|(host, address)| (host.to_ascii_lowercase(), *address))
                    .collect(),
            ),
        };
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .https_only(!settings.allow_http)
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.request_timeout)
            .dns_resolver(Arc::new(resolver))
            .user_agent(concat!("shl-gateway/", env!("CARGO_PKG_VERSION")));
        for pem in &settings.extra_root_certificates {
            let certificate = reqwest::Certificate::from_pem(pem)
                .map_err(|_| BuildError("an extra root certificate is not PEM".to_owned()))?;
            builder = builder.add_root_certificate(certificate);
        }
        let client = builder
            .build()
            .map_err(|error| BuildError(error.without_url().to_string()))?;
        Ok(Self {
            client,
            allow_http: settings.allow_http,
            allow_private_addresses: settings.allow_private_addresses,
            request_timeout: settings.request_timeout,
            max_response_bytes: settings.max_response_bytes,
            hosts: settings.hosts.clone(),
        })
    }

    /// `GET url`, the answer read whole (at most `cap` bytes, and never more than the
    /// configured maximum).
    pub(crate) async fn get(&self, url: &Url, cap: Option<usize>) -> Result<Answer, FetchError> {
        self.check(url)?;
        let request = self.client.get(url.clone());
        self.send(request, cap).await
    }

    /// `POST url` with a JSON body.
    pub(crate) async fn post_json(
        &self,
        url: &Url,
        body: &serde_json::Value,
    ) -> Result<Answer, FetchError> {
        self.check(url)?;
        let request = self
            .client
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        self.send(request, None).await
    }

    /// The policy checks that need no resolution: the scheme, credentials, and IP literals
    /// (which reqwest connects to without asking the resolver).
    pub(crate) fn check(&self, url: &Url) -> Result<(), FetchError> {
        let refuse = |refusal| Err(FetchError::Refused(refusal));
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            "http" => return refuse(Refusal::Http),
            other => return refuse(Refusal::Scheme(other.to_owned())),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return refuse(Refusal::Credentials);
        }
        if let (Some(hosts), Some(host)) = (&self.hosts, url.host_str())
            && !hosts.allows(host)
        {
            return refuse(Refusal::HostNotListed(host.to_owned()));
        }
        let address = match url.host() {
            None => return refuse(Refusal::NoHost),
            Some(Host::Domain(_)) => return Ok(()),
            Some(Host::Ipv4(address)) => IpAddr::V4(address),
            Some(Host::Ipv6(address)) => IpAddr::V6(address),
        };
        match non_public_range(address) {
            Some(range) if !self.allow_private_addresses => refuse(Refusal::Address {
                host: address.to_string(),
                range,
            }),
            _ => Ok(()),
        }
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        cap: Option<usize>,
    ) -> Result<Answer, FetchError> {
        let cap = cap.map_or(self.max_response_bytes, |cap| {
            cap.min(self.max_response_bytes)
        });
        let mut response = request
            .send()
            .await
            .map_err(|error| self.classify(&error))?;
        let status = response.status().as_u16();
        if response.status().is_redirection() {
            return Err(FetchError::Redirect(status));
        }
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        };
        let content_type = header(reqwest::header::CONTENT_TYPE);
        let retry_after = header(reqwest::header::RETRY_AFTER);
        // A declared length over the cap is refused before a byte of the body is read; a body
        // without one (chunked) is counted as it arrives.
        if response
            .content_length()
            .is_some_and(|length| length > cap as u64)
        {
            return Err(FetchError::TooLarge(cap));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|error| self.classify(&error))?
        {
            if body.len() + chunk.len() > cap {
                return Err(FetchError::TooLarge(cap));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Answer {
            status,
            content_type,
            retry_after,
            body,
        })
    }

    /// What went wrong, without reqwest's message (it names the URL).
    fn classify(&self, error: &reqwest::Error) -> FetchError {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
        while let Some(cause) = source {
            if let Some(refused) = cause.downcast_ref::<ResolveRefusal>() {
                return FetchError::Refused(refused.0.clone());
            }
            source = cause.source();
        }
        if error.is_timeout() {
            FetchError::Timeout(self.request_timeout)
        } else if error.is_connect() {
            FetchError::Connect
        } else {
            FetchError::Transport
        }
    }
}

/// The resolver reqwest connects through: resolves (or takes an override), then refuses the
/// whole name if any of its addresses is outside the public ranges. Refusing rather than
/// filtering: a name that mixes public and private addresses is not one to trust.
struct CheckedResolver {
    allow_private_addresses: bool,
    overrides: Arc<HashMap<String, SocketAddr>>,
}

/// A resolver refusal, carried through reqwest's error chain to [`OutboundClient::classify`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ResolveRefusal(Refusal);

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_ascii_lowercase();
        let overridden = self.overrides.get(&host).copied();
        let allow_private_addresses = self.allow_private_addresses;
        Box::pin(async move {
            let addresses: Vec<SocketAddr> = match overridden {
                Some(address) => vec![address],
                // Port 0: reqwest puts the URL's port (or the scheme's) in its place.
                None => tokio::net::lookup_host((host.as_str(), 0))
                    .await
                    .map_err(|_| ResolveRefusal(Refusal::Unresolved(host.clone())))?
                    .collect(),
            };
            if addresses.is_empty() {
                return Err(ResolveRefusal(Refusal::Unresolved(host)).into());
            }
            if !allow_private_addresses {
                for address in &addresses {
                    if let Some(range) = non_public_range(address.ip()) {
                        return Err(ResolveRefusal(Refusal::Resolved {
                            host,
                            address: address.ip(),
                            range,
                        })
                        .into());
                    }
                }
            }
            Ok(Box::new(addresses.into_iter()) as Addrs)
        })
    }
}

/// The name of the non-public range `address` is in, if any: addresses a link must not make
/// this process reach (this machine, its networks, cloud metadata at 169.254.169.254).
pub(crate) fn non_public_range(address: IpAddr) -> Option<&'static str> {
    match address {
        IpAddr::V4(address) => non_public_v4(address),
        IpAddr::V6(address) => non_public_v6(address),
    }
}

fn non_public_v4(address: Ipv4Addr) -> Option<&'static str> {
    let [first, second, third, _] = address.octets();
    if first == 0 {
        // 0.0.0.0/8, "this network"; 0.0.0.0 itself reaches this host on Linux.
        Some("unspecified")
    } else if address.is_loopback() {
        Some("loopback")
    } else if address.is_private() {
        Some("private")
    } else if address.is_link_local() {
        Some("link-local")
    } else if first == 100 && (64..128).contains(&second) {
        Some("shared (carrier-grade NAT)")
    } else if address.is_broadcast()
        || first >= 240
        // 192.0.0.0/24, IETF protocol assignments; 192.88.99.0/24, the former 6to4 relays.
        || [first, second, third] == [192, 0, 0]
        || [first, second, third] == [192, 88, 99]
    {
        Some("reserved")
    } else if address.is_documentation() {
        // 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24 (TEST-NET-1 to 3).
        Some("documentation")
    } else if first == 198 && (second & 0xfe) == 18 {
        // 198.18.0.0/15, for benchmarks; some networks use it internally.
        Some("benchmarking")
    } else if address.is_multicast() {
        Some("multicast")
    } else {
        None
    }
}

fn non_public_v6(address: Ipv6Addr) -> Option<&'static str> {
    let segments = address.segments();
    if address.is_unspecified() {
        Some("unspecified")
    } else if address.is_loopback() {
        Some("loopback")
    } else if let Some(v4) = address.to_ipv4_mapped() {
        // ::ffff:a.b.c.d reaches the IPv4 address it embeds.
        non_public_v4(v4)
    } else if segments[..6] == [0; 6]
        || segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0]
        || segments[..6] == [0, 0, 0, 0, 0xffff, 0]
    {
        // IPv4-compatible (::a.b.c.d, deprecated), NAT64 (64:ff9b::/96) and IPv4-translated
        // (::ffff:0:a.b.c.d) embed one too.
        let [.., high, low] = segments;
        non_public_v4(Ipv4Addr::from((u32::from(high) << 16) | u32::from(low)))
    } else if segments[0] == 0x2002 {
        // 6to4 (2002:a.b.c.d::/48): a host with a 6to4 interface reaches the embedded address.
        non_public_v4(Ipv4Addr::from(
            (u32::from(segments[1]) << 16) | u32::from(segments[2]),
        ))
    } else if segments[..3] == [0x64, 0xff9b, 1] {
        // 64:ff9b:1::/48, NAT64 of a network's own choosing: its translators reach inside.
        Some("NAT64 (local use)")
    } else if segments[..2] == [0x2001, 0xdb8] {
        Some("documentation")
    } else if segments[..2] == [0x2001, 0] {
        // 2001::/32, Teredo: the client's IPv4 address travels inside (obfuscated), and a host
        // with a Teredo interface tunnels to it; no public SHL server lives there.
        Some("Teredo")
    } else if segments[..4] == [0x100, 0, 0, 0] {
        // 100::/64, discard-only.
        Some("reserved")
    } else if address.is_unique_local() {
        Some("private (unique local)")
    } else if address.is_unicast_link_local() || segments[0] & 0xffc0 == 0xfec0 {
        // fe80::/10, and the deprecated site-local fec0::/10.
        Some("link-local")
    } else if address.is_multicast() {
        Some("multicast")
    } else {
        None
    }
}

#[cfg(test)]
mod tests;
