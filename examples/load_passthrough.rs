//! A minimal pass-through proxy for the load harness (`benches/load/run.sh`): the floor any
//! proxy hop can reach.
//!
//! Every POST, on any path, is forwarded to the upstream URL with its body, its `Content-Type`
//! and its `Authorization` header (the two things the gateway must relay too), through one pooled
//! reqwest client; the upstream's status, `Content-Type` and bytes come back unchanged. No
//! GraphQL, no validation, no limits, no logging: whatever the gateway costs above this is the
//! price of what it does, not of being a hop.
//!
//! Usage: `cargo run --release --example load_passthrough -- [LISTEN] [UPSTREAM_URL]` (defaults
//! `127.0.0.1:18082` and `http://127.0.0.1:18081/v1/graphql`). Loopback only.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

const DEFAULT_LISTEN: &str = "127.0.0.1:18082";
const DEFAULT_UPSTREAM: &str = "http://127.0.0.1:18081/v1/graphql";

#[derive(Clone)]
struct Upstream {
    http: reqwest::Client,
    url: reqwest::Url,
}

async fn forward(State(upstream): State<Upstream>, headers: HeaderMap, body: Bytes) -> Response {
    let mut request = upstream.http.post(upstream.url.clone()).body(body);
    for name in [header::AUTHORIZATION, header::CONTENT_TYPE] {
        if let Some(value) = headers.get(&name) {
            request = request.header(name, value);
        }
    }
    let answer = match request.send().await {
        Ok(answer) => answer,
        Err(_) => return StatusCode::BAD_GATEWAY.into_response(),
    };
    let status = answer.status();
    let content_type = answer.headers().get(header::CONTENT_TYPE).cloned();
    let Ok(bytes) = answer.bytes().await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let mut response = (status, bytes).into_response();
    if let Some(content_type) = content_type {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, content_type);
    }
    response
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen: SocketAddr = args
        .next()
        .unwrap_or_else(|| DEFAULT_LISTEN.to_owned())
        .parse()?;
    let url: reqwest::Url = args
        .next()
        .unwrap_or_else(|| DEFAULT_UPSTREAM.to_owned())
        .parse()?;
    let loopback_upstream = url
        .host_str()
        .is_some_and(|host| host == "localhost" || host.starts_with("127.") || host == "[::1]");
    anyhow::ensure!(
        listen.ip().is_loopback() && loopback_upstream,
        "the load passthrough listens on and forwards to loopback only"
    );
    // The same bounds the gateway's upstream client has, so neither hop is favoured by a
    // missing timeout; pooling is reqwest's default, as in the gateway.
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let app = Router::new()
        .fallback(forward)
        .with_state(Upstream { http, url });
    let listener = tokio::net::TcpListener::bind(listen).await?;
    eprintln!("load_passthrough listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
