//! The audit trail: one outcome record per path, awaited before any disclosure, tamper-evident,
//! exportable as FHIR, and failing closed.

use std::process::Command;

use serde_json::{Value, json};
use wiremock::ResponseTemplate;

use crate::embedded::create_link;
use crate::helpers::*;

fn actions(records: &[Value]) -> Vec<(String, String)> {
    records
        .iter()
        .map(|record| {
            (
                record["action"].as_str().unwrap_or_default().to_owned(),
                record["outcome"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn pair(action: &str, outcome: &str) -> (String, String) {
    (action.to_owned(), outcome.to_owned())
}

#[tokio::test]
async fn every_upstream_path_leaves_exactly_one_outcome_record() {
    let app = spawn_app_with(|mut config| {
        config.quotas.link_quota_per_caller = "2/1m".parse().expect("quota");
        config
    })
    .await;
    app.upstream_answers_seed().await;

    app.create_seed_link().await; // created
    app.graphql(SEED_MUTATION, seed_variables(), None).await; // no token
    app.graphql(
        SEED_MUTATION,
        json!({"input": {"label": "x".repeat(81)}}),
        Some(TOKEN),
    )
    .await; // bad input
    app.create_seed_link().await; // created (second of two)
    app.create_seed_link().await; // rate limited

    let records = app.audit_records();
    assert_eq!(
        actions(&records),
        vec![
            pair("creation-attempt", "attempt"),
            pair("link-created", "ok"),
            pair("creation-refused", "UNAUTHENTICATED"),
            pair("creation-refused", "BAD_USER_INPUT"),
            pair("creation-attempt", "attempt"),
            pair("link-created", "ok"),
            pair("creation-refused", "RATE_LIMITED"),
        ]
    );
    let created = &records[1];
    assert_eq!(created["link_id"], "e55843b5-131f-5a3a-892e-b2bd4dd17761");
    assert_eq!(created["mode"], "upstream");
    assert_eq!(created["upstream_status"], 200);
    assert!(created["upstream_latency_ms"].is_u64());
    assert_eq!(created["client_ip"], "127.0.0.1");
    assert_eq!(
        created["actor"].as_str().expect("actor").len(),
        32,
        "a keyed hash, not the token"
    );
    assert!(
        !std::fs::read_to_string(&app.audit_path)
            .expect("file")
            .contains("test-token-0123456789")
    );
}

#[tokio::test]
async fn an_upstream_failure_is_recorded_after_its_attempt() {
    let app = spawn_app().await;
    app.upstream_responds(ResponseTemplate::new(502)).await;
    app.create_seed_link().await;
    assert_eq!(
        actions(&app.audit_records()),
        vec![
            pair("creation-attempt", "attempt"),
            pair("creation-refused", "UPSTREAM_ERROR")
        ]
    );
}

#[tokio::test]
async fn every_access_to_an_embedded_link_is_recorded() {
    let app = spawn_embedded(&TestDatabase::Sqlite, |config| config).await;
    let (link, payload) = create_link(&app, json!({})).await;
    let (_, direct_payload) = create_link(&app, json!({"mode": "DIRECT"})).await;
    let url = payload["url"].as_str().expect("url");
    let manifest = |body: Value| {
        app.http
            .post(url)
            .header("user-agent", "Viewer/1.0")
            .json(&body)
            .send()
    };
    manifest(json!({"recipient": "Dr. Who", "passcode": "000001"}))
        .await
        .expect("sent");
    let ok: Value = manifest(json!({"recipient": "Dr. Who", "passcode": link["passcode"]}))
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    app.http
        .get(ok["files"][0]["location"].as_str().expect("location"))
        .send()
        .await
        .expect("sent");
    app.http
        .get(direct_payload["url"].as_str().expect("url"))
        .query(&[("recipient", "Front desk")])
        .send()
        .await
        .expect("sent");
    app.graphql(
        "mutation($id: ID!) { revokeHealthLink(id: $id) { id } }",
        json!({"id": link["id"]}),
        Some(&format!("Bearer {PATIENT_TOKEN}")),
    )
    .await;
    manifest(json!({"recipient": "Dr. Who", "passcode": link["passcode"]}))
        .await
        .expect("sent");

    let records = app.audit_records();
    let accesses: Vec<(String, String)> = actions(&records)
        .into_iter()
        .filter(|(action, _)| !action.starts_with("creation") && action != "link-created")
        .collect();
    assert_eq!(
        accesses,
        vec![
            // `create_link` receives every direct link as a Kill the Clipboard receiver would.
            pair("direct-fetched", "ok"),
            pair("manifest-requested", "bad-passcode"),
            pair("manifest-requested", "ok"),
            pair("file-fetched", "ok"),
            pair("direct-fetched", "ok"),
            pair("link-revoked", "ok"),
            pair("manifest-requested", "inactive"),
        ]
    );
    let bad = records
        .iter()
        .find(|r| r["outcome"] == "bad-passcode")
        .expect("bad passcode record");
    assert_eq!(bad["remaining_attempts"], 4);
    assert_eq!(bad["recipient"], "Dr. Who");
    assert_eq!(bad["user_agent"], "Viewer/1.0");
    assert_eq!(bad["mode"], "embedded");
    let text = std::fs::read_to_string(&app.audit_path).expect("file");
    for secret in [
        link["passcode"].as_str().expect("passcode"),
        payload["key"].as_str().expect("key"),
        "shlink:/",
    ] {
        assert!(!text.contains(secret), "the audit trail holds no secrets");
    }
}

fn gateway(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_shl-gateway"))
        .args(args)
        .env_remove("SHL_GATEWAY_SECRET_KEY")
        .env_remove("SHL_GATEWAY_SECRET_KEY_FILE")
        .output()
        .expect("binary runs")
}

#[tokio::test]
async fn audit_verify_accepts_the_trail_and_names_the_first_tampered_record() {
    let app = spawn_app().await;
    app.upstream_answers_seed().await;
    for _ in 0..3 {
        app.create_seed_link().await;
    }
    let path = app.audit_path.clone();
    let key = "test-secret-key-test-secret-key-0123456789";
    let verify = |file: &std::path::Path| {
        gateway(&[
            "audit",
            "verify",
            file.to_str().expect("utf-8"),
            "--secret-key",
            key,
        ])
    };

    let ok = verify(&path);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).starts_with("OK: 6 records"));

    let original = std::fs::read_to_string(&path).expect("file");
    let lines: Vec<&str> = original.lines().collect();
    let tampered_dir = tempfile::tempdir().expect("tempdir");
    let cases: Vec<(&str, String)> = vec![
        (
            "edited",
            original.replacen("\"outcome\":\"ok\"", "\"outcome\":\"no\"", 1),
        ),
        (
            "deleted",
            [&lines[..1], &lines[2..]].concat().join("\n") + "\n",
        ),
        ("reordered", {
            let mut swapped = lines.clone();
            swapped.swap(1, 2);
            swapped.join("\n") + "\n"
        }),
    ];
    for (what, contents) in cases {
        let file = tampered_dir.path().join(format!("{what}.jsonl"));
        std::fs::write(&file, contents).expect("write");
        let failed = verify(&file);
        let report = String::from_utf8_lossy(&failed.stdout);
        assert!(!failed.status.success(), "{what}: {report}");
        assert!(
            report.starts_with("FAILED") && report.contains("line 2"),
            "{what}: {report}"
        );
    }
    let wrong_key = gateway(&[
        "audit",
        "verify",
        path.to_str().expect("utf-8"),
        "--secret-key",
        "another-secret-key-another-secret-key-0",
    ]);
    assert!(!wrong_key.status.success());
}

#[tokio::test]
async fn audit_export_writes_a_fhir_bundle_of_audit_events() {
    let app = spawn_app().await;
    app.upstream_answers_seed().await;
    app.create_seed_link().await;
    app.graphql(SEED_MUTATION, seed_variables(), None).await;
    let output = tempfile::NamedTempFile::new().expect("temp");

    let exported = gateway(&[
        "audit",
        "export",
        app.audit_path.to_str().expect("utf-8"),
        "--output",
        output.path().to_str().expect("utf-8"),
    ]);

    assert!(
        exported.status.success(),
        "{}",
        String::from_utf8_lossy(&exported.stderr)
    );
    let bundle: Value =
        serde_json::from_str(&std::fs::read_to_string(output.path()).expect("read")).expect("json");
    assert_eq!(bundle["resourceType"], "Bundle");
    let events: Vec<&Value> = bundle["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|entry| &entry["resource"])
        .collect();
    assert_eq!(events.len(), 3, "attempt, created, refused");
    for event in &events {
        assert_eq!(event["resourceType"], "AuditEvent");
        assert!(
            event["recorded"].is_string()
                && event["agent"].is_array()
                && event["source"].is_object()
        );
    }
}

#[tokio::test]
async fn creation_fails_closed_when_the_trail_cannot_write() {
    let app = spawn_app().await;
    app.upstream_answers_seed().await;
    // The audit file's directory disappears: every later record fails.
    std::fs::remove_dir_all(app.audit_path.parent().expect("dir")).expect("remove");

    let (_, body) = app.create_seed_link().await;

    assert_eq!(error_code(&body), "AUDIT_UNAVAILABLE");
    assert!(
        app.upstream_bodies().await.is_empty(),
        "nothing was sent upstream without its record"
    );
    let ready = app
        .http
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .expect("sent");
    assert_eq!(ready.status(), 503);
}

#[tokio::test]
async fn a_gateway_shut_down_leaves_a_closed_trail_holding_its_last_request() {
    // Outside the app's data directory, which goes with the app.
    let kept = tempfile::tempdir().expect("tempdir");
    let path = kept.path().join("audit.jsonl");
    let app = spawn_app_with(|mut config| {
        config.audit.audit_log = Some(path.clone());
        config
    })
    .await;
    app.upstream_answers_seed().await;
    app.create_seed_link().await;
    // The last request is still running when shutdown starts: it drains, and records.
    app.upstream.reset().await;
    app.upstream_responds(
        ResponseTemplate::new(200)
            .set_body_raw(SEED_RESPONSE, "application/json")
            .set_delay(std::time::Duration::from_millis(600)),
    )
    .await;
    let address = app.address.clone();
    let client = app.http.clone();
    let in_flight = tokio::spawn(async move {
        client
            .post(format!("{address}/graphql"))
            .header("authorization", TOKEN)
            .json(&json!({"query": SEED_MUTATION, "variables": seed_variables()}))
            .send()
            .await
            .expect("the in-flight request completes")
            .json::<Value>()
            .await
            .expect("json")
    });
    // Shutdown starts once the request has reached the upstream, so it is surely in flight.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while app
        .upstream
        .received_requests()
        .await
        .is_none_or(|requests| requests.is_empty())
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the request never reached the upstream"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    app.stop().await;
    let answer = in_flight.await.expect("task");
    assert_eq!(
        answer["data"]["createHealthLink"],
        seed_answer(),
        "{answer}"
    );

    let lines: Vec<Value> = std::fs::read_to_string(&path)
        .expect("the trail outlives the gateway")
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON lines"))
        .collect();
    assert_eq!(
        actions(&lines[lines.len() - 2..]),
        vec![
            pair("creation-attempt", "attempt"),
            pair("link-created", "ok")
        ]
    );
    let keys = shl_gateway::crypto::Keys::derive(&secrecy::SecretBox::new(Box::new(
        b"test-secret-key-test-secret-key-0123456789".to_vec(),
    )));
    let report = shl_gateway::audit::verify_file(&path, keys.audit_chain.as_bytes());
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.records as usize, lines.len());

    // Once stopped, the gateway has let go of the trail (its writer joined, the file's lock
    // released): a new writer opens it at once and continues the chain.
    let chain = lines[0]["chain"].as_str().expect("chain").to_owned();
    let reopened = shl_gateway::audit::FileAuditSink::open(
        &path,
        shl_gateway::crypto::AuditKey::from(&keys.audit_chain),
        chain,
    )
    .expect("the stopped gateway released the trail");
    assert_eq!(
        reopened.head().map(|head| head.seq),
        Some(lines.len() as u64 - 1)
    );
}

#[tokio::test]
async fn a_terminated_gateway_logs_the_head_of_its_closed_trail() {
    let secret = "test-secret-key-test-secret-key-0123456789";
    let mut gateway = GatewayChild::spawn("info", &["--secret-key", secret]);
    let refused = reqwest::Client::new()
        .post(format!("{}/graphql", gateway.address))
        .json(&json!({"query": SEED_MUTATION, "variables": seed_variables()}))
        .send()
        .await
        .expect("sent")
        .json::<Value>()
        .await
        .expect("answered");
    assert_eq!(error_code(&refused), "UNAUTHENTICATED", "{refused}");
    gateway.terminate();
    let status = gateway.wait_for_exit(std::time::Duration::from_secs(30));
    assert!(status.is_some_and(|status| status.success()), "{status:?}");
    let path = gateway.data_dir.join("audit.jsonl");
    let logs = gateway.into_lines();

    let last: Value = serde_json::from_str(
        std::fs::read_to_string(&path)
            .expect("the trail")
            .lines()
            .last()
            .expect("a record"),
    )
    .expect("JSON");
    assert_eq!(
        (last["action"].as_str(), last["outcome"].as_str()),
        (Some("creation-refused"), Some("UNAUTHENTICATED"))
    );
    // The head an operator keeps to detect a truncated trail, logged once the trail is closed.
    let closed: Vec<Value> = logs
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|event| event["message"] == "audit file closed")
        .collect();
    assert_eq!(closed.len(), 1, "{logs:?}");
    let head = closed[0]["head"].as_str().expect("a head");
    assert_eq!(
        head,
        format!("{}:{}", last["seq"], last["mac"].as_str().expect("mac"))
    );
    let keys = shl_gateway::crypto::Keys::derive(&secrecy::SecretBox::new(Box::new(
        secret.as_bytes().to_vec(),
    )));
    let report =
        shl_gateway::audit::verify_file_against_head(&path, keys.audit_chain.as_bytes(), head);
    assert!(report.is_ok(), "{report}");
}
