//! `Idempotency-Key`: a retry returns the first answer instead of creating a second link.

use std::time::Duration;

use serde_json::{Value, json};
use wiremock::ResponseTemplate;

use crate::helpers::*;

const FIELDS: &str = "mutation($input: CreateHealthLinkInput!) { createHealthLink(input: $input) { id passcode content { attachment { url } } } }";

async fn create(app: &TestApp, key: &str) -> Value {
    app.http
        .post(format!("{}/graphql", app.address))
        .header("authorization", TOKEN)
        .header("idempotency-key", key)
        .json(&json!({"query": FIELDS, "variables": {"input": {"label": "Health Records"}}}))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json")
}

#[tokio::test]
async fn a_retry_with_the_same_key_gets_the_first_link_not_a_second() {
    let app = spawn_app().await;
    app.upstream_answers_seed().await;

    let first = create(&app, "retry-key-1").await;
    let retry = create(&app, "retry-key-1").await;
    let other = create(&app, "another-key").await;

    assert!(first.get("errors").is_none(), "{first}");
    assert_eq!(retry, first, "same link, same passcode");
    assert_eq!(
        app.upstream_bodies().await.len(),
        2,
        "the retry created nothing"
    );
    assert_ne!(
        other["data"]["createHealthLink"]["passcode"],
        first["data"]["createHealthLink"]["passcode"]
    );
    let outcomes: Vec<String> = app
        .audit_records()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(outcomes.contains(&"replayed".to_owned()), "{outcomes:?}");
}

#[tokio::test]
async fn concurrent_retries_wait_for_the_first_and_share_its_answer() {
    let app = spawn_app().await;
    app.upstream_responds(
        ResponseTemplate::new(200)
            .set_body_raw(SEED_RESPONSE, "application/json")
            .set_delay(Duration::from_millis(400)),
    )
    .await;

    let answers =
        futures_util::future::join_all((0..4).map(|_| create(&app, "concurrent-key"))).await;

    assert_eq!(app.upstream_bodies().await.len(), 1);
    for answer in &answers {
        assert_eq!(answer, &answers[0]);
    }
    assert!(answers[0]["data"]["createHealthLink"]["passcode"].is_string());
}

#[tokio::test]
async fn a_failed_creation_releases_its_key() {
    let app = spawn_app().await;
    app.upstream_responds(ResponseTemplate::new(500)).await;
    assert_eq!(
        error_code(&create(&app, "failing-key").await),
        "UPSTREAM_ERROR"
    );
    app.upstream.reset().await;
    app.upstream_answers_seed().await;

    let retry = create(&app, "failing-key").await;

    assert!(retry.get("errors").is_none(), "{retry}");
}

#[tokio::test]
async fn a_malformed_key_is_bad_user_input() {
    let app = spawn_app().await;
    app.upstream_answers_seed().await;
    let body = create(&app, &"k".repeat(256)).await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT");
    assert!(app.upstream_bodies().await.is_empty());
}

#[tokio::test]
#[ignore = "needs Redis: set SHL_GATEWAY_TEST_REDIS_URL and run with `cargo test -- --include-ignored` (CI does)"]
async fn a_retry_reaching_another_replica_gets_the_same_answer_through_redis() {
    let redis_url = std::env::var("SHL_GATEWAY_TEST_REDIS_URL")
        .expect("this test needs SHL_GATEWAY_TEST_REDIS_URL");
    let prefix = format!("shl-test-{}:", uuid::Uuid::new_v4().simple());
    let configure = |redis_url: String, prefix: String| {
        move |mut config: shl_gateway::config::Config| {
            config.redis.redis_url = Some(secrecy::SecretString::from(redis_url));
            config.redis.redis_key_prefix = prefix;
            // Both replicas share the secret key, as they must in production.
            config
        }
    };
    let replica_a = spawn_app_with(configure(redis_url.clone(), prefix.clone())).await;
    let replica_b = spawn_app_with(configure(redis_url, prefix)).await;
    replica_a.upstream_answers_seed().await;
    replica_b.upstream_answers_seed().await;

    let first = create(&replica_a, "cross-replica").await;
    let retry = create(&replica_b, "cross-replica").await;

    assert!(first.get("errors").is_none(), "{first}");
    assert_eq!(retry, first);
    assert!(
        replica_b.upstream_bodies().await.is_empty(),
        "replica B created nothing"
    );
}
