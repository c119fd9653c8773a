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
        config.graphql.max_depth = 3;
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
        config.graphql.introspection = false;
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
        config.graphql.max_aliases = 2;
        config.graphql.max_root_fields = 2;
        config.graphql.max_directives = 2;
        config.graphql.max_query_bytes = 200;
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

/// Documents whose values nest far deeper than any parser should recurse (about 3 KB each):
/// before the value-depth limit, each aborted the whole process.
fn deep_documents() -> Vec<(&'static str, String)> {
    let lists = |depth: usize| format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
    let objects = |depth: usize| format!("{}1{}", "{a:".repeat(depth), "}".repeat(depth));
    vec![
        (
            "nested lists in an argument",
            format!("{{ shareableResourceTypes(x: {}) }}", lists(1500)),
        ),
        (
            "nested objects in an argument",
            format!("{{ shareableResourceTypes(x: {}) }}", objects(1500)),
        ),
        (
            "a variable default",
            format!(
                "query($v: [Int] = {}) {{ shareableResourceTypes }}",
                lists(1500)
            ),
        ),
        (
            "a directive argument",
            format!("{{ shareableResourceTypes @skip(if: {}) }}", objects(1500)),
        ),
        (
            "a mutation's input",
            format!(
                "mutation {{ createHealthLink(input: {{label: {}}}) {{ id }} }}",
                lists(1500)
            ),
        ),
        (
            "selection sets",
            format!("{}__typename{}", "{ a ".repeat(1500), "}".repeat(1500)),
        ),
        (
            // `""""` is two empty strings to the parser, which then reads the nest.
            "nested lists behind an unterminated block string",
            format!("{{ shareableResourceTypes(x: [\"\"\"\"{}]) }}", lists(1500)),
        ),
    ]
}

async fn get_graphql(app: &TestApp, query: &str) -> (reqwest::StatusCode, serde_json::Value) {
    let response = app
        .http
        .get(format!("{}/graphql", app.address))
        .query(&[("query", query)])
        .send()
        .await
        .expect("sent");
    let status = response.status();
    (status, response.json().await.expect("JSON answer"))
}

async fn still_answers(app: &TestApp) {
    let (status, body) = app
        .graphql("{ shareableResourceTypes }", json!({}), None)
        .await;
    assert_eq!(status, 200);
    assert!(body.get("errors").is_none(), "{body}");
}

#[tokio::test]
async fn deeply_nested_values_are_refused_before_parsing_by_post_and_get() {
    let app = spawn_app().await;
    app.upstream_answers_seed().await;
    for (what, query) in deep_documents() {
        assert!(query.len() < 16 * 1024, "{what} is under the size limit");
        let (_, posted) = app.graphql(&query, json!({}), Some(TOKEN)).await;
        assert_eq!(error_code(&posted), "OPERATION_LIMIT_EXCEEDED", "{what}");
        let message = posted["errors"][0]["message"].as_str().expect("message");
        assert!(message.contains("64"), "{what}: {message}");
        assert!(posted.get("data").is_none(), "{what}: {posted}");
        // GET checks the operation type (mutations are refused) before executing: that check
        // parses too, so it is guarded the same way.
        let (status, got) = get_graphql(&app, &query).await;
        assert_eq!(status, 200, "{what}");
        assert_eq!(error_code(&got), "OPERATION_LIMIT_EXCEEDED", "{what}");
        still_answers(&app).await;
    }
    assert!(
        app.upstream_bodies().await.is_empty(),
        "nothing was created"
    );
}

#[tokio::test]
async fn nesting_within_the_limit_reaches_the_parser_and_the_validator() {
    let app = spawn_app_with(|mut config| {
        config.graphql.max_value_depth = 20;
        config
    })
    .await;
    // 19 levels of lists plus the selection set: 20, at the limit. The parser reads it and
    // the validator refuses the unknown argument: the scan let it through.
    let within = format!(
        "{{ shareableResourceTypes(x: {}1{}) }}",
        "[".repeat(19),
        "]".repeat(19)
    );
    let (_, body) = app.graphql(&within, json!({}), None).await;
    assert_eq!(error_code(&body), "GRAPHQL_VALIDATION_FAILED", "{body}");
    let (_, body) = get_graphql(&app, &within).await;
    assert_eq!(error_code(&body), "GRAPHQL_VALIDATION_FAILED", "{body}");
    let over = format!(
        "{{ shareableResourceTypes(x: {}1{}) }}",
        "[".repeat(20),
        "]".repeat(20)
    );
    let (_, body) = app.graphql(&over, json!({}), None).await;
    assert_eq!(error_code(&body), "OPERATION_LIMIT_EXCEEDED", "{body}");
    // Brackets inside strings, block strings and comments are not nesting.
    let quoted = format!(
        "{{ shareableResourceTypes(x: \"{deep}\", y: \"\"\"{deep}\"\"\") # {deep}\n }}",
        deep = "[{".repeat(500)
    );
    let (_, body) = app.graphql(&quoted, json!({}), None).await;
    assert_eq!(error_code(&body), "GRAPHQL_VALIDATION_FAILED", "{body}");
    // The seed mutation and GraphiQL's introspection query pass the default limit.
    let app = spawn_app().await;
    app.upstream_answers_seed().await;
    let (_, created) = app.create_seed_link().await;
    assert!(created.get("errors").is_none(), "{created}");
    let (_, introspection) = app.graphql(INTROSPECTION, json!({}), None).await;
    assert!(introspection.get("errors").is_none());
}

#[tokio::test]
async fn deeply_nested_json_variables_and_extensions_answer_a_coded_error() {
    // Large enough for 100,000 levels, so that the JSON parser (not the body limit) refuses.
    let app = spawn_app_with(|mut config| {
        config.listener.max_body_bytes = 1024 * 1024;
        config
    })
    .await;
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    for field in ["variables", "extensions"] {
        let body = format!(r#"{{"query": "{{ shareableResourceTypes }}", "{field}": {deep}}}"#);
        let response = app
            .http
            .post(format!("{}/graphql", app.address))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 400, "{field}");
        let answer: serde_json::Value = response.json().await.expect("JSON answer");
        assert_eq!(error_code(&answer), "BAD_USER_INPUT", "{field}");
        still_answers(&app).await;
    }
    // By GET, brackets are left as they are in a URL's query, and a URI holds at most 64 KiB
    // (the `http` crate's bound): 30,000 levels.
    let url = format!(
        "{}/graphql?query=%7B%20shareableResourceTypes%20%7D&variables={}{}",
        app.address,
        "[".repeat(30_000),
        "]".repeat(30_000)
    );
    let response = app.http.get(url).send().await.expect("sent");
    let status = response.status();
    let text = response.text().await.expect("body");
    assert_eq!(status, 400, "{text:.300}");
    let answer: serde_json::Value = serde_json::from_str(&text).expect("JSON answer");
    assert_eq!(error_code(&answer), "BAD_USER_INPUT");
    still_answers(&app).await;
}

#[tokio::test]
async fn the_longest_chain_of_fragments_the_size_limit_allows_is_answered() {
    // Fragments are separate definitions in the text, so the bracket scan does not see this
    // nesting; validation (depth, complexity, cycles) follows spreads, so the chain must be
    // short enough for them: the query-size limit bounds it.
    let app = spawn_app().await;
    let mut count = 0;
    let mut query = String::from("{ ...F0 }");
    loop {
        let next = format!(" fragment F{count} on Query {{ ...F{} }}", count + 1);
        if query.len() + next.len() + 60 > 16 * 1024 {
            break;
        }
        query.push_str(&next);
        count += 1;
    }
    query.push_str(&format!(
        " fragment F{count} on Query {{ shareableResourceTypes }}"
    ));
    assert!(count > 400, "{count} fragments");
    let (status, body) = app.graphql(&query, json!({}), None).await;
    assert_eq!(status, 200);
    assert!(
        body.get("errors").is_none() || body["errors"][0]["extensions"]["code"].is_string(),
        "{body}"
    );
    let (_, body) = get_graphql(&app, &query).await;
    assert!(body.get("data").is_some() || body.get("errors").is_some());
    still_answers(&app).await;
}
