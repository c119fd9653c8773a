//! The SHL manifest protocol of embedded links: 200/401/404/400, tickets, direct links, the
//! lifetime passcode budget under concurrency, and the decrypted document.

use std::time::Duration;

use serde_json::{Value, json};
use shl_gateway::crypto::jwe::{ShlKey, decrypt};

use crate::embedded::create_link;
use crate::helpers::*;

/// POSTs to the payload's manifest URL; returns the status and the JSON answer (or Null).
pub(crate) async fn post_manifest(app: &TestApp, payload: &Value, body: Value) -> (u16, Value) {
    let response = app
        .http
        .post(payload["url"].as_str().expect("url"))
        .json(&body)
        .send()
        .await
        .expect("sent");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn decrypt_file(payload: &Value, jwe: &str) -> Value {
    let key = ShlKey::from_base64url(payload["key"].as_str().expect("key")).expect("key");
    serde_json::from_slice(&decrypt(&key, jwe).expect("decrypts")).expect("JSON bundle")
}

on_each_database!(the_right_passcode_gets_a_location_that_serves_the_encrypted_ips);
async fn the_right_passcode_gets_a_location_that_serves_the_encrypted_ips(database: TestDatabase) {
    let app = spawn_embedded(&database, |config| config).await;
    let (link, payload) = create_link(
        &app,
        json!({"resources": [{"resourceType": "AllergyIntolerance"}]}),
    )
    .await;

    let (status, manifest) = post_manifest(
        &app,
        &payload,
        json!({"recipient": "Clinic", "passcode": link["passcode"], "somethingNew": true}),
    )
    .await;

    assert_eq!(status, 200, "{manifest}");
    assert_eq!(manifest["status"], "finalized");
    let file = &manifest["files"][0];
    assert_eq!(file["contentType"], "application/fhir+json");
    let location = file["location"].as_str().expect("location");
    assert!(location.starts_with(&format!("{}/v1/health-link/files/", app.address)));
    let response = app.http.get(location).send().await.expect("sent");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/jose");
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
    let bundle = decrypt_file(&payload, &response.text().await.expect("body"));
    assert_eq!(bundle["type"], "document");
    assert_eq!(
        bundle["entry"][0]["resource"]["resourceType"],
        "Composition"
    );
    let types: Vec<&str> = bundle["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|entry| entry["resource"]["resourceType"].as_str())
        .collect();
    assert!(
        types.contains(&"AllergyIntolerance") && types.contains(&"Patient"),
        "{types:?}"
    );
    assert!(
        !types.contains(&"Condition"),
        "deselected types stay out: {types:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn embedded_length_max_embeds_the_file_when_it_fits() {
    let app = spawn_embedded(&TestDatabase::Sqlite, |config| config).await;
    let (link, payload) = create_link(&app, json!({})).await;

    let (_, small) = post_manifest(
        &app,
        &payload,
        json!({"recipient": "r", "passcode": link["passcode"], "embeddedLengthMax": 10}),
    )
    .await;
    assert!(small["files"][0]["location"].is_string(), "{small}");
    let (_, large) = post_manifest(
        &app,
        &payload,
        json!({"recipient": "r", "passcode": link["passcode"], "embeddedLengthMax": 10_000_000}),
    )
    .await;
    let jwe = large["files"][0]["embedded"].as_str().expect("embedded");
    assert_eq!(decrypt_file(&payload, jwe)["type"], "document");
}

#[tokio::test]
async fn wrong_passcodes_count_down_then_the_link_locks() {
    let app = spawn_embedded(&TestDatabase::Sqlite, |config| config).await;
    let (link, payload) = create_link(&app, json!({})).await;
    let right = link["passcode"].as_str().expect("passcode").to_owned();
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };

    // A right passcode does not use up an attempt.
    assert_eq!(
        post_manifest(&app, &payload, json!({"recipient": "r", "passcode": right}))
            .await
            .0,
        200
    );
    for remaining in (0..5).rev() {
        let (status, body) =
            post_manifest(&app, &payload, json!({"recipient": "r", "passcode": wrong})).await;
        assert_eq!(
            (status, body),
            (401, json!({"remainingAttempts": remaining}))
        );
    }
    let (status, body) =
        post_manifest(&app, &payload, json!({"recipient": "r", "passcode": right})).await;
    assert_eq!(status, 404, "locked, even for the right passcode");
    assert!(body.get("remainingAttempts").is_none());
}

on_each_database!(a_storm_of_concurrent_wrong_guesses_spends_exactly_the_budget);
async fn a_storm_of_concurrent_wrong_guesses_spends_exactly_the_budget(database: TestDatabase) {
    let app = spawn_embedded(&database, |config| config).await;
    let (link, payload) = create_link(&app, json!({})).await;
    let right = link["passcode"].as_str().expect("passcode").to_owned();
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };

    let guesses = (0..200)
        .map(|_| post_manifest(&app, &payload, json!({"recipient": "r", "passcode": wrong})));
    let answers = futures_util::future::join_all(guesses).await;

    let unauthorized = answers.iter().filter(|(status, _)| *status == 401).count();
    let not_found = answers.iter().filter(|(status, _)| *status == 404).count();
    assert_eq!(unauthorized, 5, "exactly the budget is charged");
    assert_eq!(not_found, 195);
    let mut remaining: Vec<i64> = answers
        .iter()
        .filter_map(|(_, body)| body["remainingAttempts"].as_i64())
        .collect();
    remaining.sort_unstable();
    assert_eq!(remaining, vec![0, 1, 2, 3, 4]);
    assert_eq!(
        post_manifest(&app, &payload, json!({"recipient": "r", "passcode": right}))
            .await
            .0,
        404
    );
    app.stop().await;
}

#[tokio::test]
async fn malformed_requests_are_400_never_500() {
    let app = spawn_embedded(&TestDatabase::Sqlite, |config| config).await;
    let (link, payload) = create_link(&app, json!({})).await;
    let url = payload["url"].as_str().expect("url");
    for body in [
        "",
        "not json",
        "[]",
        "{\"passcode\": \"123456\"}",
        "{\"recipient\": 5}",
    ] {
        let response = app
            .http
            .post(url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 400, "{body:?}");
    }
    let long = "x".repeat(101);
    assert_eq!(
        post_manifest(
            &app,
            &payload,
            json!({"recipient": long, "passcode": link["passcode"]})
        )
        .await
        .0,
        400
    );
    let (status, body) = post_manifest(&app, &payload, json!({"recipient": "r"})).await;
    assert_eq!(
        (status, body),
        (401, json!({"remainingAttempts": 5})),
        "no passcode: 401 without spending an attempt"
    );
}

#[tokio::test]
async fn unknown_and_expired_links_are_the_same_404() {
    let app = spawn_embedded(&TestDatabase::Sqlite, |mut config| {
        config.embedded.link_validity = Duration::from_secs(1);
        config
    })
    .await;
    let (link, payload) = create_link(&app, json!({})).await;
    let unknown = format!(
        "{}/v1/health-link/manifests/{}",
        app.address,
        "A".repeat(43)
    );
    let response = app
        .http
        .post(&unknown)
        .json(&json!({"recipient": "r", "passcode": "123456"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 404);
    let unknown_body: Value = response.json().await.expect("json");

    tokio::time::sleep(Duration::from_millis(1_300)).await;
    let (status, body) = post_manifest(
        &app,
        &payload,
        json!({"recipient": "r", "passcode": link["passcode"]}),
    )
    .await;

    assert_eq!(status, 404);
    assert_eq!(
        body, unknown_body,
        "nothing tells an expired link from an unknown one"
    );
}

#[tokio::test]
async fn direct_links_are_fetched_with_get_and_a_recipient() {
    let app = spawn_embedded(&TestDatabase::Sqlite, |config| config).await;
    let (_, payload) = create_link(&app, json!({"mode": "DIRECT"})).await;
    let url = payload["url"].as_str().expect("url");

    let response = app
        .http
        .get(url)
        .query(&[("recipient", "Front desk")])
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/jose");
    assert_eq!(
        decrypt_file(&payload, &response.text().await.expect("jwe"))["type"],
        "collection",
        "a PatientSharedBundle, not a document"
    );

    assert_eq!(
        app.http.get(url).send().await.expect("sent").status(),
        400,
        "recipient is required"
    );
    assert_eq!(
        post_manifest(&app, &payload, json!({"recipient": "r"}))
            .await
            .0,
        404,
        "no manifest for U links"
    );
    let (_, body) = app
        .graphql(
            "{ healthLinks { accesses { recipient action outcome } } }",
            json!({}),
            Some(&format!("Bearer {PATIENT_TOKEN}")),
        )
        .await;
    assert_eq!(
        body["data"]["healthLinks"][0]["accesses"],
        json!([
            // `create_link`'s own receiver check, then this test's fetch (the 400 is not one),
            // then the manifest POST a U link refuses.
            {"recipient": crate::ktc_conformance::CONFORMANCE_RECIPIENT, "action": "direct", "outcome": "ok"},
            {"recipient": "Front desk", "action": "direct", "outcome": "ok"},
            {"recipient": "r", "action": "manifest", "outcome": "inactive"}
        ])
    );
}

#[tokio::test]
async fn a_passcode_link_is_not_served_by_get() {
    let app = spawn_embedded(&TestDatabase::Sqlite, |config| config).await;
    let (_, payload) = create_link(&app, json!({})).await;
    let response = app
        .http
        .get(payload["url"].as_str().expect("url"))
        .query(&[("recipient", "r")])
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn forged_tickets_are_404() {
    let app = spawn_embedded(&TestDatabase::Sqlite, |config| config).await;
    for ticket in ["x", &"A".repeat(54)] {
        let response = app
            .http
            .get(format!("{}/v1/health-link/files/{ticket}", app.address))
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 404);
    }
}

#[tokio::test]
async fn data_plane_endpoints_allow_any_origin() {
    let app = spawn_embedded(&TestDatabase::Sqlite, |config| config).await;
    let (_, payload) = create_link(&app, json!({})).await;
    let preflight = app
        .http
        .request(
            reqwest::Method::OPTIONS,
            payload["url"].as_str().expect("url"),
        )
        .header("origin", "https://viewer.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .expect("sent");
    assert_eq!(preflight.headers()["access-control-allow-origin"], "*");
    let (status, _) = post_manifest(
        &app,
        &payload,
        json!({"recipient": "r", "passcode": "999999"}),
    )
    .await;
    assert!(status == 401 || status == 200);
}

#[tokio::test]
async fn concurrent_right_passcodes_all_open_the_link() {
    let app = spawn_embedded(&TestDatabase::Sqlite, |config| config).await;
    let (link, payload) = create_link(&app, json!({})).await;
    let right = link["passcode"].clone();

    let openings = (0..20)
        .map(|_| post_manifest(&app, &payload, json!({"recipient": "r", "passcode": right})));
    let statuses: Vec<u16> = futures_util::future::join_all(openings)
        .await
        .into_iter()
        .map(|(status, _)| status)
        .collect();

    assert!(statuses.iter().all(|status| *status == 200), "{statuses:?}");
    let (_, again) = post_manifest(
        &app,
        &payload,
        json!({"recipient": "r", "passcode": "000001"}),
    )
    .await;
    assert_eq!(
        again["remainingAttempts"], 4,
        "right passcodes spent nothing"
    );
}
