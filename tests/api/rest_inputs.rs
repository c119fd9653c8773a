//! Malformed REST requests get the one error shape, `{"error": CODE}` as JSON, whichever layer
//! refuses them; recipient names with invisible format characters are refused.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::embedded::create_link;
use crate::helpers::*;

/// Status, `Allow`, and the JSON body of an answer (a panic if the body is not JSON).
async fn answer(response: reqwest::Response) -> (StatusCode, Option<String>, Value) {
    let status = response.status();
    let allow = response
        .headers()
        .get("allow")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = response.text().await.expect("body");
    assert!(
        content_type.starts_with("application/json"),
        "{status} answered {content_type:?}: {text:?}"
    );
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text:?}"));
    (status, allow, body)
}

#[tokio::test]
async fn paths_that_are_not_utf8_are_json_errors_on_every_route() {
    let app = spawn_embedded(&TestDatabase::Sqlite, |config| config).await;
    let base = &app.address;
    let cases = [
        (
            "GET",
            "/v1/health-link/manifests/%FF%FE",
            400,
            "BAD_USER_INPUT",
        ),
        (
            "POST",
            "/v1/health-link/manifests/%FF%FE",
            400,
            "BAD_USER_INPUT",
        ),
        ("GET", "/v1/health-link/files/%FF%FE", 400, "BAD_USER_INPUT"),
        ("GET", "/%FF%FE", 404, "NOT_FOUND"),
        ("GET", "/v1/health-link/%C0%AF/x", 404, "NOT_FOUND"),
    ];
    for (method, path, status, code) in cases {
        let request = match method {
            "POST" => app
                .http
                .post(format!("{base}{path}"))
                .json(&json!({"recipient": "Dr. Who"})),
            _ => app.http.get(format!("{base}{path}")),
        };
        let (got, _, body) = answer(request.send().await.expect("sent")).await;
        assert_eq!(got, status, "{method} {path}: {body}");
        assert_eq!(body, json!({"error": code}), "{method} {path}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_method_a_route_does_not_serve_is_a_json_405_with_allow() {
    let app = spawn_embedded(&TestDatabase::Sqlite, |config| config).await;
    for (method, path, allowed) in [
        (
            reqwest::Method::DELETE,
            "/v1/health-link/files/ticket",
            "GET",
        ),
        (
            reqwest::Method::PUT,
            "/v1/health-link/manifests/abc",
            "POST",
        ),
        (reqwest::Method::POST, "/readyz", "GET"),
        (reqwest::Method::PATCH, "/graphql", "POST"),
    ] {
        let response = app
            .http
            .request(method.clone(), format!("{}{path}", app.address))
            .send()
            .await
            .expect("sent");
        let (status, allow, body) = answer(response).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert!(
            allow
                .as_deref()
                .is_some_and(|allow| allow.contains(allowed)),
            "{method} {path}: Allow {allow:?}"
        );
        assert_eq!(body, json!({"error": "BAD_USER_INPUT"}), "{method} {path}");
    }
    app.stop().await;
}

/// Invisible format characters (Unicode `Cf`): bidi override and isolates, zero width space,
/// byte order mark, soft hyphen.
const INVISIBLE: [&str; 6] = [
    "Dr. Ana\u{202E}azuoS",
    "Dr.\u{200B}Who",
    "\u{2066}Front desk\u{2069}",
    "\u{FEFF}Clinic",
    "Dr. Who\u{00AD}",
    "Nurse\u{2067}",
];

#[tokio::test]
async fn a_manifest_request_with_an_invisible_character_in_its_recipient_is_refused() {
    let app = spawn_embedded(&TestDatabase::Sqlite, |config| config).await;
    let (link, payload) = create_link(&app, json!({})).await;
    let url = payload["url"].as_str().expect("url");
    for recipient in INVISIBLE {
        let response = app
            .http
            .post(url)
            .json(&json!({"recipient": recipient, "passcode": "000000"}))
            .send()
            .await
            .expect("sent");
        let (status, _, body) = answer(response).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{recipient:?}");
        assert_eq!(body, json!({"error": "BAD_USER_INPUT"}), "{recipient:?}");
    }
    // Refused before the passcode was looked at: the budget is whole, the link opens.
    let response = app
        .http
        .post(url)
        .json(&json!({"recipient": "Dr. Ana Souza", "passcode": link["passcode"]}))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
    let recipients: Vec<Value> = app
        .audit_records()
        .iter()
        .filter(|record| record["action"] == "manifest-requested")
        .map(|record| record["recipient"].clone())
        .collect();
    assert_eq!(recipients, [json!("Dr. Ana Souza")]);
    app.stop().await;
}

#[tokio::test]
async fn a_direct_fetch_with_an_invisible_character_in_its_recipient_is_refused() {
    let app = spawn_embedded(&TestDatabase::Sqlite, |config| config).await;
    let (_, payload) = create_link(&app, json!({"mode": "DIRECT"})).await;
    let url = payload["url"].as_str().expect("url");
    for recipient in INVISIBLE {
        let response = app
            .http
            .get(url)
            .query(&[("recipient", recipient)])
            .send()
            .await
            .expect("sent");
        let (status, _, body) = answer(response).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{recipient:?}");
        assert_eq!(body, json!({"error": "BAD_USER_INPUT"}), "{recipient:?}");
    }
    let response = app
        .http
        .get(url)
        .query(&[("recipient", "Front desk")])
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
    app.stop().await;
}
