//! A minimal, fast fake b.well for the load harness (`benches/load/run.sh`).
//!
//! Every POST, on any path, answers b.well's example `createHealthLink` response (the seed's
//! `tests/fixtures/seed-response.json`) with `200` and `application/json`, at once: no parsing,
//! no checks, no logging. It is the floor the harness measures the gateway against, so it must
//! cost as little as an axum server can.
//!
//! Usage: `cargo run --release --example load_stub_upstream -- [LISTEN]` (default
//! `127.0.0.1:18081`). Loopback only: the harness never sends traffic anywhere else.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

const SEED_RESPONSE: &str = include_str!("../tests/fixtures/seed-response.json");
const DEFAULT_LISTEN: &str = "127.0.0.1:18081";

/// The canned answer; `Bytes::from_static` so each response shares the one copy.
async fn create_health_link() -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        Bytes::from_static(SEED_RESPONSE.as_bytes()),
    )
        .into_response()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let listen: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| DEFAULT_LISTEN.to_owned())
        .parse()?;
    anyhow::ensure!(
        listen.ip().is_loopback(),
        "the load stub listens on loopback only"
    );
    // Any path and any method: the gateway and the passthrough post to `/v1/graphql`, and a
    // router that matched paths would only add work the floor should not include.
    let app = Router::new().fallback(create_health_link);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    eprintln!("load_stub_upstream listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
