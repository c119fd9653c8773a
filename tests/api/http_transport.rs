//! GraphQL over HTTP: methods, media types, CSRF, batching, body limit, request ids.

use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn a_text_plain_post_without_preflight_header_is_a_csrf_error() {
    let app = spawn_app().await;
    app.upstream_answers_seed().await;
    let body = json!({"query": SEED_MUTATION, "variables": seed_variables()}).to_string();

    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let mut request = app
            .http
            .post(format!("{}/graphql", app.address))
            .header("authorization", TOKEN)
            .body(body.clone());
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.expect("sent");
        assert_eq!(response.status(), 400, "{content_type:?}");
        let answer: Value = response.json().await.expect("json");
        assert_eq!(error_code(&answer), "CSRF_ERROR");
    }
    assert!(app.upstream_bodies().await.is_empty(), "nothing executed");
}

#[tokio::test]
async fn a_preflight_header_lifts_the_csrf_rule_but_json_is_still_required() {
    let app = spawn_app().await;
    let response = app
        .http
        .post(format!("{}/graphql", app.address))
        .header("content-type", "text/plain")
        .header("apollo-require-preflight", "true")
        .body(r#"{"query":"{ shareableResourceTypes }"}"#)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 415);
    let answer: Value = response.json().await.expect("json");
    assert_eq!(error_code(&answer), "BAD_USER_INPUT");
}

#[tokio::test]
async fn get_serves_queries() {
    let app = spawn_app().await;
    let response = app
        .http
        .get(format!("{}/graphql", app.address))
        .query(&[("query", "{ shareableResourceTypes }")])
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.expect("json");
    assert_eq!(answer["data"]["shareableResourceTypes"][0], "Patient");
}

#[tokio::test]
async fn a_mutation_over_get_is_405() {
    let app = spawn_app().await;
    app.upstream_answers_seed().await;
    let response = app
        .http
        .get(format!("{}/graphql", app.address))
        .header("authorization", TOKEN)
        .query(&[("query", SEED_MUTATION), ("variables", SEED_VARIABLES)])
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 405);
    assert!(
        response.headers()["allow"]
            .to_str()
            .expect("ascii")
            .contains("POST")
    );
    assert!(app.upstream_bodies().await.is_empty());
}

#[tokio::test]
async fn a_mutation_over_get_selected_by_operation_name_is_405() {
    let app = spawn_app().await;
    let document =
        "query Q { shareableResourceTypes } mutation M { createHealthLink(input: {}) { id } }";
    let response = app
        .http
        .get(format!("{}/graphql", app.address))
        .query(&[("query", document), ("operationName", "M")])
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 405);
}

#[tokio::test]
async fn an_operation_that_cannot_be_selected_is_a_request_error() {
    let app = spawn_app().await;
    let document = "query A { shareableResourceTypes } query B { shareableResourceTypes }";
    for operation_name in [json!("C"), Value::Null] {
        let response = app
            .http
            .post(format!("{}/graphql", app.address))
            .header("accept", "application/graphql-response+json")
            .json(&json!({"query": document, "operationName": operation_name}))
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 400, "{operation_name}");
        let answer: Value = response.json().await.expect("json");
        assert_eq!(error_code(&answer), "GRAPHQL_VALIDATION_FAILED");
        assert!(answer.get("data").is_none(), "nothing was executed");
    }
}

#[tokio::test]
async fn batched_requests_are_refused() {
    let app = spawn_app().await;
    app.upstream_answers_seed().await;
    let response = app
        .http
        .post(format!("{}/graphql", app.address))
        .header("authorization", TOKEN)
        .json(&json!([{"query": SEED_MUTATION, "variables": seed_variables()}, {"query": "{ shareableResourceTypes }"}]))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 400);
    let answer: Value = response.json().await.expect("json");
    assert_eq!(error_code(&answer), "BAD_USER_INPUT");
    assert!(app.upstream_bodies().await.is_empty());
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let app = spawn_app().await;
    let huge = format!(
        r#"{{"query":"{{ shareableResourceTypes }}","variables":{{"pad":"{}"}}}}"#,
        "x".repeat(70 * 1024)
    );
    let response = app
        .http
        .post(format!("{}/graphql", app.address))
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 413);
    let answer: Value = response.json().await.expect("json");
    assert_eq!(error_code(&answer), "OPERATION_LIMIT_EXCEEDED");
}

#[tokio::test]
async fn malformed_json_is_bad_user_input_without_echo() {
    let app = spawn_app().await;
    let response = app
        .http
        .post(format!("{}/graphql", app.address))
        .header("content-type", "application/json")
        .body(r#"{"query": 987654321}"#)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 400);
    let text = response.text().await.expect("text");
    assert!(!text.contains("987654321"), "{text}");
    assert_eq!(
        error_code(&serde_json::from_str(&text).expect("json")),
        "BAD_USER_INPUT"
    );
}

#[tokio::test]
async fn graphql_response_json_is_served_to_clients_that_accept_it() {
    let app = spawn_app().await;
    let send = |accept: &'static str, query: &'static str| {
        app.http
            .post(format!("{}/graphql", app.address))
            .header("accept", accept)
            .json(&json!({"query": query}))
            .send()
    };

    let ok = send(
        "application/graphql-response+json",
        "{ shareableResourceTypes }",
    )
    .await
    .expect("sent");
    assert_eq!(ok.status(), 200);
    assert!(
        ok.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("application/graphql-response+json")
    );
    assert_eq!(ok.headers()["cache-control"], "no-store");

    let parse_error = send(
        "application/graphql-response+json",
        "{ shareableResourceTypes",
    )
    .await
    .expect("sent");
    assert_eq!(parse_error.status(), 400);
    let answer: Value = parse_error.json().await.expect("json");
    assert_eq!(error_code(&answer), "GRAPHQL_PARSE_FAILED");
    assert!(
        answer.get("data").is_none(),
        "request errors carry no data: {answer}"
    );

    let legacy = send("application/json", "{ noSuchField }")
        .await
        .expect("sent");
    assert_eq!(legacy.status(), 200);
    assert!(
        legacy.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("application/json")
    );
    let answer: Value = legacy.json().await.expect("json");
    assert_eq!(error_code(&answer), "GRAPHQL_VALIDATION_FAILED");
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_unusable_client_ids_are_replaced() {
    let app = spawn_app().await;
    let plain = app
        .http
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .expect("sent");
    let generated = plain.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_eq!(generated.len(), 36, "a UUID: {generated}");

    let hostile = app
        .http
        .get(format!("{}/healthz", app.address))
        .header("x-request-id", "evil\" id with spaces and {braces}")
        .send()
        .await
        .expect("sent");
    let replaced = hostile.headers()["x-request-id"].to_str().expect("ascii");
    assert!(!replaced.contains("evil"));
    assert_eq!(replaced.len(), 36);
}

#[tokio::test]
async fn unknown_paths_answer_a_json_not_found() {
    let app = spawn_app().await;
    let response = app
        .http
        .get(format!("{}/nope", app.address))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.json::<Value>().await.expect("json"),
        json!({"error": "NOT_FOUND"})
    );
}

#[tokio::test]
async fn cors_allows_only_configured_origins() {
    let app = spawn_app_with(|mut config| {
        config.listener.cors_allowed_origins = vec!["https://app.example.org".into()];
        config
    })
    .await;
    let preflight = |origin: &'static str| {
        app.http
            .request(reqwest::Method::OPTIONS, format!("{}/graphql", app.address))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .send()
    };
    let allowed = preflight("https://app.example.org").await.expect("sent");
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example.org"
    );
    let refused = preflight("https://evil.example").await.expect("sent");
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[tokio::test]
async fn beyond_the_concurrency_limit_requests_are_shed_at_once_but_probes_answer() {
    let app = spawn_app_with(|mut config| {
        config.listener.max_concurrent_requests = 1;
        config
    })
    .await;
    app.upstream_responds(
        wiremock::ResponseTemplate::new(200)
            .set_body_raw(SEED_RESPONSE, "application/json")
            .set_delay(std::time::Duration::from_millis(800)),
    )
    .await;
    let address = app.address.clone();
    let client = app.http.clone();
    let slow = tokio::spawn(async move {
        client
            .post(format!("{address}/graphql"))
            .header("authorization", TOKEN)
            .json(&json!({"query": SEED_MUTATION, "variables": seed_variables()}))
            .send()
            .await
            .expect("sent")
            .status()
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    let started = std::time::Instant::now();
    let shed = app
        .http
        .post(format!("{}/graphql", app.address))
        .json(&json!({"query": "{ shareableResourceTypes }"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(shed.status(), 503);
    assert!(
        started.elapsed() < std::time::Duration::from_millis(500),
        "refused at once, not queued"
    );
    assert_eq!(shed.headers()["retry-after"], "1");
    assert_eq!(
        shed.json::<Value>().await.expect("json"),
        json!({"error": "OVERLOADED"})
    );
    let health = app
        .http
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .expect("sent");
    assert_eq!(health.status(), 200);
    assert_eq!(
        slow.await.expect("task"),
        200,
        "the request in flight completes"
    );
}
