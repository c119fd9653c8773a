//! The client's address, decided once per request: the socket peer, or, behind a configured
//! proxy, what that proxy says in `X-Forwarded-For`. Rate limits and audit records use it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;

/// The address the request is charged to. Handlers take it as an extractor; [`resolve`] has
/// put it in every request before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl ClientIp {
    /// The one fallback, for a router served without connection info (in-process tests of
    /// the router): loopback.
    const WITHOUT_CONNECTION_INFO: ClientIp = ClientIp(IpAddr::V4(Ipv4Addr::LOCALHOST));

    /// The address [`resolve`] decided for this request.
    pub fn of(extensions: &axum::http::Extensions) -> Self {
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
pub struct TrustedProxies(pub Arc<Vec<IpNet>>);

pub async fn resolve(
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
    let ip = crate::ratelimit::client_ip(peer, &forwarded, &trusted.0);
    request.extensions_mut().insert(ClientIp(ip));
    next.run(request).await
}
