//! The Kill the Clipboard bridge (`--ktc-bridge`): in upstream mode, a DIRECT link made from
//! b.well's passcode link. The fake b.well (wiremock on 127.0.0.1) answers `createHealthLink`
//! with a real viewer URL, and serves that link's manifest and JWE, made here with the `aes-gcm`
//! crate directly from the HL7 IPS example: nothing of the gateway's own JOSE code is trusted.

use std::time::Duration;

use aes_gcm::aead::Nonce;
use aes_gcm::{AeadInOut, Aes256Gcm, KeyInit};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::SecretString;
use serde_json::{Value, json};
use shl_gateway::config::{BridgeConfig, Config, EmbeddedConfig, UpstreamConfig};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::attestation::{
    attestation_of, fetch_jwks, new_key, private_pem, verify, with_attestation, write_file,
};
use crate::embedded::{CREATE_WITH_GATEWAY_FIELDS, shl_payload};
use crate::helpers::*;
use crate::ktc_conformance::{CONFORMANCE_RECIPIENT, document_codes, receive_direct_link};

const HL7_IPS_BUNDLE: &str = include_str!("../fixtures/hl7-ips-bundle-01.json");
/// b.well's manifest id and key for the link it makes: canaries the logs must never hold.
const BWELL_MANIFEST_ID: &str = "bwellManifestIdCanary0123456789abcdefghijklmn";
const BWELL_KEY: [u8; 32] = *b"bwell-link-key-canary-0123456789";
const BWELL_SUBJECT: &str = "Patient/person.c2c119e9-4812-4a1a-919e-46eb0fe0356a";
const MANIFEST_PATH: &str = "/v1/health-link/manifests/";

/// Bridge on, fetching from loopback over http (the fake b.well), as tests and local use need.
fn with_bridge(config: Config) -> Config {
    Config {
        bridge: BridgeConfig {
            ktc_bridge: true,
            ktc_bridge_hosts: vec!["127.0.0.1".to_owned()],
            ktc_bridge_allow_http: true,
        },
        ..config
    }
}

/// A gateway with the bridge on whose store is `database` (a fresh SQLite file or PostgreSQL
/// schema): the bridged links live there.
async fn spawn_bridge_on(database: &TestDatabase) -> TestApp {
    let data_dir = tempfile::tempdir().expect("tempdir");
    let (database_url, postgres_schema) = database.fresh_url(data_dir.path()).await;
    let mut app = spawn_app_with(|config| {
        with_bridge(Config {
            embedded: EmbeddedConfig {
                database_url: Some(SecretString::from(database_url)),
                ..config.embedded
            },
            ..config
        })
    })
    .await;
    app.owns_store(data_dir, postgres_schema);
    app
}

/// A compact JWE (`dir`, `A256GCM`) of `plaintext` under b.well's key, made by hand.
fn encrypt(plaintext: &[u8]) -> String {
    let header =
        URL_SAFE_NO_PAD.encode(r#"{"alg":"dir","enc":"A256GCM","cty":"application/fhir+json"}"#);
    let iv = [7u8; 12];
    let mut ciphertext = plaintext.to_vec();
    let tag = Aes256Gcm::new_from_slice(&BWELL_KEY)
        .expect("a 256-bit key")
        .encrypt_inout_detached(
            &Nonce::<Aes256Gcm>::from(iv),
            header.as_bytes(),
            ciphertext.as_mut_slice().into(),
        )
        .expect("encrypts");
    format!(
        "{header}..{}.{}.{}",
        URL_SAFE_NO_PAD.encode(iv),
        URL_SAFE_NO_PAD.encode(&ciphertext),
        URL_SAFE_NO_PAD.encode(tag)
    )
}

/// b.well's viewer URL for a passcode link whose manifest is on `manifest_base`.
fn bwell_viewer_url(manifest_base: &str) -> String {
    let payload = json!({
        "url": format!("{manifest_base}{MANIFEST_PATH}{BWELL_MANIFEST_ID}"),
        "key": URL_SAFE_NO_PAD.encode(BWELL_KEY),
        "exp": time::OffsetDateTime::now_utc().unix_timestamp() + 300,
        "flag": "P",
        "label": "Health Records",
    });
    format!(
        "{manifest_base}/v1/health-link/viewer.html#shlink:/{}",
        URL_SAFE_NO_PAD.encode(payload.to_string())
    )
}

/// b.well's `createHealthLink` answer pointing at `viewer_url`.
fn bwell_answer(viewer_url: &str) -> Value {
    let mut answer: Value = serde_json::from_str(SEED_RESPONSE).expect("seed answer");
    answer["data"]["createHealthLink"]["content"][0]["attachment"]["url"] = json!(viewer_url);
    answer
}

/// Makes `bwell` answer `createHealthLink` with a link whose manifest `bwell` serves as
/// `manifest` answers.
async fn bwell_serves(bwell: &MockServer, manifest_base: &str, manifest: ResponseTemplate) {
    Mock::given(method("POST"))
        .and(path(UPSTREAM_PATH))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(bwell_answer(&bwell_viewer_url(manifest_base))),
        )
        .mount(bwell)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{MANIFEST_PATH}{BWELL_MANIFEST_ID}")))
        .respond_with(manifest)
        .mount(bwell)
        .await;
}

/// The manifest b.well answers for the right passcode: the IPS document, embedded.
fn good_manifest() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "status": "finalized",
        "files": [{
            "contentType": "application/fhir+json",
            "embedded": encrypt(HL7_IPS_BUNDLE.as_bytes()),
        }]
    }))
}

/// The bodies of the manifest requests b.well received.
async fn manifest_requests(bwell: &MockServer) -> Vec<Value> {
    bwell
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|request| request.url.path().starts_with(MANIFEST_PATH))
        .map(|request| serde_json::from_slice(&request.body).expect("JSON manifest request"))
        .collect()
}

/// The passcode the gateway sent b.well with `createHealthLink`.
async fn passcode_sent_to_bwell(bwell: &MockServer) -> String {
    let bodies: Vec<Value> = bwell
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|request| request.url.path() == UPSTREAM_PATH)
        .map(|request| serde_json::from_slice(&request.body).expect("JSON"))
        .collect();
    assert_eq!(bodies.len(), 1, "one createHealthLink call to b.well");
    bodies[0]["variables"]["input"]["securityConfig"]["passcode"]
        .as_str()
        .expect("a passcode for b.well")
        .to_owned()
}

async fn create_direct(app: &TestApp, authorization: &str) -> Value {
    app.graphql(
        CREATE_WITH_GATEWAY_FIELDS,
        json!({"input": {"mode": "DIRECT", "label": "For my new doctor"}}),
        Some(authorization),
    )
    .await
    .1
}

#[tokio::test]
async fn a_bridged_direct_link_passes_a_kill_the_clipboard_receivers_checks() {
    let app = spawn_app_with(with_bridge).await;
    bwell_serves(&app.upstream, &app.upstream.uri(), good_manifest()).await;

    let body = create_direct(&app, TOKEN).await;

    assert!(body.get("errors").is_none(), "{body}");
    let link = &body["data"]["createHealthLink"];
    let viewer_url = link["content"][0]["attachment"]["url"]
        .as_str()
        .expect("url");
    assert!(
        viewer_url.starts_with(&format!(
            "{}/v1/health-link/viewer.html#shlink:/",
            app.address
        )),
        "a link on the gateway's public URL: {viewer_url}"
    );
    assert!(link["qrCodeSvg"].as_str().expect("QR").starts_with("<svg"));
    assert!(link["passcode"].is_null(), "a direct link has no passcode");
    assert_eq!(link["subject"]["reference"], BWELL_SUBJECT);
    let payload = shl_payload(viewer_url);
    assert_eq!(payload["label"], "For my new doctor");

    let bundle = receive_direct_link(&app, &payload).await;
    let patient = &bundle["entry"][0]["resource"];
    assert_eq!(patient["resourceType"], "Patient");
    assert_eq!(
        patient["name"][0]["family"], "DeLarosa",
        "the IPS's patient"
    );
    let types: Vec<&str> = bundle["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|entry| entry["resource"]["resourceType"].as_str())
        .collect();
    for expected in ["Condition", "AllergyIntolerance", "MedicationStatement"] {
        assert!(types.contains(&expected), "{expected} in {types:?}");
    }
    assert!(!types.contains(&"Composition"), "not a document");
    assert_eq!(document_codes(&bundle), ["60591-5"], "the rendered summary");

    let passcode = passcode_sent_to_bwell(&app.upstream).await;
    assert_eq!(passcode.len(), 6);
    let manifests = manifest_requests(&app.upstream).await;
    assert_eq!(manifests.len(), 1, "exactly one manifest request");
    assert_eq!(manifests[0]["passcode"], passcode.as_str());
    assert!(
        manifests[0]["recipient"]
            .as_str()
            .is_some_and(|r| !r.is_empty())
    );
    app.stop().await;
}

#[tokio::test]
async fn a_bridged_link_carries_the_story_and_the_app_attestation() {
    let keys = tempfile::tempdir().expect("tempdir");
    let key = write_file(keys.path(), "active.pem", &private_pem(&new_key()), 0o600);
    let attested = with_attestation(key, Vec::new(), None);
    let app = spawn_app_with(|config| attested(with_bridge(config))).await;
    bwell_serves(&app.upstream, &app.upstream.uri(), good_manifest()).await;

    let body = app
        .graphql(
            CREATE_WITH_GATEWAY_FIELDS,
            json!({"input": {"mode": "DIRECT", "renderedSummary": false,
                             "patientStory": "I run marathons; my asthma is under control."}}),
            Some(TOKEN),
        )
        .await
        .1;
    assert!(body.get("errors").is_none(), "{body}");
    let link = &body["data"]["createHealthLink"];
    let payload = shl_payload(
        link["content"][0]["attachment"]["url"]
            .as_str()
            .expect("url"),
    );
    let bundle = receive_direct_link(&app, &payload).await;

    assert_eq!(document_codes(&bundle), ["51855-5"], "the story only");
    let jwks: jsonwebtoken::jwk::JwkSet = fetch_jwks(&app).await.json().await.expect("JWKS");
    let jwt = attestation_of(&bundle).expect("a bridged link is attested");
    verify(&jwt, &jwks, &app.address);
    app.stop().await;
}

/// `createHealthLink(mode: DIRECT)` against a fake b.well whose link leads to `manifest`.
async fn bridge_failure(
    customize: impl FnOnce(Config) -> Config,
    manifest: ResponseTemplate,
) -> (String, usize) {
    let app = spawn_app_with(|config| customize(with_bridge(config))).await;
    bwell_serves(&app.upstream, &app.upstream.uri(), manifest).await;
    let started = std::time::Instant::now();
    let body = create_direct(&app, TOKEN).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "bounded: {:?}",
        started.elapsed()
    );
    assert!(body["data"].is_null(), "{body}");
    let code = error_code(&body).to_owned();
    let manifests = manifest_requests(&app.upstream).await.len();
    let listed = app
        .graphql("{ healthLinks { id } }", json!({}), Some(TOKEN))
        .await
        .1;
    assert_eq!(listed["data"]["healthLinks"], json!([]), "no link kept");
    app.stop().await;
    (code, manifests)
}

#[tokio::test]
async fn a_manifest_host_outside_the_allowed_hosts_gets_no_passcode() {
    let (code, manifests) = bridge_failure(
        |config| Config {
            bridge: BridgeConfig {
                ktc_bridge_hosts: vec!["*.icanbwell.com".to_owned()],
                ..config.bridge
            },
            ..config
        },
        good_manifest(),
    )
    .await;
    assert_eq!(code, "UPSTREAM_ERROR");
    assert_eq!(manifests, 0, "the passcode went nowhere");
}

#[tokio::test]
async fn b_wells_manifest_failures_map_to_stable_codes() {
    let cases = [
        (
            ResponseTemplate::new(401).set_body_json(json!({"remainingAttempts": 4})),
            "UPSTREAM_ERROR",
        ),
        (ResponseTemplate::new(404), "UPSTREAM_ERROR"),
        (ResponseTemplate::new(500), "UPSTREAM_ERROR"),
        (
            ResponseTemplate::new(429).insert_header("retry-after", "30"),
            "UPSTREAM_UNAVAILABLE",
        ),
        (
            ResponseTemplate::new(200).set_body_raw("<html>not a manifest</html>", "text/html"),
            "UPSTREAM_ERROR",
        ),
        (
            ResponseTemplate::new(200).set_body_json(json!({
                "files": [{"contentType": "application/fhir+json", "embedded": "a.b.c.d.e"}]
            })),
            "UPSTREAM_ERROR",
        ),
        (
            good_manifest().set_delay(Duration::from_secs(3)),
            "UPSTREAM_TIMEOUT",
        ),
    ];
    for (manifest, expected) in cases {
        let (code, manifests) = bridge_failure(
            |config| Config {
                upstream: UpstreamConfig {
                    upstream_timeout: Duration::from_millis(800),
                    ..config.upstream
                },
                ..config
            },
            manifest,
        )
        .await;
        assert_eq!(code, expected);
        assert_eq!(manifests, 1, "one try, never a retry with the passcode");
    }
}

#[tokio::test]
async fn an_unreachable_manifest_host_is_upstream_unavailable() {
    let app = spawn_app_with(with_bridge).await;
    // A port nothing listens on: bound, then closed.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("address").port();
    drop(closed);
    bwell_serves(
        &app.upstream,
        &format!("http://127.0.0.1:{port}"),
        good_manifest(),
    )
    .await;
    let body = create_direct(&app, TOKEN).await;
    assert_eq!(error_code(&body), "UPSTREAM_UNAVAILABLE", "{body}");
    app.stop().await;
}

#[tokio::test]
async fn a_b_well_answer_without_a_link_is_an_upstream_error() {
    let app = spawn_app_with(with_bridge).await;
    let mut answer = bwell_answer("unused");
    answer["data"]["createHealthLink"]["content"] = json!([]);
    app.upstream_responds(ResponseTemplate::new(200).set_body_json(answer))
        .await;
    let body = create_direct(&app, TOKEN).await;
    assert_eq!(error_code(&body), "UPSTREAM_ERROR");
    assert!(manifest_requests(&app.upstream).await.is_empty());
    app.stop().await;
}

on_each_database!(bridged_links_are_listed_revoked_and_their_accesses_shown_to_their_caller);
async fn bridged_links_are_listed_revoked_and_their_accesses_shown_to_their_caller(
    database: TestDatabase,
) {
    let app = spawn_bridge_on(&database).await;
    bwell_serves(&app.upstream, &app.upstream.uri(), good_manifest()).await;
    let body = create_direct(&app, TOKEN).await;
    let link = &body["data"]["createHealthLink"];
    let id = link["id"].as_str().expect("id").to_owned();
    let payload = shl_payload(
        link["content"][0]["attachment"]["url"]
            .as_str()
            .expect("url"),
    );
    receive_direct_link(&app, &payload).await;

    let list = "{ healthLinks { id mode status accesses { recipient outcome } } }";
    let listed = app.graphql(list, json!({}), Some(TOKEN)).await.1;
    let links = listed["data"]["healthLinks"].as_array().expect("links");
    assert_eq!(links.len(), 1, "{listed}");
    assert_eq!(links[0]["id"], id.as_str());
    assert_eq!(links[0]["mode"], "DIRECT");
    assert_eq!(links[0]["accesses"][0]["recipient"], CONFORMANCE_RECIPIENT);
    let stranger = app
        .graphql(
            list,
            json!({}),
            Some("Bearer another-callers-token-0123456789"),
        )
        .await
        .1;
    assert_eq!(stranger["data"]["healthLinks"], json!([]), "{stranger}");
    let refused = app
        .graphql(
            "mutation($id: ID!) { revokeHealthLink(id: $id) { id } }",
            json!({"id": id}),
            Some("Bearer another-callers-token-0123456789"),
        )
        .await
        .1;
    assert_eq!(error_code(&refused), "NOT_FOUND");

    let revoked = app
        .graphql(
            "mutation($id: ID!) { revokeHealthLink(id: $id) { id status } }",
            json!({"id": id}),
            Some(TOKEN),
        )
        .await
        .1;
    assert_eq!(
        revoked["data"]["revokeHealthLink"]["status"], "REVOKED",
        "{revoked}"
    );
    let status = app
        .http
        .get(payload["url"].as_str().expect("url"))
        .query(&[("recipient", CONFORMANCE_RECIPIENT)])
        .send()
        .await
        .expect("sent")
        .status();
    assert_eq!(status, 404, "a revoked link serves nothing");
    app.stop().await;
}

#[tokio::test]
async fn without_the_bridge_upstream_mode_makes_no_direct_links() {
    let app = spawn_app().await;
    app.upstream_answers_seed().await;
    let body = create_direct(&app, TOKEN).await;
    assert_eq!(error_code(&body), "NOT_SUPPORTED_IN_MODE");
    assert!(app.upstream_bodies().await.is_empty(), "b.well not called");
    app.stop().await;
}

/// Whether `text` holds `digits` as a number of its own (not inside a longer one).
fn holds_number(text: &str, digits: &str) -> bool {
    text.match_indices(digits).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + digits.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_digit()) && !after.is_some_and(|c| c.is_ascii_digit())
    })
}

#[tokio::test]
async fn b_wells_passcode_key_and_link_never_reach_the_logs() {
    let bwell = MockServer::start().await;
    bwell_serves(&bwell, &bwell.uri(), good_manifest()).await;
    let upstream_url = format!("{}{UPSTREAM_PATH}", bwell.uri());
    let mut gateway = GatewayChild::spawn(
        "debug",
        &[
            "--upstream-url",
            &upstream_url,
            "--ktc-bridge",
            "--ktc-bridge-hosts",
            "127.0.0.1",
            "--ktc-bridge-allow-http",
        ],
    );
    let http = reqwest::Client::new();
    let answer: Value = http
        .post(format!("{}/graphql", gateway.address))
        .header("authorization", TOKEN)
        .json(&json!({"query": CREATE_WITH_GATEWAY_FIELDS,
                      "variables": {"input": {"mode": "DIRECT"}}}))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("JSON");
    assert!(answer.get("errors").is_none(), "{answer}");
    // A failing conversion too: b.well's link no longer decrypts.
    bwell.reset().await;
    bwell_serves(
        &bwell,
        &bwell.uri(),
        ResponseTemplate::new(200).set_body_json(json!({
            "files": [{"contentType": "application/fhir+json", "embedded": "a.b.c.d.e"}]
        })),
    )
    .await;
    let _ = http
        .post(format!("{}/graphql", gateway.address))
        .header("authorization", TOKEN)
        .json(&json!({"query": CREATE_WITH_GATEWAY_FIELDS,
                      "variables": {"input": {"mode": "DIRECT"}}}))
        .send()
        .await
        .expect("sent");
    let passcode = passcode_sent_to_bwell(&bwell).await;

    gateway.terminate();
    let _ = gateway.wait_for_exit(Duration::from_secs(10));
    let lines = gateway.into_lines();
    assert!(
        lines
            .iter()
            .any(|line| line.contains("b.well's link not converted") && line.contains("decrypt")),
        "the refusal was logged, by stage"
    );
    let key = URL_SAFE_NO_PAD.encode(BWELL_KEY);
    for line in &lines {
        assert!(
            !holds_number(line, &passcode),
            "b.well's passcode logged: {line}"
        );
        for canary in [key.as_str(), BWELL_MANIFEST_ID, "shlink:/"] {
            assert!(!line.contains(canary), "{canary:?} logged: {line}");
        }
    }
}
