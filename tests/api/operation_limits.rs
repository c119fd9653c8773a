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

#[tokio::test]
async fn a_hundred_and_one_aliased_creations_create_nothing() {
    let app = spawn_app().await;
    app.upstream_answers_seed().await;
    let aliases: String = (0..101)
        .map(|i| format!("l{i}: createHealthLink(input: {{}}) {{ id }} "))
        .collect();

    let (status, body) = app
        .graphql(&format!("mutation {{ {aliases} }}"), json!({}), Some(TOKEN))
        .await;

    assert_eq!(status, 200, "application/json keeps 200 for request errors");
    assert_eq!(error_code(&body), "OPERATION_LIMIT_EXCEEDED");
    assert!(
        app.upstream_bodies().await.is_empty(),
        "no link was created"
    );
}

#[tokio::test]
async fn two_creations_in_one_request_cross_the_default_limit_of_one() {
    let app = spawn_app().await;
    app.upstream_answers_seed().await;
    let query = "mutation { ...Two } fragment Two on Mutation { a: createHealthLink(input: {}) { id } b: createHealthLink(input: {}) { id } }";
    let (_, body) = app.graphql(query, json!({}), Some(TOKEN)).await;
    assert_eq!(error_code(&body), "OPERATION_LIMIT_EXCEEDED");
    assert!(app.upstream_bodies().await.is_empty());
}

#[tokio::test]
async fn every_document_limit_can_be_crossed() {
    let app = spawn_app_with(|mut config| {
        config.max_aliases = 2;
        config.max_root_fields = 2;
        config.max_directives = 2;
        config.max_query_bytes = 200;
        config
    })
    .await;
    let cases = [
        (
            "{ a: shareableResourceTypes b: shareableResourceTypes c: shareableResourceTypes }",
            "aliases",
        ),
        (
            "{ shareableResourceTypes ... on Query { shareableResourceTypes } __typename }",
            "root fields",
        ),
        (
            "{ shareableResourceTypes @skip(if: false) @include(if: true) __typename @skip(if: false) }",
            "directives",
        ),
        (
            &*format!("{{ shareableResourceTypes }} # {}", "x".repeat(200)),
            "bytes",
        ),
    ];
    for (query, limit) in cases {
        let (_, body) = app.graphql(query, json!({}), None).await;
        assert_eq!(
            error_code(&body),
            "OPERATION_LIMIT_EXCEEDED",
            "{limit}: {body}"
        );
        let message = body["errors"][0]["message"].as_str().expect("message");
        assert!(message.contains(limit), "{message} should name {limit}");
    }
    let (_, fine) = app
        .graphql("{ a: shareableResourceTypes }", json!({}), None)
        .await;
    assert!(fine.get("errors").is_none(), "{fine}");
}

#[tokio::test]
async fn repeated_spreads_of_one_fragment_count_as_repeated_creations() {
    let app = spawn_app().await;
    app.upstream_answers_seed().await;
    let query = "mutation { ...Create ...Create ...Create } \
                 fragment Create on Mutation { createHealthLink(input: {}) { id } }";

    let (_, body) = app.graphql(query, json!({}), Some(TOKEN)).await;

    assert_eq!(error_code(&body), "OPERATION_LIMIT_EXCEEDED");
    assert!(
        app.upstream_bodies().await.is_empty(),
        "three spreads are three creations: refused before any runs"
    );
}
