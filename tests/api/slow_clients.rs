//! Slow, idle and numerous connections, over real sockets: each costs the client its own
//! connection for a bounded time, never the service.

use std::time::{Duration, Instant};

use serde_json::Value;
use shl_gateway::config::{Config, ListenerConfig};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::helpers::{TestApp, spawn_app_with};

fn socket_address(app: &TestApp) -> String {
    app.address.trim_start_matches("http://").to_owned()
}

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(socket_address(app))
        .await
        .expect("connect")
}

/// A complete request, on a connection of its own, is served at once.
async fn assert_a_query_is_served(app: &TestApp, otherwise: &str) {
    let response = app
        .http
        .get(format!(
            "{}/graphql?query=%7BshareableResourceTypes%7D",
            app.address
        ))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200, "{otherwise}");
}

/// Reads until the server closes the connection (or `limit` passes), returning what it sent
/// and how long the close took.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, Option<Duration>) {
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((started + limit).into(), stream.read(&mut buffer)).await {
            Err(_) => return (received, None),
            Ok(Ok(0) | Err(_)) => return (received, Some(started.elapsed())),
            Ok(Ok(read)) => received.extend_from_slice(&buffer[..read]),
        }
    }
}

/// The JSON body of a raw HTTP/1.1 answer.
fn body_of(answer: &[u8]) -> Value {
    let text = String::from_utf8_lossy(answer);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str(body).unwrap_or(Value::Null)
}

#[tokio::test]
async fn a_client_that_drips_its_headers_is_disconnected_at_the_header_timeout() {
    let app = spawn_app_with(|config| Config {
        listener: ListenerConfig {
            header_read_timeout: Duration::from_millis(600),
            ..config.listener
        },
        ..config
    })
    .await;
    let mut stream = connect(&app).await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\n")
        .await
        .expect("request line");
    let started = Instant::now();
    // One header byte every 150 ms: steady traffic, but the headers never end.
    let mut closed_after = None;
    for byte in b"X-Drip: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        .iter()
        .cycle()
        .take(60)
    {
        if stream.write_all(&[*byte]).await.is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        let mut probe = [0u8; 512];
        let read = tokio::time::timeout(Duration::from_millis(150), stream.read(&mut probe)).await;
        if let Ok(Ok(0) | Err(_)) = read {
            closed_after = Some(started.elapsed());
            break;
        }
    }
    let closed_after = closed_after.expect("the dripping connection is closed");
    assert!(
        closed_after < Duration::from_secs(5),
        "closed after {closed_after:?}, the header timeout is 600 ms"
    );
    app.stop().await;
}

#[tokio::test]
async fn slow_bodies_take_no_work_slot_and_are_answered_408() {
    let app = spawn_app_with(|config| Config {
        listener: ListenerConfig {
            max_concurrent_requests: 2,
            request_body_timeout: Duration::from_millis(1500),
            ..config.listener
        },
        ..config
    })
    .await;
    // Ten clients send complete headers and then one body byte of the 200 they announce.
    let mut slow = Vec::new();
    for _ in 0..10 {
        let mut stream = connect(&app).await;
        stream
            .write_all(
                b"POST /graphql HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n\
                  Content-Length: 200\r\n\r\n{",
            )
            .await
            .expect("headers");
        slow.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    // With only two work slots, a complete request is still served at once.
    assert_a_query_is_served(&app, "a slow body held a work slot").await;

    for mut stream in slow {
        let (answer, closed) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 408"), "answer: {text}");
        assert_eq!(body_of(&answer)["error"], "REQUEST_TIMEOUT");
        assert!(closed.is_some(), "the connection is closed after the 408");
    }
    app.stop().await;
}

#[tokio::test]
async fn idle_and_silent_connections_are_closed() {
    let app = spawn_app_with(|config| Config {
        listener: ListenerConfig {
            header_read_timeout: Duration::from_millis(500),
            idle_timeout: Duration::from_millis(700),
            ..config.listener
        },
        ..config
    })
    .await;
    // Connects and says nothing at all.
    let mut silent = connect(&app).await;
    let (_, closed) = read_until_closed(&mut silent, Duration::from_secs(5)).await;
    assert!(closed.is_some(), "a silent connection stays open");

    // One request, then nothing: the kept-alive connection is closed once idle.
    let mut idle = connect(&app).await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n")
        .await
        .expect("request");
    let (answer, closed) = read_until_closed(&mut idle, Duration::from_secs(5)).await;
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    assert!(closed.is_some(), "an idle kept-alive connection stays open");
    app.stop().await;
}

#[tokio::test]
async fn connections_over_the_per_address_cap_are_closed_on_arrival() {
    let app = spawn_app_with(|config| Config {
        listener: ListenerConfig {
            max_connections_per_ip: 3,
            header_read_timeout: Duration::from_secs(30),
            ..config.listener
        },
        ..config
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect(&app).await);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut fourth = connect(&app).await;
    let _ = fourth
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n")
        .await;
    let (answer, closed) = read_until_closed(&mut fourth, Duration::from_secs(5)).await;
    assert!(answer.is_empty(), "the fourth connection was served");
    assert!(closed.is_some(), "the fourth connection stays open");

    // A place freed is a place again.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut again = connect(&app).await;
    again
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\r\n")
        .await
        .expect("request");
    let (answer, _) = read_until_closed(&mut again, Duration::from_secs(5)).await;
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    drop(held);
    app.stop().await;
}

#[tokio::test]
async fn http2_connections_advertise_the_stream_limit_and_stalled_streams_take_no_slot() {
    let app = spawn_app_with(|config| Config {
        listener: ListenerConfig {
            max_concurrent_requests: 2,
            http2_max_concurrent_streams: 4,
            request_body_timeout: Duration::from_millis(1500),
            ..config.listener
        },
        ..config
    })
    .await;
    let tcp = connect(&app).await;
    let (client, connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
    let connection = tokio::spawn(connection);
    let mut client = client.ready().await.expect("ready");
    // The server's SETTINGS have arrived once a first answer has.
    let probe = http::Request::get(format!("{}/healthz", app.address))
        .body(())
        .expect("request");
    let (answer, _) = client.send_request(probe, true).expect("stream");
    assert_eq!(answer.await.expect("answer").status(), 200);
    assert_eq!(client.current_max_send_streams(), 4);

    // Four streams that announce a body and never finish it.
    let mut stalled = Vec::new();
    for _ in 0..4 {
        client = client.ready().await.expect("ready");
        let request = http::Request::post(format!("{}/graphql", app.address))
            .header("content-type", "application/json")
            .body(())
            .expect("request");
        let (response, mut body) = client.send_request(request, false).expect("stream");
        body.send_data(bytes::Bytes::from_static(b"{"), false)
            .expect("one byte");
        stalled.push((response, body));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_a_query_is_served(&app, "stalled streams held the work slots").await;

    for (response, _body) in stalled {
        let response = tokio::time::timeout(Duration::from_secs(10), response)
            .await
            .expect("answered in time")
            .expect("answer");
        assert_eq!(response.status(), 408);
    }
    // After a 408 the connection is told to go (GOAWAY): it cannot be reused for more.
    tokio::time::timeout(Duration::from_secs(5), connection)
        .await
        .expect("the connection closes after its 408s")
        .expect("connection task")
        .expect("closed with GOAWAY");
    app.stop().await;
}

/// What closes the flood is h2's: its pending-reset limit (set low here) or its limit on streams
/// it resets itself, whichever comes first. The test holds the gateway to the outcome (the flood
/// ends its own connection, fast, and others are served), not to which limit fired.
#[tokio::test]
async fn an_http2_rapid_reset_flood_closes_its_connection_and_spares_the_others() {
    let app = spawn_app_with(|config| Config {
        listener: ListenerConfig {
            http2_max_pending_reset_streams: 5,
            ..config.listener
        },
        ..config
    })
    .await;
    let tcp = connect(&app).await;
    let (mut client, connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
    let connection = tokio::spawn(connection);
    // Open and cancel streams as fast as the client can write them.
    for _ in 0..2_000 {
        let Ok(ready) = client.ready().await else {
            break;
        };
        client = ready;
        let request = http::Request::post(format!("{}/graphql", app.address))
            .header("content-type", "application/json")
            .body(())
            .expect("request");
        let Ok((_, mut body)) = client.send_request(request, false) else {
            break;
        };
        body.send_reset(h2::Reason::CANCEL);
    }
    let ended = tokio::time::timeout(Duration::from_secs(10), connection)
        .await
        .expect("the flooding connection is closed by the server")
        .expect("connection task");
    // The server's GOAWAY (ENHANCE_YOUR_CALM) usually reaches the client as a broken pipe: it
    // is still writing its flood when the server closes.
    assert!(
        ended.is_err(),
        "the flood ran to its end on an open connection"
    );

    let response = app
        .http
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed() {
    let app = spawn_app_with(|config| Config {
        listener: ListenerConfig {
            idle_timeout: Duration::from_millis(700),
            ..config.listener
        },
        ..config
    })
    .await;
    let tcp = connect(&app).await;
    let (client, connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
    let connection = tokio::spawn(connection);
    let mut client = client.ready().await.expect("ready");
    let request = http::Request::get(format!("{}/healthz", app.address))
        .body(())
        .expect("request");
    let (answer, _) = client.send_request(request, true).expect("stream");
    assert_eq!(answer.await.expect("answer").status(), 200);
    // Pings are answered all along (the client's connection task does it); no request follows.
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), connection)
        .await
        .expect("the idle connection is closed")
        .expect("connection task")
        .expect("closed gracefully, with GOAWAY");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(500) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_client_that_never_reads_its_answer_loses_the_connection() {
    let app = spawn_app_with(|config| Config {
        listener: ListenerConfig {
            header_read_timeout: Duration::from_millis(500),
            idle_timeout: Duration::from_millis(500),
            ..config.listener
        },
        ..config
    })
    .await;
    let tcp = connect(&app).await;
    // A flow-control window of 0: the gateway can send the answer's head, never its body.
    let (client, connection) = h2::client::Builder::new()
        .initial_window_size(0)
        .handshake::<_, bytes::Bytes>(tcp)
        .await
        .expect("h2 handshake");
    let connection = tokio::spawn(connection);
    let mut client = client.ready().await.expect("ready");
    let request = http::Request::get(format!("{}/healthz", app.address))
        .body(())
        .expect("request");
    let (answer, _) = client.send_request(request, true).expect("stream");
    let answer = answer.await.expect("the head arrives");
    assert_eq!(answer.status(), 200);
    let started = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(10), connection)
        .await
        .expect("the connection is dropped although its answer is unread");
    drop(ended);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    drop(answer);
    app.stop().await;
}

#[tokio::test]
async fn buffered_bodies_stay_within_their_memory_budget() {
    // One work slot: the budget is one largest body (4 KiB, the SHL endpoints' limit, plus one).
    let app = spawn_app_with(|config| Config {
        listener: ListenerConfig {
            max_concurrent_requests: 1,
            max_body_bytes: 1024,
            request_body_timeout: Duration::from_secs(3),
            ..config.listener
        },
        ..config
    })
    .await;
    // 3,800 bytes of a 4,000-byte body, and then nothing: held against the budget.
    let mut holder = connect(&app).await;
    holder
        .write_all(
            b"POST /graphql HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n\
              Content-Length: 4000\r\n\r\n",
        )
        .await
        .expect("headers");
    holder
        .write_all(&[b' '; 3800])
        .await
        .expect("part of the body");
    tokio::time::sleep(Duration::from_millis(300)).await;

    let body = format!(
        "{{\"query\":\"{{shareableResourceTypes}}\"{}}}",
        " ".repeat(700)
    );
    let response = app
        .http
        .post(format!("{}/graphql", app.address))
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 503);
    let refusal: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(refusal["error"], "OVERLOADED");

    // Once the held body times out, its bytes are free again.
    let (answer, _) = read_until_closed(&mut holder, Duration::from_secs(10)).await;
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 408"));
    let response = app
        .http
        .post(format!("{}/graphql", app.address))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    app.stop().await;
}
