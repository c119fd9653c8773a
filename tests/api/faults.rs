//! Upstream faults under concurrent load: every request gets the right code within its timeout,
//! nothing panics, and the gateway serves again as soon as the upstream does.
//!
//! Each test sends [`CONCURRENCY`] requests at once to a gateway whose upstream misbehaves in one
//! way, checks every answer, checks `/healthz`, switches the upstream back to healthy and checks
//! that the next burst succeeds. wiremock plays the faults it can express (statuses, bodies,
//! delays, redirects); a small raw TCP server ([`RawUpstream`]) plays those below HTTP (resets,
//! bytes dripped slowly, an endless `Content-Length`, bytes that are not HTTP at all).
//!
//! The circuit breaker is set out of reach in these tests, so each answer shows its fault's own
//! code and recovery needs no cooldown; [`the_breaker_opens_under_load_fails_fast_and_closes_after_one_probe`]
//! tests the breaker itself. Time bounds are generous (the timeout plus [`SLACK`]) so a loaded
//! machine does not make them fail; every request is also bounded, so a hung gateway fails the
//! test instead of hanging it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use shl_gateway::config::{Config, UpstreamConfig};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::*;

/// Requests in flight at once in each burst.
const CONCURRENCY: usize = 50;
/// The gateway's whole-exchange upstream timeout in these tests: long enough that a fast failure
/// (reset, garbage, 5xx) is never mistaken for a timeout on a loaded machine, short enough to wait out.
const UPSTREAM_TIMEOUT: Duration = Duration::from_millis(1_500);
/// Added to every time bound: scheduling on a busy CI machine, never the gateway's own budget.
const SLACK: Duration = Duration::from_secs(5);
/// `--upstream-max-response-bytes` in these tests.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// One answer of a burst.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    body: Value,
    elapsed: Duration,
}

impl Answer {
    fn code(&self) -> Option<&str> {
        self.body["errors"][0]["extensions"]["code"].as_str()
    }
}

/// The gateway for fault tests: a short timeout and a breaker that never opens.
fn fault_config(config: Config) -> Config {
    Config {
        upstream: UpstreamConfig {
            upstream_timeout: UPSTREAM_TIMEOUT,
            upstream_max_response_bytes: MAX_RESPONSE_BYTES,
            upstream_breaker_failures: 1_000_000,
            ..config.upstream
        },
        ..config
    }
}

/// Sends `n` seed mutations at once and returns every answer, each bounded in time.
async fn burst(app: &TestApp, n: usize) -> Vec<Answer> {
    let mut requests = JoinSet::new();
    for _ in 0..n {
        let http = app.http.clone();
        let url = format!("{}/graphql", app.address);
        requests.spawn(async move {
            let started = Instant::now();
            let exchange = async {
                let response = http
                    .post(url)
                    .header("authorization", TOKEN)
                    .json(&json!({ "query": SEED_MUTATION, "variables": seed_variables() }))
                    .send()
                    .await
                    .expect("the gateway answers");
                let status = response.status();
                let body: Value = response.json().await.expect("a JSON answer");
                (status, body)
            };
            let (status, body) = tokio::time::timeout(UPSTREAM_TIMEOUT + SLACK, exchange)
                .await
                .expect("an answer within the upstream timeout plus slack");
            Answer {
                status,
                body,
                elapsed: started.elapsed(),
            }
        });
    }
    let mut answers = Vec::with_capacity(n);
    while let Some(joined) = requests.join_next().await {
        answers.push(joined.expect("the request task does not panic"));
    }
    answers
}

/// Every answer is a field error with `code`, HTTP 200 (GraphQL over HTTP), within the bound.
fn assert_every_answer_is(answers: &[Answer], code: &str) {
    assert_eq!(answers.len(), CONCURRENCY);
    for answer in answers {
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        assert_eq!(answer.body["data"], Value::Null, "{answer:?}");
        assert_eq!(answer.code(), Some(code), "{answer:?}");
        assert!(
            answer.elapsed < UPSTREAM_TIMEOUT + SLACK,
            "took {:?}",
            answer.elapsed
        );
    }
}

/// Every answer is the seed's link: the gateway has recovered.
fn assert_every_answer_succeeds(answers: &[Answer]) {
    let expected = seed_answer()["id"].clone();
    assert_eq!(answers.len(), CONCURRENCY);
    for answer in answers {
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        assert!(answer.body.get("errors").is_none(), "{answer:?}");
        assert_eq!(
            answer.body["data"]["createHealthLink"]["id"], expected,
            "{answer:?}"
        );
    }
}

/// The process still serves: liveness answers, and so does GraphQL itself.
async fn assert_still_serving(app: &TestApp) {
    let response = tokio::time::timeout(
        SLACK,
        app.http.get(format!("{}/healthz", app.address)).send(),
    )
    .await
    .expect("/healthz answers in time")
    .expect("/healthz answers");
    assert_eq!(response.status(), StatusCode::OK);
    let (status, body) = app
        .graphql("{ shareableResourceTypes }", json!({}), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.get("errors").is_none(), "{body}");
}

/// A wiremock fault: `CONCURRENCY` requests get `code`; then b.well recovers, and so does the
/// gateway, at once.
async fn wiremock_fault(fault: ResponseTemplate, code: &str) -> Vec<Answer> {
    let app = spawn_app_with(fault_config).await;
    app.upstream_responds(fault).await;

    let answers = burst(&app, CONCURRENCY).await;
    assert_every_answer_is(&answers, code);
    assert_still_serving(&app).await;

    app.upstream.reset().await;
    app.upstream_answers_seed().await;
    assert_every_answer_succeeds(&burst(&app, CONCURRENCY).await);
    app.stop().await;
    answers
}

#[tokio::test]
async fn a_stalled_upstream_times_out_every_request_within_the_timeout() {
    let stalled = ResponseTemplate::new(200)
        .set_body_raw(SEED_RESPONSE, "application/json")
        .set_delay(Duration::from_secs(30));

    let answers = wiremock_fault(stalled, "UPSTREAM_TIMEOUT").await;

    for answer in &answers {
        assert!(
            answer.elapsed >= UPSTREAM_TIMEOUT,
            "answered before the timeout: {:?}",
            answer.elapsed
        );
    }
}

#[tokio::test]
async fn upstream_500s_are_upstream_error() {
    wiremock_fault(
        ResponseTemplate::new(500).set_body_string("stack trace"),
        "UPSTREAM_ERROR",
    )
    .await;
}

#[tokio::test]
async fn garbage_bodies_are_upstream_error() {
    wiremock_fault(
        ResponseTemplate::new(200).set_body_raw("<html>\u{0}\u{7f}not json", "application/json"),
        "UPSTREAM_ERROR",
    )
    .await;
}

#[tokio::test]
async fn graphql_errors_are_upstream_error() {
    let errors = ResponseTemplate::new(200).set_body_json(json!({
        "data": null,
        "errors": [{"message": "boom", "extensions": {"code": "INTERNAL_SERVER_ERROR"}}]
    }));
    wiremock_fault(errors, "UPSTREAM_ERROR").await;
}

#[tokio::test]
async fn oversized_answers_are_upstream_error() {
    let padding = "x".repeat(2 * MAX_RESPONSE_BYTES);
    let oversized = ResponseTemplate::new(200).set_body_json(json!({
        "data": {"createHealthLink": {"id": "1", "description": padding}}
    }));
    wiremock_fault(oversized, "UPSTREAM_ERROR").await;
}

#[tokio::test]
async fn redirects_are_upstream_error_and_not_followed() {
    let app = spawn_app_with(fault_config).await;
    let elsewhere = format!("{}/stolen", app.upstream.uri());
    app.upstream_responds(ResponseTemplate::new(307).insert_header("location", elsewhere.as_str()))
        .await;
    Mock::given(method("POST"))
        .and(path("/stolen"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(SEED_RESPONSE, "application/json"))
        .expect(0)
        .mount(&app.upstream)
        .await;

    assert_every_answer_is(&burst(&app, CONCURRENCY).await, "UPSTREAM_ERROR");
    let received = app.upstream.received_requests().await.expect("recorded");
    assert_eq!(
        received.len(),
        CONCURRENCY,
        "one call each, none to the target"
    );
    assert_still_serving(&app).await;

    app.upstream.reset().await;
    app.upstream_answers_seed().await;
    assert_every_answer_succeeds(&burst(&app, CONCURRENCY).await);
    app.stop().await;
}

/// What the raw upstream does with each request, switchable while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Behaviour {
    /// The seed's answer, then close.
    Healthy = 0,
    /// Reads the request, then resets the connection (RST, not FIN).
    Reset,
    /// Sends the headers and part of the body, then resets.
    ResetMidBody,
    /// Sends the headers, then the body one byte every 50 ms.
    DripBody,
    /// Sends the status line, then a header one byte every 50 ms.
    DripHeaders,
    /// Announces a 10 GB body and sends a little of it.
    EndlessLength,
    /// Answers bytes that are not HTTP, then closes.
    NotHttp,
    /// Reads the request and never answers.
    Silent,
}

impl Behaviour {
    const ALL: [Behaviour; 8] = [
        Behaviour::Healthy,
        Behaviour::Reset,
        Behaviour::ResetMidBody,
        Behaviour::DripBody,
        Behaviour::DripHeaders,
        Behaviour::EndlessLength,
        Behaviour::NotHttp,
        Behaviour::Silent,
    ];
}

/// A tiny HTTP/1.1 upstream over raw TCP, for faults below what wiremock can express.
#[derive(Debug)]
struct RawUpstream {
    url: String,
    behaviour: Arc<AtomicU8>,
    /// Connections accepted so far: the calls that reached the upstream.
    connections: Arc<AtomicUsize>,
}

impl RawUpstream {
    async fn start(behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let shared = Arc::new(AtomicU8::new(behaviour as u8));
        let connections = Arc::new(AtomicUsize::new(0));
        let (serving, accepted) = (Arc::clone(&shared), Arc::clone(&connections));
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                let behaviour = Arc::clone(&serving);
                tokio::spawn(async move {
                    // Errors are the point here (the gateway hangs up on a dripping answer).
                    let _ = serve_one(socket, &behaviour).await;
                });
            }
        });
        Self {
            url: format!("http://{address}{UPSTREAM_PATH}"),
            behaviour: shared,
            connections,
        }
    }

    fn set(&self, behaviour: Behaviour) {
        self.behaviour.store(behaviour as u8, Ordering::SeqCst);
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// A gateway whose upstream is this server.
    async fn gateway(&self, customize: impl FnOnce(Config) -> Config) -> TestApp {
        let url = self.url.parse().expect("url");
        spawn_app_with(|config| {
            customize(Config {
                upstream: UpstreamConfig {
                    upstream_url: Some(url),
                    ..config.upstream
                },
                ..config
            })
        })
        .await
    }
}

/// Reads one request (headers, then `Content-Length` bytes of body), so that the gateway is
/// waiting for its answer when the fault begins.
async fn read_request(socket: &mut TcpStream) -> std::io::Result<()> {
    let mut request = Vec::with_capacity(4096);
    let mut buffer = [0u8; 4096];
    loop {
        if let Some(end) = request.windows(4).position(|window| window == b"\r\n\r\n") {
            let headers = String::from_utf8_lossy(&request[..end]).to_ascii_lowercase();
            let length = headers
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .and_then(|value| value.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if request.len() >= end + 4 + length {
                return Ok(());
            }
        }
        if request.len() > 1024 * 1024 {
            return Err(std::io::Error::other("request too large"));
        }
        let read = socket.read(&mut buffer).await?;
        if read == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        request.extend_from_slice(&buffer[..read]);
    }
}

fn response_head(content_length: u64) -> String {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {content_length}\r\nconnection: close\r\n\r\n"
    )
}

/// Closes with RST: SO_LINGER 0 makes the kernel reset instead of a graceful FIN.
fn reset(socket: TcpStream) -> std::io::Result<()> {
    socket.set_zero_linger()?;
    drop(socket);
    Ok(())
}

async fn serve_one(mut socket: TcpStream, behaviour: &AtomicU8) -> std::io::Result<()> {
    read_request(&mut socket).await?;
    let current = behaviour.load(Ordering::SeqCst);
    let behaviour = Behaviour::ALL
        .into_iter()
        .find(|candidate| *candidate as u8 == current)
        .unwrap_or(Behaviour::Healthy);
    let answer = SEED_RESPONSE.as_bytes();
    // Every drip and wait below is bounded: the server stops on its own even if nobody hangs up.
    match behaviour {
        Behaviour::Healthy => {
            socket
                .write_all(response_head(answer.len() as u64).as_bytes())
                .await?;
            socket.write_all(answer).await?;
            socket.shutdown().await
        }
        Behaviour::Reset => reset(socket),
        Behaviour::ResetMidBody => {
            socket
                .write_all(response_head(answer.len() as u64).as_bytes())
                .await?;
            socket.write_all(&answer[..answer.len() / 2]).await?;
            socket.flush().await?;
            reset(socket)
        }
        Behaviour::DripBody => {
            socket
                .write_all(response_head(answer.len() as u64).as_bytes())
                .await?;
            for byte in answer.iter().take(400) {
                socket.write_all(std::slice::from_ref(byte)).await?;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(())
        }
        Behaviour::DripHeaders => {
            socket.write_all(b"HTTP/1.1 200 OK\r\nx-slow: ").await?;
            for _ in 0..400 {
                socket.write_all(b"a").await?;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(())
        }
        Behaviour::EndlessLength => {
            socket
                .write_all(response_head(10_000_000_000).as_bytes())
                .await?;
            socket.write_all(&[b' '; 1024]).await?;
            tokio::time::sleep(Duration::from_secs(20)).await;
            Ok(())
        }
        Behaviour::NotHttp => {
            socket
                .write_all(b"\x16\x03\x01 this is not HTTP at all\r\n\r\n")
                .await?;
            socket.shutdown().await
        }
        Behaviour::Silent => {
            tokio::time::sleep(Duration::from_secs(20)).await;
            Ok(())
        }
    }
}

/// A raw fault: `CONCURRENCY` requests get `code`; then the upstream recovers, and so does the
/// gateway, at once.
async fn raw_fault(behaviour: Behaviour, code: &str) -> Vec<Answer> {
    let upstream = RawUpstream::start(behaviour).await;
    let app = upstream.gateway(fault_config).await;

    let answers = burst(&app, CONCURRENCY).await;
    assert_every_answer_is(&answers, code);
    assert_still_serving(&app).await;

    upstream.set(Behaviour::Healthy);
    assert_every_answer_succeeds(&burst(&app, CONCURRENCY).await);
    app.stop().await;
    answers
}

fn assert_not_before_the_timeout(answers: &[Answer]) {
    for answer in answers {
        assert!(
            answer.elapsed >= UPSTREAM_TIMEOUT,
            "answered before the timeout: {:?}",
            answer.elapsed
        );
    }
}

#[tokio::test]
async fn the_raw_upstream_serves_the_seed_when_healthy() {
    // The fixture itself: without this, a broken fake would make every fault test pass for the
    // wrong reason.
    let upstream = RawUpstream::start(Behaviour::Healthy).await;
    let app = upstream.gateway(fault_config).await;
    assert_every_answer_succeeds(&burst(&app, CONCURRENCY).await);
    assert_eq!(upstream.connections(), CONCURRENCY);
    app.stop().await;
}

#[tokio::test]
async fn reset_connections_are_upstream_unavailable() {
    raw_fault(Behaviour::Reset, "UPSTREAM_UNAVAILABLE").await;
}

#[tokio::test]
async fn connections_reset_mid_body_are_upstream_unavailable() {
    raw_fault(Behaviour::ResetMidBody, "UPSTREAM_UNAVAILABLE").await;
}

#[tokio::test]
async fn a_body_dripped_slowly_times_out_at_the_total_timeout() {
    // The timeout covers the whole exchange: a byte every 50 ms would beat any idle timeout.
    let answers = raw_fault(Behaviour::DripBody, "UPSTREAM_TIMEOUT").await;
    assert_not_before_the_timeout(&answers);
}

#[tokio::test]
async fn headers_dripped_slowly_time_out_at_the_total_timeout() {
    let answers = raw_fault(Behaviour::DripHeaders, "UPSTREAM_TIMEOUT").await;
    assert_not_before_the_timeout(&answers);
}

#[tokio::test]
async fn a_silent_upstream_times_out_at_the_total_timeout() {
    let answers = raw_fault(Behaviour::Silent, "UPSTREAM_TIMEOUT").await;
    assert_not_before_the_timeout(&answers);
}

#[tokio::test]
async fn an_endless_content_length_is_refused_without_reading_it() {
    let answers = raw_fault(Behaviour::EndlessLength, "UPSTREAM_ERROR").await;
    // Refused on the announced length, not after waiting for the body: well before the timeout
    // whenever the machine is not saturated, and never later than it.
    for answer in &answers {
        assert!(answer.elapsed < UPSTREAM_TIMEOUT + SLACK, "{answer:?}");
    }
}

#[tokio::test]
async fn bytes_that_are_not_http_are_upstream_unavailable() {
    raw_fault(Behaviour::NotHttp, "UPSTREAM_UNAVAILABLE").await;
}

#[tokio::test]
async fn the_breaker_opens_under_load_fails_fast_and_closes_after_one_probe() {
    const FAILURES: u32 = 3;
    const COOLDOWN: Duration = Duration::from_millis(500);
    let upstream = RawUpstream::start(Behaviour::Silent).await;
    let app = upstream
        .gateway(|config| {
            let config = fault_config(config);
            Config {
                upstream: UpstreamConfig {
                    upstream_breaker_failures: FAILURES,
                    upstream_breaker_cooldown: COOLDOWN,
                    ..config.upstream
                },
                ..config
            }
        })
        .await;

    // A stalled upstream: the burst passes the closed breaker, every call times out, and the
    // failures open it.
    let first = burst(&app, CONCURRENCY).await;
    for answer in &first {
        let code = answer.code();
        assert!(
            matches!(code, Some("UPSTREAM_TIMEOUT" | "UPSTREAM_UNAVAILABLE")),
            "{answer:?}"
        );
    }
    let timed_out = first
        .iter()
        .filter(|answer| answer.code() == Some("UPSTREAM_TIMEOUT"))
        .count();
    assert!(timed_out >= FAILURES as usize, "{timed_out} timeouts");

    // Open: the next burst fails fast without calling the upstream, but for at most one probe
    // per cooldown that elapsed meanwhile (on a very slow machine some may).
    let calls_before = upstream.connections();
    let started = Instant::now();
    let second = burst(&app, CONCURRENCY).await;
    let windows = started.elapsed().as_millis() / COOLDOWN.as_millis() + 1;
    let calls = upstream.connections() - calls_before;
    assert!(
        calls as u128 <= windows,
        "{calls} calls reached the upstream while the breaker was open"
    );
    let fast = second
        .iter()
        .filter(|answer| answer.code() == Some("UPSTREAM_UNAVAILABLE"))
        .count();
    assert_eq!(fast + calls, CONCURRENCY, "{second:?}");
    assert_still_serving(&app).await;

    // The upstream recovers. After the cooldown, the first request is the probe: it succeeds
    // and closes the breaker, and the next burst succeeds whole.
    upstream.set(Behaviour::Healthy);
    tokio::time::sleep(COOLDOWN + Duration::from_millis(100)).await;
    let (_, probe) = app.create_seed_link().await;
    assert!(probe.get("errors").is_none(), "{probe}");
    assert_every_answer_succeeds(&burst(&app, CONCURRENCY).await);
    app.stop().await;
}
