//! App attestation (Kill the Clipboard, section 4): DIRECT links' Bundles carry an ES256 JWT
//! that verifies against `/.well-known/jwks.json`, checked here with `jsonwebtoken`, a JOSE
//! implementation that shares no code with the one that signed. Keys are made at test time.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use jsonwebtoken::jwk::{JwkSet, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use p256::ecdsa::SigningKey;
use p256::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _, LineEnding};
use secrecy::SecretString;
use serde_json::{Value, json};
use shl_gateway::config::Config;
use shl_gateway::startup::Application;

use crate::embedded::create_link;
use crate::helpers::*;
use crate::ktc_conformance::{APP_ATTESTATION, decrypt, receive};
use crate::manifest_protocol::post_manifest;

pub(crate) fn new_key() -> SigningKey {
    loop {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).expect("random bytes");
        if let Ok(key) = SigningKey::from_slice(&bytes) {
            return key;
        }
    }
}

/// Writes `text` to `dir/name` with `mode`.
pub(crate) fn write_file(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
    #[cfg(not(unix))]
    let _ = mode;
    path
}

pub(crate) fn private_pem(key: &SigningKey) -> String {
    key.to_pkcs8_pem(LineEnding::LF)
        .expect("PKCS#8")
        .to_string()
}

fn public_pem(key: &SigningKey) -> String {
    key.verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .expect("SPKI")
}

pub(crate) fn with_attestation(
    active: PathBuf,
    retired: Vec<PathBuf>,
    issuer: Option<&str>,
) -> impl FnOnce(Config) -> Config {
    let issuer = issuer.map(|url| url.parse().expect("url"));
    move |mut config| {
        config.attestation.attestation_key_file = Some(active);
        config.attestation.attestation_retired_key_file = retired;
        config.attestation.attestation_issuer = issuer;
        config
    }
}

/// The attestation JWT of a Bundle; `None` when it carries none.
pub(crate) fn attestation_of(bundle: &Value) -> Option<String> {
    let extensions = bundle["meta"].get("extension")?.as_array()?;
    let found: Vec<&Value> = extensions
        .iter()
        .filter(|extension| extension["url"] == APP_ATTESTATION)
        .collect();
    assert!(found.len() <= 1, "one attestation per Bundle");
    found
        .first()
        .map(|extension| extension["valueString"].as_str().expect("JWT").to_owned())
}

pub(crate) async fn fetch_jwks(app: &TestApp) -> reqwest::Response {
    app.http
        .get(format!("{}/.well-known/jwks.json", app.address))
        .header("origin", "https://ehr.example")
        .send()
        .await
        .expect("sent")
}

/// Verifies `jwt` as a receiver would: the key named by `kid` from the JWKS, ES256, the issuer.
/// Returns the header's `kid` and the claims.
pub(crate) fn verify(jwt: &str, jwks: &JwkSet, issuer: &str) -> (String, Value) {
    let header = jsonwebtoken::decode_header(jwt).expect("a JWS header");
    assert_eq!(header.alg, Algorithm::ES256);
    assert_eq!(header.typ.as_deref(), Some("JWT"));
    let kid = header.kid.expect("kid");
    let jwk = jwks.find(&kid).expect("the signing key is published");
    let mut validation = Validation::new(Algorithm::ES256);
    // The profile's JWT has no `exp` (nor `aud`, `sub`, `nbf`).
    validation.required_spec_claims = HashSet::new();
    validation.validate_exp = false;
    validation.set_issuer(&[issuer]);
    let key = DecodingKey::from_jwk(jwk).expect("an EC JWK");
    let data = jsonwebtoken::decode::<Value>(jwt, &key, &validation).expect("verifies");
    (kid, data.claims)
}

#[tokio::test]
async fn a_direct_links_bundle_carries_an_attestation_that_verifies_against_the_jwks() {
    let keys = tempfile::tempdir().expect("tempdir");
    let active = new_key();
    let retired = new_key();
    let older = new_key();
    let active_path = write_file(keys.path(), "active.pem", &private_pem(&active), 0o600);
    // A retired key as a public key and another as the former private key file.
    let retired_paths = vec![
        write_file(keys.path(), "retired.pem", &public_pem(&retired), 0o644),
        write_file(keys.path(), "older.pem", &private_pem(&older), 0o600),
    ];
    let app = spawn_embedded(
        &TestDatabase::Sqlite,
        with_attestation(active_path, retired_paths, None),
    )
    .await;

    let response = fetch_jwks(&app).await;
    assert_eq!(response.status(), 200);
    let headers = response.headers();
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["cache-control"], "public, max-age=3600");
    assert_eq!(headers["access-control-allow-origin"], "*");
    let raw: Value = response.json().await.expect("JSON");
    let jwks: JwkSet = serde_json::from_value(raw.clone()).expect("a JWK Set");
    assert_eq!(jwks.keys.len(), 3, "the active key and both retired ones");
    for (jwk, published) in jwks.keys.iter().zip(raw["keys"].as_array().expect("keys")) {
        let kid = jwk.common.key_id.as_deref().expect("kid");
        assert_eq!(jwk.thumbprint(ThumbprintHash::SHA256), kid, "RFC 7638");
        assert_eq!(published["use"], "sig");
        assert_eq!(published["alg"], "ES256");
        assert!(published.get("d").is_none(), "never the private part");
    }

    let bundle = receive(&app, json!({"mode": "DIRECT"})).await;
    let jwt = attestation_of(&bundle).expect("a DIRECT link is attested");
    // Default issuer: --public-url, here the listener's own URL.
    let (kid, claims) = verify(&jwt, &jwks, &app.address);
    assert_eq!(kid, jwks.keys[0].common.key_id.as_deref().expect("kid"));
    let mut names: Vec<&String> = claims.as_object().expect("claims").keys().collect();
    names.sort_unstable();
    assert_eq!(names, ["iat", "iss", "jti"]);

    // Retired keys are published, never used: the JWT does not verify under them.
    let mut validation = Validation::new(Algorithm::ES256);
    validation.required_spec_claims = HashSet::new();
    validation.validate_exp = false;
    for retired in &jwks.keys[1..] {
        assert_ne!(retired.common.key_id.as_deref(), Some(kid.as_str()));
        let key = DecodingKey::from_jwk(retired).expect("an EC JWK");
        assert!(jsonwebtoken::decode::<Value>(&jwt, &key, &validation).is_err());
    }

    // Each Bundle gets its own JWT.
    let second = receive(&app, json!({"mode": "DIRECT"})).await;
    let (_, again) = verify(
        &attestation_of(&second).expect("attested"),
        &jwks,
        &app.address,
    );
    assert_ne!(again["jti"], claims["jti"]);

    // A PASSCODE link's IPS document carries none.
    let (link, payload) = create_link(&app, json!({"label": "Records"})).await;
    let (status, manifest) = post_manifest(
        &app,
        &payload,
        json!({"recipient": "r", "passcode": link["passcode"], "embeddedLengthMax": 10_000_000}),
    )
    .await;
    assert_eq!(status, 200, "{manifest}");
    let document = decrypt(
        &payload,
        manifest["files"][0]["embedded"].as_str().expect("embedded"),
    );
    assert_eq!(document["type"], "document");
    assert_eq!(attestation_of(&document), None);
}

#[tokio::test]
async fn the_attestation_issuer_is_the_iss() {
    let keys = tempfile::tempdir().expect("tempdir");
    let key = write_file(keys.path(), "key.pem", &private_pem(&new_key()), 0o600);
    let app = spawn_embedded(
        &TestDatabase::Sqlite,
        with_attestation(key, Vec::new(), Some("https://app.example.org/")),
    )
    .await;

    let jwks: JwkSet = fetch_jwks(&app).await.json().await.expect("a JWK Set");
    let bundle = receive(&app, json!({"mode": "DIRECT"})).await;
    let (_, claims) = verify(
        &attestation_of(&bundle).expect("attested"),
        &jwks,
        "https://app.example.org",
    );
    assert_eq!(claims["iss"], "https://app.example.org");
}

#[tokio::test]
async fn without_a_key_there_is_no_attestation_and_no_jwks() {
    let app = spawn_embedded(&TestDatabase::Sqlite, |config| config).await;

    let bundle = receive(&app, json!({"mode": "DIRECT"})).await;
    assert_eq!(attestation_of(&bundle), None);
    assert!(bundle.get("meta").is_none(), "{bundle}");

    let response = fetch_jwks(&app).await;
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.json::<Value>().await.expect("JSON"),
        json!({"error": "NOT_FOUND"})
    );
}

#[cfg(unix)]
#[tokio::test]
async fn a_key_file_open_to_others_is_narrowed_at_start() {
    use std::os::unix::fs::PermissionsExt as _;
    let keys = tempfile::tempdir().expect("tempdir");
    let key = write_file(keys.path(), "key.pem", &private_pem(&new_key()), 0o644);
    let old = write_file(keys.path(), "old.pem", &private_pem(&new_key()), 0o640);

    let app = spawn_embedded(
        &TestDatabase::Sqlite,
        with_attestation(key.clone(), vec![old.clone()], None),
    )
    .await;

    for path in [&key, &old] {
        let mode = std::fs::metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{}", path.display());
    }
    assert_eq!(fetch_jwks(&app).await.status(), 200);
}

/// The error `Application::build` stops with, in embedded mode.
async fn start_error(customize: impl FnOnce(Config) -> Config) -> String {
    let upstream = wiremock::MockServer::start().await;
    let data_dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(&upstream);
    config.upstream.upstream_url = None;
    config.key.data_dir = data_dir.path().to_path_buf();
    config.embedded.database_url = Some(SecretString::from(format!(
        "sqlite://{}?mode=rwc",
        data_dir.path().join("test.db").display()
    )));
    let error = Application::build(customize(config))
        .await
        .expect_err("refused at start");
    format!("{error:#}")
}

#[tokio::test]
async fn a_bad_key_stops_the_start_naming_the_flag_never_the_key() {
    let keys = tempfile::tempdir().expect("tempdir");
    let key = new_key();
    let public = public_pem(&key);
    let private = private_pem(&key);
    let secret_line = private.lines().nth(1).expect("a PEM line").to_owned();

    // A public key cannot sign.
    let path = write_file(keys.path(), "public.pem", &public, 0o600);
    let error = start_error(with_attestation(path, Vec::new(), None)).await;
    assert!(error.contains("--attestation-key-file"), "{error}");
    assert!(error.contains("PKCS#8"), "{error}");

    // Not a key at all; missing.
    let path = write_file(keys.path(), "garbage.pem", "not a key\n", 0o600);
    let error = start_error(with_attestation(path, Vec::new(), None)).await;
    assert!(error.contains("--attestation-key-file"), "{error}");
    let error = start_error(with_attestation(
        keys.path().join("missing.pem"),
        Vec::new(),
        None,
    ))
    .await;
    assert!(error.contains("--attestation-key-file"), "{error}");

    // The active key listed as retired too.
    let active = write_file(keys.path(), "active.pem", &private, 0o600);
    let error = start_error(with_attestation(active.clone(), vec![active], None)).await;
    assert!(error.contains("--attestation-retired-key-file"), "{error}");
    assert!(!error.contains(&secret_line), "{error}");

    // A retired file that is no key.
    let active = write_file(keys.path(), "active2.pem", &private_pem(&new_key()), 0o600);
    let junk = write_file(keys.path(), "junk.pem", "junk", 0o600);
    let error = start_error(with_attestation(active, vec![junk], None)).await;
    assert!(error.contains("--attestation-retired-key-file"), "{error}");
}

#[cfg(unix)]
#[tokio::test]
async fn new_key_writes_a_private_key_file_that_loads() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("attestation.pem");
    let new_key = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_shl-gateway"))
            .args(["attestation", "new-key", "--out"])
            .arg(&path)
            .env_clear()
            .output()
            .expect("runs")
    };

    let made = new_key();
    assert!(made.status.success(), "{made:?}");
    let stdout = String::from_utf8(made.stdout).expect("UTF-8");
    let kid = stdout.trim();
    assert_eq!(kid.len(), 43, "a SHA-256 thumbprint: {stdout}");
    let pem = std::fs::read_to_string(&path).expect("written");
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(!stdout.contains("PRIVATE"), "never the key");
    let mode = std::fs::metadata(&path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);

    let again = new_key();
    assert!(
        !again.status.success(),
        "an existing key is never overwritten"
    );
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already exists"),
        "{again:?}"
    );
    assert_eq!(std::fs::read_to_string(&path).expect("kept"), pem);

    let app = spawn_embedded(
        &TestDatabase::Sqlite,
        with_attestation(path.clone(), Vec::new(), None),
    )
    .await;
    let jwks: JwkSet = fetch_jwks(&app).await.json().await.expect("a JWK Set");
    assert_eq!(jwks.keys.len(), 1);
    assert_eq!(jwks.keys[0].common.key_id.as_deref(), Some(kid));
    let bundle = receive(&app, json!({"mode": "DIRECT"})).await;
    let (signed_by, _) = verify(
        &attestation_of(&bundle).expect("attested"),
        &jwks,
        &app.address,
    );
    assert_eq!(signed_by, kid);
}
