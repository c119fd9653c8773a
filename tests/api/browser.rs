//! The viewer in a real browser: headless Chromium opens the link from the QR code, the test
//! types the passcode, and the page must decrypt and render the allergy list.
//!
//! Runs when `SHL_GATEWAY_TEST_BROWSER` is set (`.ci/run` sets it after installing Chromium and
//! `npm ci --prefix tests/browser`); set but unable to run is a failure, not a skip.

use std::process::Command;

use serde_json::{Value, json};

use crate::embedded::create_link;
use crate::helpers::*;

/// Runs the driver on `url`, typing `passcodes` (comma-separated; empty for a `U` link), and
/// returns its summary of the rendered page; a screenshot goes to the target's temporary folder.
async fn open_in_chromium(url: String, passcodes: String, screenshot: &str) -> Value {
    drive_viewer(url, passcodes, screenshot, None).await
}

/// Opens `url` expecting the page to refuse the link by itself, typing nothing; returns the
/// page's state, its notice, and whether the validity line and the form show.
async fn open_expecting_refusal(url: String, screenshot: &str) -> Value {
    drive_viewer(url, String::new(), screenshot, Some("refusal")).await
}

async fn drive_viewer(
    url: String,
    passcodes: String,
    screenshot: &str,
    expect: Option<&'static str>,
) -> Value {
    let screenshot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(screenshot);
    let env = expect.map(|expect| ("SHL_EXPECT", expect.to_owned()));
    run_driver(
        "viewer.mjs",
        vec![url.into(), passcodes.into(), screenshot.into()],
        env.into_iter().collect(),
    )
    .await
}

/// Runs `tests/browser/<script>` with node, `args` and extra environment `env`, and returns the
/// JSON summary it prints last. Output is shown only when the driver fails; the summary itself
/// may hold a test link's secrets, so callers keep it out of their assertion messages.
pub(crate) async fn run_driver(
    script: &str,
    args: Vec<std::ffi::OsString>,
    env: Vec<(&'static str, String)>,
) -> Value {
    let driver = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/browser")
        .join(script);
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(&driver)
            .args(&args)
            .envs(env)
            .output()
    })
    .await
    .expect("task")
    .expect(
        "node runs (SHL_GATEWAY_TEST_BROWSER is set: install node, chromium and tests/browser)",
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{script} failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("driver summary")
}

#[tokio::test]
#[ignore = "needs Chromium and tests/browser installed: set SHL_GATEWAY_TEST_BROWSER=1 and run with `cargo test -- --include-ignored` (CI does)"]
async fn the_viewer_decrypts_and_renders_the_records_in_chromium() {
    assert!(
        std::env::var_os("SHL_GATEWAY_TEST_BROWSER").is_some(),
        "this test needs SHL_GATEWAY_TEST_BROWSER=1, Debian's chromium and npm ci --prefix tests/browser"
    );
    let app = spawn_embedded(&TestDatabase::Sqlite, |config| config).await;
    let (link, _) = create_link(&app, json!({"label": "Health Records"})).await;
    // The URL a phone reads from the QR code, not the one in the JSON answer.
    let url = crate::qr::decode_svg(link["qrCodeSvg"].as_str().expect("svg"));
    let passcode = link["passcode"].as_str().expect("passcode").to_owned();
    let wrong = if passcode == "000000" {
        "111111"
    } else {
        "000000"
    };

    let summary = open_in_chromium(url, format!("{wrong},{passcode}"), "viewer.png").await;
    let allergies = summary["allergies"].as_array().expect("allergies");
    assert!(
        allergies
            .iter()
            .any(|allergy| allergy.as_str().unwrap_or_default().contains("Penicillin")),
        "{summary}"
    );
    assert!(
        summary["sections"]
            .as_array()
            .expect("sections")
            .iter()
            .any(|s| s == "Allergies and intolerances")
    );
    let (_, body) = app
        .graphql(
            "{ healthLinks { accesses { action outcome } } }",
            json!({}),
            Some(&format!("Bearer {PATIENT_TOKEN}")),
        )
        .await;
    let outcomes: Vec<&str> = body["data"]["healthLinks"][0]["accesses"]
        .as_array()
        .expect("accesses")
        .iter()
        .filter_map(|access| access["outcome"].as_str())
        .collect();
    assert!(
        outcomes.contains(&"bad-passcode") && outcomes.contains(&"ok"),
        "{outcomes:?}"
    );
}

#[tokio::test]
#[ignore = "needs Chromium and tests/browser installed: set SHL_GATEWAY_TEST_BROWSER=1 and run with `cargo test -- --include-ignored` (CI does)"]
async fn the_viewer_shows_a_direct_links_records_and_story_and_offers_its_pdfs() {
    const STORY: &str = "My knee hurts when I climb stairs.\nMostly in the <evening> & after work.\n\n\
                         Ich möchte operiert werden — не сейчас.";
    assert!(
        std::env::var_os("SHL_GATEWAY_TEST_BROWSER").is_some(),
        "this test needs SHL_GATEWAY_TEST_BROWSER=1, Debian's chromium and npm ci --prefix tests/browser"
    );
    let app = spawn_embedded(&TestDatabase::Sqlite, |config| config).await;
    let (link, _) = create_link(&app, json!({"mode": "DIRECT", "patientStory": STORY})).await;
    let url = crate::qr::decode_svg(link["qrCodeSvg"].as_str().expect("svg"));

    let summary = open_in_chromium(url, String::new(), "viewer-direct.png").await;

    let sections = summary["sections"].as_array().expect("sections");
    assert_eq!(
        summary["story"],
        json!([
            "My knee hurts when I climb stairs.\nMostly in the <evening> & after work.",
            "Ich möchte operiert werden — не сейчас."
        ]),
        "the story's text, markup-like characters as text: {summary}"
    );
    for expected in [
        "In the patient's own words",
        "Allergies and intolerances",
        "Medications",
        "Coverage",
        "Documents",
    ] {
        assert!(
            sections.iter().any(|s| s == expected),
            "{expected}: {summary}"
        );
    }
    assert_eq!(
        summary["pdfs"],
        json!([
            {"title": "Patient summary (PDF)", "blob": true, "download": "patient-summary.pdf"},
            {"title": "The patient's own story (PDF)", "blob": true, "download": "patient-story.pdf"}
        ]),
        "{summary}"
    );
}

#[tokio::test]
#[ignore = "needs Chromium and tests/browser installed: set SHL_GATEWAY_TEST_BROWSER=1 and run with `cargo test -- --include-ignored` (CI does)"]
async fn the_viewer_says_a_revoked_link_is_dead_before_asking_for_anything() {
    assert!(
        std::env::var_os("SHL_GATEWAY_TEST_BROWSER").is_some(),
        "this test needs SHL_GATEWAY_TEST_BROWSER=1, Debian's chromium and npm ci --prefix tests/browser"
    );
    let app = spawn_embedded(&TestDatabase::Sqlite, |config| config).await;
    let (live, _) = create_link(&app, json!({})).await;
    let (revoked, _) = create_link(&app, json!({})).await;
    let (_, body) = app
        .graphql(
            "mutation($id: ID!) { revokeHealthLink(id: $id) { id } }",
            json!({"id": revoked["id"]}),
            Some(&format!("Bearer {PATIENT_TOKEN}")),
        )
        .await;
    assert!(body.get("errors").is_none(), "{body}");
    let url_of = |link: &Value| crate::qr::decode_svg(link["qrCodeSvg"].as_str().expect("svg"));

    let dead = open_expecting_refusal(url_of(&revoked), "viewer-revoked.png").await;
    let alive = open_expecting_refusal(url_of(&live), "viewer-live.png").await;

    assert_eq!(dead["state"], "failed", "{dead}");
    assert!(
        dead["status"]
            .as_str()
            .is_some_and(|status| status.starts_with("This link is no longer active")),
        "{dead}"
    );
    assert_eq!(
        dead["formShown"], false,
        "nothing is asked of the reader: {dead}"
    );
    assert_eq!(
        dead["expiryShown"], false,
        "no validity line for a dead link: {dead}"
    );
    assert_eq!(
        alive,
        json!({"state": "asking", "status": "", "expiryShown": true, "formShown": true})
    );

    // The live link's probe spent no attempt, and says what it was in the patient's history.
    let (_, body) = app
        .graphql(
            "{ healthLinks { id accesses { recipient action outcome } } }",
            json!({}),
            Some(&format!("Bearer {PATIENT_TOKEN}")),
        )
        .await;
    let history = body["data"]["healthLinks"]
        .as_array()
        .expect("links")
        .iter()
        .find(|link| link["id"] == live["id"])
        .expect("the live link")["accesses"]
        .clone();
    assert_eq!(
        history,
        json!([{"recipient": "Viewer: checking the link is active", "action": "manifest",
                "outcome": "no-passcode"}])
    );
    let wrong = if live["passcode"] == "000000" {
        "111111"
    } else {
        "000000"
    };
    let remaining = crate::manifest_protocol::post_manifest(
        &app,
        &crate::embedded::shl_payload(&url_of(&live)),
        json!({"recipient": "Dr. Example", "passcode": wrong}),
    )
    .await;
    assert_eq!(remaining.1["remainingAttempts"], 4, "{remaining:?}");
}
