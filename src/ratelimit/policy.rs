//! Which quotas apply to what, keyed by what: the gateway's rate-limit policy over the mechanism
//! of this module.
//!
//! | quota | key | charged |
//! |---|---|---|
//! | `links_per_caller` | HMAC of the bearer token | each `createHealthLink` execution |
//! | `links_per_ip` | client address (IPv6 by /64) | each `createHealthLink` execution |
//! | `http_per_ip` | client address | every request but probes and metrics |
//! | `shl_per_ip` | client address | each manifest, file or direct request |
//! | `shl_per_link` | the link (manifest id hash, or link id) | each manifest, file or direct request |
//!
//! In upstream mode the gateway cannot tell a real token from a made-up one, so a caller who
//! rotates tokens meets `links_per_ip`: that is the binding quota there. A token's own quota is
//! charged before the call like the address's, so a call b.well refuses still costs its token
//! one unit (see docs/decisions.md).

use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use super::{Decision, Quota, QuotaError, QuotaStore, ip_key};
use crate::crypto::PurposeKey;
use crate::error::AppError;

/// `BURST/PERIOD`, e.g. `5/1m`: `BURST` at once, refilled at `BURST` per `PERIOD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaSpec {
    pub burst: u32,
    pub period: Duration,
}

impl FromStr for QuotaSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (burst, period) = text
            .split_once('/')
            .ok_or_else(|| format!("expected BURST/PERIOD such as 5/1m, got {text:?}"))?;
        let burst: u32 = burst
            .trim()
            .parse()
            .map_err(|_| format!("{burst:?} is not a whole number of requests"))?;
        let period = humantime::parse_duration(period.trim()).map_err(|error| error.to_string())?;
        if burst == 0 || period.is_zero() {
            return Err(
                "a quota needs a burst of at least 1 and a period longer than 0".to_owned(),
            );
        }
        // The stores count in whole microseconds: a faster rate would be refused at every check.
        if period.as_micros() < u128::from(burst) {
            return Err(format!(
                "{text:?} asks for more than one request per microsecond; use a longer period"
            ));
        }
        Ok(Self { burst, period })
    }
}

impl std::fmt::Display for QuotaSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}",
            self.burst,
            humantime::format_duration(self.period)
        )
    }
}

/// The quotas of one gateway, and the store that keeps them.
#[derive(Debug, Clone)]
pub struct RatePolicy {
    store: Arc<dyn QuotaStore>,
    /// Keys caller quotas by token without keeping the token.
    token_key: PurposeKey,
    links_per_caller: Quota,
    links_per_ip: Quota,
    http_per_ip: Quota,
    shl_per_ip: Quota,
    shl_per_link: Quota,
}

/// The configured size of each quota.
#[derive(Debug, Clone, Copy)]
pub struct QuotaSpecs {
    pub links_per_caller: QuotaSpec,
    pub links_per_ip: QuotaSpec,
    pub http_per_ip: QuotaSpec,
    pub shl_per_ip: QuotaSpec,
    pub shl_per_link: QuotaSpec,
}

fn quota(name: &'static str, spec: QuotaSpec) -> Quota {
    Quota::new(name, spec.burst, spec.period)
}

impl RatePolicy {
    pub fn new(store: Arc<dyn QuotaStore>, token_key: PurposeKey, specs: QuotaSpecs) -> Self {
        Self {
            store,
            token_key,
            links_per_caller: quota("links_per_caller", specs.links_per_caller),
            links_per_ip: quota("links_per_ip", specs.links_per_ip),
            http_per_ip: quota("http_per_ip", specs.http_per_ip),
            shl_per_ip: quota("shl_per_ip", specs.shl_per_ip),
            shl_per_link: quota("shl_per_link", specs.shl_per_link),
        }
    }

    /// One `createHealthLink` execution, charged to the address first (the binding quota for
    /// made-up tokens), then to the token.
    pub(crate) async fn charge_link_creation(
        &self,
        token: &str,
        ip: Option<IpAddr>,
    ) -> Result<(), AppError> {
        if let Some(ip) = ip {
            self.charge(&self.links_per_ip, &ip_key(ip)).await?;
        }
        let caller = hex::encode(&self.token_key.mac(token.as_bytes())[..16]);
        self.charge(&self.links_per_caller, &caller).await
    }

    /// Any request (probes and metrics excepted), by address.
    pub(crate) async fn charge_request(&self, ip: IpAddr) -> Result<(), AppError> {
        self.charge(&self.http_per_ip, &ip_key(ip)).await
    }

    /// One SHL data-plane request: by address, and by link when the link is known, so that
    /// neither many links from one address nor many addresses on one link get far.
    pub(crate) async fn charge_shl(&self, ip: IpAddr, link: Option<&str>) -> Result<(), AppError> {
        self.charge(&self.shl_per_ip, &ip_key(ip)).await?;
        match link {
            Some(link) => self.charge(&self.shl_per_link, link).await,
            None => Ok(()),
        }
    }

    async fn charge(&self, quota: &Quota, key: &str) -> Result<(), AppError> {
        decision_to_result(self.store.check(quota, key, 1).await)
    }
}

/// Refused: `RATE_LIMITED` with its wait. A store that cannot decide: `OVERLOADED` (telling a
/// client "retry in 1 s" when the limiter is down would invite it to hammer).
fn decision_to_result(decision: Result<Decision, QuotaError>) -> Result<(), AppError> {
    match decision {
        Ok(Decision::Allowed { .. }) => Ok(()),
        Ok(refused @ Decision::Refused { .. }) => Err(AppError::rate_limited(
            refused.retry_after_seconds().unwrap_or(1),
        )),
        Err(QuotaError::Unavailable) => Err(AppError::overloaded()),
        Err(error) => {
            tracing::error!(error = %error, "rate limit misconfigured");
            Err(AppError::internal())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use crate::ratelimit::InProcessQuotas;

    fn spec(text: &str) -> QuotaSpec {
        text.parse().expect("valid spec")
    }

    fn policy(links_per_caller: &str, links_per_ip: &str) -> RatePolicy {
        let keys = crate::crypto::Keys::derive(&secrecy::SecretBox::new(Box::new(vec![1u8; 32])));
        RatePolicy::new(
            Arc::new(InProcessQuotas::new(1_000)),
            keys.rate_limit,
            QuotaSpecs {
                links_per_caller: spec(links_per_caller),
                links_per_ip: spec(links_per_ip),
                http_per_ip: spec("100/1m"),
                shl_per_ip: spec("100/1m"),
                shl_per_link: spec("100/1m"),
            },
        )
    }

    #[test]
    fn specs_parse_and_refuse_nonsense() {
        assert_eq!(
            spec("5/1m"),
            QuotaSpec {
                burst: 5,
                period: Duration::from_secs(60)
            }
        );
        assert_eq!(spec(" 10 / 30s ").burst, 10);
        for bad in ["5", "0/1m", "5/0s", "x/1m", "5/soon", "1000000000/1s"] {
            assert!(bad.parse::<QuotaSpec>().is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_caller_is_refused_past_their_quota_with_a_wait() {
        let policy = policy("2/1m", "100/1m");
        let ip = Some("192.0.2.1".parse().expect("ip"));
        policy.charge_link_creation("token-a", ip).await.expect("1");
        policy.charge_link_creation("token-a", ip).await.expect("2");
        let refused = policy
            .charge_link_creation("token-a", ip)
            .await
            .expect_err("3");
        assert_eq!(refused.code(), ErrorCode::RateLimited);
        assert!(refused.retry_after_seconds().expect("wait") >= 1);
        policy
            .charge_link_creation("token-b", ip)
            .await
            .expect("another caller is separate");
    }

    #[tokio::test]
    async fn rotating_tokens_meet_the_address_quota() {
        let policy = policy("100/1m", "3/1m");
        let ip = Some("2001:db8::1".parse().expect("ip"));
        for token in ["t1", "t2", "t3"] {
            policy
                .charge_link_creation(token, ip)
                .await
                .expect("within the address quota");
        }
        let same_subnet = Some("2001:db8::ffff".parse().expect("ip"));
        let refused = policy
            .charge_link_creation("t4", same_subnet)
            .await
            .expect_err("same /64");
        assert_eq!(refused.code(), ErrorCode::RateLimited);
    }
}
