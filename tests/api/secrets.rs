//! Canaries: unique secret values sent through every path must never appear in a log line or in
//! an error body. The gateway runs as its own process, logging JSON at debug level for every
//! crate (hyper, reqwest, h2 included), and every line it writes is searched.

use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::{body_string_contains, method};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{GatewayChild, SEED_MUTATION};

const PASSCODE: &str = "731906";
const TOKEN: &str = "Bearer canary-token-b7e2c94f0d";
const LABEL: &str = "CanaryLabel-e41d9";
/// Inside a patient's story (health data in their words), which goes into a PDF and nowhere else.
const STORY_CANARY: &str = "CanaryStory-7f2a1";
const MANIFEST_ID: &str = "canaryManifestId8c1f0a77d2b94e3aa51c6f0e9d8b7a6c5f4e3d2c1b0";
const SHL_KEY: &str = "canaryKeyZq3Xw9Lp0Rt7Yu2Io5Pa8Sd1Fg4Hj6Kl3Zx";
const UPSTREAM_TEXT: &str = "canary-upstream-detail-PatientJaneRoe";
/// A secret without digits, typed where a name goes (an enum value, an input field name).
const ENUM_CANARY: &str = "CanaryWordWithoutDigits";

/// Every character as a GraphQL and JSON `\uXXXX` escape.
fn unicode_escaped(text: &str) -> String {
    text.chars()
        .map(|c| format!("\\u{:04x}", u32::from(c)))
        .collect()
}

/// A link whose URL and identifier carry the canaries, as b.well would answer.
fn canary_answer() -> Value {
    use base64::Engine as _;
    let payload = json!({
        "url": format!("https://shl.example/v1/health-link/manifests/{MANIFEST_ID}"),
        "key": SHL_KEY, "exp": 1_766_173_622, "flag": "P", "label": LABEL,
    });
    let shlink = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(payload.to_string());
    json!({"data": {"createHealthLink": {
        "id": "e55843b5-131f-5a3a-892e-b2bd4dd17761",
        "identifier": [{"system": "http://icanbwell.com/smart-health-links", "value": MANIFEST_ID}],
        "resourceType": "DocumentReference",
        "content": [{"attachment": {
            "contentType": "application/smart-health-link+json",
            "url": format!("https://shl.example/v1/health-link/viewer.html#shlink:/{shlink}"),
            "title": "SMART Health Link Payload"
        }}]
    }}})
}

struct GatewayProcess(GatewayChild);

impl GatewayProcess {
    fn start(upstream: &str) -> Self {
        Self::start_with(&["--upstream-url", upstream, "--upstream-timeout", "500ms"])
    }

    /// Logging at debug level for every crate: the most the gateway could ever write.
    fn start_with(args: &[&str]) -> Self {
        Self(GatewayChild::spawn("debug", args))
    }

    /// Stops the process and returns every line it wrote, then every line of its audit trail
    /// (held to the same rule as the logs).
    fn stop(mut self) -> Vec<String> {
        self.0.terminate();
        let _ = self.0.wait_for_exit(Duration::from_secs(10));
        let data_dir = self.0.data_dir.clone();
        let mut lines = self.0.into_lines();
        let audit =
            std::fs::read_to_string(data_dir.join("audit.jsonl")).expect("audit trail written");
        assert!(audit.lines().count() > 3, "the run was audited");
        lines.extend(audit.lines().map(str::to_owned));
        lines
    }
}

async fn post(
    http: &reqwest::Client,
    address: &str,
    authorization: Option<&str>,
    body: Value,
) -> String {
    let mut request = http.post(format!("{address}/graphql")).json(&body);
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    request
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("body")
}

#[tokio::test]
async fn canaries_never_reach_logs_or_error_bodies() {
    let upstream = MockServer::start().await;
    // Answers depend on the label so one fake b.well serves every path.
    let respond = |marker: &str, response: ResponseTemplate| {
        Mock::given(method("POST"))
            .and(body_string_contains(marker))
            .respond_with(response)
    };
    let upstream_error =
        json!({"errors": [{"message": UPSTREAM_TEXT, "extensions": {"code": "INTERNAL"}}]});
    respond(
        "path-ok",
        ResponseTemplate::new(200).set_body_json(canary_answer()),
    )
    .mount(&upstream)
    .await;
    respond(
        "path-401",
        ResponseTemplate::new(401).set_body_string(UPSTREAM_TEXT),
    )
    .mount(&upstream)
    .await;
    respond(
        "path-429",
        ResponseTemplate::new(429).set_body_string(UPSTREAM_TEXT),
    )
    .mount(&upstream)
    .await;
    respond(
        "path-500",
        ResponseTemplate::new(500).set_body_string(UPSTREAM_TEXT),
    )
    .mount(&upstream)
    .await;
    respond(
        "path-graphql-error",
        ResponseTemplate::new(200).set_body_json(upstream_error),
    )
    .mount(&upstream)
    .await;
    respond(
        "path-stall",
        ResponseTemplate::new(200)
            .set_body_json(canary_answer())
            .set_delay(Duration::from_secs(5)),
    )
    .mount(&upstream)
    .await;
    let gateway = GatewayProcess::start(&format!("{}/graphql", upstream.uri()));
    let http = reqwest::Client::new();
    let with_gateway_fields = "mutation CreateHealthLink($input: CreateHealthLinkInput!) {
        createHealthLink(input: $input) { id identifier { value } content { attachment { url } } passcode qrCodeSvg } }";
    let input = |path: &str| json!({"input": {"label": format!("{LABEL} {path}"), "securityConfig": {"passcode": PASSCODE}}});

    // Success: the answer legitimately holds the secrets; the logs must not.
    let success = post(
        &http,
        &gateway.0.address,
        Some(TOKEN),
        json!({"query": with_gateway_fields, "variables": input("path-ok")}),
    )
    .await;
    assert!(
        success.contains(PASSCODE) && success.contains(MANIFEST_ID),
        "{success}"
    );
    let generated: Value = serde_json::from_str(
        &post(
            &http,
            &gateway.0.address,
            Some(TOKEN),
            json!({"query": with_gateway_fields,
            "variables": {"input": {"label": format!("{LABEL} path-ok")}}}),
        )
        .await,
    )
    .expect("json");
    let generated_passcode = generated["data"]["createHealthLink"]["passcode"]
        .as_str()
        .expect("generated")
        .to_owned();

    // Every error path: each body is checked as well as the logs.
    let mut error_bodies = Vec::new();
    for path in [
        "path-401",
        "path-429",
        "path-500",
        "path-graphql-error",
        "path-stall",
    ] {
        error_bodies.push(
            post(
                &http,
                &gateway.0.address,
                Some(TOKEN),
                json!({"query": SEED_MUTATION, "variables": input(path)}),
            )
            .await,
        );
    }
    // Validation failures and literals that async-graphql echoes.
    let literal_cases = [
        format!(r#"mutation {{ createHealthLink(input: {{mode: "{PASSCODE}"}}) {{ id }} }}"#),
        format!(
            r#"mutation {{ createHealthLink(input: {{mode: {}}}) {{ id }} }}"#,
            "A".to_owned() + PASSCODE
        ),
        format!(
            r#"mutation {{ createHealthLink(input: {{securityConfig: {{passcode: {PASSCODE}}}}}) {{ id }} }}"#
        ),
        format!(
            r#"mutation {{ createHealthLink(input: {{label: "{LABEL}", securityConfig: {{passcode: "{PASSCODE}", x: "{TOKEN}"}}}}) {{ id }} }}"#
        ),
        format!(
            r#"mutation {{ createHealthLink(input: {{securityConfig: {{passcode: "{PASSCODE}"}}}}) {{ id "#
        ),
        format!(r#"{{ shareableResourceTypes(x: "{TOKEN}") }}"#),
        // Escaped forms: the text holds no canary, the decoded value does.
        format!(
            r#"mutation {{ createHealthLink(input: {{mode: "{}"}}) {{ id }} }}"#,
            unicode_escaped(PASSCODE)
        ),
        format!(
            r#"mutation {{ createHealthLink(input: {{mode: "Bearer\u0020{}"}}) {{ id }} }}"#,
            unicode_escaped(TOKEN.trim_start_matches("Bearer "))
        ),
        format!(
            "mutation {{ createHealthLink(input: {{mode: \"\"\"\n      {PASSCODE}\n    \"\"\"}}) {{ id }} }}"
        ),
        format!(r#"mutation {{ createHealthLink(input: {{mode: {ENUM_CANARY}}}) {{ id }} }}"#),
        format!(r#"{{ shareableResourceTypes(x: {{{ENUM_CANARY}: 1}}) }}"#),
        format!(r#"mutation {{ createHealthLink(input: {{{ENUM_CANARY}: 1}}) {{ id }} }}"#),
        // Numbers where strings go, and out of range.
        format!(
            r#"mutation {{ createHealthLink(input: {{securityConfig: {{passcode: {PASSCODE}.5e1}}}}) {{ id }} }}"#
        ),
        format!(
            r#"mutation {{ createHealthLink(input: {{}}) {{ id qrCodeSvg(moduleSize: {PASSCODE}{PASSCODE}) }} }}"#
        ),
        // A syntax error on a line that holds the canaries.
        format!(
            r#"{{ shareableResourceTypes(x: {ENUM_CANARY} {ENUM_CANARY} "{}" "#,
            unicode_escaped(PASSCODE)
        ),
    ];
    for query in &literal_cases {
        error_bodies.push(
            post(
                &http,
                &gateway.0.address,
                Some(TOKEN),
                json!({"query": query}),
            )
            .await,
        );
    }
    let variable_cases = [
        json!({"input": {"mode": PASSCODE}}),
        json!({"input": {"securityConfig": {"passcode": PASSCODE.parse::<u64>().expect("digits")}}}),
        json!({"input": {"label": format!("{LABEL}\n"), "securityConfig": {"passcode": PASSCODE}}}),
        json!({"input": {"resources": [{"resourceType": TOKEN}], "securityConfig": {"passcode": "73190"}}}),
        json!({"input": {ENUM_CANARY: 1, "mode": ENUM_CANARY}}),
        json!({"input": {"mode": [PASSCODE.parse::<u64>().expect("digits")]}}),
    ];
    for variables in variable_cases {
        error_bodies.push(
            post(
                &http,
                &gateway.0.address,
                Some(TOKEN),
                json!({"query": SEED_MUTATION, "variables": variables}),
            )
            .await,
        );
    }
    // Variables whose JSON escapes the canaries: serde decodes them before the gateway sees them.
    for raw_variables in [
        format!(
            r#"{{"input": {{"mode": "{}"}}}}"#,
            unicode_escaped(PASSCODE)
        ),
        format!(
            r#"{{"input": {{"resources": [{{"resourceType": "{}"}}]}}}}"#,
            unicode_escaped(TOKEN)
        ),
    ] {
        let body = format!(
            r#"{{"query": {}, "variables": {raw_variables}}}"#,
            Value::String(SEED_MUTATION.to_owned())
        );
        error_bodies.push(
            http.post(format!("{}/graphql", gateway.0.address))
                .header("authorization", TOKEN)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("sent")
                .text()
                .await
                .expect("body"),
        );
    }
    // By GET too (a query, so it reaches validation).
    error_bodies.push(
        http.get(format!("{}/graphql", gateway.0.address))
            .query(&[(
                "query",
                format!(
                    r#"{{ shareableResourceTypes(x: "{}") }}"#,
                    unicode_escaped(PASSCODE)
                ),
            )])
            .send()
            .await
            .expect("sent")
            .text()
            .await
            .expect("body"),
    );
    // Refused before GraphQL: no token, CSRF, oversized.
    error_bodies.push(
        post(
            &http,
            &gateway.0.address,
            None,
            json!({"query": SEED_MUTATION, "variables": input("path-ok")}),
        )
        .await,
    );
    let csrf = http
        .post(format!("{}/graphql", gateway.0.address))
        .header("authorization", TOKEN)
        .header("content-type", "text/plain")
        .body(json!({"query": SEED_MUTATION, "variables": input("path-ok")}).to_string())
        .send()
        .await
        .expect("sent");
    error_bodies.push(csrf.text().await.expect("body"));

    let metrics = http
        .get(format!("{}/metrics", gateway.0.address))
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("metrics");
    assert!(
        metrics.contains("shl_gateway_http_requests_total"),
        "{metrics}"
    );
    let mut lines = gateway.stop();
    // The metrics a Prometheus server would store are held to the same rule as the logs.
    lines.extend(metrics.lines().map(str::to_owned));

    assert!(
        lines.len() > 20,
        "debug logging is on: {} lines",
        lines.len()
    );
    let token_value = TOKEN.trim_start_matches("Bearer ");
    let canaries = [
        PASSCODE,
        ENUM_CANARY,
        generated_passcode.as_str(),
        token_value,
        LABEL,
        MANIFEST_ID,
        SHL_KEY,
        UPSTREAM_TEXT,
        "shlink:/",
    ];
    for canary in canaries {
        for line in &lines {
            assert!(
                !line.contains(canary),
                "{canary:?} leaked into a log line: {line}"
            );
        }
        for body in &error_bodies {
            assert!(
                !body.contains(canary),
                "{canary:?} leaked into an error body: {body}"
            );
        }
    }
    // The refusals above really were errors, with codes; and their messages, JSON-decoded
    // (an escape in the body could hide a canary from the byte search), hold no canary either.
    for body in &error_bodies {
        let answer: Value =
            serde_json::from_str(body).unwrap_or_else(|_| panic!("JSON error body: {body}"));
        assert!(
            answer["errors"][0]["extensions"]["code"].is_string(),
            "{body}"
        );
        for error in answer["errors"].as_array().expect("errors") {
            let message = error["message"].as_str().expect("message");
            for canary in canaries {
                assert!(!message.contains(canary), "{canary:?} in {message}");
            }
        }
    }
}

#[tokio::test]
async fn embedded_mode_canaries_never_reach_logs_or_error_bodies() {
    let patient_token = "embedded-canary-token-4c7d1e9a";
    let mapping = format!("{patient_token}=demo-alex");
    let gateway = GatewayProcess::start_with(&["--demo", "on", "--patient-token", &mapping]);
    let http = reqwest::Client::new();
    let authorization = format!("Bearer {patient_token}");
    let create = "mutation($input: CreateHealthLinkInput!) { createHealthLink(input: $input) { id passcode content { attachment { url } } } }";

    let passcode_link: Value = serde_json::from_str(
        &post(
            &http,
            &gateway.0.address,
            Some(&authorization),
            json!({"query": create,
            "variables": {"input": {"label": LABEL, "securityConfig": {"passcode": PASSCODE}}}}),
        )
        .await,
    )
    .expect("json");
    let direct_link: Value = serde_json::from_str(
        &post(
            &http,
            &gateway.0.address,
            Some(&authorization),
            json!({"query": create,
            "variables": {"input": {"label": LABEL, "mode": "DIRECT",
                "patientStory": format!("My knee hurts. {STORY_CANARY}\n\nMore of my story.")}}}),
        )
        .await,
    )
    .expect("json");
    let payload = |link: &Value| {
        crate::embedded::shl_payload(
            link["data"]["createHealthLink"]["content"][0]["attachment"]["url"]
                .as_str()
                .expect("url"),
        )
    };
    let (passcode_payload, direct_payload) = (payload(&passcode_link), payload(&direct_link));
    let manifest_url = passcode_payload["url"].as_str().expect("url").to_owned();

    let mut error_bodies = Vec::new();
    // A story refused (too long, a control character) is not repeated in the error.
    for story in [STORY_CANARY.repeat(1000), format!("{STORY_CANARY}\u{7}")] {
        error_bodies.push(
            post(
                &http,
                &gateway.0.address,
                Some(&authorization),
                json!({"query": create,
                    "variables": {"input": {"mode": "DIRECT", "patientStory": story}}}),
            )
            .await,
        );
    }
    let manifest = |body: Value| http.post(&manifest_url).json(&body).send();
    error_bodies.push(
        manifest(json!({"recipient": "canary-recipient", "passcode": "000001"}))
            .await
            .expect("sent")
            .text()
            .await
            .expect("body"),
    );
    error_bodies.push(
        manifest(json!({"recipient": "canary-recipient"}))
            .await
            .expect("sent")
            .text()
            .await
            .expect("body"),
    );
    error_bodies.push(
        manifest(json!({"passcode": PASSCODE}))
            .await
            .expect("sent")
            .text()
            .await
            .expect("body"),
    );
    let ok: Value = manifest(json!({"recipient": "canary-recipient", "passcode": PASSCODE}))
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let location = ok["files"][0]["location"]
        .as_str()
        .expect("location")
        .to_owned();
    let ticket = location.rsplit('/').next().expect("ticket").to_owned();
    assert_eq!(
        http.get(&location).send().await.expect("sent").status(),
        200
    );
    let direct_url = direct_payload["url"].as_str().expect("url");
    assert_eq!(
        http.get(direct_url)
            .query(&[("recipient", "front desk")])
            .send()
            .await
            .expect("sent")
            .status(),
        200
    );
    let revoke = json!({"query": "mutation($id: ID!) { revokeHealthLink(id: $id) { status } }",
        "variables": {"id": passcode_link["data"]["createHealthLink"]["id"]}});
    post(&http, &gateway.0.address, Some(&authorization), revoke).await;
    error_bodies.push(
        http.get(&location)
            .send()
            .await
            .expect("sent")
            .text()
            .await
            .expect("body"),
    );
    error_bodies.push(
        manifest(json!({"recipient": "r", "passcode": PASSCODE}))
            .await
            .expect("sent")
            .text()
            .await
            .expect("body"),
    );
    post(
        &http,
        &gateway.0.address,
        Some(&authorization),
        json!({"query": "{ healthLinks { id accesses { outcome } } }"}),
    )
    .await;

    let metrics = http
        .get(format!("{}/metrics", gateway.0.address))
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("metrics");
    assert!(
        metrics.contains("shl_gateway_http_requests_total"),
        "{metrics}"
    );
    let mut lines = gateway.stop();
    // The metrics a Prometheus server would store are held to the same rule as the logs.
    lines.extend(metrics.lines().map(str::to_owned));

    let manifest_id = manifest_url.rsplit('/').next().expect("id").to_owned();
    let secrets = [
        ("passcode", PASSCODE.to_owned()),
        ("token", patient_token.to_owned()),
        ("label", LABEL.to_owned()),
        ("story", STORY_CANARY.to_owned()),
        ("manifest id", manifest_id),
        (
            "direct manifest id",
            direct_url.rsplit('/').next().expect("id").to_owned(),
        ),
        (
            "SHL key",
            passcode_payload["key"].as_str().expect("key").to_owned(),
        ),
        (
            "direct SHL key",
            direct_payload["key"].as_str().expect("key").to_owned(),
        ),
        ("location ticket", ticket),
        ("shlink", "shlink:/".to_owned()),
    ];
    for (name, secret) in &secrets {
        for line in &lines {
            assert!(
                !line.contains(secret.as_str()),
                "{name} leaked into a log line: {line}"
            );
        }
        for body in &error_bodies {
            assert!(
                !body.contains(secret.as_str()),
                "{name} leaked into an error body: {body}"
            );
        }
    }
    assert!(
        lines
            .iter()
            .any(|line| line.contains("/v1/health-link/manifests/{manifest_id}")),
        "route templates are logged"
    );
}
