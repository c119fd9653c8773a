//! `/metrics`: Prometheus text that a Prometheus parser reads, moving as requests are made.

use crate::helpers::*;

async fn scrape(app: &TestApp, base: &str) -> prometheus_parse::Scrape {
    let response = app
        .http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/plain")
    );
    let text = response.text().await.expect("text");
    prometheus_parse::Scrape::parse(text.lines().map(|line| Ok(line.to_owned())))
        .expect("Prometheus text format")
}

fn counter(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|sample| sample.metric == name)
        .filter(|sample| {
            labels
                .iter()
                .all(|(key, value)| sample.labels.get(key) == Some(*value))
        })
        .map(|sample| match sample.value {
            prometheus_parse::Value::Counter(value) | prometheus_parse::Value::Untyped(value) => {
                value
            }
            _ => 0.0,
        })
        .sum()
}

#[tokio::test]
async fn metrics_parse_and_move_with_traffic() {
    let app = spawn_app().await;
    app.upstream_answers_seed().await;
    let before = scrape(&app, &app.address).await;

    let (_, body) = app
        .graphql(MUTATION_WITH_GATEWAY_FIELDS, seed_variables(), Some(TOKEN))
        .await;
    assert!(body.get("errors").is_none());
    app.graphql(SEED_MUTATION, seed_variables(), None).await;

    let after = scrape(&app, &app.address).await;
    let moved = |name: &str, labels: &[(&str, &str)]| {
        counter(&after, name, labels) - counter(&before, name, labels)
    };
    assert!(moved("shl_gateway_graphql_requests_total", &[("outcome", "ok")]) >= 1.0);
    assert!(
        moved(
            "shl_gateway_graphql_requests_total",
            &[("outcome", "UNAUTHENTICATED")]
        ) >= 1.0
    );
    assert!(moved("shl_gateway_upstream_requests_total", &[("outcome", "ok")]) >= 1.0);
    assert!(
        moved(
            "shl_gateway_links_created_total",
            &[("issuer", "upstream"), ("mode", "PASSCODE")]
        ) >= 1.0
    );
    assert!(
        moved(
            "shl_gateway_http_requests_total",
            &[("route", "/graphql"), ("status", "200")]
        ) >= 2.0
    );
    assert!(after.samples.iter().any(|sample| {
        sample
            .metric
            .starts_with("shl_gateway_qr_render_duration_seconds")
    }));
}

#[tokio::test]
async fn metrics_can_move_to_their_own_listener() {
    let upstream = wiremock::MockServer::start().await;
    let data_dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(&upstream);
    config.key.data_dir = data_dir.path().to_path_buf();
    config.listener.metrics_listen = Some("127.0.0.1:0".parse().expect("address"));
    let application = shl_gateway::startup::Application::build(config)
        .await
        .expect("builds");
    let main = format!("http://{}", application.local_addr());
    let metrics = format!(
        "http://{}",
        application.metrics_addr().expect("metrics listener")
    );
    let shutdown = application.shutdown_handle();
    let server = tokio::spawn(application.run_until_stopped());
    let http = reqwest::Client::new();

    assert_eq!(
        http.get(format!("{main}/metrics"))
            .send()
            .await
            .expect("sent")
            .status(),
        404
    );
    let health = http
        .get(format!("{main}/healthz"))
        .send()
        .await
        .expect("sent");
    assert_eq!(health.status(), 200);
    let text = http
        .get(format!("{metrics}/metrics"))
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("text");
    assert!(text.contains("shl_gateway_http_requests_total{"), "{text}");
    shutdown.shutdown();
    server.await.expect("task").expect("stopped");
}

#[tokio::test]
async fn a_repeated_document_is_parsed_once_and_counted_as_a_cache_hit() {
    let app = spawn_app().await;
    app.upstream_answers_seed().await;
    // A text no other test sends, so the counts below are this test's alone even though the
    // recorder is shared by every app in the process.
    let query = "query CacheProbe { shareableResourceTypes }";
    let first = scrape(&app, &app.address).await;
    app.graphql(query, serde_json::json!({}), None).await;
    let second = scrape(&app, &app.address).await;
    for _ in 0..3 {
        let (status, body) = app.graphql(query, serde_json::json!({}), None).await;
        assert_eq!(status, 200);
        assert!(body.get("errors").is_none(), "{body}");
        assert!(body["data"]["shareableResourceTypes"].is_array());
    }
    let third = scrape(&app, &app.address).await;
    let hits = |scrape: &prometheus_parse::Scrape| {
        counter(
            scrape,
            "shl_gateway_graphql_document_cache_total",
            &[("result", "hit")],
        )
    };
    let misses = |scrape: &prometheus_parse::Scrape| {
        counter(
            scrape,
            "shl_gateway_graphql_document_cache_total",
            &[("result", "miss")],
        )
    };
    assert!(
        misses(&second) - misses(&first) >= 1.0,
        "the first request parses"
    );
    assert!(
        hits(&third) - hits(&second) >= 3.0,
        "the next three come from the cache"
    );
}
