//! Demo mode across restarts and in the playground: the development token is kept in the data
//! directory, and GraphiQL gets it for its Headers tab in demo mode only.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use shl_gateway::config::{
    Config, DemoMode, EmbeddedConfig, GraphqlConfig, KeyConfig, UpstreamConfig,
};

use crate::helpers::*;

const TOKEN_FILE: &str = "dev-token";

/// Where the repository's playground assets are installed (`npm ci --prefix graphiql`); the
/// routes tested here answer whether they are or not.
pub(crate) fn graphiql_assets_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("graphiql/node_modules")
}

/// The playground on, with the repository's assets.
pub(crate) fn with_graphiql(config: Config) -> Config {
    Config {
        graphql: GraphqlConfig {
            graphiql: true,
            graphiql_assets_dir: graphiql_assets_dir(),
            ..config.graphql
        },
        ..config
    }
}

/// What a newcomer runs: embedded mode, no tokens configured, demo mode by its `auto` rule on
/// a loopback listener, the store in `data_dir`, the playground on.
pub(crate) async fn spawn_demo(data_dir: &Path) -> TestApp {
    let data_dir = data_dir.to_path_buf();
    spawn_app_with(move |config| {
        with_graphiql(Config {
            upstream: UpstreamConfig {
                upstream_url: None,
                ..config.upstream
            },
            embedded: EmbeddedConfig {
                demo: DemoMode::Auto,
                patient_tokens: Vec::new(),
                ..config.embedded
            },
            key: KeyConfig {
                data_dir,
                ..config.key
            },
            ..config
        })
    })
    .await
}

async fn creates_a_link(app: &TestApp, authorization: &str) -> bool {
    let (_, body) = app
        .graphql(SEED_MUTATION, seed_variables(), Some(authorization))
        .await;
    body.get("errors").is_none() && body["data"]["createHealthLink"]["id"].is_string()
}

/// `GET /graphiql/demo-headers` as the playground's own fetch sends it.
async fn playground_headers(app: &TestApp) -> (u16, Option<String>, String) {
    let response = app
        .http
        .get(format!("{}/graphiql/demo-headers", app.address))
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .expect("request sent");
    let status = response.status().as_u16();
    let cache = response
        .headers()
        .get("cache-control")
        .map(|value| value.to_str().expect("ASCII").to_owned());
    (status, cache, response.text().await.expect("body"))
}

#[tokio::test]
async fn the_development_token_survives_a_restart_on_the_same_data_dir() {
    let data_dir = tempfile::tempdir().expect("tempdir");
    let first = spawn_demo(data_dir.path()).await;
    let token = first
        .development_token
        .clone()
        .expect("demo mode has a token");
    assert!(creates_a_link(&first, &token).await);
    first.stop().await;

    let second = spawn_demo(data_dir.path()).await;

    assert_eq!(
        second.development_token.as_deref(),
        Some(token.as_str()),
        "the same token after a restart"
    );
    assert!(
        creates_a_link(&second, &token).await,
        "the old token still works"
    );
    let kept = std::fs::read_to_string(data_dir.path().join(TOKEN_FILE)).expect("token file");
    assert_eq!(format!("Bearer {}", kept.trim_end()), token);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(data_dir.path().join(TOKEN_FILE))
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    second.stop().await;
}

#[tokio::test]
async fn deleting_the_token_file_resets_the_token() {
    let data_dir = tempfile::tempdir().expect("tempdir");
    let first = spawn_demo(data_dir.path()).await;
    let old = first.development_token.clone().expect("token");
    first.stop().await;
    std::fs::remove_file(data_dir.path().join(TOKEN_FILE)).expect("remove");

    let second = spawn_demo(data_dir.path()).await;

    let new = second.development_token.clone().expect("token");
    assert_ne!(new, old);
    assert!(creates_a_link(&second, &new).await);
    assert!(
        !creates_a_link(&second, &old).await,
        "the old token is revoked"
    );
    second.stop().await;
}

#[tokio::test]
async fn a_start_without_demo_mode_neither_makes_nor_reads_the_token_file() {
    let data_dir = tempfile::tempdir().expect("tempdir");
    let demo = spawn_demo(data_dir.path()).await;
    let token = demo.development_token.clone().expect("token");
    demo.stop().await;
    let token_file = data_dir.path().join(TOKEN_FILE);
    let kept = std::fs::read(&token_file).expect("token file");
    std::fs::remove_file(&token_file).expect("remove");

    // Configured tokens turn `auto` demo mode off: a deployment on the same directory.
    let patient = shl_gateway::issuer::fhir::PatientRecord::demo();
    let configured = format!("{PATIENT_TOKEN}={}", patient.patient_id());
    let dir = data_dir.path().to_path_buf();
    let deployment = spawn_app_with(move |config| Config {
        upstream: UpstreamConfig {
            upstream_url: None,
            ..config.upstream
        },
        embedded: EmbeddedConfig {
            demo: DemoMode::Auto,
            patient_tokens: vec![configured.parse().expect("token")],
            ..config.embedded
        },
        key: KeyConfig {
            data_dir: dir.clone(),
            ..config.key
        },
        ..config
    })
    .await;
    assert!(deployment.development_token.is_none());
    assert!(!token_file.exists(), "no token file made");

    // Put back, the file is not read either: its token stays revoked.
    std::fs::write(&token_file, &kept).expect("restore");
    assert!(!creates_a_link(&deployment, &token).await);
    assert!(creates_a_link(&deployment, &format!("Bearer {PATIENT_TOKEN}")).await);
    deployment.stop().await;
    assert_eq!(
        std::fs::read(&token_file).expect("token file"),
        kept,
        "left alone"
    );

    // Nor in upstream mode.
    std::fs::remove_file(&token_file).expect("remove");
    let dir = data_dir.path().to_path_buf();
    let upstream = spawn_app_with(move |config| Config {
        key: KeyConfig {
            data_dir: dir,
            ..config.key
        },
        ..config
    })
    .await;
    assert!(upstream.development_token.is_none());
    assert!(!token_file.exists(), "no token file in upstream mode");
    upstream.stop().await;
}

#[tokio::test]
async fn the_playground_gets_the_development_token_in_demo_mode() {
    let data_dir = tempfile::tempdir().expect("tempdir");
    let app = spawn_demo(data_dir.path()).await;
    let token = app.development_token.clone().expect("token");

    let (status, cache, body) = playground_headers(&app).await;

    assert_eq!(status, 200);
    assert_eq!(cache.as_deref(), Some("no-store"));
    let headers: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(headers, json!({ "Authorization": token }));
    app.stop().await;
}

#[tokio::test]
async fn the_playground_gets_no_token_when_tokens_are_configured() {
    // The test setup forces demo mode on beside a configured token: demo mode has a token, but
    // a gateway with configured tokens is a deployment, and the playground offers none there.
    let app = spawn_embedded(&TestDatabase::Sqlite, with_graphiql).await;
    assert!(app.development_token.is_some(), "demo mode is on");

    let (status, cache, body) = playground_headers(&app).await;

    assert_eq!(status, 204);
    assert_eq!(cache.as_deref(), Some("no-store"));
    assert_eq!(body, "");
    app.stop().await;
}

#[tokio::test]
async fn the_playground_gets_no_token_in_upstream_mode() {
    let app = spawn_app_with(with_graphiql).await;

    let (status, _, body) = playground_headers(&app).await;

    assert_eq!(status, 204);
    assert_eq!(body, "");
    app.stop().await;
}
