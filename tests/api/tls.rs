//! The optional TLS listener: the viewer's WebCrypto needs a secure context off localhost.

use serde_json::json;

use crate::embedded::{create_link, shl_payload};
use crate::helpers::*;

#[tokio::test]
async fn with_a_certificate_the_gateway_serves_https_links() {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("self-signed certificate");
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, certified.cert.pem()).expect("write cert");
    std::fs::write(&key_path, certified.signing_key.serialize_pem()).expect("write key");
    let mut app = spawn_embedded(&TestDatabase::Sqlite, |mut config| {
        config.listener.tls_cert = Some(cert_path.clone());
        config.listener.tls_key = Some(key_path.clone());
        config
    })
    .await;
    app.address = app.address.replace("http://", "https://");
    app.http = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).expect("pem"),
        )
        .build()
        .expect("client");

    let health = app
        .http
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .expect("https works");
    assert_eq!(health.status(), 200);
    let (link, payload) = create_link(&app, json!({})).await;
    let viewer = link["content"][0]["attachment"]["url"]
        .as_str()
        .expect("url");
    assert!(viewer.starts_with("https://"), "{viewer}");
    assert_eq!(
        shl_payload(viewer)["url"]
            .as_str()
            .expect("url")
            .split(':')
            .next(),
        Some("https")
    );
    let (status, _) = crate::manifest_protocol::post_manifest(
        &app,
        &payload,
        json!({"recipient": "r", "passcode": link["passcode"]}),
    )
    .await;
    assert_eq!(status, 200);
    let plain = reqwest::get(format!(
        "{}/healthz",
        app.address.replace("https://", "http://")
    ))
    .await;
    assert!(
        plain.is_err() || !plain.expect("response").status().is_success(),
        "no plaintext on a TLS listener"
    );
    app.stop().await;
}
