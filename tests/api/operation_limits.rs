//! Depth and complexity limits, which GraphiQL's own introspection query must get through.

use serde_json::json;

use crate::helpers::*;

const INTROSPECTION: &str = include_str!("../fixtures/graphiql-introspection.graphql");

#[tokio::test]
async fn graphiqls_introspection_query_passes_the_default_limits() {
    let app = spawn_app().await;
    let (status, body) = app.graphql(INTROSPECTION, json!({}), None).await;
    assert_eq!(status, 200);
    assert!(body.get("errors").is_none(), "{body}");
    assert_eq!(body["data"]["__schema"]["mutationType"]["name"], "Mutation");
}

#[tokio::test]
async fn a_query_deeper_than_the_limit_is_refused() {
    let app = spawn_app_with(|mut config| {
        config.max_depth = 3;
        config
    })
    .await;
    let (_, body) = app
        .graphql(
            "{ __schema { types { fields { type { name } } } } }",
            json!({}),
            None,
        )
        .await;
    assert_eq!(error_code(&body), "OPERATION_LIMIT_EXCEEDED");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .expect("message")
            .contains("depth")
    );
}

#[tokio::test]
async fn aliased_qr_codes_exhaust_the_complexity_budget() {
    let app = spawn_app().await;
    app.upstream_answers_seed().await;
    let aliases: String = (0..6).map(|i| format!("q{i}: qrCodeSvg ")).collect();
    let query = format!("mutation {{ createHealthLink(input: {{}}) {{ id {aliases} }} }}");

    let (_, body) = app.graphql(&query, json!({}), Some(TOKEN)).await;

    assert_eq!(error_code(&body), "OPERATION_LIMIT_EXCEEDED");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .expect("message")
            .contains("complexity")
    );
    assert!(
        app.upstream_bodies().await.is_empty(),
        "refused before execution"
    );
}

#[tokio::test]
async fn introspection_can_be_switched_off() {
    let app = spawn_app_with(|mut config| {
        config.introspection = false;
        config
    })
    .await;
    let (_, body) = app.graphql(INTROSPECTION, json!({}), None).await;
    assert!(
        body.get("errors").is_some() || body["data"]["__schema"].is_null(),
        "{body}"
    );
    let (_, ordinary) = app
        .graphql("{ shareableResourceTypes }", json!({}), None)
        .await;
    assert!(ordinary.get("errors").is_none());
}
