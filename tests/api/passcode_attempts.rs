//! Passcode attempts under concurrency, and clients that hang up: right passcodes never see a
//! budget that is only reserved, wrong ones spend exactly the budget, and a client that resets
//! its connection mid-way escapes neither the budget nor the audit trail, nor leaves a creation
//! half recorded.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

use crate::embedded::create_link;
use crate::helpers::*;
use crate::manifest_protocol::post_manifest;

fn wrong_passcode(right: &str) -> &'static str {
    if right == "000000" {
        "111111"
    } else {
        "000000"
    }
}

/// The manifest-request records of the audit trail, as outcomes.
fn manifest_outcomes(app: &TestApp) -> Vec<String> {
    app.audit_records()
        .iter()
        .filter(|record| record["action"] == "manifest-requested")
        .map(|record| record["outcome"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn count(outcomes: &[String], outcome: &str) -> usize {
    outcomes.iter().filter(|seen| *seen == outcome).count()
}

/// A passcode link with two of its five attempts left: its payload, right and wrong passcodes.
async fn link_with_two_attempts_left(app: &TestApp) -> (Value, String, &'static str) {
    let (link, payload) = create_link(app, json!({})).await;
    let right = link["passcode"].as_str().expect("passcode").to_owned();
    let wrong = wrong_passcode(&right);
    for _ in 0..3 {
        let (status, _) =
            post_manifest(app, &payload, json!({"recipient": "r", "passcode": wrong})).await;
        assert_eq!(status, 401);
    }
    (payload, right, wrong)
}

on_each_database!(right_passcodes_never_see_404_while_attempts_remain);
async fn right_passcodes_never_see_404_while_attempts_remain(database: TestDatabase) {
    let app = spawn_embedded(&database, |config| config).await;
    let (payload, right, wrong) = link_with_two_attempts_left(&app).await;

    // Two attempts left, twenty right passcodes at once, three times over.
    for round in 0..3 {
        let opens = (0..20)
            .map(|_| post_manifest(&app, &payload, json!({"recipient": "r", "passcode": right})));
        let answers = futures_util::future::join_all(opens).await;
        let statuses: Vec<u16> = answers.iter().map(|(status, _)| *status).collect();
        assert!(
            statuses.iter().all(|status| *status == 200),
            "round {round} on {database:?}: {statuses:?}"
        );
    }

    // Every right passcode gave its attempt back.
    let (status, body) =
        post_manifest(&app, &payload, json!({"recipient": "r", "passcode": wrong})).await;
    assert_eq!((status, body["remainingAttempts"].clone()), (401, json!(1)));
    app.stop().await;
}

on_each_database!(mixed_right_and_wrong_passcodes_spend_exactly_the_wrong_ones);
async fn mixed_right_and_wrong_passcodes_spend_exactly_the_wrong_ones(database: TestDatabase) {
    let app = spawn_embedded(&database, |config| config).await;
    let (payload, right, wrong) = link_with_two_attempts_left(&app).await;

    let requests = (0..30).map(|index| {
        let passcode = if index % 3 == 0 {
            wrong
        } else {
            right.as_str()
        };
        post_manifest(
            &app,
            &payload,
            json!({"recipient": "r", "passcode": passcode}),
        )
    });
    let answers: Vec<(u16, Value)> = futures_util::future::join_all(requests).await;

    let unauthorized = answers.iter().filter(|(status, _)| *status == 401).count();
    assert_eq!(unauthorized, 2, "exactly the two attempts left are spent");
    for (index, (status, _)) in answers.iter().enumerate() {
        if index % 3 != 0 {
            assert_ne!(*status, 401, "a right passcode was counted as wrong");
        }
    }
    let outcomes = manifest_outcomes(&app);
    assert_eq!(count(&outcomes, "bad-passcode"), 3 + 2);
    // Once the budget is spent, the link is locked for everyone.
    let (status, _) =
        post_manifest(&app, &payload, json!({"recipient": "r", "passcode": right})).await;
    assert_eq!(status, 404);
    app.stop().await;
}

/// Sends a manifest request on a raw socket and resets the connection right after, as a client
/// that hangs up mid-verification does.
async fn post_and_hang_up(payload: &Value, passcode: &str) {
    let url = url::Url::parse(payload["url"].as_str().expect("url")).expect("manifest URL");
    let body = json!({"recipient": "Hang-up Clinic", "passcode": passcode}).to_string();
    post_raw_and_hang_up(&url, &[], &body).await;
}

/// POSTs `body` as JSON to `url` on a raw socket, with `headers`, and resets the connection a
/// few milliseconds later.
async fn post_raw_and_hang_up(url: &url::Url, headers: &[(&str, &str)], body: &str) {
    let address = format!(
        "{}:{}",
        url.host_str().expect("host"),
        url.port().expect("port")
    );
    let extra: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    let request = format!(
        "POST {} HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n{extra}\
         Content-Length: {}\r\n\r\n{body}",
        url.path(),
        body.len()
    );
    let mut stream = TcpStream::connect(address).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("request");
    // Long enough for the request to reach the handler, shorter than a passcode hash.
    tokio::time::sleep(Duration::from_millis(3)).await;
    stream.set_zero_linger().expect("SO_LINGER 0");
    drop(stream); // RST, not FIN
}

/// Waits until the audit trail holds `expected` records of `outcome` (the hung-up requests
/// finish on their own), failing after a few seconds.
async fn wait_for_outcomes(app: &TestApp, outcome: &str, expected: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = count(&manifest_outcomes(app), outcome);
        if seen >= expected {
            assert_eq!(seen, expected, "more {outcome} records than requests");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{seen} of {expected} {outcome} records after a hang-up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

on_each_database!(a_client_hanging_up_mid_verification_still_spends_and_records_its_attempt);
async fn a_client_hanging_up_mid_verification_still_spends_and_records_its_attempt(
    database: TestDatabase,
) {
    let app = spawn_embedded(&database, |config| config).await;
    let (link, payload) = create_link(&app, json!({})).await;
    let right = link["passcode"].as_str().expect("passcode").to_owned();
    let wrong = wrong_passcode(&right);

    for _ in 0..3 {
        post_and_hang_up(&payload, wrong).await;
    }
    wait_for_outcomes(&app, "bad-passcode", 3).await;

    // A right passcode hung up on is recorded, and costs no attempt.
    post_and_hang_up(&payload, &right).await;
    wait_for_outcomes(&app, "ok", 1).await;

    let (status, body) =
        post_manifest(&app, &payload, json!({"recipient": "r", "passcode": wrong})).await;
    assert_eq!(
        (status, body["remainingAttempts"].clone()),
        (401, json!(1)),
        "5 attempts, 3 hung-up wrong guesses, this one"
    );
    let history = app
        .graphql(
            "{ healthLinks { accesses { recipient outcome } } }",
            json!({}),
            Some(&format!("Bearer {PATIENT_TOKEN}")),
        )
        .await
        .1;
    let accesses = history["data"]["healthLinks"][0]["accesses"]
        .as_array()
        .expect("accesses")
        .clone();
    let hung_up_bad = accesses
        .iter()
        .filter(|access| {
            access["recipient"] == "Hang-up Clinic" && access["outcome"] == "bad-passcode"
        })
        .count();
    assert_eq!(
        hung_up_bad, 3,
        "the patient's history shows every hung-up guess"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_creation_hung_up_on_is_recorded_whole_and_its_retry_gets_the_same_link() {
    let app = spawn_embedded(&TestDatabase::Sqlite, |config| config).await;
    let url = url::Url::parse(&format!("{}/graphql", app.address)).expect("url");
    let body = json!({
        "query": crate::embedded::CREATE_WITH_GATEWAY_FIELDS,
        "variables": {"input": {"label": "Hung up"}},
    })
    .to_string();
    let authorization = format!("Bearer {PATIENT_TOKEN}");
    post_raw_and_hang_up(
        &url,
        &[
            ("Authorization", &authorization),
            ("Idempotency-Key", "hang-up-0001"),
        ],
        &body,
    )
    .await;

    // The creation finishes on its own: attempt and outcome, both recorded.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let actions: Vec<String> = app
            .audit_records()
            .iter()
            .map(|record| record["action"].as_str().unwrap_or_default().to_owned())
            .collect();
        if actions.iter().any(|action| action == "link-created") {
            assert_eq!(
                actions
                    .iter()
                    .filter(|action| *action == "creation-attempt")
                    .count(),
                1
            );
            break;
        }
        assert!(Instant::now() < deadline, "no outcome record: {actions:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The retry gets the first answer, not a second link and not a key stuck in progress.
    let retry = app
        .http
        .post(url.as_str())
        .header("authorization", &authorization)
        .header("idempotency-key", "hang-up-0001")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("retry");
    let retry: Value = retry.json().await.expect("JSON");
    assert!(retry.get("errors").is_none(), "{retry}");
    let links = app
        .graphql("{ healthLinks { id } }", json!({}), Some(&authorization))
        .await
        .1;
    let ids = links["data"]["healthLinks"]
        .as_array()
        .expect("links")
        .clone();
    assert_eq!(ids.len(), 1, "one link, whatever the client saw");
    assert_eq!(ids[0]["id"], retry["data"]["createHealthLink"]["id"]);
    app.stop().await;
}
