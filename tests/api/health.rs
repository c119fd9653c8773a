//! Liveness, readiness and graceful shutdown.

use std::time::Duration;

use wiremock::ResponseTemplate;

use crate::helpers::*;

#[tokio::test]
async fn healthz_and_readyz_answer_without_calling_upstream() {
    let app = spawn_app().await;
    let health = app
        .http
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .expect("sent");
    assert_eq!(health.status(), 200);
    let ready = app
        .http
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .expect("sent");
    assert_eq!(ready.status(), 200);
    assert!(app.upstream_bodies().await.is_empty());
}

#[tokio::test]
async fn shutdown_fails_readiness_first_and_finishes_in_flight_requests() {
    let app = spawn_app_with(|mut config| {
        config.listener.shutdown_delay = Duration::from_millis(600);
        config
    })
    .await;
    app.upstream_responds(
        ResponseTemplate::new(200)
            .set_body_raw(SEED_RESPONSE, "application/json")
            .set_delay(Duration::from_millis(1_200)),
    )
    .await;
    let address = app.address.clone();
    let client = app.http.clone();
    let in_flight = tokio::spawn(async move {
        client
            .post(format!("{address}/graphql"))
            .header("authorization", TOKEN)
            .json(&serde_json::json!({"query": SEED_MUTATION, "variables": seed_variables()}))
            .send()
            .await
            .expect("in-flight request completes")
            .json::<serde_json::Value>()
            .await
            .expect("json")
    });
    // Let the request reach the (slow) upstream, then start shutting down.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let address = app.address.clone();
    let client = app.http.clone();
    let stopping = tokio::spawn(app.stop());
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Within the shutdown delay the listener still accepts, and readiness already fails.
    let ready = client
        .get(format!("{address}/readyz"))
        .send()
        .await
        .expect("still accepting");
    assert_eq!(ready.status(), 503);
    let live = client
        .get(format!("{address}/healthz"))
        .send()
        .await
        .expect("still accepting");
    assert_eq!(live.status(), 200);
    let answer = in_flight.await.expect("task");
    assert_eq!(
        answer["data"]["createHealthLink"],
        seed_answer(),
        "{answer}"
    );
    stopping.await.expect("stopped");
}

#[tokio::test]
async fn the_healthcheck_command_probes_the_local_listener() {
    let app = spawn_app().await;
    let listen = app.address.trim_start_matches("http://").to_owned();
    let probe = |listen: String| {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_shl-gateway"))
                .args(["healthcheck", "--listen", &listen])
                .env_remove("SHL_GATEWAY_TLS_CERT")
                .status()
                .expect("binary runs")
        })
    };
    assert!(probe(listen).await.expect("task").success());
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed_address = closed.local_addr().expect("address").to_string();
    drop(closed);
    assert!(!probe(closed_address).await.expect("task").success());
}

#[tokio::test]
async fn a_gateway_stopped_before_its_server_task_first_runs_still_stops() {
    // On the test's single-threaded runtime the server task has not run yet when `stop` is
    // called straight after spawning it: the shutdown request must wait for it, not be lost.
    let app = spawn_app().await;

    let stopped = tokio::time::timeout(Duration::from_secs(10), app.stop()).await;

    assert!(stopped.is_ok(), "the gateway did not stop");
}
