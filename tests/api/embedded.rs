//! Embedded mode: the gateway issues links itself, with b.well's answer shape.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::helpers::*;

pub(crate) const CREATE_WITH_GATEWAY_FIELDS: &str = MUTATION_WITH_GATEWAY_FIELDS;

/// The SHL payload inside a viewer URL (`...viewer.html#shlink:/<base64url JSON>`).
pub(crate) fn shl_payload(viewer_url: &str) -> Value {
    let (_, encoded) = viewer_url
        .split_once("#shlink:/")
        .expect("viewer URL holds a shlink");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(encoded).expect("base64url"))
        .expect("JSON payload")
}

/// Creates a link as the test patient and returns (createHealthLink answer, payload).
///
/// A direct (`U`) link is received at once as a Kill the Clipboard receiver would receive it
/// (`ktc_conformance::receive_direct_link`: payload rules, `GET ?recipient=`, decryption, the
/// PatientSharedBundle's rules), so every direct link a test makes is judged by the profile.
/// That fetch is a real access: it appears in the link's history with its own recipient.
pub(crate) async fn create_link(app: &TestApp, input: Value) -> (Value, Value) {
    let (link, payload) = create_link_unreceived(app, input).await;
    if payload["flag"] == "U" {
        crate::ktc_conformance::receive_direct_link(app, &payload).await;
    }
    (link, payload)
}

/// [`create_link`] without the receiver's fetch, for a test that owns every access to the link.
pub(crate) async fn create_link_unreceived(app: &TestApp, input: Value) -> (Value, Value) {
    let (status, body) = app
        .graphql(
            CREATE_WITH_GATEWAY_FIELDS,
            json!({ "input": input }),
            Some(&format!("Bearer {PATIENT_TOKEN}")),
        )
        .await;
    assert_eq!(status, 200);
    assert!(body.get("errors").is_none(), "{body}");
    let link = body["data"]["createHealthLink"].clone();
    let url = link["content"][0]["attachment"]["url"]
        .as_str()
        .expect("url")
        .to_owned();
    (link, shl_payload(&url))
}

fn is_seed_instant(value: &Value) -> bool {
    let text = value.as_str().unwrap_or_default();
    text.len() == 24
        && text.ends_with('Z')
        && time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).is_ok()
}

on_each_database!(the_seed_mutation_creates_a_link_of_the_seed_shape);
async fn the_seed_mutation_creates_a_link_of_the_seed_shape(database: TestDatabase) {
    let app = spawn_embedded(&database, |config| config).await;

    let (status, body) = app
        .graphql(
            SEED_MUTATION,
            seed_variables(),
            Some(&format!("Bearer {PATIENT_TOKEN}")),
        )
        .await;

    assert_eq!(status, 200);
    assert!(body.get("errors").is_none(), "{body}");
    let link = &body["data"]["createHealthLink"];
    let seed = seed_answer();
    assert_eq!(link["resourceType"], "DocumentReference");
    assert_eq!(link["status"], "current");
    assert_eq!(link["description"], seed["description"]);
    assert_eq!(
        link["category"], seed["category"],
        "the HL7 coding of the seed"
    );
    assert_eq!(
        link["identifier"][0]["system"],
        "urn:shl-gateway:health-link"
    );
    assert_eq!(link["identifier"][0]["value"], link["id"]);
    assert!(
        link.to_string().find("icanbwell").is_none(),
        "never b.well's systems: {link}"
    );
    for instant in [
        &link["date"],
        &link["context"]["period"]["start"],
        &link["context"]["period"]["end"],
    ] {
        assert!(is_seed_instant(instant), "{instant}");
    }
    let attachment = &link["content"][0]["attachment"];
    assert_eq!(
        attachment["contentType"],
        "application/smart-health-link+json"
    );
    assert_eq!(attachment["title"], "SMART Health Link Payload");
    let url = attachment["url"].as_str().expect("url");
    assert!(
        url.starts_with(&format!(
            "{}/v1/health-link/viewer.html#shlink:/",
            app.address
        )),
        "{url}"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_payload_follows_the_shl_rules() {
    let app = spawn_embedded(&TestDatabase::Sqlite, |config| config).await;

    let (link, payload) = create_link(&app, json!({"label": "Health Records"})).await;

    let url = payload["url"].as_str().expect("url");
    assert!(url.len() <= 128, "{url}");
    let manifest_id = url.rsplit('/').next().expect("id");
    assert_eq!(manifest_id.len(), 43, "256 bits of entropy as base64url");
    assert!(url.starts_with(&format!("{}/v1/health-link/manifests/", app.address)));
    let key = payload["key"].as_str().expect("key");
    assert_eq!(URL_SAFE_NO_PAD.decode(key).expect("base64url").len(), 32);
    assert_eq!(payload["flag"], "P");
    assert_eq!(payload["label"], "Health Records");
    assert_eq!(payload["v"], 1);
    let end = time::OffsetDateTime::parse(
        link["context"]["period"]["end"].as_str().expect("end"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("instant");
    assert_eq!(
        payload["exp"],
        end.unix_timestamp(),
        "exp in seconds, equal to the period end"
    );
    let start = time::OffsetDateTime::parse(
        link["context"]["period"]["start"].as_str().expect("start"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("instant");
    assert_eq!((end - start).whole_seconds(), 300, "5 minutes, like b.well");
    assert!(link["passcode"].as_str().expect("passcode").len() == 6);
    assert_eq!(
        crate::qr::decode_svg(link["qrCodeSvg"].as_str().expect("svg")),
        link["content"][0]["attachment"]["url"]
    );
}

#[tokio::test]
async fn a_label_is_left_out_of_the_payload_when_not_given() {
    let app = spawn_embedded(&TestDatabase::Sqlite, |config| config).await;
    let (_, payload) = create_link(&app, json!({})).await;
    assert!(payload.get("label").is_none(), "{payload}");
}

#[tokio::test]
async fn direct_mode_makes_a_u_link_without_passcode() {
    let app = spawn_embedded(&TestDatabase::Sqlite, |config| config).await;

    let (link, payload) = create_link(&app, json!({"mode": "DIRECT"})).await;

    assert_eq!(payload["flag"], "U");
    assert!(payload["exp"].is_i64());
    assert_eq!(link["passcode"], Value::Null);
    let (_, body) = app
        .graphql(
            SEED_MUTATION,
            json!({"input": {"mode": "DIRECT", "securityConfig": {"passcode": "123456"}}}),
            Some(&format!("Bearer {PATIENT_TOKEN}")),
        )
        .await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT");
}

#[tokio::test]
async fn an_unknown_token_is_unauthenticated() {
    let app = spawn_embedded(&TestDatabase::Sqlite, |config| config).await;
    for token in ["Bearer not-a-known-token", "Bearer", "Token abc"] {
        let (_, body) = app
            .graphql(SEED_MUTATION, seed_variables(), Some(token))
            .await;
        assert_eq!(error_code(&body), "UNAUTHENTICATED", "{token}");
    }
}

#[tokio::test]
async fn the_development_token_of_demo_mode_creates_links() {
    let app = spawn_embedded(&TestDatabase::Sqlite, |config| config).await;
    let token = app
        .development_token
        .clone()
        .expect("demo mode prints a token");
    assert!(token.starts_with("Bearer dev-"));

    let (_, body) = app
        .graphql(SEED_MUTATION, seed_variables(), Some(&token))
        .await;

    assert!(body.get("errors").is_none(), "{body}");
}

on_each_database!(health_links_lists_the_callers_links_newest_first_with_accesses);
async fn health_links_lists_the_callers_links_newest_first_with_accesses(database: TestDatabase) {
    let app = spawn_embedded(&database, |config| config).await;
    let (first, first_payload) = create_link(&app, json!({"label": "first"})).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let (second, _) = create_link(&app, json!({"label": "second", "mode": "DIRECT"})).await;
    let passcode = first["passcode"].as_str().expect("passcode");
    crate::manifest_protocol::post_manifest(
        &app,
        &first_payload,
        json!({"recipient": "Dr. Example", "passcode": "000000"}),
    )
    .await;
    crate::manifest_protocol::post_manifest(
        &app,
        &first_payload,
        json!({"recipient": "Dr. Example", "passcode": passcode}),
    )
    .await;

    let (_, body) = app
        .graphql(
            "{ healthLinks { id label mode status createdAt expiresAt accesses { at recipient action outcome } } }",
            json!({}),
            Some(&format!("Bearer {PATIENT_TOKEN}")),
        )
        .await;

    let links = body["data"]["healthLinks"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"));
    assert_eq!(links.len(), 2);
    assert_eq!(links[0]["id"], second["id"]);
    assert_eq!(links[0]["mode"], "DIRECT");
    assert_eq!(links[1]["id"], first["id"]);
    assert_eq!(links[1]["label"], "first");
    assert_eq!(links[1]["status"], "ACTIVE");
    let accesses = links[1]["accesses"].as_array().expect("accesses");
    let outcomes: Vec<(&str, &str)> = accesses
        .iter()
        .map(|access| {
            (
                access["action"].as_str().unwrap_or_default(),
                access["outcome"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        vec![("manifest", "bad-passcode"), ("manifest", "ok")]
    );
    assert_eq!(accesses[0]["recipient"], "Dr. Example");
    assert!(is_seed_instant(&accesses[0]["at"]));
    app.stop().await;
}

on_each_database!(revoking_a_link_makes_it_unreachable_at_once);
async fn revoking_a_link_makes_it_unreachable_at_once(database: TestDatabase) {
    let app = spawn_embedded(&database, |config| config).await;
    let (link, payload) = create_link(&app, json!({})).await;
    let passcode = link["passcode"].as_str().expect("passcode");
    // A ticket handed out before the revocation must stop working too.
    let (_, manifest) = crate::manifest_protocol::post_manifest(
        &app,
        &payload,
        json!({"recipient": "r", "passcode": passcode}),
    )
    .await;
    let location = manifest["files"][0]["location"]
        .as_str()
        .expect("location")
        .to_owned();

    let (_, body) = app
        .graphql(
            "mutation($id: ID!) { revokeHealthLink(id: $id) { id status } }",
            json!({"id": link["id"]}),
            Some(&format!("Bearer {PATIENT_TOKEN}")),
        )
        .await;

    assert_eq!(
        body["data"]["revokeHealthLink"]["status"], "REVOKED",
        "{body}"
    );
    let (status, _) = crate::manifest_protocol::post_manifest(
        &app,
        &payload,
        json!({"recipient": "r", "passcode": passcode}),
    )
    .await;
    assert_eq!(status, 404);
    let file = app.http.get(&location).send().await.expect("sent");
    assert_eq!(file.status(), 404);
    app.stop().await;
}

#[tokio::test]
async fn another_patients_link_cannot_be_revoked() {
    let app = spawn_embedded(&TestDatabase::Sqlite, |config| config).await;
    let (link, _) = create_link(&app, json!({})).await;
    let other = app.development_token.clone().expect("token");
    // The development token belongs to the same demo patient; a made-up id is someone else's.
    let (_, body) = app
        .graphql(
            "mutation($id: ID!) { revokeHealthLink(id: $id) { status } }",
            json!({"id": "00000000-0000-4000-8000-000000000000"}),
            Some(&other),
        )
        .await;
    assert_eq!(error_code(&body), "NOT_FOUND");
    let (_, body) = app
        .graphql(
            "mutation($id: ID!) { revokeHealthLink(id: $id) { status } }",
            json!({"id": link["id"]}),
            Some("Bearer unknown-token-xyz"),
        )
        .await;
    assert_eq!(error_code(&body), "UNAUTHENTICATED");
}

#[tokio::test]
async fn embedded_only_operations_are_not_supported_upstream() {
    let app = spawn_app().await;
    let (_, body) = app
        .graphql("{ healthLinks { id } }", json!({}), Some(TOKEN))
        .await;
    assert_eq!(error_code(&body), "NOT_SUPPORTED_IN_MODE");
    let (_, body) = app
        .graphql(
            "mutation { revokeHealthLink(id: \"x\") { id } }",
            json!({}),
            Some(TOKEN),
        )
        .await;
    assert_eq!(error_code(&body), "NOT_SUPPORTED_IN_MODE");
}

#[tokio::test]
async fn readiness_checks_the_store() {
    let app = spawn_embedded(&TestDatabase::Sqlite, |config| config).await;
    let ready = app
        .http
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .expect("sent");
    assert_eq!(ready.status(), 200);
}

#[tokio::test]
async fn the_purge_task_drops_the_ciphertext_of_ended_links() {
    use shl_gateway::issuer::store::{LinkStore as _, SqlStore};
    let dir = tempfile::tempdir().expect("tempdir");
    let database_url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("purge.db").display()
    );
    let url_for_app = database_url.clone();
    let app = spawn_embedded(&TestDatabase::Sqlite, move |mut config| {
        config.embedded.database_url = Some(secrecy::SecretString::from(url_for_app));
        config.embedded.link_validity = Duration::from_secs(1);
        config.embedded.purge_interval = Duration::from_millis(200);
        config
    })
    .await;
    let (expiring, _) = create_link(&app, json!({})).await;
    let store = SqlStore::connect(&database_url).await.expect("store");
    let id = expiring["id"].as_str().expect("id");
    assert!(
        store
            .link_by_id(id)
            .await
            .expect("read")
            .expect("link")
            .jwe
            .is_some()
    );

    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let link = store
            .link_by_id(id)
            .await
            .expect("read")
            .expect("metadata stays");
        if link.jwe.is_none() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the ciphertext was never purged"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, body) = app
        .graphql(
            "{ healthLinks { id status } }",
            json!({}),
            Some(&format!("Bearer {PATIENT_TOKEN}")),
        )
        .await;
    assert_eq!(
        body["data"]["healthLinks"][0]["status"], "EXPIRED",
        "metadata and history stay"
    );
}

#[tokio::test]
async fn embedded_mode_shares_medication_requests_too() {
    let app = spawn_embedded(&TestDatabase::Sqlite, |config| config).await;

    let (_, body) = app
        .graphql("{ shareableResourceTypes }", json!({}), None)
        .await;

    let types: Vec<&str> = body["data"]["shareableResourceTypes"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|name| name.as_str().expect("a name"))
        .collect();
    assert_eq!(types.len(), 10, "{types:?}");
    assert!(types.contains(&"MedicationRequest"));
    assert!(types.contains(&"MedicationStatement"));
}

#[tokio::test]
async fn a_caller_chooses_the_validity_within_the_modes_bound() {
    let app = spawn_embedded(&TestDatabase::Sqlite, |config| config).await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();

    let (_, passcode) = create_link(&app, json!({"expiresInSeconds": 3600})).await;
    let (link, direct) =
        create_link(&app, json!({"mode": "DIRECT", "expiresInSeconds": 172_800})).await;

    let exp = |payload: &Value| payload["exp"].as_i64().expect("exp");
    assert!((exp(&passcode) - (now + 3600)).abs() <= 5, "{passcode}");
    assert!((exp(&direct) - (now + 172_800)).abs() <= 5, "{direct}");
    let end = time::OffsetDateTime::parse(
        link["context"]["period"]["end"].as_str().expect("end"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("an instant");
    assert_eq!(
        end.unix_timestamp(),
        exp(&direct),
        "the period ends with the link"
    );
}

#[tokio::test]
async fn a_validity_out_of_bounds_is_refused_before_anything_runs() {
    let app = spawn_embedded(&TestDatabase::Sqlite, |config| config).await;

    for (input, says) in [
        (
            json!({"mode": "DIRECT", "expiresInSeconds": 172_801}),
            "--max-direct-link-validity",
        ),
        (json!({"expiresInSeconds": 172_801}), "--max-link-validity"),
        (json!({"expiresInSeconds": 0}), "positive"),
        (
            json!({"mode": "DIRECT", "expiresInSeconds": -60}),
            "positive",
        ),
    ] {
        let (status, body) = app
            .graphql(
                "mutation($input: CreateHealthLinkInput!) { createHealthLink(input: $input) { id } }",
                json!({ "input": input }),
                Some(&format!("Bearer {PATIENT_TOKEN}")),
            )
            .await;

        assert_eq!(status, 200);
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
            "{body}"
        );
        let message = body["errors"][0]["message"].as_str().expect("message");
        assert!(message.contains(says), "{message}");
    }
    let (_, links) = app
        .graphql(
            "{ healthLinks { id } }",
            json!({}),
            Some(&format!("Bearer {PATIENT_TOKEN}")),
        )
        .await;
    assert_eq!(links["data"]["healthLinks"], json!([]), "no link was made");
}
