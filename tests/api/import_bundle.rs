//! `shl-gateway import-bundle`: a deployment loads its own patients' records.

use std::process::Command;

use secrecy::SecretString;
use serde_json::json;
use shl_gateway::config::{Config, DemoMode, EmbeddedConfig, KeyConfig, UpstreamConfig};

use crate::helpers::*;

fn bundle() -> serde_json::Value {
    json!({
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": {"resourceType": "Patient", "id": "imported-1", "name": [{"family": "Imported", "given": ["Pat"]}]}},
            {"resource": {"resourceType": "AllergyIntolerance", "id": "a1", "patient": {"reference": "Patient/imported-1"},
                          "code": {"text": "Latex"}}}
        ]
    })
}

fn import(path: &std::path::Path, database_url: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_shl-gateway"))
        .arg("import-bundle")
        .arg(path)
        .args(["--database-url", database_url])
        .env_remove("SHL_GATEWAY_DATABASE_URL")
        .output()
        .expect("binary runs")
}

#[tokio::test]
async fn an_imported_patient_can_share_their_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let database_url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("store.db").display()
    );
    let file = dir.path().join("bundle.json");
    std::fs::write(&file, bundle().to_string()).expect("write");

    let output = import(&file, &database_url);

    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "imported-1");
    let token = "imported-patient-token-123456";
    let app = spawn_app_with(|config| Config {
        upstream: UpstreamConfig {
            upstream_url: None,
            ..config.upstream
        },
        embedded: EmbeddedConfig {
            database_url: Some(SecretString::from(database_url.clone())),
            demo: DemoMode::Off,
            patient_tokens: vec![format!("{token}=imported-1").parse().expect("token")],
            ..config.embedded
        },
        key: KeyConfig {
            data_dir: dir.path().to_path_buf(),
            ..config.key
        },
        ..config
    })
    .await;
    let (_, body) = app
        .graphql(
            MUTATION_WITH_GATEWAY_FIELDS,
            json!({"input": {}}),
            Some(&format!("Bearer {token}")),
        )
        .await;
    assert_eq!(
        body["data"]["createHealthLink"]["subject"]["reference"], "Patient/imported-1",
        "{body}"
    );
}

#[tokio::test]
async fn a_bad_bundle_is_refused_with_a_clear_message_that_quotes_no_content() {
    let dir = tempfile::tempdir().expect("tempdir");
    let database_url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("store.db").display()
    );
    let mut two_patients = bundle();
    two_patients["entry"][1]["resource"] =
        json!({"resourceType": "Patient", "id": "p2", "name": [{"family": "SecretFamilyName"}]});
    for (contents, expected) in [
        (two_patients.to_string(), "Patient"),
        ("not json".to_owned(), "not JSON"),
        (json!({"resourceType": "Patient"}).to_string(), "Bundle"),
    ] {
        let file = dir.path().join("bad.json");
        std::fs::write(&file, &contents).expect("write");
        let output = import(&file, &database_url);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success());
        assert!(stderr.contains(expected), "{stderr}");
        assert!(!stderr.contains("SecretFamilyName"), "{stderr}");
    }
}
