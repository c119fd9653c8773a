//! `shl-gateway inspect` and the receiver under it, judged three ways: against every test
//! vector the CMS Kill the Clipboard IG publishes (its expected outcome and fail stage), against
//! the gateway's own PASSCODE and DIRECT links, and as the real binary.
//!
//! The vectors' URLs name the IG's site. They are served as published, under that host name,
//! by a TLS server on 127.0.0.1 with a certificate from a CA made here, which the receiver is
//! told to trust and to find through a resolver override: nothing leaves loopback, and the URLs
//! inside the links and inside the signed attestation are used unchanged.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::{StatusCode, Uri, header};
use axum::response::IntoResponse;
use secrecy::SecretString;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use shl_gateway::inspect::{InspectInput, InspectOptions, ProfileChoice, Report, inspect};
use shl_gateway::receiver::{Profile, Receiver, ReceiverSettings, Stage};

use crate::embedded::{create_link, create_link_unreceived};
use crate::helpers::*;

/// The host every vector URL names.
const VECTOR_HOST: &str = "ktc-spec.github.io";

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ktc-vectors")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|_| panic!("{}", path.display()));
    serde_json::from_str(&text).expect("JSON")
}

/// `index.json` and every vector it lists, in its order.
fn load_vectors() -> (Value, Vec<Value>) {
    let index = read_json(&vectors_dir().join("index.json"));
    let vectors = index["vectors"]
        .as_array()
        .expect("vectors")
        .iter()
        .map(|entry| read_json(&vectors_dir().join(entry["file"].as_str().expect("file"))))
        .collect();
    (index, vectors)
}

/// The instant the IG states its expectations for: when the vectors were generated.
fn generated_at(index: &Value) -> i64 {
    let generated = index["generated"].as_str().expect("generated");
    time::OffsetDateTime::parse(generated, &time::format_description::well_known::Rfc3339)
        .expect("an instant")
        .unix_timestamp()
}

fn id(vector: &Value) -> &str {
    vector["id"].as_str().expect("id")
}

/// The IG's expectation: `None` for success, else the stage a receiver must fail at.
fn expected_fail_stage(vector: &Value) -> Option<&str> {
    match vector["expect"]["outcome"].as_str().expect("outcome") {
        "success" => None,
        "reject" => Some(vector["expect"]["failStage"].as_str().expect("failStage")),
        other => panic!("unknown outcome {other}"),
    }
}

/// The input a receiver is handed: the link, or the raw (bad) input of decode-stage negatives.
fn input_of(vector: &Value) -> &str {
    vector["input"]["shlink"]
        .as_str()
        .or_else(|| vector["input"]["raw"].as_str())
        .expect("an input")
}

/// A TLS server on 127.0.0.1 answering every vector's `responses` and the attestation JWKS,
/// by path, under [`VECTOR_HOST`]; it records each request's path and query.
struct VectorServer {
    address: SocketAddr,
    certificate_pem: String,
    requests: Arc<Mutex<Vec<String>>>,
}

impl VectorServer {
    async fn start(index: &Value, vectors: &[Value]) -> Self {
        let mut answers: HashMap<String, (StatusCode, Option<String>, Vec<u8>)> = HashMap::new();
        let mut add = |url: &str, status: u16, content_type: Option<&str>, body: Vec<u8>| {
            let url = url::Url::parse(url).expect("url");
            assert_eq!(url.host_str(), Some(VECTOR_HOST), "{url}");
            answers.insert(
                url.path().to_owned(),
                (
                    StatusCode::from_u16(status).expect("status"),
                    content_type.map(str::to_owned),
                    body,
                ),
            );
        };
        for vector in vectors {
            for (url, response) in vector["responses"].as_object().expect("responses") {
                let body = response["bodyFile"].as_str().map_or_else(Vec::new, |file| {
                    std::fs::read(vectors_dir().join(file)).expect("body file")
                });
                add(
                    url,
                    u16::try_from(response["status"].as_u64().expect("status")).expect("u16"),
                    response["headers"]["content-type"].as_str(),
                    body,
                );
            }
        }
        let jwks = std::fs::read(vectors_dir().join("attestation/.well-known/jwks.json"))
            .expect("the JWKS");
        add(
            index["attestation"]["jwks"].as_str().expect("jwks"),
            200,
            Some("application/json"),
            jwks,
        );

        let certified =
            rcgen::generate_simple_self_signed(vec![VECTOR_HOST.to_owned()]).expect("certificate");
        let certificate_pem = certified.cert.pem();
        let tls = axum_server::tls_rustls::RustlsConfig::from_pem(
            certificate_pem.clone().into_bytes(),
            certified.signing_key.serialize_pem().into_bytes(),
        )
        .await
        .expect("TLS config");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let answers = Arc::new(answers);
        let router = Router::new().fallback({
            let requests = Arc::clone(&requests);
            move |uri: Uri| async move {
                // Over HTTP/2 the URI is absolute; the path and query are what was asked.
                let asked = uri.path_and_query().map(ToString::to_string);
                requests
                    .lock()
                    .expect("lock")
                    .push(asked.unwrap_or_default());
                // As the IG's offline shim: answers are keyed by path; anything else is gone.
                match answers.get(uri.path()) {
                    Some((status, content_type, body)) => {
                        let mut response = (*status, body.clone()).into_response();
                        if let Some(content_type) = content_type {
                            response.headers_mut().insert(
                                header::CONTENT_TYPE,
                                content_type.parse().expect("header value"),
                            );
                        }
                        response
                    }
                    None => StatusCode::NOT_FOUND.into_response(),
                }
            }
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("non-blocking");
        let address = listener.local_addr().expect("address");
        let server = axum_server::from_tcp_rustls(listener, tls).expect("server");
        tokio::spawn(server.serve(router.into_make_service()));
        Self {
            address,
            certificate_pem,
            requests,
        }
    }

    /// Receiver settings that reach this server, over https, for the vectors' host name.
    fn receiver_settings(&self) -> ReceiverSettings {
        let mut settings = ReceiverSettings::new("shl-gateway tests (IG vectors)");
        // The server is on loopback; plain http stays refused: the vectors are https.
        settings.outbound.allow_private_addresses = true;
        settings.outbound.resolve = vec![(VECTOR_HOST.to_owned(), self.address)];
        settings.outbound.extra_root_certificates = vec![self.certificate_pem.clone().into_bytes()];
        settings
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().expect("lock").clone()
    }
}

fn vector_options(server: &VectorServer, index: &Value) -> InspectOptions {
    InspectOptions {
        // The IG's vectors are Kill the Clipboard vectors: a P or empty flag is out of scope.
        profile: ProfileChoice::Ktc,
        passcode: None,
        receiver: server.receiver_settings(),
        now: Some(generated_at(index)),
    }
}

async fn inspect_link(link: &str, options: &InspectOptions) -> Report {
    inspect(
        InspectInput::Link(SecretString::from(link.to_owned())),
        options,
    )
    .await
}

fn assert_outcome(vector: &Value, report: &Report, form: &str) {
    let expected = expected_fail_stage(vector);
    let got = report.fail_stage.map(Stage::name);
    assert_eq!(
        got,
        expected,
        "{} ({form}): {}",
        id(vector),
        report.to_json()
    );
    assert_eq!(report.ok, expected.is_none());
}

/// The message of a report that failed at the retrieve stage (and asserts it did).
fn retrieve_failure(report: &Report) -> String {
    assert_eq!(
        report.fail_stage,
        Some(Stage::Retrieve),
        "{}",
        report.to_json()
    );
    report.stage(Stage::Retrieve).expect("ran").message.clone()
}

#[tokio::test]
async fn every_ig_vector_gets_the_expected_outcome_and_fail_stage() {
    let (index, vectors) = load_vectors();
    assert_eq!(index["specVersion"], "0.10.2");
    assert_eq!(vectors.len(), 22, "the IG publishes 22 vectors");
    let server = VectorServer::start(&index, &vectors).await;
    let options = vector_options(&server, &index);

    let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
    let mut reaching_retrieve = 0;
    for vector in &vectors {
        let report = inspect_link(input_of(vector), &options).await;
        assert_outcome(vector, &report, "as given");
        // The viewer-prefixed form must be received exactly as the bare one.
        if let Some(prefixed) = vector["input"]["viewerPrefixed"].as_str() {
            assert_outcome(vector, &inspect_link(prefixed, &options).await, "prefixed");
        }
        *outcomes
            .entry(expected_fail_stage(vector).unwrap_or("success"))
            .or_default() += 1;
        if report.stage(Stage::Retrieve).is_some() {
            reaching_retrieve += 1;
        }
        assert_eq!(report.profile, Some(Profile::Ktc));
    }

    assert_eq!(
        outcomes,
        BTreeMap::from([
            ("bundle", 2),
            ("decode", 1),
            ("decrypt", 1),
            ("payload", 4),
            ("retrieve", 1),
            ("success", 13),
        ])
    );
    // What fails at decode or payload (the expired link included) is refused before any
    // request: only the 17 others were fetched, in both forms, plus two JWKS each for the two
    // attestation vectors.
    assert_eq!(reaching_retrieve, 17);
    let requests = server.requests();
    let files: Vec<&String> = requests
        .iter()
        .filter(|request| request.starts_with("/vectors/files/"))
        .collect();
    assert_eq!(files.len(), 2 * 17, "{requests:?}");
    assert!(
        files
            .iter()
            .all(|request| request.contains("?recipient=shl-gateway+tests")),
        "every fetch names its recipient: {files:?}"
    );
    assert_eq!(requests.len(), 2 * 17 + 2 * 2, "{requests:?}");
}

#[tokio::test]
async fn the_attestation_verifies_and_a_broken_one_does_not_block() {
    let (index, vectors) = load_vectors();
    let server = VectorServer::start(&index, &vectors).await;
    let options = vector_options(&server, &index);
    let vector = |name: &str| {
        vectors
            .iter()
            .find(|vector| id(vector) == name)
            .expect("the vector")
    };

    let valid = inspect_link(input_of(vector("ktc-b5-attestation")), &options).await;
    let broken = inspect_link(input_of(vector("ktc-b6-attestation-broken")), &options).await;
    let none = inspect_link(input_of(vector("ktc-d1-baseline")), &options).await;

    let attestation = valid.stage(Stage::Attestation).expect("checked");
    assert!(attestation.ok, "{}", valid.to_json());
    assert_eq!(
        attestation.message,
        "verified: ES256 by kid ktc-test-2026 of https://ktc-spec.github.io/vectors/attestation"
    );
    let attestation = broken.stage(Stage::Attestation).expect("checked");
    assert!(!attestation.ok && !attestation.required);
    assert!(
        attestation
            .message
            .ends_with("the signature does not verify"),
        "{}",
        attestation.message
    );
    assert!(broken.ok, "receivers must not block on the attestation");
    assert_eq!(
        none.stage(Stage::Attestation).expect("checked").message,
        "none in the Bundle (optional)"
    );
}

#[tokio::test]
async fn the_receiver_library_gets_each_vectors_payload_and_plaintext() {
    let (index, vectors) = load_vectors();
    let server = VectorServer::start(&index, &vectors).await;
    let receiver = Receiver::new(server.receiver_settings()).expect("receiver");
    let now = generated_at(&index);

    let mut received = 0;
    for vector in vectors
        .iter()
        .filter(|vector| expected_fail_stage(vector).is_none())
    {
        let link = input_of(vector);
        let got = receiver
            .receive(link, None, Profile::Ktc, now)
            .await
            .unwrap_or_else(|error| panic!("{}: {error}", id(vector)));

        let expected = &vector["expect"]["payload"];
        assert_eq!(got.payload.url.as_str(), expected["url"], "{}", id(vector));
        assert_eq!(got.payload.key.to_base64url(), expected["key"]);
        assert_eq!(got.payload.exp, expected["exp"].as_i64());
        assert_eq!(got.payload.flags.to_string(), expected["flag"]);
        assert_eq!(
            got.payload.label_chars,
            expected["label"]
                .as_str()
                .map(|label| label.chars().count()),
            "{}: UTF-8 labels decode whole",
            id(vector)
        );
        let [file] = got.files.as_slice() else {
            panic!("one file");
        };
        let digest = hex::encode(Sha256::digest(&file.opened.plaintext));
        assert_eq!(
            digest,
            vector["expect"]["decrypted"]["sha256"],
            "{}",
            id(vector)
        );
        assert_eq!(
            file.content.entries as u64,
            vector["expect"]["decrypted"]["entries"]
                .as_u64()
                .expect("entries")
        );
        received += 1;
    }
    assert_eq!(received, 13);
}

/// Runs the real binary's `inspect` with `args`, an environment of `env` only (and `PATH`),
/// and `stdin`; returns its exit code, standard output and standard error.
fn run_binary(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> (i32, String, String) {
    use std::io::Write as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_shl-gateway"))
        .arg("inspect")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).expect("write stdin");
    }
    drop(input);
    let output = child.wait_with_output().expect("the binary ends");
    (
        output.status.code().expect("an exit code"),
        String::from_utf8(output.stdout).expect("utf-8"),
        String::from_utf8(output.stderr).expect("utf-8"),
    )
}

/// The JSON report of a run that printed one, checked against the exit code.
fn json_report(run: &(i32, String, String)) -> Value {
    let (code, stdout, stderr) = run;
    let report: Value = serde_json::from_str(stdout).unwrap_or_else(|_| panic!("{stdout}{stderr}"));
    assert_eq!(*code == 0, report["ok"] == true, "{stdout}");
    assert!(matches!(code, 0 | 1), "{code}: {stderr}");
    report
}

#[test]
fn the_binary_gets_every_vector_right_that_needs_no_network() {
    let (_, vectors) = load_vectors();
    let mut runs = 0;
    for vector in &vectors {
        let expected = expected_fail_stage(vector);
        // What fails before retrieval needs no server: the link itself, through the binary.
        if matches!(expected, Some("decode" | "payload")) {
            let run = run_binary(
                &["--profile", "ktc", "--format", "json", input_of(vector)],
                &[],
                None,
            );
            let report = json_report(&run);
            assert_eq!(report["failStage"], json!(expected), "{}", id(vector));
            runs += 1;
        }
        // Every vector with a file: offline, from the decrypt stage on, the key in the
        // environment. Stages before decrypt do not run, so only decrypt and bundle failures
        // remain to be found.
        let Some(file) = vector["responses"]
            .as_object()
            .and_then(|responses| responses.values().find_map(|r| r["bodyFile"].as_str()))
        else {
            continue;
        };
        let path = vectors_dir().join(file);
        let key = vector["expect"]["payload"]["key"].as_str().expect("key");
        let run = run_binary(
            &[
                "--profile",
                "ktc",
                "--format",
                "json",
                "--jwe",
                path.to_str().expect("utf-8"),
            ],
            &[("SHL_GATEWAY_KEY", key)],
            None,
        );
        let report = json_report(&run);
        let offline_expected = expected.filter(|stage| matches!(*stage, "decrypt" | "bundle"));
        assert_eq!(
            report["failStage"],
            json!(offline_expected),
            "{}",
            id(vector)
        );
        assert!(!run.1.contains(key) && !run.2.contains(key));
        runs += 1;
    }
    // 5 links (four negatives and the expired one) and 17 files.
    assert_eq!(runs, 22);
}

#[test]
fn the_binary_judges_the_vectors_bundles_offline() {
    let bundles = vectors_dir().join("bundles");
    let mut names: Vec<String> = std::fs::read_dir(&bundles)
        .expect("bundles")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    assert_eq!(names.len(), 9);
    for name in names {
        let path = bundles.join(&name);
        let run = run_binary(&["--file", path.to_str().expect("utf-8")], &[], None);
        let (code, stdout, _) = &run;
        if name.starts_with("bad-") {
            assert_eq!(*code, 1, "{name}: {stdout}");
        } else {
            assert_eq!(*code, 0, "{name}: {stdout}");
            assert!(
                stdout.contains("pass  bundle       PatientSharedBundle"),
                "{stdout}"
            );
        }
    }
    let run = run_binary(&["--file", "/nonexistent/bundle.json"], &[], None);
    assert_eq!(run.0, 2, "an unreadable input is not a failed check");
    assert!(run.2.contains("cannot read"), "{}", run.2);
}

/// Options that reach a gateway under test, on http://127.0.0.1.
fn local_options(passcode: Option<&str>) -> InspectOptions {
    let mut options = InspectOptions::new("shl-gateway inspect");
    options.passcode = passcode.map(|passcode| SecretString::from(passcode.to_owned()));
    options.receiver.outbound.allow_http = true;
    options.receiver.outbound.allow_private_addresses = true;
    options
}

fn viewer_url(link: &Value) -> String {
    link["content"][0]["attachment"]["url"]
        .as_str()
        .expect("url")
        .to_owned()
}

/// An embedded gateway that signs the app attestation of its direct links.
async fn attesting_gateway() -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("attestation.pem");
    shl_gateway::config::write_new_attestation_key(&key).expect("a key");
    let app = spawn_embedded(&TestDatabase::Sqlite, |mut config| {
        config.attestation.attestation_key_file = Some(key);
        config
    })
    .await;
    (app, dir)
}

#[tokio::test]
async fn inspect_passes_the_gateways_own_passcode_and_direct_links() {
    let (app, _dir) = attesting_gateway().await;
    let (passcode_link, _) = create_link(&app, json!({})).await;
    let passcode = passcode_link["passcode"].as_str().expect("passcode");
    let (direct_link, _) = create_link_unreceived(&app, json!({"mode": "DIRECT"})).await;

    let by_location =
        inspect_link(&viewer_url(&passcode_link), &local_options(Some(passcode))).await;
    let mut embedding = local_options(Some(passcode));
    embedding.receiver.embedded_length_max = Some(1 << 20);
    let embedded = inspect_link(&viewer_url(&passcode_link), &embedding).await;
    let direct = inspect_link(&viewer_url(&direct_link), &local_options(None)).await;

    for report in [&by_location, &embedded, &direct] {
        assert!(report.ok, "{}", report.to_json());
        assert_eq!(report.stages.len(), 6, "every stage ran");
    }
    assert_eq!(by_location.profile, Some(Profile::Shl));
    let message = |report: &Report, stage| report.stage(stage).expect("ran").message.clone();
    assert!(message(&by_location, Stage::Retrieve).contains("1 file (by location"));
    assert!(message(&embedded, Stage::Retrieve).contains("1 file (embedded"));
    assert!(message(&by_location, Stage::Bundle).starts_with("IPS document: "));
    // The passcode link is fine SHL, and the report says what a Kill the Clipboard EHR would do.
    let payload_warnings = &by_location.stage(Stage::Payload).expect("ran").warnings;
    assert!(
        payload_warnings
            .iter()
            .any(|warning| warning.starts_with("a Kill the Clipboard receiver would refuse")),
        "{payload_warnings:?}"
    );
    assert_eq!(direct.profile, Some(Profile::Ktc));
    assert!(message(&direct, Stage::Payload).starts_with("flag U; exp "));
    assert!(message(&direct, Stage::Bundle).starts_with("PatientSharedBundle: "));
    assert!(
        message(&direct, Stage::Attestation).starts_with("verified: ES256 by kid "),
        "{}",
        direct.to_json()
    );

    // Each fetch was a real access, with the recipient inspect names.
    let (_, body) = app
        .graphql(
            "{ healthLinks { mode accesses { recipient outcome } } }",
            json!({}),
            Some(&format!("Bearer {PATIENT_TOKEN}")),
        )
        .await;
    let direct_accesses = &body["data"]["healthLinks"][0]["accesses"];
    assert_eq!(body["data"]["healthLinks"][0]["mode"], "DIRECT");
    assert_eq!(
        direct_accesses,
        &json!([{"recipient": "shl-gateway inspect", "outcome": "ok"}])
    );
    app.stop().await;
}

#[tokio::test]
async fn inspect_names_the_retrieve_failures_of_a_live_gateway() {
    let app = spawn_embedded(&TestDatabase::Sqlite, |config| config).await;
    let (passcode_link, _) = create_link(&app, json!({})).await;
    let (direct_link, _) = create_link_unreceived(&app, json!({"mode": "DIRECT"})).await;
    let passcode_viewer = viewer_url(&passcode_link);
    let wrong_passcode = if passcode_link["passcode"] == "000000" {
        "111111"
    } else {
        "000000"
    };

    let without = inspect_link(&passcode_viewer, &local_options(None)).await;
    let wrong = inspect_link(&passcode_viewer, &local_options(Some(wrong_passcode))).await;
    let strict = inspect_link(
        &viewer_url(&direct_link),
        &InspectOptions::new("shl-gateway inspect"),
    )
    .await;
    let (status, body) = app
        .graphql(
            "mutation($id: ID!) { revokeHealthLink(id: $id) { id } }",
            json!({"id": direct_link["id"]}),
            Some(&format!("Bearer {PATIENT_TOKEN}")),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let revoked = inspect_link(&viewer_url(&direct_link), &local_options(None)).await;

    assert_eq!(
        retrieve_failure(&without),
        "the link needs a passcode (flag P) and none was given (--passcode)"
    );
    assert_eq!(
        retrieve_failure(&wrong),
        "manifest POST answered 401: wrong passcode, 4 attempts left"
    );
    assert_eq!(
        retrieve_failure(&strict),
        "file GET: plain http is refused: receivers fetch over https only \
         (--allow-http permits it, for tests and local use)"
    );
    assert_eq!(
        retrieve_failure(&revoked),
        "file GET answered 404: the link is not active (unknown, expired, revoked or locked)"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_binary_passes_the_gateways_links_and_prints_no_secret() {
    let app = spawn_embedded(&TestDatabase::Sqlite, |config| config).await;
    let (passcode_link, passcode_payload) = create_link(&app, json!({})).await;
    let passcode = passcode_link["passcode"]
        .as_str()
        .expect("passcode")
        .to_owned();
    let (direct_link, direct_payload) =
        create_link_unreceived(&app, json!({"mode": "DIRECT"})).await;
    let (passcode_viewer, direct_viewer) = (viewer_url(&passcode_link), viewer_url(&direct_link));

    // The binary blocks; the gateway under test runs on this test's runtime meanwhile.
    let runs = tokio::task::spawn_blocking({
        let (passcode, passcode_viewer, direct_viewer) = (
            passcode.clone(),
            passcode_viewer.clone(),
            direct_viewer.clone(),
        );
        move || {
            let passcode_run = run_binary(
                &[
                    "--allow-http",
                    "--format",
                    "json",
                    "--passcode",
                    &passcode,
                    "-",
                ],
                &[],
                Some(&format!("{passcode_viewer}\n")),
            );
            let direct_run = run_binary(&["--allow-http", &direct_viewer], &[], None);
            (passcode_run, direct_run)
        }
    })
    .await
    .expect("runs");
    let (passcode_run, direct_run) = runs;

    let report = json_report(&passcode_run);
    assert_eq!(passcode_run.0, 0, "{}", passcode_run.1);
    assert_eq!(report["profile"], "shl");
    assert_eq!(report["stages"].as_array().expect("stages").len(), 6);
    assert_eq!(direct_run.0, 0, "{}", direct_run.1);
    assert!(
        direct_run
            .1
            .starts_with("shl-gateway inspect (Kill the Clipboard profile)\n"),
        "{}",
        direct_run.1
    );
    assert!(direct_run.1.ends_with("OK: every required check passes\n"));

    let shlink = |viewer: &str| viewer.split_once('#').expect("fragment").1.to_owned();
    let manifest_id = |payload: &Value| {
        payload["url"]
            .as_str()
            .expect("url")
            .rsplit('/')
            .next()
            .expect("id")
            .to_owned()
    };
    let secrets = [
        passcode,
        passcode_payload["key"].as_str().expect("key").to_owned(),
        direct_payload["key"].as_str().expect("key").to_owned(),
        shlink(&passcode_viewer),
        shlink(&direct_viewer),
        manifest_id(&passcode_payload),
        manifest_id(&direct_payload),
    ];
    for (code, stdout, stderr) in [&passcode_run, &direct_run] {
        assert_eq!(*code, 0);
        for secret in &secrets {
            assert!(!stdout.contains(secret.as_str()), "{secret} in {stdout}");
            assert!(!stderr.contains(secret.as_str()), "{secret} in {stderr}");
        }
    }
    app.stop().await;
}

/// A link to `url` with a fresh key, as a test server's sender would make it.
fn shlink_to(url: &str, flag: &str) -> String {
    use base64::Engine as _;
    let key = shl_gateway::crypto::jwe::ShlKey::generate().expect("key");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let payload = json!({"url": url, "flag": flag, "key": key.to_base64url(), "exp": now + 600});
    format!(
        "shlink:/{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(payload.to_string())
    )
}

#[tokio::test]
async fn inspect_reports_what_the_hardening_refused() {
    use std::time::Duration;
    // A sender on 127.0.0.1 that redirects, answers too much, or answers too slowly.
    let router = Router::new()
        .route(
            "/redirect",
            axum::routing::get(|| async {
                (
                    StatusCode::FOUND,
                    [(header::LOCATION, "http://169.254.169.254/")],
                )
            }),
        )
        .route("/big", axum::routing::get(|| async { "x".repeat(4_096) }))
        .route(
            "/manifest",
            axum::routing::post(|headers: axum::http::HeaderMap| async move {
                let host = headers[header::HOST].to_str().expect("host").to_owned();
                let files: Vec<Value> = (0..16)
                    .map(|_| {
                        json!({"contentType": "application/fhir+json",
                                    "location": format!("http://{host}/slow")})
                    })
                    .collect();
                axum::Json(json!({"files": files}))
            }),
        )
        .route(
            "/slow",
            axum::routing::get(|| async {
                tokio::time::sleep(Duration::from_millis(400)).await;
                "not a JWE"
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, router).await });
    let mut options = local_options(None);
    options.receiver.outbound.max_response_bytes = 1_000;
    let mut impatient = local_options(None);
    impatient.receiver.deadline = Duration::from_secs(1);

    let redirected = inspect_link(
        &shlink_to(&format!("http://{address}/redirect"), "U"),
        &options,
    )
    .await;
    let oversized = inspect_link(&shlink_to(&format!("http://{address}/big"), "U"), &options).await;
    let started = std::time::Instant::now();
    let slow = inspect_link(
        &shlink_to(&format!("http://{address}/manifest"), ""),
        &impatient,
    )
    .await;
    let slow_took = started.elapsed();
    let private = inspect_link(
        &shlink_to(&format!("https://{address}/big"), "U"),
        &InspectOptions::new("shl-gateway inspect"),
    )
    .await;

    assert_eq!(
        retrieve_failure(&redirected),
        "file GET: answered a redirect (HTTP 302); redirects are not followed"
    );
    assert_eq!(
        retrieve_failure(&oversized),
        "file GET: the answer is larger than 1000 bytes"
    );
    assert_eq!(retrieve_failure(&slow), "retrieval took longer than 1s");
    assert!(slow_took < Duration::from_secs(3), "{slow_took:?}");
    assert_eq!(
        retrieve_failure(&private),
        "file GET: 127.0.0.1 is a loopback address: refused \
         (--allow-http permits it, for tests and local use)"
    );
}
