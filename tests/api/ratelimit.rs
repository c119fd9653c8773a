//! Quotas that hold per field execution, per caller, per address, per link, and across replicas.

use std::time::Duration;

use serde_json::{Value, json};
use shl_gateway::ratelimit::QuotaSpec;

use crate::embedded::create_link;
use crate::helpers::*;

fn spec(text: &str) -> QuotaSpec {
    text.parse().expect("quota")
}

#[tokio::test]
async fn link_creation_is_limited_per_caller_with_a_retry_after() {
    let app = spawn_app_with(|mut config| {
        config.quotas.link_quota_per_caller = spec("3/1m");
        config
    })
    .await;
    app.upstream_answers_seed().await;
    for _ in 0..3 {
        assert!(app.create_seed_link().await.1.get("errors").is_none());
    }

    let (status, body) = app.create_seed_link().await;

    assert_eq!(status, 200, "a refused field is a field error");
    assert_eq!(error_code(&body), "RATE_LIMITED");
    let wait = body["errors"][0]["extensions"]["retryAfterSeconds"]
        .as_u64()
        .expect("wait");
    assert!(
        (1..=20).contains(&wait),
        "about a third of a minute: {wait}"
    );
    assert_eq!(
        app.upstream_bodies().await.len(),
        3,
        "the refused creation never reached upstream"
    );
    let (_, other) = app
        .graphql(
            SEED_MUTATION,
            seed_variables(),
            Some("Bearer another-caller"),
        )
        .await;
    assert!(
        other.get("errors").is_none(),
        "another token has its own quota: {other}"
    );
}

#[tokio::test]
async fn made_up_tokens_meet_the_address_quota() {
    let app = spawn_app_with(|mut config| {
        config.quotas.link_quota_per_ip = spec("4/1m");
        config
    })
    .await;
    app.upstream_answers_seed().await;
    let mut refused = 0;
    for attempt in 0..8 {
        let (_, body) = app
            .graphql(
                SEED_MUTATION,
                seed_variables(),
                Some(&format!("Bearer random-{attempt}")),
            )
            .await;
        if body.get("errors").is_some() {
            assert_eq!(error_code(&body), "RATE_LIMITED");
            refused += 1;
        }
    }
    assert_eq!(refused, 4);
    assert_eq!(app.upstream_bodies().await.len(), 4);
}

#[tokio::test]
async fn the_coarse_address_limit_answers_429_with_retry_after() {
    let app = spawn_app_with(|mut config| {
        config.quotas.http_quota_per_ip = spec("5/1m");
        config
    })
    .await;
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..8 {
        let response = app
            .http
            .post(format!("{}/graphql", app.address))
            .json(&json!({"query": "{ shareableResourceTypes }"}))
            .send()
            .await
            .expect("sent");
        statuses.push(response.status().as_u16());
        if response.status() == 429 {
            retry_after = response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().expect("ascii").to_owned());
            assert_eq!(
                response.json::<Value>().await.expect("json"),
                json!({"error": "RATE_LIMITED"})
            );
        }
    }
    assert_eq!(statuses, vec![200, 200, 200, 200, 200, 429, 429, 429]);
    assert!(
        retry_after
            .expect("Retry-After")
            .parse::<u64>()
            .expect("seconds")
            >= 1
    );
    let health = app
        .http
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .expect("sent");
    assert_eq!(health.status(), 200, "probes are not limited");
}

#[tokio::test]
async fn spoofed_forwarded_for_from_an_untrusted_peer_changes_nothing() {
    let app = spawn_embedded(&TestDatabase::Sqlite, |mut config| {
        config.quotas.shl_quota_per_ip = spec("10/1m");
        config
    })
    .await;
    let (_, payload) = create_link(&app, json!({})).await;
    let url = payload["url"].as_str().expect("url").to_owned();

    // 1,000 concurrent wrong passcodes, each claiming another address.
    let guesses = (0..1_000).map(|i| {
        app.http
            .post(&url)
            .header(
                "x-forwarded-for",
                format!("198.51.100.{}, 203.0.113.{}", i % 250, i % 200),
            )
            .json(&json!({"recipient": "r", "passcode": "000001"}))
            .send()
    });
    let statuses: Vec<u16> = futures_util::future::join_all(guesses)
        .await
        .into_iter()
        .map(|response| response.expect("sent").status().as_u16())
        .collect();

    let limited = statuses.iter().filter(|status| **status == 429).count();
    assert_eq!(
        limited,
        990,
        "all charged to the one real peer: {} allowed",
        1_000 - limited
    );
}

#[tokio::test]
async fn forwarded_for_is_believed_from_a_trusted_proxy() {
    let app = spawn_embedded(&TestDatabase::Sqlite, |mut config| {
        config.quotas.shl_quota_per_ip = spec("2/1m");
        config.listener.trusted_proxies = vec!["127.0.0.0/8".parse().expect("cidr")];
        config
    })
    .await;
    let (_, payload) = create_link(&app, json!({})).await;
    let url = payload["url"].as_str().expect("url").to_owned();
    let from = |client: &'static str| {
        app.http
            .post(&url)
            .header("x-forwarded-for", client)
            .json(&json!({"recipient": "r", "passcode": "000001"}))
            .send()
    };
    for _ in 0..2 {
        assert_ne!(from("198.51.100.7").await.expect("sent").status(), 429);
    }
    assert_eq!(
        from("198.51.100.7").await.expect("sent").status(),
        429,
        "that client's quota is spent"
    );
    assert_ne!(
        from("198.51.100.8").await.expect("sent").status(),
        429,
        "another client behind the proxy is not"
    );
}

#[tokio::test]
async fn one_link_is_limited_whatever_the_addresses() {
    let app = spawn_embedded(&TestDatabase::Sqlite, |mut config| {
        config.quotas.shl_quota_per_link = spec("3/1m");
        config.listener.trusted_proxies = vec!["127.0.0.0/8".parse().expect("cidr")];
        config
    })
    .await;
    let (_, payload) = create_link(&app, json!({})).await;
    let url = payload["url"].as_str().expect("url").to_owned();
    let mut statuses = Vec::new();
    for i in 0..5 {
        let response = app
            .http
            .post(&url)
            .header("x-forwarded-for", format!("198.51.100.{i}"))
            .json(&json!({"recipient": "r", "passcode": "000001"}))
            .send()
            .await
            .expect("sent");
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, vec![401, 401, 401, 429, 429]);
}

/// Two gateways on one Redis: one quota between them.
#[tokio::test]
#[ignore = "needs Redis: set SHL_GATEWAY_TEST_REDIS_URL and run with `cargo test -- --include-ignored` (CI does)"]
async fn two_replicas_on_one_redis_enforce_one_quota() {
    let redis_url = std::env::var("SHL_GATEWAY_TEST_REDIS_URL")
        .expect("this test needs SHL_GATEWAY_TEST_REDIS_URL");
    let prefix = format!("shl-test-{}:", uuid::Uuid::new_v4().simple());
    let configure = |redis_url: String, prefix: String| {
        move |mut config: shl_gateway::config::Config| {
            config.redis.redis_url = Some(secrecy::SecretString::from(redis_url));
            config.redis.redis_key_prefix = prefix;
            config.redis.redis_failure_policy =
                shl_gateway::ratelimit::RedisFailurePolicy::FailClosed;
            config.redis.redis_timeout = Duration::from_secs(2);
            config.quotas.link_quota_per_caller = spec("6/1m");
            config
        }
    };
    let replica_a = spawn_app_with(configure(redis_url.clone(), prefix.clone())).await;
    let replica_b = spawn_app_with(configure(redis_url, prefix)).await;
    replica_a.upstream_answers_seed().await;
    replica_b.upstream_answers_seed().await;
    let ready = replica_a
        .http
        .get(format!("{}/readyz", replica_a.address))
        .send()
        .await
        .expect("sent");
    assert_eq!(ready.status(), 200, "Redis is reachable, so ready");

    let attempts = (0..12).map(|i| {
        let replica = if i % 2 == 0 { &replica_a } else { &replica_b };
        replica.graphql(
            SEED_MUTATION,
            seed_variables(),
            Some("Bearer shared-caller"),
        )
    });
    let answers = futures_util::future::join_all(attempts).await;

    let created = answers
        .iter()
        .filter(|(_, body)| body.get("errors").is_none())
        .count();
    assert_eq!(created, 6, "exactly the shared quota, across both replicas");
    let upstream_calls =
        replica_a.upstream_bodies().await.len() + replica_b.upstream_bodies().await.len();
    assert_eq!(upstream_calls, 6);
}

#[tokio::test]
async fn an_unreachable_redis_fails_closed_or_falls_back_as_configured() {
    for (policy, expected) in [
        (
            shl_gateway::ratelimit::RedisFailurePolicy::FailClosed,
            Some("OVERLOADED"),
        ),
        (
            shl_gateway::ratelimit::RedisFailurePolicy::FallBackToInProcess,
            None,
        ),
    ] {
        let app = spawn_app_with(|mut config| {
            config.redis.redis_url = Some(secrecy::SecretString::from(
                "redis://127.0.0.1:1/".to_owned(),
            ));
            config.redis.redis_timeout = Duration::from_millis(100);
            config.redis.redis_failure_policy = policy;
            config
        })
        .await;
        app.upstream_answers_seed().await;
        let started = std::time::Instant::now();
        let response = app
            .http
            .post(format!("{}/graphql", app.address))
            .header("authorization", TOKEN)
            .json(&json!({"query": SEED_MUTATION, "variables": seed_variables()}))
            .send()
            .await
            .expect("sent");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "bounded, never a hang"
        );
        let status = response.status().as_u16();
        let body: Value = response.json().await.expect("json");
        match expected {
            Some(code) => {
                assert_eq!(status, 503, "{body}");
                assert_eq!(body["error"], code);
            }
            None => assert!(body.get("errors").is_none(), "{policy:?}: {body}"),
        }
        let ready = app
            .http
            .get(format!("{}/readyz", app.address))
            .send()
            .await
            .expect("sent");
        assert_eq!(
            ready.status(),
            503,
            "Redis is configured and down: not ready"
        );
    }
}
