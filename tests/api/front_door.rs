//! The front door's rules on whole documents and headers: an invalid document runs nothing
//! (no link is created or disclosed), and malformed `Idempotency-Key` headers and labels with
//! invisible formatting characters are refused rather than ignored.

use serde_json::{Value, json};

use crate::helpers::*;

fn bearer() -> String {
    format!("Bearer {PATIENT_TOKEN}")
}

async fn link_count(app: &TestApp) -> usize {
    let (_, body) = app
        .graphql("{ healthLinks { id } }", json!({}), Some(&bearer()))
        .await;
    body["data"]["healthLinks"]
        .as_array()
        .unwrap_or_else(|| panic!("healthLinks: {body}"))
        .len()
}

fn refusals(app: &TestApp) -> Vec<Value> {
    app.audit_records()
        .into_iter()
        .filter(|record| record["action"] == "creation-refused")
        .collect()
}

#[tokio::test]
async fn an_invalid_qr_argument_refuses_the_whole_document_before_anything_is_created() {
    let app = spawn_embedded(&TestDatabase::Sqlite, |config| config).await;
    // Each document is valid but for the one argument: declared variables are all used.
    let create = |selection: &str| {
        let mut declared = Vec::new();
        if selection.contains("$e") {
            declared.push("$e: QrErrorCorrection");
        }
        if selection.contains("$s") {
            declared.push("$s: Int");
        }
        let declared = if declared.is_empty() {
            String::new()
        } else {
            format!("({})", declared.join(", "))
        };
        format!(
            "mutation{declared} {{ createHealthLink(input: {{label: \"x\"}}) {{ id passcode {selection} }} }}"
        )
    };
    let cases = [
        (
            create("qrCodeSvg(moduleSize: 178117804487664)"),
            json!({}),
            "moduleSize",
        ),
        (create("qrCodeSvg(moduleSize: 0)"), json!({}), "moduleSize"),
        (
            create("qrCodeSvg(darkColor: \"red\")"),
            json!({}),
            "darkColor",
        ),
        (
            create("qrCodeSvg(moduleSize: $s)"),
            json!({"s": 33}),
            "moduleSize",
        ),
        (
            create("qrCodeSvg(errorCorrection: $e)"),
            json!({"e": "X"}),
            "errorCorrection",
        ),
        (
            create("... on DocumentReference { qrCodeSvg(lightColor: \"#fff\") }"),
            json!({}),
            "lightColor",
        ),
        (
            format!(
                "{} fragment Q on DocumentReference {{ big: qrCodeSvg(moduleSize: 64) }}",
                create("...Q")
            ),
            json!({}),
            "moduleSize",
        ),
    ];
    for (query, variables, argument) in &cases {
        let (status, body) = app.graphql(query, variables.clone(), Some(&bearer())).await;
        assert_eq!(status, 200, "{body}");
        let code = error_code(&body);
        assert!(
            code == "GRAPHQL_VALIDATION_FAILED",
            "{argument}: {code} in {body}"
        );
        assert!(body.get("data").is_none(), "nothing disclosed: {body}");
        let message = body["errors"][0]["message"].as_str().expect("message");
        assert!(message.contains(argument), "{message} names {argument}");
        for value in ["178117804487664", "red", "#fff", "33", "64"] {
            assert!(!message.contains(&format!(" {value}")), "{message}");
        }
    }
    assert_eq!(link_count(&app).await, 0, "no link was created");
    let refused = refusals(&app);
    assert_eq!(refused.len(), cases.len(), "{refused:?}");
    assert!(
        refused
            .iter()
            .all(|record| record["outcome"] == "GRAPHQL_VALIDATION_FAILED"
                && record["actor"].is_string())
    );
    assert!(
        !app.audit_records()
            .iter()
            .any(|record| record["action"] == "creation-attempt"),
        "nothing was attempted"
    );
    // The same document with valid arguments creates one link.
    let (_, body) = app
        .graphql(
            &create("qrCodeSvg(moduleSize: $s, darkColor: \"#102030\", errorCorrection: $e)"),
            json!({"s": 2, "e": "H"}),
            Some(&bearer()),
        )
        .await;
    assert!(body.get("errors").is_none(), "{body}");
    assert_eq!(link_count(&app).await, 1);
}

#[tokio::test]
async fn integer_literals_outside_32_bits_are_refused_before_execution() {
    let app = spawn_app().await;
    let (status, body) = app
        .http
        .post(format!("{}/graphql", app.address))
        .header("accept", "application/graphql-response+json")
        .json(&json!({"query": "query Main { shareableResourceTypes @include(if: true) } query Other { x: shareableResourceTypes(n: 99999999999) }", "operationName": "Main"}))
        .send()
        .await
        .map(|response| (response.status(), response))
        .expect("sent");
    assert_eq!(status, 400);
    let body: Value = body.json().await.expect("json");
    assert_eq!(error_code(&body), "GRAPHQL_VALIDATION_FAILED", "{body}");
    let message = body["errors"][0]["message"].as_str().expect("message");
    assert!(message.contains("32-bit"), "{message}");
    assert!(!message.contains("99999999999"), "{message}");
}

async fn create_with_key(app: &TestApp, key: &[u8]) -> Value {
    let header = reqwest::header::HeaderValue::from_bytes(key).expect("header bytes");
    app.http
        .post(format!("{}/graphql", app.address))
        .header("authorization", bearer())
        .header("idempotency-key", header)
        .json(&json!({"query": "mutation { createHealthLink(input: {}) { id } }"}))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json")
}

#[tokio::test]
async fn malformed_idempotency_keys_are_refused_not_ignored() {
    let app = spawn_embedded(&TestDatabase::Sqlite, |config| config).await;
    let long = "k".repeat(256);
    let malformed: [&[u8]; 4] = ["clé-1".as_bytes(), b"\xff\xfe", b"", long.as_bytes()];
    for key in malformed {
        for _ in 0..2 {
            let body = create_with_key(&app, key).await;
            assert_eq!(error_code(&body), "BAD_USER_INPUT", "{key:?}: {body}");
            let message = body["errors"][0]["message"].as_str().expect("message");
            assert!(message.contains("Idempotency-Key"), "{message}");
        }
    }
    assert_eq!(link_count(&app).await, 0, "no link was created");
    // The longest valid key works, and its retry is the same link.
    let longest = "k".repeat(255);
    let first = create_with_key(&app, longest.as_bytes()).await;
    let retry = create_with_key(&app, longest.as_bytes()).await;
    assert!(first.get("errors").is_none(), "{first}");
    assert_eq!(first, retry);
    assert_eq!(link_count(&app).await, 1);
}

#[tokio::test]
async fn labels_with_invisible_formatting_characters_are_refused() {
    let app = spawn_embedded(&TestDatabase::Sqlite, |config| config).await;
    let mutation =
        "mutation($input: CreateHealthLinkInput!) { createHealthLink(input: $input) { id } }";
    for label in [
        "Dr. Smith\u{202E}gnp.exe",
        "zero\u{200B}width",
        "\u{2066}isolated\u{2069}",
        "\u{FEFF}bom",
    ] {
        let (_, body) = app
            .graphql(
                mutation,
                json!({"input": {"label": label}}),
                Some(&bearer()),
            )
            .await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
        let message = body["errors"][0]["message"].as_str().expect("message");
        assert!(
            message.starts_with("label ") && message.contains("Cf"),
            "{message}"
        );
    }
    assert_eq!(link_count(&app).await, 0);
    let (_, body) = app
        .graphql(
            mutation,
            json!({"input": {"label": "Née à Zürich 中文"}}),
            Some(&bearer()),
        )
        .await;
    assert!(body.get("errors").is_none(), "{body}");
}
