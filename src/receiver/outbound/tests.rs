//! The hardening, against servers on 127.0.0.1 only.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::*;

/// Settings that let tests reach their own loopback servers over http.
fn local() -> OutboundSettings {
    OutboundSettings {
        allow_http: true,
        allow_private_addresses: true,
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(2),
        ..OutboundSettings::default()
    }
}

fn client(settings: &OutboundSettings) -> OutboundClient {
    OutboundClient::new(settings).expect("client")
}

fn url(text: &str) -> Url {
    Url::parse(text).expect("url")
}

/// Serves `router` on 127.0.0.1:0; returns its address.
async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, router).await });
    address
}

/// A listener nobody serves: connections queue in the backlog until the test ends. Whether
/// any arrived tells a refused request from one that was sent.
fn silent_listener() -> std::net::TcpListener {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("non-blocking");
    listener
}

fn connections(listener: &std::net::TcpListener) -> usize {
    std::iter::from_fn(|| listener.accept().ok()).count()
}

#[test]
fn non_public_ranges_are_named() {
    for (address, range) in [
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", Some("Teredo")),
        ("2001:4860:4860::8888", None),
        ("127.0.0.1", Some("loopback")),
        ("127.255.0.9", Some("loopback")),
        ("10.1.2.3", Some("private")),
        ("172.16.0.1", Some("private")),
        ("172.31.255.255", Some("private")),
        ("192.168.1.1", Some("private")),
        ("169.254.169.254", Some("link-local")),
        ("0.0.0.0", Some("unspecified")),
        ("0.1.2.3", Some("unspecified")),
        ("100.64.0.1", Some("shared (carrier-grade NAT)")),
        ("255.255.255.255", Some("reserved")),
        ("240.0.0.1", Some("reserved")),
        ("224.0.0.1", Some("multicast")),
        ("::1", Some("loopback")),
        ("::", Some("unspecified")),
        ("::ffff:127.0.0.1", Some("loopback")),
        ("::ffff:10.0.0.1", Some("private")),
        ("::127.0.0.1", Some("loopback")),
        ("64:ff9b::a9fe:a9fe", Some("link-local")),
        ("fc00::1", Some("private (unique local)")),
        ("fd12:3456::1", Some("private (unique local)")),
        ("fe80::1", Some("link-local")),
        ("fec0::1", Some("link-local")),
        ("ff02::1", Some("multicast")),
        ("192.0.0.9", Some("reserved")),
        ("192.0.2.1", Some("documentation")),
        ("198.51.100.7", Some("documentation")),
        ("203.0.113.5", Some("documentation")),
        ("198.18.0.1", Some("benchmarking")),
        ("198.19.255.254", Some("benchmarking")),
        ("192.88.99.1", Some("reserved")),
        // IPv6 forms that embed an IPv4 address: IPv4-translated, 6to4, local-use NAT64.
        ("::ffff:0:7f00:1", Some("loopback")),
        ("2002:a9fe:a9fe::1", Some("link-local")),
        ("2002:c0a8:0101::", Some("private")),
        ("64:ff9b:1::a00:1", Some("NAT64 (local use)")),
        ("2001:db8::1", Some("documentation")),
        ("100::1", Some("reserved")),
        // Public addresses (never contacted: only classified).
        ("93.184.215.14", None),
        ("172.32.0.1", None),
        ("100.128.0.1", None),
        ("2606:2800:21f:cb07:6820:80da:af6b:8b2c", None),
        ("::ffff:93.184.215.14", None),
        ("2002:5db8:d70e::1", None),
        ("198.20.0.1", None),
        ("192.0.3.1", None),
    ] {
        let address: IpAddr = address.parse().expect("address");
        assert_eq!(non_public_range(address), range, "{address}");
    }
}

#[test]
fn the_policy_refuses_before_anything_is_sent() {
    let strict = client(&OutboundSettings::default());
    for (target, refusal) in [
        ("http://shl.example.org/m", Refusal::Http),
        ("ftp://shl.example.org/m", Refusal::Scheme("ftp".to_owned())),
        (
            "https://user:secret@shl.example.org/m",
            Refusal::Credentials,
        ),
        (
            "https://127.0.0.1/m",
            Refusal::Address {
                host: "127.0.0.1".to_owned(),
                range: "loopback",
            },
        ),
        // WHATWG URL parsing normalizes these spellings of 127.0.0.1, so they are caught too.
        (
            "https://2130706433/m",
            Refusal::Address {
                host: "127.0.0.1".to_owned(),
                range: "loopback",
            },
        ),
        (
            "https://0x7f.1/m",
            Refusal::Address {
                host: "127.0.0.1".to_owned(),
                range: "loopback",
            },
        ),
        (
            "https://[::ffff:169.254.169.254]/latest",
            Refusal::Address {
                host: "::ffff:169.254.169.254".to_owned(),
                range: "link-local",
            },
        ),
    ] {
        assert_eq!(
            strict.check(&url(target)),
            Err(FetchError::Refused(refusal)),
            "{target}"
        );
    }
    assert_eq!(strict.check(&url("https://shl.example.org/m")), Ok(()));
    let local = client(&local());
    assert_eq!(local.check(&url("http://127.0.0.1:9/m")), Ok(()));
}

#[tokio::test]
async fn a_private_address_is_refused_without_the_allowance_and_never_contacted() {
    let listener = silent_listener();
    let port = listener.local_addr().expect("address").port();
    let http_only = OutboundSettings {
        allow_http: true,
        // A name that resolves to loopback, as a rebinding name would on its second lookup.
        resolve: vec![(
            "rebind.example".to_owned(),
            SocketAddr::from(([127, 0, 0, 1], port)),
        )],
        ..local()
    };
    let http_only = OutboundSettings {
        allow_private_addresses: false,
        ..http_only
    };
    let client = client(&http_only);

    let literal = client
        .get(&url(&format!("http://127.0.0.1:{port}/m")), None)
        .await;
    let named = client
        .get(&url(&format!("http://rebind.example:{port}/m")), None)
        .await;

    assert_eq!(
        literal.map(|_| ()),
        Err(FetchError::Refused(Refusal::Address {
            host: "127.0.0.1".to_owned(),
            range: "loopback"
        }))
    );
    assert_eq!(
        named.map(|_| ()),
        Err(FetchError::Refused(Refusal::Resolved {
            host: "rebind.example".to_owned(),
            address: IpAddr::from([127, 0, 0, 1]),
            range: "loopback"
        }))
    );
    assert_eq!(connections(&listener), 0, "nothing reached the server");

    // The same name with the allowance does connect: the refusal was the policy's.
    let allowed = OutboundSettings {
        allow_private_addresses: true,
        request_timeout: Duration::from_millis(300),
        ..http_only
    };
    let attempt = OutboundClient::new(&allowed)
        .expect("client")
        .get(&url(&format!("http://rebind.example:{port}/m")), None)
        .await;
    assert_eq!(
        attempt.map(|_| ()),
        Err(FetchError::Timeout(Duration::from_millis(300)))
    );
    assert_eq!(connections(&listener), 1);
}

#[tokio::test]
async fn a_redirect_is_refused_and_its_target_never_fetched() {
    static TARGET_HITS: AtomicUsize = AtomicUsize::new(0);
    let router = Router::new()
        .route(
            "/file",
            get(|| async {
                (
                    StatusCode::FOUND,
                    [(header::LOCATION, "/elsewhere")],
                    "moved",
                )
            }),
        )
        .route(
            "/elsewhere",
            get(|| async {
                TARGET_HITS.fetch_add(1, Ordering::SeqCst);
                "the file"
            }),
        );
    let address = serve(router).await;

    let answer = client(&local())
        .get(&url(&format!("http://{address}/file")), None)
        .await;

    assert_eq!(answer.map(|_| ()), Err(FetchError::Redirect(302)));
    assert_eq!(TARGET_HITS.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_oversized_answer_is_refused_declared_or_streamed() {
    let router = Router::new()
        .route("/declared", get(|| async { "x".repeat(2_000) }))
        .route(
            "/streamed",
            get(|| async {
                // No Content-Length: the size is only known by counting.
                let chunks = (0..20).map(|_| Ok::<_, std::io::Error>(vec![b'x'; 100]));
                Body::from_stream(futures_util::stream::iter(chunks)).into_response()
            }),
        )
        .route("/fits", get(|| async { "x".repeat(1_000) }));
    let address = serve(router).await;
    let capped = OutboundSettings {
        max_response_bytes: 1_000,
        ..local()
    };
    let client = client(&capped);

    for path in ["declared", "streamed"] {
        let answer = client
            .get(&url(&format!("http://{address}/{path}")), None)
            .await;
        assert_eq!(
            answer.map(|_| ()),
            Err(FetchError::TooLarge(1_000)),
            "{path}"
        );
    }
    let fits = client
        .get(&url(&format!("http://{address}/fits")), None)
        .await
        .expect("exactly the cap is read");
    assert_eq!((fits.status, fits.body.len()), (200, 1_000));
    // A caller's tighter cap (the JWKS's) applies too.
    let tight = client
        .get(&url(&format!("http://{address}/fits")), Some(999))
        .await;
    assert_eq!(tight.map(|_| ()), Err(FetchError::TooLarge(999)));
}

#[tokio::test]
async fn a_server_that_never_answers_is_given_up_on_in_time() {
    let listener = silent_listener();
    let port = listener.local_addr().expect("address").port();
    let impatient = OutboundSettings {
        request_timeout: Duration::from_millis(300),
        ..local()
    };
    let started = Instant::now();

    let answer = client(&impatient)
        .get(&url(&format!("http://127.0.0.1:{port}/m")), None)
        .await;

    assert_eq!(
        answer.map(|_| ()),
        Err(FetchError::Timeout(Duration::from_millis(300)))
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_closed_port_is_a_connection_failure() {
    let port = silent_listener().local_addr().expect("address").port();
    // The listener is dropped: nothing listens there now.
    let answer = client(&local())
        .get(&url(&format!("http://127.0.0.1:{port}/m")), None)
        .await;
    assert_eq!(answer.map(|_| ()), Err(FetchError::Connect));
}

#[tokio::test]
async fn errors_never_repeat_the_url() {
    let port = silent_listener().local_addr().expect("address").port();
    let secret_path = "manifests/a8Yl3vFqOKxyz0123456789";
    let answer = client(&local())
        .get(
            &url(&format!("http://127.0.0.1:{port}/{secret_path}")),
            None,
        )
        .await
        .expect_err("nothing listens");
    assert!(!answer.to_string().contains("a8Yl3vFq"), "{answer}");
    assert!(!format!("{answer:?}").contains("a8Yl3vFq"));
}

#[tokio::test]
async fn the_manifest_request_is_a_json_post() {
    let router = Router::new().route(
        "/m",
        axum::routing::post(|headers: axum::http::HeaderMap, body: String| async move {
            let content_type = headers
                .get(header::CONTENT_TYPE)
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            (
                [(header::CONTENT_TYPE, "application/json")],
                format!("{content_type}|{body}"),
            )
        }),
    );
    let address = serve(router).await;

    let answer = client(&local())
        .post_json(
            &url(&format!("http://{address}/m")),
            &serde_json::json!({"recipient": "Dr. Who"}),
        )
        .await
        .expect("answered");

    assert_eq!(answer.content_type.as_deref(), Some("application/json"));
    assert_eq!(
        String::from_utf8(answer.body).expect("text"),
        r#"application/json|{"recipient":"Dr. Who"}"#
    );
}

#[tokio::test]
async fn with_a_host_list_only_its_hosts_are_contacted() {
    let listener = silent_listener();
    let port = listener.local_addr().expect("address").port();
    let listed = OutboundSettings {
        // Both names lead to the same loopback server: only the list tells them apart.
        resolve: vec![
            (
                "files.example.org".to_owned(),
                SocketAddr::from(([127, 0, 0, 1], port)),
            ),
            (
                "elsewhere.example".to_owned(),
                SocketAddr::from(([127, 0, 0, 1], port)),
            ),
        ],
        request_timeout: Duration::from_millis(300),
        hosts: Some(HostPatterns::parse(["*.example.org"]).expect("patterns")),
        ..local()
    };
    let client = client(&listed);

    let refused = client
        .post_json(
            &url(&format!("http://elsewhere.example:{port}/m")),
            &serde_json::json!({}),
        )
        .await;
    assert_eq!(
        refused.map(|_| ()),
        Err(FetchError::Refused(Refusal::HostNotListed(
            "elsewhere.example".to_owned()
        )))
    );
    assert_eq!(connections(&listener), 0, "nothing reached the server");

    // A listed host is contacted (the silent server then times the request out).
    let attempt = client
        .get(&url(&format!("http://files.example.org:{port}/f")), None)
        .await;
    assert_eq!(
        attempt.map(|_| ()),
        Err(FetchError::Timeout(Duration::from_millis(300)))
    );
}
