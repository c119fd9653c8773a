//! `shl-gateway import-bundle`: a deployment loads its own patients' records, from the Bundles
//! real systems produce (an IPS document, an EHR's transaction export), through the real binary.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use secrecy::SecretString;
use serde_json::{Value, json};
use shl_gateway::config::{Config, DemoMode, EmbeddedConfig, KeyConfig, UpstreamConfig};

use crate::helpers::*;
use crate::ktc_conformance::{PATIENT_SUMMARY, documents, loinc, pdf_text, receive};

fn bundle() -> Value {
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

/// The sample the README's walkthrough imports.
const EXAMPLE: &str = "examples/patient-bundle.json";

/// The HL7 SMART Health Links IG's IPS document (tests/fixtures/README.md).
const HL7_IPS_BUNDLE: &str = "tests/fixtures/hl7-ips-bundle-01.json";

fn repository_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn import(path: &Path, database_url: &str, flags: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_shl-gateway"))
        .arg("import-bundle")
        .arg(path)
        .args(["--database-url", database_url])
        .args(flags)
        .env_remove("SHL_GATEWAY_DATABASE_URL")
        .env_remove("SHL_GATEWAY_STRICT")
        .output()
        .expect("binary runs")
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}?mode=rwc", dir.join("store.db").display())
}

/// Imports `path` into a fresh store; returns the store's folder, the patient id (stdout) and
/// the report (stderr).
fn import_into_fresh_store(path: &Path) -> (tempfile::TempDir, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = import(path, &sqlite_url(dir.path()), &[]);
    let stdout = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    assert!(output.status.success(), "{stderr}");
    (dir, stdout, stderr)
}

/// An embedded gateway on the store in `dir`, where [`PATIENT_TOKEN`] is `patient_id`'s.
async fn spawn_on_imported_store(dir: &Path, patient_id: &str) -> TestApp {
    spawn_app_with(|config| Config {
        upstream: UpstreamConfig {
            upstream_url: None,
            ..config.upstream
        },
        embedded: EmbeddedConfig {
            database_url: Some(SecretString::from(sqlite_url(dir))),
            demo: DemoMode::Off,
            patient_tokens: vec![
                format!("{PATIENT_TOKEN}={patient_id}")
                    .parse()
                    .expect("token"),
            ],
            ..config.embedded
        },
        key: KeyConfig {
            data_dir: dir.to_path_buf(),
            ..config.key
        },
        ..config
    })
    .await
}

/// The text of the rendered summary PDF a direct link's Bundle carries.
fn summary_pdf_text(bundle: &Value) -> String {
    let summary = documents(bundle)
        .into_iter()
        .find(|document| loinc(document) == PATIENT_SUMMARY)
        .expect("the rendered summary");
    let data = summary["content"][0]["attachment"]["data"]
        .as_str()
        .expect("inline data");
    pdf_text(
        &base64::engine::general_purpose::STANDARD
            .decode(data)
            .expect("base64"),
    )
}

fn resources_of_type<'b>(bundle: &'b Value, resource_type: &str) -> Vec<&'b Value> {
    bundle["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|entry| &entry["resource"])
        .filter(|resource| resource["resourceType"] == resource_type)
        .collect()
}

/// The Medication a statement's `medicationReference` names inside it.
fn contained_medication(statement: &Value) -> &Value {
    let id = statement["medicationReference"]["reference"]
        .as_str()
        .and_then(|reference| reference.strip_prefix('#'))
        .unwrap_or_else(|| panic!("a reference to a contained resource: {statement}"));
    statement["contained"]
        .as_array()
        .expect("contained")
        .iter()
        .find(|inner| inner["id"] == id && inner["resourceType"] == "Medication")
        .unwrap_or_else(|| panic!("#{id} is in the statement: {statement}"))
}

#[tokio::test]
async fn an_imported_patient_can_share_their_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bundle.json");
    std::fs::write(&file, bundle().to_string()).expect("write");

    let (store, patient_id, report) = import_into_fresh_store(&file);

    assert_eq!(patient_id, "imported-1");
    assert_eq!(
        report,
        "imported: 1 Patient, 1 AllergyIntolerance; skipped: nothing"
    );
    let app = spawn_on_imported_store(store.path(), &patient_id).await;
    let (_, body) = app
        .graphql(
            MUTATION_WITH_GATEWAY_FIELDS,
            json!({"input": {}}),
            Some(&format!("Bearer {PATIENT_TOKEN}")),
        )
        .await;
    assert_eq!(
        body["data"]["createHealthLink"]["subject"]["reference"], "Patient/imported-1",
        "{body}"
    );
}

#[tokio::test]
async fn the_readme_sample_imports_with_its_skip_report_and_shares_its_medication() {
    let readme = include_str!("../../README.md");
    assert!(
        readme.contains(&format!("cargo run --release -- import-bundle {EXAMPLE}")),
        "the README's walkthrough imports {EXAMPLE}"
    );

    let (store, patient_id, report) = import_into_fresh_store(&repository_file(EXAMPLE));

    assert_eq!(patient_id, "example-mara");
    assert_eq!(
        report,
        "imported: 1 Patient, 2 Condition, 1 AllergyIntolerance, 1 MedicationStatement, \
         1 MedicationRequest, 1 Immunization, 1 Procedure, 2 Observation, \
         1 Medication (contained in the statements that name them); \
         skipped: 2 Encounter, 2 Practitioner, 1 Organization"
    );
    let app = spawn_on_imported_store(store.path(), &patient_id).await;
    let bundle = receive(&app, json!({"mode": "DIRECT"})).await;
    let requests = resources_of_type(&bundle, "MedicationRequest");
    assert_eq!(requests.len(), 1);
    assert_eq!(
        contained_medication(requests[0])["code"]["text"],
        "Metformin ER 500 mg tablet"
    );
    let text = summary_pdf_text(&bundle);
    assert!(text.contains("Metformin ER 500 mg tablet"), "{text}");
}

#[tokio::test]
async fn strict_refuses_the_sample_naming_what_it_would_skip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let database_url = sqlite_url(dir.path());

    let output = import(&repository_file(EXAMPLE), &database_url, &["--strict"]);

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(output.stdout.is_empty(), "no patient id: nothing imported");
    assert!(
        stderr.contains("2 Encounter, 2 Practitioner, 1 Organization (the first is entry 1)"),
        "{stderr}"
    );
    assert!(!stderr.contains("Lindqvist"), "{stderr}");

    // The variable says the same as the flag; off only when it says so.
    for (value, refused) in [("true", true), ("1", true), ("false", false), ("", false)] {
        let output = Command::new(env!("CARGO_BIN_EXE_shl-gateway"))
            .arg("import-bundle")
            .arg(repository_file(EXAMPLE))
            .args(["--database-url", &database_url])
            .env("SHL_GATEWAY_STRICT", value)
            .output()
            .expect("binary runs");
        assert_eq!(
            !output.status.success(),
            refused,
            "SHL_GATEWAY_STRICT={value:?}"
        );
    }
}

#[tokio::test]
async fn the_hl7_ips_documents_medications_reach_the_bundle_and_the_summary_pdf() {
    // Its MedicationStatements name their medicine only by a reference to a Medication entry.
    let (store, patient_id, report) = import_into_fresh_store(&repository_file(HL7_IPS_BUNDLE));

    assert_eq!(patient_id, "2b90dd2b-2dab-4c75-9bb9-a355e07401e8");
    assert!(
        report.ends_with(
            "2 Medication (contained in the statements that name them); \
             skipped: 2 Organization, 1 Composition, 1 Practitioner"
        ),
        "{report}"
    );
    let app = spawn_on_imported_store(store.path(), &patient_id).await;

    let bundle = receive(&app, json!({"mode": "DIRECT"})).await;

    let mut names: Vec<&str> = resources_of_type(&bundle, "MedicationStatement")
        .into_iter()
        .map(|statement| {
            let code = &contained_medication(statement)["code"];
            code["text"]
                .as_str()
                .or_else(|| code["coding"][0]["display"].as_str())
                .expect("the medication's name")
        })
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "Black Cohosh Extract herbal supplement",
            "Product containing anastrozole (medicinal product)"
        ]
    );
    let text = summary_pdf_text(&bundle);
    for name in [
        "Product containing anastrozole (medicinal product)",
        "ANASTROZOL 1MG TABLET",
        "Black Cohosh Extract herbal supplement",
    ] {
        assert!(text.contains(name), "{name:?} missing from the summary PDF");
    }
}

#[test]
fn every_import_bundle_flag_reads_its_variable_and_is_in_the_readme() {
    use clap::CommandFactory as _;
    let readme = include_str!("../../README.md");
    let command = shl_gateway::config::Cli::command();
    let import = command
        .find_subcommand("import-bundle")
        .expect("the subcommand");
    let mut flags = 0;
    for arg in import.get_arguments() {
        let Some(long) = arg.get_long().filter(|long| *long != "help") else {
            continue;
        };
        flags += 1;
        let variable = format!("SHL_GATEWAY_{}", long.replace('-', "_").to_uppercase());
        assert_eq!(
            arg.get_env().map(|env| env.to_string_lossy().into_owned()),
            Some(variable),
            "--{long}"
        );
        assert!(readme.contains(&format!("`--{long}`")), "--{long}");
    }
    assert_eq!(flags, 3, "--database-url, --data-dir, --strict");
}

#[tokio::test]
async fn a_bad_bundle_is_refused_with_a_clear_message_that_quotes_no_content() {
    let dir = tempfile::tempdir().expect("tempdir");
    let database_url = sqlite_url(dir.path());
    let mut two_patients = bundle();
    two_patients["entry"][1]["resource"] =
        json!({"resourceType": "Patient", "id": "p2", "name": [{"family": "SecretFamilyName"}]});
    let mut misspelt = bundle();
    misspelt["entry"][1]["resource"]["resourceType"] = json!("AllergyIntolerence");
    let mut no_patient = bundle();
    no_patient["entry"][0]["resource"] = json!({"resourceType": "Practitioner", "id": "d1", "name": [{"family": "SecretFamilyName"}]});
    for (contents, expected) in [
        (two_patients.to_string(), "more than one Patient"),
        (
            misspelt.to_string(),
            "entry 1: `resourceType` is not a FHIR R4 resource type",
        ),
        (no_patient.to_string(), "no Patient"),
        ("not json".to_owned(), "not JSON"),
        (json!({"resourceType": "Patient"}).to_string(), "Bundle"),
    ] {
        let file = dir.path().join("bad.json");
        std::fs::write(&file, &contents).expect("write");
        let output = import(&file, &database_url, &[]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success());
        assert!(stderr.contains(expected), "{stderr}");
        assert!(!stderr.contains("SecretFamilyName"), "{stderr}");
        assert!(!stderr.contains("AllergyIntolerence"), "{stderr}");
    }
}
