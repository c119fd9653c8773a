//! `createHealthLink` in upstream mode: b.well's contract, relayed, plus the gateway fields.

use serde_json::{Value, json};
use wiremock::matchers::{header, method};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::*;

#[tokio::test]
async fn the_seed_mutation_returns_the_seed_answer_unchanged() {
    let app = spawn_app().await;
    app.upstream_answers_seed().await;

    let (status, body) = app.create_seed_link().await;

    assert_eq!(status, 200);
    assert!(body.get("errors").is_none(), "{body}");
    assert_eq!(body["data"]["createHealthLink"], seed_answer());
}

#[tokio::test]
async fn the_callers_token_is_forwarded_with_trace_context_and_request_id() {
    let app = spawn_app().await;
    Mock::given(method("POST"))
        .and(header("authorization", TOKEN))
        .and(header(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ))
        .and(header("tracestate", "vendor=value"))
        .and(header("x-request-id", "client-request-42"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(SEED_RESPONSE, "application/json"))
        .expect(1)
        .mount(&app.upstream)
        .await;

    let response = app
        .http
        .post(format!("{}/graphql", app.address))
        .header("authorization", TOKEN)
        .header(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .header("tracestate", "vendor=value")
        .header("x-request-id", "client-request-42")
        .header("cookie", "session=should-not-travel")
        .header("x-custom", "should-not-travel")
        .json(&json!({"query": SEED_MUTATION, "variables": seed_variables()}))
        .send()
        .await
        .expect("sent");

    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], "client-request-42");
    let received = &app.upstream.received_requests().await.expect("recorded")[0];
    assert!(received.headers.get("cookie").is_none());
    assert!(received.headers.get("x-custom").is_none());
}

#[tokio::test]
async fn the_gateway_sends_its_own_fixed_operation_not_the_callers_document() {
    let app = spawn_app().await;
    app.upstream_answers_seed().await;

    let (status, _) = app
        .graphql(
            "mutation Mine($input: CreateHealthLinkInput!) { createHealthLink(input: $input) { id } }",
            seed_variables(),
            Some(TOKEN),
        )
        .await;

    assert_eq!(status, 200);
    let sent = &app.upstream_bodies().await[0];
    assert_eq!(sent["operationName"], "CreateHealthLink");
    let query = sent["query"].as_str().expect("query");
    assert!(
        query.contains("category { coding { system code } }"),
        "{query}"
    );
    assert!(!query.contains("Mine"));
    assert_eq!(
        sent["variables"],
        seed_variables(),
        "the seed's variables travel unchanged"
    );
}

#[tokio::test]
async fn an_omitted_passcode_is_generated_sent_upstream_and_returned() {
    let app = spawn_app().await;
    app.upstream_answers_seed().await;
    let variables = json!({"input": {"label": "Health Records"}});

    let (_, body) = app
        .graphql(MUTATION_WITH_GATEWAY_FIELDS, variables, Some(TOKEN))
        .await;

    let passcode = body["data"]["createHealthLink"]["passcode"]
        .as_str()
        .expect("passcode");
    assert_eq!(passcode.len(), 6);
    assert!(passcode.bytes().all(|b| b.is_ascii_digit()));
    let sent = &app.upstream_bodies().await[0];
    assert_eq!(
        sent["variables"]["input"]["securityConfig"]["passcode"],
        passcode
    );
    assert!(sent["variables"]["input"].get("resources").is_none());
    assert!(
        sent["variables"]["input"].get("mode").is_none(),
        "mode is a gateway field"
    );
}

#[tokio::test]
async fn a_supplied_passcode_is_kept_and_returned() {
    let app = spawn_app().await;
    app.upstream_answers_seed().await;

    let (_, body) = app
        .graphql(MUTATION_WITH_GATEWAY_FIELDS, seed_variables(), Some(TOKEN))
        .await;

    assert_eq!(body["data"]["createHealthLink"]["passcode"], "743730");
}

#[tokio::test]
async fn generated_passcodes_differ_between_links() {
    let app = spawn_app().await;
    app.upstream_answers_seed().await;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..5 {
        let (_, body) = app
            .graphql(
                "mutation { createHealthLink(input: {}) { passcode } }",
                json!({}),
                Some(TOKEN),
            )
            .await;
        seen.insert(
            body["data"]["createHealthLink"]["passcode"]
                .as_str()
                .expect("passcode")
                .to_owned(),
        );
    }
    assert!(seen.len() >= 4, "passcodes repeat: {seen:?}");
}

#[tokio::test]
async fn qr_code_svg_decodes_to_the_link_url() {
    let app = spawn_app().await;
    app.upstream_answers_seed().await;

    let (_, body) = app
        .graphql(MUTATION_WITH_GATEWAY_FIELDS, seed_variables(), Some(TOKEN))
        .await;

    let link = &body["data"]["createHealthLink"];
    let svg = link["qrCodeSvg"].as_str().expect("svg");
    assert!(svg.len() < 10_000, "SVG is {} bytes", svg.len());
    let url = link["content"][0]["attachment"]["url"]
        .as_str()
        .expect("url");
    assert_eq!(crate::qr::decode_svg(svg), url);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qr_codes_beyond_the_render_slots_wait_their_turn() {
    let app = spawn_app_with(|mut config| {
        config.graphql.max_concurrent_qr_renders = 1;
        config
    })
    .await;
    app.upstream_answers_seed().await;
    let app = std::sync::Arc::new(app);
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let app = std::sync::Arc::clone(&app);
        requests.spawn(async move {
            app.graphql(MUTATION_WITH_GATEWAY_FIELDS, seed_variables(), Some(TOKEN))
                .await
        });
    }
    while let Some(answer) = requests.join_next().await {
        let (status, body) = answer.expect("request task");
        assert_eq!(status, 200);
        let link = &body["data"]["createHealthLink"];
        let url = link["content"][0]["attachment"]["url"]
            .as_str()
            .expect("url");
        let svg = link["qrCodeSvg"].as_str().expect("svg");
        assert_eq!(crate::qr::decode_svg(svg), url);
    }
}

#[tokio::test]
async fn qr_code_arguments_are_validated() {
    let app = spawn_app().await;
    app.upstream_answers_seed().await;
    for arguments in [
        r#"(moduleSize: 0)"#,
        r#"(moduleSize: 33)"#,
        r##"(darkColor: "red")"##,
        r##"(lightColor: "#ffffff\"/><script>")"##,
    ] {
        let query =
            format!("mutation {{ createHealthLink(input: {{}}) {{ id qrCodeSvg{arguments} }} }}");
        let (_, body) = app.graphql(&query, json!({}), Some(TOKEN)).await;
        // Refused with the whole document, before the link is created.
        assert_eq!(
            error_code(&body),
            "GRAPHQL_VALIDATION_FAILED",
            "{arguments}: {body}"
        );
        assert!(body.get("data").is_none(), "{arguments}: {body}");
    }
    assert!(
        app.upstream_bodies().await.is_empty(),
        "nothing was created"
    );
}

#[tokio::test]
async fn qr_code_is_null_when_the_answer_has_no_link_attachment() {
    let app = spawn_app().await;
    let mut answer: Value = serde_json::from_str(SEED_RESPONSE).expect("json");
    answer["data"]["createHealthLink"]["content"] = json!([]);
    app.upstream_responds(ResponseTemplate::new(200).set_body_json(answer))
        .await;

    let (_, body) = app
        .graphql(MUTATION_WITH_GATEWAY_FIELDS, seed_variables(), Some(TOKEN))
        .await;

    assert_eq!(body["data"]["createHealthLink"]["qrCodeSvg"], Value::Null);
}

#[tokio::test]
async fn a_type_only_embedded_mode_shares_is_refused_upstream_before_anything_runs() {
    let app = spawn_app().await;
    app.upstream_answers_seed().await;

    let (_, body) = app
        .graphql(
            SEED_MUTATION,
            json!({"input": {"resources": [{"resourceType": "MedicationRequest"}]}}),
            Some(TOKEN),
        )
        .await;

    assert_eq!(error_code(&body), "BAD_USER_INPUT");
    let message = body["errors"][0]["message"].as_str().expect("message");
    assert!(
        message.contains("MedicationRequest") && message.contains("upstream"),
        "{message}"
    );
    assert!(app.upstream_bodies().await.is_empty());
}

#[tokio::test]
async fn upstream_mode_leaves_the_validity_to_b_well() {
    let app = spawn_app().await;
    app.upstream_answers_seed().await;

    let (_, body) = app
        .graphql(
            SEED_MUTATION,
            json!({"input": {"expiresInSeconds": 3600}}),
            Some(TOKEN),
        )
        .await;

    assert_eq!(error_code(&body), "BAD_USER_INPUT");
    let message = body["errors"][0]["message"].as_str().expect("message");
    assert!(message.contains("b.well"), "{message}");
    assert!(app.upstream_bodies().await.is_empty());
}

#[tokio::test]
async fn shareable_resource_types_lists_the_ips_set() {
    let app = spawn_app().await;

    let (_, body) = app
        .graphql("{ shareableResourceTypes }", json!({}), None)
        .await;

    assert_eq!(
        body["data"]["shareableResourceTypes"],
        json!([
            "Patient",
            "CarePlan",
            "Condition",
            "AllergyIntolerance",
            "MedicationStatement",
            "Immunization",
            "Procedure",
            "Observation",
            "Coverage"
        ])
    );
}

#[tokio::test]
async fn a_request_without_a_bearer_token_is_refused_without_calling_upstream() {
    let app = spawn_app().await;
    app.upstream_answers_seed().await;

    for authorization in [
        None,
        Some("Basic dXNlcjpwYXNz"),
        Some("Bearer "),
        Some("Bearer"),
    ] {
        let (_, body) = app
            .graphql(SEED_MUTATION, seed_variables(), authorization)
            .await;
        assert_eq!(error_code(&body), "UNAUTHENTICATED", "{authorization:?}");
    }
    assert!(app.upstream_bodies().await.is_empty());
}

#[tokio::test]
async fn invalid_inputs_are_bad_user_input_and_never_reach_upstream() {
    let app = spawn_app().await;
    app.upstream_answers_seed().await;
    let cases = [
        (json!({"label": "x".repeat(81)}), "label"),
        (json!({"label": "line\nbreak"}), "label"),
        (
            json!({"resources": [{"resourceType": "Encounter"}]}),
            "resources[0].resourceType",
        ),
        (json!({"securityConfig": {"passcode": "12345"}}), "passcode"),
        (
            json!({"securityConfig": {"passcode": "12345a"}}),
            "passcode",
        ),
        (
            json!({"securityConfig": {"passcode": "１２３４５６"}}),
            "passcode",
        ),
    ];
    for (input, named) in cases {
        let (_, body) = app
            .graphql(SEED_MUTATION, json!({"input": input}), Some(TOKEN))
            .await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{input}: {body}");
        let message = body["errors"][0]["message"].as_str().expect("message");
        assert!(message.contains(named), "{message} should name {named}");
    }
    assert!(app.upstream_bodies().await.is_empty());
}

#[tokio::test]
async fn empty_resources_mean_the_whole_set() {
    let app = spawn_app().await;
    app.upstream_answers_seed().await;

    let (_, body) = app
        .graphql(
            SEED_MUTATION,
            json!({"input": {"resources": [], "securityConfig": {"passcode": "123456"}}}),
            Some(TOKEN),
        )
        .await;

    assert!(body.get("errors").is_none(), "{body}");
    assert!(
        app.upstream_bodies().await[0]["variables"]["input"]
            .get("resources")
            .is_none()
    );
}

#[tokio::test]
async fn direct_mode_is_not_supported_upstream() {
    let app = spawn_app().await;
    app.upstream_answers_seed().await;

    let (_, body) = app
        .graphql(
            SEED_MUTATION,
            json!({"input": {"mode": "DIRECT"}}),
            Some(TOKEN),
        )
        .await;

    assert_eq!(error_code(&body), "NOT_SUPPORTED_IN_MODE");
    assert!(app.upstream_bodies().await.is_empty());
}
